//! The proxy: listener and accept loop, connection registry, toxic list, and `down`/up.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chaosforge::fault::net::{ProxyBackend, ProxyControl, ProxyError, ProxyFault, ProxyToxic};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::conn::{self, Conn};
use crate::toxic::{ToxicEntry, ToxicList, chance, happens, mix};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// An in-process TCP proxy that forwards every client to `upstream` through its toxics.
///
/// Start it with [`TcpProxy::start`] inside a Tokio runtime and drive it through
/// [`ProxyControl`]. Each accepted client gets its own upstream connection and two links (one
/// per [`Stream`](chaosforge::fault::net::Stream)), which see toxic changes at the next chunk
/// boundary. Dropping the proxy stops its listener and closes its connections, like
/// [`ProxyControl::shutdown`] (which is the way to wait for it).
#[derive(Debug)]
pub struct TcpProxy {
    /// The concrete bound address; `down` and up rebind exactly this one.
    listen_addr: SocketAddr,
    shared: Arc<Shared>,
    /// Serialises toxic changes, `down`/up and shutdown (they await the accept task).
    control: tokio::sync::Mutex<Control>,
}

/// Starts [`TcpProxy`]s in this process: the default [`ProxyBackend`].
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessBackend;

/// What the accept loop and connections share with the proxy handle.
#[derive(Debug)]
pub(crate) struct Shared {
    name: String,
    upstream: String,
    seed: u64,
    /// The toxic list every link watches.
    toxics: watch::Sender<ToxicList>,
    /// Open connections by accept number, so `down` and `shutdown` can end them.
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    next_conn: AtomicU64,
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
    /// The accept loop; `None` while down or after shutdown. It owns the listener.
    accept: Option<JoinHandle<()>>,
    running: bool,
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
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: listen.to_owned(),
                source,
            })?;
        let listen_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            upstream: upstream.to_owned(),
            seed,
            toxics: watch::Sender::new(Arc::new(Vec::new())),
            conns: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(proxy = name, %listen_addr, upstream, "proxy started");
        Ok(Arc::new(TcpProxy {
            listen_addr,
            shared,
            control: tokio::sync::Mutex::new(Control {
                toxics: Vec::new(),
                next_toxic: 0,
                downs: BTreeSet::new(),
                rng: SmallRng::seed_from_u64(mix(seed, u64::MAX)),
                accept: Some(accept),
                running: true,
            }),
        }))
    }

    /// The proxy's name, as given to [`TcpProxy::start`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The upstream address, as given to [`TcpProxy::start`].
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// The toxics in chain order (creation order), both streams.
    pub async fn toxics(&self) -> Vec<ProxyToxic> {
        self.control
            .lock()
            .await
            .toxics
            .iter()
            .map(|e| e.toxic.clone())
            .collect()
    }

    /// Whether the proxy accepts connections: started, not shut down, and not `down`.
    pub async fn is_listening(&self) -> bool {
        self.control.lock().await.accept.is_some()
    }

    /// The number of connections currently open (accepted and not yet closed).
    pub fn connection_count(&self) -> usize {
        self.shared.lock_conns().len()
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

    /// Binds the same concrete address again and restarts accepting.
    async fn go_up(&self, control: &mut Control) -> Result<(), ProxyError> {
        if control.accept.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(self.listen_addr)
            .await
            .map_err(|source| ProxyError::Bind {
                addr: self.listen_addr.to_string(),
                source,
            })?;
        control.accept = Some(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.shared),
        )));
        Ok(())
    }
}

#[async_trait]
impl ProxyControl for TcpProxy {
    fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Appends the toxic to its stream's chain. Open connections pick it up at their next chunk
    /// boundary, rolling its toxicity once each. A `down` toxic (whatever its stream) closes
    /// the listener and ends every open connection before this returns.
    async fn add_toxic(&self, toxic: ProxyToxic) -> Result<(), ProxyError> {
        let mut control = self.control.lock().await;
        if !control.running {
            return Err(ProxyError::NotRunning(self.shared.name.clone()));
        }
        if control.toxics.iter().any(|e| e.toxic.name == toxic.name) {
            return Err(ProxyError::DuplicateToxic(toxic.name));
        }
        let id = control.next_toxic;
        control.next_toxic += 1;
        if matches!(toxic.fault, ProxyFault::Down)
            && happens(&mut control.rng, chance(toxic.toxicity))
        {
            if control.downs.is_empty() {
                self.go_down(&mut control).await;
            }
            control.downs.insert(id);
        }
        tracing::debug!(proxy = %self.shared.name, toxic = %toxic.name, "toxic added");
        control.toxics.push(ToxicEntry { id, toxic });
        self.shared.publish(&control.toxics);
        Ok(())
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
        if control.downs.contains(&id) && control.downs.len() == 1 && control.running {
            self.go_up(&mut control).await?;
        }
        control.downs.remove(&id);
        control.toxics.remove(at);
        self.shared.publish(&control.toxics);
        tracing::debug!(proxy = %self.shared.name, toxic = name, "toxic removed");
        Ok(true)
    }

    async fn shutdown(&self) {
        let mut control = self.control.lock().await;
        if control.running {
            control.running = false;
            self.go_down(&mut control).await;
            tracing::debug!(proxy = %self.shared.name, "proxy shut down");
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
}

// === impl Shared ===

impl Shared {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn upstream(&self) -> &str {
        &self.upstream
    }

    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn subscribe_toxics(&self) -> watch::Receiver<ToxicList> {
        self.toxics.subscribe()
    }

    /// Drops a closed connection from the registry.
    pub(crate) fn forget_conn(&self, id: u64) {
        self.lock_conns().remove(&id);
    }

    fn publish(&self, toxics: &[ToxicEntry]) {
        // `send_replace` also works with no receiver (no connection open).
        self.toxics.send_replace(Arc::new(toxics.to_vec()));
    }

    fn register(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn::new(self.next_conn.fetch_add(1, Ordering::Relaxed)));
        self.lock_conns().insert(conn.id(), Arc::clone(&conn));
        conn
    }

    fn close_all(&self) {
        for conn in self.lock_conns().values() {
            conn.close();
        }
    }

    fn lock_conns(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts clients until cancelled (by `down`, `shutdown` or drop, which abort the task and so
/// drop the listener). Registration happens here, before the connection task runs, so a `down`
/// that waited for this task to end finds every accepted connection in the registry.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                let conn = shared.register();
                tracing::trace!(proxy = %shared.name, conn = conn.id(), %peer, "accepted");
                tokio::spawn(conn::serve(Arc::clone(&shared), conn, client));
            }
            Err(error) => {
                tracing::warn!(proxy = %shared.name, %error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
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
