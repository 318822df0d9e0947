//! Proxies on a running `chaosforge proxy` or Toxiproxy server, driven through the Toxiproxy HTTP
//! API. Unlike in-process proxies they outlive the runner, so their faults are journaled as
//! [`RevertSpec::RemoteToxics`] and `chaosforge recover` removes them through the same API.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::net::{CorruptUnit, ProxyControl, ProxyError, ProxyFault, ProxyToxic, Stream};
use super::{BoxError, RevertSpec};

/// A proxy on a remote server.
#[derive(Debug)]
pub struct RemoteProxy {
    api: String,
    name: String,
    listen: SocketAddr,
    client: reqwest::Client,
    /// Names of `down` faults in force: they are the proxy's `enabled` flag, not toxics.
    downs: Mutex<BTreeSet<String>>,
}

// === impl RemoteProxy ===

impl RemoteProxy {
    /// Connects to proxy `name` on the server at `api` (e.g. `http://127.0.0.1:8474`), checking
    /// that it exists.
    pub async fn connect(api: &str, name: &str) -> Result<RemoteProxy, ProxyError> {
        let client = client()?;
        let url = format!("{api}/proxies/{name}");
        let resp = client.get(&url).send().await.map_err(|e| remote(&url, e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(ProxyError::Remote(format!(
                "no proxy `{name}` on the server at {api}"
            )));
        }
        let body: Value = ok_json(&url, resp).await?;
        let listen = body["listen"].as_str().unwrap_or_default();
        // `[::]:port` and `0.0.0.0:port` are reachable on loopback; keep the port.
        let listen: SocketAddr = listen.parse().map_err(|_| {
            ProxyError::Remote(format!(
                "proxy `{name}` reports an unusable listen address `{listen}`"
            ))
        })?;
        Ok(RemoteProxy {
            api: api.to_string(),
            name: name.to_string(),
            listen,
            client,
            downs: Mutex::new(BTreeSet::new()),
        })
    }

    fn downs(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.downs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ProxyControl for RemoteProxy {
    fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    async fn add_toxic(&self, toxic: ProxyToxic) -> Result<(), ProxyError> {
        if matches!(toxic.fault, ProxyFault::Down) {
            set_enabled(&self.client, &self.api, &self.name, false).await?;
            self.downs().insert(toxic.name);
            return Ok(());
        }
        let url = format!("{}/proxies/{}/toxics", self.api, self.name);
        let resp = self
            .client
            .post(&url)
            .json(&toxic_json(&toxic)?)
            .send()
            .await
            .map_err(|e| remote(&url, e))?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Err(ProxyError::DuplicateToxic(toxic.name));
        }
        ok_json(&url, resp).await.map(|_| ())
    }

    async fn remove_toxic(&self, name: &str) -> Result<bool, ProxyError> {
        if self.downs().remove(name) {
            set_enabled(&self.client, &self.api, &self.name, true).await?;
            return Ok(true);
        }
        delete_toxic(&self.client, &self.api, &self.name, name).await
    }

    async fn shutdown(&self) {
        // Not ours: the server and its proxy stay as they were before the run.
    }

    fn revert_spec(&self, target: &str, toxics: &[ProxyToxic]) -> RevertSpec {
        let _ = target;
        RevertSpec::RemoteToxics {
            api: self.api.clone(),
            proxy: self.name.clone(),
            toxics: toxics
                .iter()
                .filter(|t| !matches!(t.fault, ProxyFault::Down))
                .map(|t| t.name.clone())
                .collect(),
            reenable: toxics.iter().any(|t| matches!(t.fault, ProxyFault::Down)),
        }
    }
}

/// Undoes remote toxics from the journal: deletes each (gone already is fine) and re-enables the
/// proxy if a `down` was in force. Idempotent.
pub async fn revert_detached(
    api: &str,
    proxy: &str,
    toxics: &[String],
    reenable: bool,
) -> Result<String, BoxError> {
    let client = client()?;
    let mut removed = 0;
    let mut errors = Vec::new();
    for t in toxics {
        match delete_toxic(&client, api, proxy, t).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    if reenable && let Err(e) = set_enabled(&client, api, proxy, true).await {
        errors.push(e.to_string());
    }
    if errors.is_empty() {
        let up = if reenable {
            "; proxy enabled again"
        } else {
            ""
        };
        Ok(format!(
            "{} of `{proxy}` at {api}{up}",
            super::proxy::undone_text(toxics, removed)
        ))
    } else {
        Err(errors.join("; ").into())
    }
}

fn client() -> Result<reqwest::Client, ProxyError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ProxyError::Remote(format!("cannot build an HTTP client: {e}")))
}

fn remote(url: &str, e: reqwest::Error) -> ProxyError {
    ProxyError::Remote(format!("{url}: {e}"))
}

async fn ok_json(url: &str, resp: reqwest::Response) -> Result<Value, ProxyError> {
    let status = resp.status();
    let text = resp.text().await.map_err(|e| remote(url, e))?;
    if !status.is_success() {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(ProxyError::Remote(format!(
            "{url}: {status}: {}",
            msg.trim()
        )));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn set_enabled(
    client: &reqwest::Client,
    api: &str,
    proxy: &str,
    enabled: bool,
) -> Result<(), ProxyError> {
    // POST, not PATCH: every Toxiproxy version accepts it.
    let url = format!("{api}/proxies/{proxy}");
    let resp = client
        .post(&url)
        .json(&json!({ "enabled": enabled }))
        .send()
        .await
        .map_err(|e| remote(&url, e))?;
    ok_json(&url, resp).await.map(|_| ())
}

async fn delete_toxic(
    client: &reqwest::Client,
    api: &str,
    proxy: &str,
    toxic: &str,
) -> Result<bool, ProxyError> {
    let url = format!("{api}/proxies/{proxy}/toxics/{toxic}");
    let resp = client
        .delete(&url)
        .send()
        .await
        .map_err(|e| remote(&url, e))?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        reqwest::StatusCode::NOT_FOUND => Ok(false),
        _ => ok_json(&url, resp).await.map(|_| false),
    }
}

/// The Toxiproxy API body of a toxic.
fn toxic_json(t: &ProxyToxic) -> Result<Value, ProxyError> {
    let ms = |d: &Duration| d.as_millis() as u64;
    let (kind, attributes) = match &t.fault {
        ProxyFault::Latency { delay, jitter } => (
            "latency",
            json!({ "latency": ms(delay), "jitter": ms(jitter) }),
        ),
        // Toxiproxy's rate is in KB/s.
        ProxyFault::Bandwidth { rate } => ("bandwidth", json!({ "rate": (rate / 1000).max(1) })),
        ProxyFault::Timeout { after } => (
            "timeout",
            json!({ "timeout": after.as_ref().map_or(0, ms) }),
        ),
        ProxyFault::Reset { after } => ("reset_peer", json!({ "timeout": ms(after) })),
        ProxyFault::Corrupt {
            probability,
            per: CorruptUnit::Byte,
        } => ("corrupt", json!({ "probability": probability.get() })),
        ProxyFault::Corrupt {
            per: CorruptUnit::Chunk,
            ..
        } => {
            return Err(ProxyError::Remote(
                "`corrupt` per chunk is not available through the proxy API; use per: byte".into(),
            ));
        }
        // `down` is the proxy's `enabled` flag, handled before a toxic body is made.
        ProxyFault::Down => return Err(ProxyError::Remote("`down` is not a toxic".into())),
    };
    Ok(json!({
        "name": t.name,
        "type": kind,
        "stream": if t.stream == Stream::Upstream { "upstream" } else { "downstream" },
        "toxicity": t.toxicity.get(),
        "attributes": attributes,
    }))
}
