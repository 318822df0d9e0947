//! `chaosforge proxy`: a drop-in Toxiproxy server. The API, proxies and toxics live in
//! `chaosforge_proxy::ApiServer`; this file only reads the arguments and the config, binds the
//! API port and waits for a signal.

use anyhow::Context;
use chaosforge_proxy::{ApiServer, ServeOptions};
use tokio::net::TcpListener;

/// Arguments of `chaosforge proxy`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProxyArgs {
    /// Address to serve the HTTP API on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the HTTP API
    #[arg(long, default_value_t = 8474)]
    port: u16,
    /// Proxies (and toxics) to create at start, same JSON as POST /populate
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Seed for every random choice of the toxics
    #[arg(long)]
    seed: Option<u64>,
}

/// Serves the API until SIGINT or SIGTERM, then closes every proxy. Exit code 0 after a
/// signal; 2 (through the error) if the config is invalid or the API port cannot be bound.
pub(crate) async fn run(args: ProxyArgs) -> anyhow::Result<u8> {
    let server = ApiServer::new(ServeOptions {
        seed: args.seed.unwrap_or(0),
    });
    if let Some(path) = &args.config {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the proxy config {}", path.display()))?;
        // Unlike Toxiproxy (which only logs config errors), a bad config stops the start: a
        // half-populated server would run an experiment against the wrong setup.
        server
            .populate(&text)
            .await
            .with_context(|| format!("loading the proxy config {}", path.display()))?;
    }
    let addr = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the API on {addr}"))?;
    let bound = listener.local_addr().context("reading the API address")?;
    eprintln!("chaosforge proxy: Toxiproxy API on http://{bound}");
    server
        .serve(listener, shutdown_signal())
        .await
        .context("serving the API")?;
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM (or never, if the handlers cannot be installed: the process
/// can still be killed).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "cannot install signal handlers");
            std::future::pending::<()>().await;
        }
    }
}
