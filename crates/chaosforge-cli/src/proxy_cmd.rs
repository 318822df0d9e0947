//! `chaosforge proxy`: a drop-in Toxiproxy server.

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

pub(crate) async fn run(args: ProxyArgs) -> anyhow::Result<u8> {
    anyhow::bail!("`chaosforge proxy` is not implemented yet ({args:?})")
}
