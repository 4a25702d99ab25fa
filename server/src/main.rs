use clap::Parser;
use server::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: an export streams a million rows
/// from SQLite's thread to the runtime's, and glibc's arenas spent a
/// quarter of its CPU allocating and freeing them, under lock contention.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A `.env` file, if present, supplies variables not already set.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&cli.config.log).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Logs go to stderr: stdout is the commands' output (JSON with --json).
        .with_writer(std::io::stderr)
        .init();
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
