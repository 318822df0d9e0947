//! The proxy: listener and accept loop, connection registry, toxic list, enable/disable and
//! `down`/up, and the live changes of listen address and upstream the HTTP API makes. What it
//! shares with its connections ([`Shared`]) is defined in `state`, so that `conn` and `link`
//! can take it without importing this module.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chaosforge::fault::net::{
    HttpProxyControl, ProxyBackend, ProxyControl, ProxyError, ProxyToxic,
};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

use crate::conn;
use crate::metrics::Metrics;
use crate::model::{Toxic, ToxicKind};
use crate::state::{Conn, ConnectionInfo, Shared};
use crate::toxic::{ToxicEntry, chance, happens, mix};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// An in-process TCP proxy that forwards every client to its upstream through its toxics.
///
/// Start it with [`TcpProxy::start`] (the engine) or [`TcpProxy::create`] (the HTTP API) inside
/// a Tokio runtime and drive it through [`ProxyControl`] or the inherent methods. Each accepted
/// client gets its own upstream connection and two links (one per
/// [`Stream`](chaosforge::fault::net::Stream)), which see toxic changes at the next chunk
/// boundary. Dropping the proxy stops its listener and closes its connections, like
/// [`ProxyControl::shutdown`] (which is the way to wait for it).
#[derive(Debug)]
pub struct TcpProxy {
    shared: Arc<Shared>,
    /// Serialises toxic changes, enable/disable, `down`/up and shutdown (they await the accept
    /// task).
    control: tokio::sync::Mutex<Control>,
}

/// Starts [`TcpProxy`]s in this process: the default [`ProxyBackend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessBackend;

/// How a proxy is set up, beyond its name and addresses.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Drives every random choice (toxicity rolls, jitter, corruption, slicing).
    pub seed: u64,
    /// Where to count bytes, connections and toxic activations; `None` counts nothing.
    pub metrics: Option<Arc<Metrics>>,
    /// Reset (RST) a client whose upstream cannot be dialled, instead of Toxiproxy's connect
    /// followed by EOF, so the client sees a failure rather than an empty answer.
    pub reset_unreachable: bool,
}

/// The mutable half of the proxy, behind `TcpProxy::control`.
#[derive(Debug)]
struct Control {
    toxics: Vec<ToxicEntry>,
    next_toxic: u64,
    /// Ids of the `down` toxics whose toxicity roll made them apply; down while not empty.
    downs: BTreeSet<u64>,
    /// Rolls the toxicity of `down` toxics (they belong to the proxy, not to a connection).
    rng: SmallRng,
    /// The accept loop; `None` while disabled, down or after shutdown. It owns the listener.
    accept: Option<JoinHandle<()>>,
    /// False after shutdown: nothing can be changed any more.
    running: bool,
    /// Toxiproxy's `enabled`: the listener should be bound (unless a `down` toxic applies).
    enabled: bool,
    /// Toxiproxy's `listen`: as given until the first bind, then the concrete bound address.
    listen: String,
}

// === impl TcpProxy ===

impl TcpProxy {
    /// Binds `listen` (`host:port`, port 0 for any free port) and starts accepting. Each client
    /// is forwarded to `upstream` (`host:port`, resolved and dialled per connection). `seed`
    /// drives every random choice (toxicity rolls, jitter, corruption), so a run with the same
    /// seed and the same order of connections and toxics decides the same way.
    ///
    /// Must be called inside a Tokio runtime (it spawns the accept loop).
    ///
    /// # Errors
    ///
    /// [`ProxyError::Address`] if `upstream` is not `host:port`; [`ProxyError::Bind`] if
    /// `listen` cannot be resolved or bound; [`ProxyError::Io`] if the bound address cannot be
    /// read back.
    pub async fn start(
        name: &str,
        listen: &str,
        upstream: &str,
        seed: u64,
    ) -> Result<Arc<TcpProxy>, ProxyError> {
        check_host_port(upstream)?;
        let options = ProxyOptions {
            seed,
            ..ProxyOptions::default()
        };
        TcpProxy::create(name, listen, upstream, true, options).await
    }

    /// A proxy as the HTTP API creates it: bound at once if `enabled` (and `listen` is then
    /// rewritten to the concrete address), else only recorded until enabled. `upstream` is not
    /// checked: like Toxiproxy, it is dialled per connection and a failure ends that client.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Bind`] if `enabled` and `listen` cannot be resolved or bound; then no
    /// proxy exists.
    pub async fn create(
        name: &str,
        listen: &str,
        upstream: &str,
        enabled: bool,
        options: ProxyOptions,
    ) -> Result<Arc<TcpProxy>, ProxyError> {
        let shared = Arc::new(Shared::new(
            name,
            upstream,
            options.seed,
            options.reset_unreachable,
            options.metrics,
        ));
        let proxy = TcpProxy {
            shared,
            control: tokio::sync::Mutex::new(Control {
                toxics: Vec::new(),
                next_toxic: 0,
                downs: BTreeSet::new(),
                rng: SmallRng::seed_from_u64(mix(options.seed, u64::MAX)),
                accept: None,
                running: true,
                enabled: false,
                listen: listen.to_owned(),
            }),
        };
        if enabled {
            let mut control = proxy.control.lock().await;
            proxy.enable(&mut control).await?;
        }
        tracing::debug!(proxy = name, listen, upstream, enabled, "proxy created");
        Ok(Arc::new(proxy))
    }

    /// The proxy's name, as given when it was started.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The upstream address (`host:port`, dialled per connection).
    pub fn upstream(&self) -> String {
        self.shared.upstream().to_string()
    }

    /// Toxiproxy's `listen`: the concrete bound address once the proxy has been enabled, the
    /// address as given before that.
    pub async fn listen(&self) -> String {
        self.control.lock().await.listen.clone()
    }

    /// Toxiproxy's `enabled`.
    pub async fn enabled(&self) -> bool {
        self.control.lock().await.enabled
    }

    /// Whether the proxy resets clients whose upstream cannot be dialled.
    pub fn resets_unreachable(&self) -> bool {
        self.shared.resets_unreachable()
    }

    /// Sets [`ProxyOptions::reset_unreachable`] for the connections accepted from now on.
    pub fn set_reset_unreachable(&self, reset: bool) {
        self.shared.set_reset_unreachable(reset);
    }

    /// The toxics in chain order (creation order), both streams.
    pub async fn toxics(&self) -> Vec<Toxic> {
        self.control
            .lock()
            .await
            .toxics
            .iter()
            .map(|e| e.toxic.clone())
            .collect()
    }

    /// The toxic called `name`, if any.
    pub async fn toxic(&self, name: &str) -> Option<Toxic> {
        let control = self.control.lock().await;
        control
            .toxics
            .iter()
            .find(|e| e.toxic.name == name)
            .map(|e| e.toxic.clone())
    }

    /// Whether the proxy accepts connections: started, enabled, not shut down, and not `down`.
    pub async fn is_listening(&self) -> bool {
        self.control.lock().await.accept.is_some()
    }

    /// The number of connections currently open (accepted and not yet closed).
    pub fn connection_count(&self) -> usize {
        self.shared.lock_conns().len()
    }

    /// The open connections, in accept order.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.shared
            .lock_conns()
            .values()
            .map(|c| c.info())
            .collect()
    }

    /// Toxiproxy's proxy update: a changed `listen` (compared after resolving, so
    /// `localhost:P` equals `127.0.0.1:P`) or `upstream` stops the proxy, closing its
    /// connections; then the proxy is started or stopped to match `enabled`. Toxics stay.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Address`] if `listen` does not resolve; [`ProxyError::Bind`] if it cannot
    /// be bound (the proxy is then left disabled); [`ProxyError::NotRunning`] after shutdown.
    pub async fn update(
        &self,
        listen: &str,
        upstream: &str,
        enabled: bool,
    ) -> Result<(), ProxyError> {
        let mut control = self.control.lock().await;
        if !control.running {
            return Err(ProxyError::NotRunning(self.shared.name().to_owned()));
        }
        let new = resolve(listen).await?;
        let current = resolve(&control.listen).await.ok();
        if current != Some(new) || *self.shared.upstream() != *upstream {
            self.disable(&mut control).await;
            control.listen = listen.to_owned();
            self.shared.set_upstream(upstream);
        }
        if enabled != control.enabled {
            if enabled {
                self.enable(&mut control).await?;
            } else {
                self.disable(&mut control).await;
            }
        }
        Ok(())
    }

    /// Whether an update to (`listen`, `upstream`) would leave the proxy as it is (populate
    /// keeps such proxies, with their toxics and connections). Port 0 never matches.
    pub async fn same_addresses(&self, listen: &str, upstream: &str) -> bool {
        let listen_now = self.listen().await;
        if *self.shared.upstream() != *upstream {
            return false;
        }
        match (resolve(listen).await, resolve(&listen_now).await) {
            (Ok(a), Ok(b)) => a == b && a.port() != 0,
            _ => false,
        }
    }

    /// Adds a toxic at the end of its stream's chain (see [`ProxyControl::add_toxic`]).
    ///
    /// # Errors
    ///
    /// [`ProxyError::DuplicateToxic`] if the name is taken (on either stream);
    /// [`ProxyError::NotRunning`] after shutdown.
    pub async fn add(&self, toxic: Toxic) -> Result<(), ProxyError> {
        let mut control = self.control.lock().await;
        if !control.running {
            return Err(ProxyError::NotRunning(self.shared.name().to_owned()));
        }
        if control.toxics.iter().any(|e| e.toxic.name == toxic.name) {
            return Err(ProxyError::DuplicateToxic(toxic.name));
        }
        let id = control.next_toxic;
        control.next_toxic += 1;
        if matches!(toxic.kind, ToxicKind::Down)
            && happens(&mut control.rng, chance(f64::from(toxic.toxicity)))
        {
            if control.downs.is_empty() {
                self.go_down(&mut control).await;
            }
            control.downs.insert(id);
        }
        tracing::debug!(proxy = %self.shared.name(), toxic = %toxic.name, "toxic added");
        control.toxics.push(ToxicEntry { id, rev: 0, toxic });
        self.shared.publish(&control.toxics);
        Ok(())
    }

    /// Replaces the toxic called `name` by what `change` makes of it, keeping its place in the
    /// chain. Open links re-instantiate it (re-rolling its toxicity, as Toxiproxy restarts the
    /// toxic) at their next chunk boundary; a `limit_data` count carries over.
    ///
    /// Returns `Ok(None)` when no such toxic exists, and `change`'s error unchanged.
    ///
    /// # Errors
    ///
    /// Whatever `change` returns.
    pub async fn update_toxic<E>(
        &self,
        name: &str,
        change: impl FnOnce(&Toxic) -> Result<Toxic, E>,
    ) -> Result<Option<Toxic>, E> {
        let mut control = self.control.lock().await;
        let Some(entry) = control.toxics.iter_mut().find(|e| e.toxic.name == name) else {
            return Ok(None);
        };
        let mut updated = change(&entry.toxic)?;
        // Name, type and stream are fixed; only attributes and toxicity change.
        updated.name.clone_from(&entry.toxic.name);
        updated.stream = entry.toxic.stream;
        updated.stream_text.clone_from(&entry.toxic.stream_text);
        entry.toxic = updated.clone();
        entry.rev += 1;
        self.shared.publish(&control.toxics);
        Ok(Some(updated))
    }

    /// Removes every toxic (Toxiproxy's reset), releasing held data and ending connections a
    /// `timeout` toxic applied to.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Bind`] if removing a `down` toxic cannot rebind the listener.
    pub async fn clear_toxics(&self) -> Result<(), ProxyError> {
        for toxic in self.toxics().await {
            self.remove_toxic(&toxic.name).await?;
        }
        Ok(())
    }

    /// Starts accepting: binds `listen` (the concrete address from now on) unless a `down`
    /// toxic applies. Idempotent.
    async fn enable(&self, control: &mut Control) -> Result<(), ProxyError> {
        control.enabled = true;
        if let Err(error) = self.go_up(control).await {
            control.enabled = false;
            return Err(error);
        }
        Ok(())
    }

    /// Stops accepting and ends every open connection. Idempotent.
    async fn disable(&self, control: &mut Control) {
        control.enabled = false;
        self.go_down(control).await;
    }

    /// Takes the listener down and ends every open connection. Waits until the listener is
    /// closed, so a connect attempt right after this returns is refused.
    async fn go_down(&self, control: &mut Control) {
        if let Some(accept) = control.accept.take() {
            accept.abort();
            // The listener lives in the task: once the handle resolves, it is dropped.
            let _cancelled = accept.await;
        }
        self.shared.close_all();
    }

    /// Binds `listen` and starts accepting, if enabled, running and not `down`. The first bind
    /// turns `listen` into the concrete address, so later ones rebind exactly that port.
    async fn go_up(&self, control: &mut Control) -> Result<(), ProxyError> {
        if control.accept.is_some()
            || !control.running
            || !control.enabled
            || !control.downs.is_empty()
        {
            return Ok(());
        }
        let listener = bind(&control.listen).await?;
        let bound = listener.local_addr()?;
        control.listen = bound.to_string();
        self.shared.set_bound(bound);
        control.accept = Some(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.shared),
        )));
        Ok(())
    }
}

#[async_trait]
impl ProxyControl for TcpProxy {
    /// The concrete bound address; `0.0.0.0:0` if the proxy was never bound.
    fn listen_addr(&self) -> SocketAddr {
        self.shared
            .bound()
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
    }

    /// Appends the toxic to its stream's chain. Open connections pick it up at their next chunk
    /// boundary, rolling its toxicity once each. A `down` toxic (whatever its stream) closes
    /// the listener and ends every open connection before this returns.
    async fn add_toxic(&self, toxic: ProxyToxic) -> Result<(), ProxyError> {
        self.add(Toxic::from_engine(toxic)?).await
    }

    /// Removes the toxic; open connections stop applying it at their next chunk boundary, and
    /// chunks it was holding move on in order. Removing the last applied `down` rebinds the
    /// same address; if that fails the toxic stays, so the removal can be retried.
    async fn remove_toxic(&self, name: &str) -> Result<bool, ProxyError> {
        let mut control = self.control.lock().await;
        let Some(at) = control.toxics.iter().position(|e| e.toxic.name == name) else {
            return Ok(false);
        };
        let id = control.toxics[at].id;
        if control.downs.contains(&id) && control.downs.len() == 1 {
            control.downs.remove(&id);
            if let Err(error) = self.go_up(&mut control).await {
                control.downs.insert(id);
                return Err(error);
            }
        }
        control.downs.remove(&id);
        control.toxics.remove(at);
        self.shared.publish(&control.toxics);
        tracing::debug!(proxy = %self.shared.name(), toxic = name, "toxic removed");
        Ok(true)
    }

    async fn shutdown(&self) {
        let mut control = self.control.lock().await;
        if control.running {
            control.running = false;
            self.go_down(&mut control).await;
            tracing::debug!(proxy = %self.shared.name(), "proxy shut down");
        }
    }
}

impl Drop for TcpProxy {
    /// Backstop for a proxy dropped without `shutdown`: the listener closes once the runtime
    /// cancels the accept task.
    fn drop(&mut self) {
        if let Some(accept) = self.control.get_mut().accept.take() {
            accept.abort();
        }
        self.shared.close_all();
    }
}

// === impl InProcessBackend ===

#[async_trait]
impl ProxyBackend for InProcessBackend {
    async fn start(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        seed: u64,
    ) -> Result<Arc<dyn ProxyControl>, ProxyError> {
        let proxy: Arc<dyn ProxyControl> = TcpProxy::start(name, listen, upstream, seed).await?;
        Ok(proxy)
    }

    /// An [`HttpProxy`](crate::http::HttpProxy) in this process. `listen` is `host:port`
    /// (resolved, IPv4 first); `upstream` an `http://` or `https://` URL, optionally with a
    /// base path; `upstream_ca` a PEM file of extra roots for an https upstream (ignored for
    /// http). TLS clients are passed through to an https upstream until a `tls-mitm` rule is
    /// set; with an http upstream they are closed.
    async fn start_http(
        &self,
        name: &str,
        listen: &str,
        upstream: &str,
        upstream_ca: Option<&std::path::Path>,
        seed: u64,
    ) -> Result<Arc<dyn HttpProxyControl>, ProxyError> {
        let proxy: Arc<dyn HttpProxyControl> =
            crate::http::HttpProxyHandle::start(name, listen, upstream, upstream_ca, seed).await?;
        Ok(proxy)
    }
}

/// Accepts clients until cancelled (by `down`, `shutdown` or drop, which abort the task and so
/// drop the listener). Registration happens here, before the connection task runs, so a `down`
/// that waited for this task to end finds every accepted connection in the registry.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let conn = shared.register(peer);
                tracing::trace!(proxy = %shared.name(), conn = conn.id(), %peer, "accepted");
                // A panic in a connection task ends that task only: tokio catches it, and the
                // registry entry is removed by the task's drop guard while unwinding.
                spawn_conn(Arc::clone(&shared), conn, client);
            }
            Err(error) => {
                tracing::warn!(proxy = %shared.name(), %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Runs a connection on one of the [`workers`] (round robin) when this runtime is
/// multi-threaded, else (a current-thread runtime, tests with paused time) right here.
fn spawn_conn(shared: Arc<Shared>, conn: Arc<Conn>, client: TcpStream) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let local = Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread;
    let worker = match workers() {
        Some(all) if !local => all.get(NEXT.fetch_add(1, Ordering::Relaxed) % all.len()),
        _ => None,
    };
    let Some(worker) = worker else {
        tokio::spawn(conn::serve(shared, conn, client));
        return;
    };
    // The socket is registered with this runtime's reactor; the worker registers it anew.
    let client = match client.into_std() {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(conn = conn.id(), %error, "cannot hand the connection over");
            shared.forget_conn(conn.id());
            return;
        }
    };
    worker.spawn(async move {
        match TcpStream::from_std(client) {
            Ok(client) => conn::serve(shared, conn, client).await,
            Err(error) => {
                tracing::debug!(conn = conn.id(), %error, "cannot register the connection");
                shared.forget_conn(conn.id());
            }
        }
    });
}

/// The runtimes that carry connections: one current-thread runtime per core, started on first
/// use and shared by every proxy of the process. A connection's two links then wake and run on
/// one thread, without the multi-threaded scheduler's hand-offs and wake-ups of idle workers.
/// `None` if no thread could be started.
fn workers() -> Option<&'static [Handle]> {
    static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();
    let all = WORKERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (0..cores)
            .filter_map(|i| match start_worker(i) {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "cannot start a proxy worker thread");
                    None
                }
            })
            .collect()
    });
    (!all.is_empty()).then_some(all.as_slice())
}

/// Starts worker `i`: a thread that runs its runtime for the rest of the process.
fn start_worker(i: usize) -> std::io::Result<Handle> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name(format!("proxy-worker-{i}"))
        .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// Resolves `host:port` to one address, IPv4 first (as Go resolves `localhost`).
pub(crate) async fn resolve(addr: &str) -> Result<SocketAddr, ProxyError> {
    let bad = |reason: String| ProxyError::Address {
        addr: addr.to_owned(),
        reason,
    };
    if addr.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    }
    let mut all: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| bad(e.to_string()))?
        .collect();
    all.sort_by_key(|a| !a.is_ipv4());
    all.into_iter()
        .next()
        .ok_or_else(|| bad("no address".to_owned()))
}

/// Binds `listen`: every interface (IPv6 and IPv4 if the host has IPv6) when empty, as
/// Toxiproxy does; else the resolved address, IPv4 first.
async fn bind(listen: &str) -> Result<TcpListener, ProxyError> {
    let bind_error = |source| ProxyError::Bind {
        addr: listen.to_owned(),
        source,
    };
    if listen.is_empty() {
        return match TcpListener::bind("[::]:0").await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind("0.0.0.0:0").await.map_err(bind_error),
        };
    }
    let addr = resolve(listen).await.map_err(|e| {
        bind_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })?;
    TcpListener::bind(addr).await.map_err(bind_error)
}

/// Checks that `addr` looks like `host:port` (it is resolved only when dialled).
fn check_host_port(addr: &str) -> Result<(), ProxyError> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = |reason: &str| ProxyError::Address {
        addr: addr.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("port is not a number in 0..=65535"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_must_be_host_and_port() {
        assert!(check_host_port("127.0.0.1:80").is_ok());
        assert!(check_host_port("[::1]:80").is_ok());
        assert!(check_host_port("localhost:5432").is_ok());
        for bad in ["localhost", ":80", "host:http", "host:70000", ""] {
            assert!(
                matches!(check_host_port(bad), Err(ProxyError::Address { .. })),
                "{bad}"
            );
        }
    }
}
