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

    /// The address browsers use to reach this server, e.g.
    /// `https://exports.example.com`. State-changing requests must come
    /// from this origin. Default: `http://` and the listen address.
    #[arg(long, env = "PUBLIC_URL")]
    pub public_url: Option<String>,

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

    /// The Constant Contact application's client id (its "API key").
    /// Without it, connections cannot be added.
    #[arg(long, env = "CC_CLIENT_ID")]
    pub cc_client_id: Option<String>,

    /// The Constant Contact application's client secret.
    #[arg(long, env = "CC_CLIENT_SECRET", hide_env_values = true)]
    pub cc_client_secret: Option<String>,

    /// Our OAuth callback, exactly as registered with the Constant Contact
    /// application.
    #[arg(
        long,
        env = "CC_REDIRECT_URL",
        default_value = "http://127.0.0.1:3000/oauth/constant-contact/callback"
    )]
    pub cc_redirect_url: String,

    /// Send every Constant Contact request (sign-in, tokens, API) to this
    /// emulator instead, e.g. the sandbox at `http://127.0.0.1:3030`.
    #[arg(long, env = "CC_SANDBOX_URL")]
    pub cc_sandbox_url: Option<String>,

    /// On a start with no profiles at all, generate this many demo profiles
    /// and the demo segments (0: never).
    #[arg(long, env = "DEMO_PROFILES_ON_EMPTY", default_value_t = 0)]
    pub demo_profiles_on_empty: u64,

    /// Export workers in this process (each executes one run at a time;
    /// 0: this process only serves, other processes run the exports).
    #[arg(long, env = "WORKERS", default_value_t = 2)]
    pub workers: usize,

    /// The most profiles one export run may send.
    #[arg(long, env = "MAX_PROFILES_PER_RUN", default_value_t = 1_000_000)]
    pub max_profiles_per_run: u64,

    /// How long a worker's claim on a run lasts without a heartbeat; a run
    /// whose worker died is resumed elsewhere after this.
    #[arg(long, env = "RUN_LEASE_SECONDS", default_value_t = 30)]
    pub run_lease_seconds: u64,

    /// Serve Prometheus metrics at `/metrics` (off: 404). Anyone who can
    /// reach the server can read them: expose the path only to your
    /// monitoring network.
    #[arg(long, env = "METRICS_ENABLED", default_value_t = false)]
    pub metrics: bool,

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
            public_url: None,
            secret_key: None,
            session_inactivity_minutes: 60,
            secure_cookies: false,
            log: String::from("warn"),
            cc_client_id: None,
            cc_client_secret: None,
            cc_redirect_url: String::from("http://127.0.0.1:3000/oauth/constant-contact/callback"),
            cc_sandbox_url: None,
            demo_profiles_on_empty: 0,
            workers: 1,
            max_profiles_per_run: 1_000_000,
            run_lease_seconds: 30,
            metrics: false,
        }
    }

    /// How runs behave in this process.
    pub fn run_settings(&self) -> engine::run::Settings {
        engine::run::Settings {
            max_profiles: self.max_profiles_per_run,
            lease_ms: (self.run_lease_seconds.max(1) * 1000) as i64,
            ..engine::run::Settings::default()
        }
    }

    /// The Constant Contact application, when a client id is configured.
    pub fn cc_app(&self) -> Option<engine::connect::CcApp> {
        let client_id = self.cc_client_id.clone().filter(|c| !c.is_empty())?;
        let endpoints = match &self.cc_sandbox_url {
            Some(url) => engine::constant_contact::Endpoints::at(url),
            None => engine::constant_contact::Endpoints::default(),
        };
        Some(engine::connect::CcApp {
            endpoints,
            client_id,
            client_secret: engine::constant_contact::Secret::new(
                self.cc_client_secret.clone().unwrap_or_default(),
            ),
            redirect_url: self.cc_redirect_url.clone(),
        })
    }
}
