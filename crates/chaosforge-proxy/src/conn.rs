//! One proxied connection: dialling the upstream and running its two [`Link`]s. The
//! [`ConnState`](crate::state::ConnState) through which any part (a link, a toxic deadline,
//! `down`, `shutdown`) ends it lives in `state`, with the [`Conn`] handle, so that links reach
//! it without importing this module; what a link needs of the proxy is handed to it here.

use std::sync::Arc;
use std::time::Duration;

use chaosforge::fault::net::Stream;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::link::Link;
use crate::state::{Conn, Shared, closed};
use crate::toxic::mix;

/// Removes a connection from the registry however its task ends (even if cancelled).
struct Deregister<'a> {
    shared: &'a Shared,
    id: u64,
}

/// Serves one accepted client until the connection ends. Never fails: errors are logged and end
/// only this connection.
pub(crate) async fn serve(shared: Arc<Shared>, conn: Arc<Conn>, client: TcpStream) {
    let _registered = Deregister {
        shared: &shared,
        id: conn.id(),
    };
    let mut state = conn.subscribe();
    let target = shared.upstream();
    // Like Toxiproxy, accept first and dial afterwards: a failed dial shows as connect + EOF.
    let upstream = tokio::select! {
        biased;
        _ = closed(&mut state) => return,
        dialled = TcpStream::connect(&*target) => match dialled {
            Ok(upstream) => upstream,
            Err(error) => {
                let proxy = shared.name();
                tracing::debug!(proxy, conn = conn.id(), %error, "cannot dial upstream");
                if shared.resets_unreachable() {
                    // RST instead of FIN: the client sees the connection fail, not an empty
                    // answer it might take for a valid one.
                    if let Err(error) = SockRef::from(&client).set_linger(Some(Duration::ZERO)) {
                        tracing::debug!(conn = conn.id(), %error, "cannot set SO_LINGER 0");
                    }
                }
                return;
            }
        },
    };
    // Small writes must not wait for Nagle: they would add tens of ms to what toxics do.
    for socket in [&client, &upstream] {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(conn = conn.id(), %error, "cannot set TCP_NODELAY");
        }
    }
    let (client_r, client_w) = client.into_split();
    let (upstream_r, upstream_w) = upstream.into_split();
    let link = |stream: Stream| Link {
        stream,
        conn: &conn,
        proxy: shared.name(),
        metrics: shared.metrics(),
        toxics: shared.subscribe_toxics(),
        seed: mix(mix(shared.seed(), conn.id()), stream as u64),
        counters: shared.link_counters(stream),
    };
    tokio::join!(
        link(Stream::Upstream).run(client_r, upstream_w),
        link(Stream::Downstream).run(upstream_r, client_w),
    );
    tracing::trace!(proxy = shared.name(), conn = conn.id(), "connection closed");
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.shared.forget_conn(self.id);
    }
}
