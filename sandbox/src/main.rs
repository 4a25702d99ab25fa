use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use sandbox::Config;

/// Constant Contact sandbox: OAuth 2 and the v3 API subset Segment Export
/// uses, in memory.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Cli {
    /// Port to listen on.
    #[arg(long, env = "SANDBOX_PORT", default_value_t = 3030)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "SANDBOX_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let addr = SocketAddr::new(cli.host, cli.port);
    let shared = sandbox::Shared::new(&cli.config);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        "Constant Contact sandbox on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, sandbox::router(shared)).await?;
    Ok(())
}
