//! Configuration: command-line flags, each also read from an environment
//! variable (and from a `.env` file, if present). `server --help` lists
//! them all with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/segment-export.db"
    )]
    pub database_url: String,

    /// Directory for local state: the SQLite database by default and the
    /// generated secret key.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Address to listen on.
    #[arg(long, env = "LEPTOS_SITE_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Directory holding the built site (`pkg/` with the wasm, JS and CSS).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: String,

    /// The instance secret, base64 of 64 bytes; signs session cookies. When
    /// unset, one is generated into `DATA_DIR/secret.key` on first start.
    #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Minutes of inactivity after which a session ends.
    #[arg(long, env = "SESSION_INACTIVITY_MINUTES", default_value_t = 480)]
    pub session_inactivity_minutes: i64,

    /// Mark cookies `Secure` (set when served over HTTPS).
    #[arg(long, env = "SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Log filter, e.g. `info` or `server=debug,sqlx=warn`.
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,sqlx=warn,tower_sessions_core=warn"
    )]
    pub log: String,
}

impl Config {
    /// A configuration for tests: the given database, port 0, a fresh key.
    pub fn for_tests(database_url: &str, data_dir: PathBuf) -> Self {
        Config {
            database_url: database_url.to_owned(),
            data_dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            site_root: String::from("target/site"),
            secret_key: None,
            session_inactivity_minutes: 60,
            secure_cookies: false,
            log: String::from("warn"),
        }
    }
}
