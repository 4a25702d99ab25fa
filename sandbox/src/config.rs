//! The sandbox's settings: flags, each also an environment variable, with
//! demo defaults so that `cargo xtask run` needs no setup.

use clap::Args;

/// A registered OAuth client: `ID:SECRET:REDIRECT_URI[,REDIRECT_URI…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
}

impl std::str::FromStr for ClientSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let (Some(id), Some(secret), Some(uris)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("expected ID:SECRET:REDIRECT_URI[,…], got {s:?}"));
        };
        let redirect_uris: Vec<String> = uris
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if id.is_empty() || redirect_uris.is_empty() {
            return Err(format!(
                "a client needs an id and at least one redirect URI: {s:?}"
            ));
        }
        Ok(ClientSpec {
            id: id.to_owned(),
            secret: secret.to_owned(),
            redirect_uris,
        })
    }
}

/// A sign-in account: `USERNAME:PASSWORD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    pub username: String,
    pub password: String,
}

impl std::str::FromStr for AccountSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok(AccountSpec {
                username: u.to_owned(),
                password: p.to_owned(),
            }),
            _ => Err(format!("expected USERNAME:PASSWORD, got {s:?}")),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Registered OAuth clients, `ID:SECRET:REDIRECT_URI[,REDIRECT_URI…]`;
    /// repeat the flag or separate clients with `;` in the variable.
    #[arg(
        long = "client",
        env = "SANDBOX_CLIENTS",
        value_delimiter = ';',
        default_value = "segment-export-demo:demo-client-secret:http://127.0.0.1:3000/oauth/constant-contact/callback"
    )]
    pub clients: Vec<ClientSpec>,

    /// Sign-in accounts, `USERNAME:PASSWORD`; `;`-separated in the variable.
    #[arg(
        long = "account",
        env = "SANDBOX_ACCOUNTS",
        value_delimiter = ';',
        default_value = "demo@example.com:demo-password"
    )]
    pub accounts: Vec<AccountSpec>,

    /// Issue a new refresh token on every refresh (rotating), or keep the
    /// same one (long-lived).
    #[arg(long, env = "SANDBOX_ROTATE_REFRESH_TOKENS", default_value_t = true, action = clap::ArgAction::Set)]
    pub rotate_refresh_tokens: bool,

    /// Access-token lifetime in seconds (`expires_in`).
    #[arg(long, env = "SANDBOX_TOKEN_EXPIRES_IN", default_value_t = 86_400)]
    pub token_expires_in: u64,

    /// Requests per second per client before `429 throttled`.
    #[arg(long, env = "SANDBOX_RATE_PER_SECOND", default_value_t = 4)]
    pub rate_per_second: u32,

    /// Requests per UTC day per client before `429 quota_exceeded`.
    #[arg(long, env = "SANDBOX_DAILY_QUOTA", default_value_t = 10_000)]
    pub daily_quota: u32,

    /// How long an import waits in `initialized` and spends per 10,000
    /// contacts in `processing`, in milliseconds.
    #[arg(long, env = "SANDBOX_PROCESSING_DELAY_MS", default_value_t = 200)]
    pub processing_delay_ms: u64,

    /// Probability (0–1) that an API request gets a 429 `throttled`.
    #[arg(long, env = "SANDBOX_FAULT_429", default_value_t = 0.0)]
    pub fault_429: f64,
    /// Probability (0–1) of a 500.
    #[arg(long, env = "SANDBOX_FAULT_500", default_value_t = 0.0)]
    pub fault_500: f64,
    /// Probability (0–1) of a 503.
    #[arg(long, env = "SANDBOX_FAULT_503", default_value_t = 0.0)]
    pub fault_503: f64,
    /// Probability (0–1) that the connection is dropped before an answer.
    #[arg(long, env = "SANDBOX_FAULT_DROP", default_value_t = 0.0)]
    pub fault_drop: f64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            clients: vec![ClientSpec {
                id: "segment-export-demo".into(),
                secret: "demo-client-secret".into(),
                redirect_uris: vec!["http://127.0.0.1:3000/oauth/constant-contact/callback".into()],
            }],
            accounts: vec![AccountSpec {
                username: "demo@example.com".into(),
                password: "demo-password".into(),
            }],
            rotate_refresh_tokens: true,
            token_expires_in: 86_400,
            rate_per_second: 4,
            daily_quota: 10_000,
            processing_delay_ms: 200,
            fault_429: 0.0,
            fault_500: 0.0,
            fault_503: 0.0,
            fault_drop: 0.0,
            latency_ms: 0,
        }
    }
}
