//! Prometheus metrics of a set of proxies, counted while bytes flow (Toxiproxy only adds a link's
//! bytes when the link ends, so a long-lived connection shows nothing until it closes).
//!
//! Toxiproxy's two counters keep their names and labels so existing dashboards work:
//! `toxiproxy_proxy_received_bytes_total` and `toxiproxy_proxy_sent_bytes_total`. chaosforge adds
//! `chaosforge_proxy_connections` (open now), `chaosforge_proxy_connections_accepted_total` and
//! `chaosforge_proxy_toxic_activations_total` (a toxic became active on a link).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The metrics registry shared by every proxy of a server. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Family<ByteLabels, Counter>,
    sent: Family<ByteLabels, Counter>,
    open: Family<ProxyLabels, Gauge>,
    accepted: Family<ProxyLabels, Counter>,
    activations: Family<ToxicLabels, Counter>,
}

/// Labels of the byte counters, as Toxiproxy names them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ByteLabels {
    pub(crate) direction: String,
    pub(crate) listener: String,
    pub(crate) proxy: String,
    pub(crate) upstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProxyLabels {
    proxy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToxicLabels {
    proxy: String,
    toxic: String,
    r#type: String,
    direction: String,
}

/// The counters one link updates for every chunk (handles into the families, so a chunk costs
/// two atomic adds and no lookup).
#[derive(Debug, Clone)]
pub(crate) struct LinkCounters {
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
}

// === impl Metrics ===

impl Metrics {
    /// An empty registry with every chaosforge proxy metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let received = Family::<ByteLabels, Counter>::default();
        let sent = Family::<ByteLabels, Counter>::default();
        let open = Family::<ProxyLabels, Gauge>::default();
        let accepted = Family::<ProxyLabels, Counter>::default();
        let activations = Family::<ToxicLabels, Counter>::default();
        registry.register(
            "toxiproxy_proxy_received_bytes",
            "Bytes read by the proxy, per direction, counted as they arrive",
            received.clone(),
        );
        registry.register(
            "toxiproxy_proxy_sent_bytes",
            "Bytes written by the proxy, per direction, counted as they leave",
            sent.clone(),
        );
        registry.register(
            "chaosforge_proxy_connections",
            "Client connections open now",
            open.clone(),
        );
        registry.register(
            "chaosforge_proxy_connections_accepted",
            "Client connections accepted",
            accepted.clone(),
        );
        registry.register(
            "chaosforge_proxy_toxic_activations",
            "Times a toxic became active on a link (one direction of one connection)",
            activations.clone(),
        );
        Metrics {
            registry,
            received,
            sent,
            open,
            accepted,
            activations,
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        out
    }

    pub(crate) fn link(&self, labels: &ByteLabels) -> LinkCounters {
        LinkCounters {
            received: self.received.get_or_create(labels).clone(),
            sent: self.sent.get_or_create(labels).clone(),
        }
    }

    /// A connection of `proxy` opened (`+1`) or closed (`-1`).
    pub(crate) fn connection(&self, proxy: &str, delta: i64) {
        let labels = ProxyLabels {
            proxy: proxy.to_owned(),
        };
        self.open.get_or_create(&labels).inc_by(delta);
        if delta > 0 {
            self.accepted.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn activated(&self, proxy: &str, toxic: &str, kind: &str, direction: &str) {
        self.activations
            .get_or_create(&ToxicLabels {
                proxy: proxy.to_owned(),
                toxic: toxic.to_owned(),
                r#type: kind.to_owned(),
                direction: direction.to_owned(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}
