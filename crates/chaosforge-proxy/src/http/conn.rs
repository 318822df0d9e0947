//! One client connection, from accept to close. The listener peeks at the first byte to tell
//! TLS from plain HTTP, so one port serves both and `tls-mitm` can start and stop while it
//! runs:
//!
//! - plain HTTP (HTTP/1.1, or h2c prior knowledge): served by hyper, every fault applying;
//! - a TLS ClientHello (record type `0x16`) while a `tls-mitm` fault applies to the
//!   connection: TLS terminated with that fault's bad certificate, then served like plain
//!   HTTP;
//! - any other TLS ClientHello: passed through at the TCP level to the upstream's host and
//!   port, so the client does its handshake with the real upstream and sees its real
//!   certificate (normal operation; no HTTP fault applies to such a connection). A plain
//!   `http://` upstream has no TLS to pass to: the connection is closed.
//!
//! The choice is made once per connection, when its first byte arrives: setting or removing
//! `tls-mitm` changes what new connections get, never an open one.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::mitm::{MitmCert, MitmTls};
use super::service::{self, Shared};
use super::stats::Recorder;
use super::upstream::{CONNECT_TIMEOUT, Lane};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// A client that has not finished its TLS handshake by then is dropped (and counted as a
/// rejection), so idle sockets cannot pile up under `tls-mitm`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that sends nothing for this long after connecting is closed: hyper's own limit
/// for an HTTP/1.1 request head, which applied here before the listener peeked.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS record type of a handshake message: every TLS connection opens with one (the
/// ClientHello); no HTTP/1.1 method or h2c preface starts with this byte.
const TLS_HANDSHAKE: u8 = 0x16;

/// Counts a client connection as open from accept until its task ends or is aborted.
struct OpenConnection(Arc<Recorder>);

// === impl OpenConnection ===

impl OpenConnection {
    /// Counts a new connection; also returns its accept number (0, 1, …).
    fn new(recorder: Arc<Recorder>) -> (OpenConnection, u64) {
        let number = recorder.connections.fetch_add(1, Ordering::Relaxed);
        recorder.open_connections.fetch_add(1, Ordering::Relaxed);
        (OpenConnection(recorder), number)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts clients until `stopped`; then ends every connection (dropping the set aborts
/// them) and returns.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Arc<MitmTls>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            // `true` is the only value ever sent; a dropped sender (no handle left) stops too.
            _ = stopped.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small requests and answers must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let (open, number) = OpenConnection::new(shared.recorder.clone());
                    let shared = shared.clone();
                    let tls = tls.clone();
                    conns.spawn(async move {
                        route(stream, number, shared, &tls).await;
                        drop(open);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "http proxy accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Serves connection number `number` as its first byte says (see the module doc).
async fn route(stream: TcpStream, number: u64, shared: Arc<Shared>, tls: &MitmTls) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1..)) => {}
        // Closed before sending anything, failed, or silent too long: nothing to serve.
        _ => return,
    }
    if first[0] != TLS_HANDSHAKE {
        serve(stream, shared).await;
        return;
    }
    match shared.mitm_for(number) {
        Some(variant) => {
            let acceptor = TlsAcceptor::from(tls.config(variant));
            handshake_then_serve(acceptor, variant, stream, shared).await;
        }
        None => pass_through(stream, &shared).await,
    }
}

/// Connects the client's TLS to the upstream, byte for byte, until either side closes.
async fn pass_through(mut client: TcpStream, shared: &Shared) {
    let refused = |reason: &dyn std::fmt::Display| {
        tracing::debug!(%reason, "tls connection not passed through; closed");
        shared.recorder.tls_refused.fetch_add(1, Ordering::Relaxed);
    };
    let Some(addr) = shared.upstream.tls_address() else {
        refused(&"the upstream is plain http: there is no TLS to pass the client to");
        return;
    };
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => return refused(&format_args!("cannot connect to {addr}: {error}")),
        Err(_) => return refused(&format_args!("cannot connect to {addr} within 5s")),
    };
    let _ = upstream.set_nodelay(true);
    shared
        .recorder
        .tls_passed_through
        .fetch_add(1, Ordering::Relaxed);
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        // A reset by either side: normal for a tunnel.
        tracing::debug!(%error, "tls pass-through ended with an error");
    }
}

/// Completes the TLS handshake presenting `variant` (recording whether the client accepted
/// the certificate), then serves the connection.
async fn handshake_then_serve(
    acceptor: TlsAcceptor,
    variant: MitmCert,
    stream: TcpStream,
    shared: Arc<Shared>,
) {
    let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            shared.recorder.handshake(variant, Ok(()));
            serve(tls, shared).await;
            return;
        }
        Ok(Err(error)) => handshake_failure(&error),
        Err(_) => "no handshake within 10s".to_owned(),
    };
    tracing::debug!(%reason, variant = variant.name(), "tls-mitm handshake failed");
    shared.recorder.handshake(variant, Err(reason));
}

/// Why a handshake failed, in rustls' words when it has them (the client's alert).
fn handshake_failure(error: &io::Error) -> String {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(tls) => tls.to_string(),
        None => error.to_string(),
    }
}

/// Serves HTTP/1.1 and HTTP/2 on one client connection until it closes.
async fn serve<I>(io: I, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // This connection's own upstream connection (plain http upstreams; see `Lane`).
    let lane = Arc::new(Lane::default());
    let driver = lane.clone();
    let service = service_fn(move |request| service::handle(shared.clone(), lane.clone(), request));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's HTTP/1.1 header-read timeout and HTTP/2 keep-alive need a timer.
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let serving = builder.serve_connection(TokioIo::new(io), service);
    let mut serving = std::pin::pin!(serving);
    // The lane's upstream connection is driven here, in this task (see `Lane`): first, so an
    // answer it reads reaches the waiting request in this same poll; again after, so a
    // request just handed to it is written now rather than at the next wake-up.
    let served = std::future::poll_fn(|cx| {
        driver.poll_drive(cx);
        let served = serving.as_mut().poll(cx);
        if served.is_pending() {
            driver.poll_drive(cx);
        }
        served
    })
    .await;
    if let Err(error) = served {
        // A dropped connection (http-abort drop), a client that went away: normal here.
        tracing::debug!(%error, "http proxy connection ended with an error");
    }
}
