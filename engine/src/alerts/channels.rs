//! How alerts go out: the SMTP server (host, port, TLS, credentials,
//! sender) and the secret webhook bodies are signed with. One row,
//! created on first read with a fresh signing secret; the SMTP password
//! and the secret are sealed like OAuth tokens. Owns `alert_channels`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sqlx::Acquire;

use crate::audit;
use crate::constant_contact::Secret;
use crate::crypto::Cipher;
use crate::db::{col, Db};
use crate::error::{Error, Result};
use crate::policy;
use crate::time::now_ms;
use crate::users::{Email, User};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay only).
    None,
    /// Plain, upgraded with STARTTLS (usually port 587).
    StartTls,
    /// TLS from the start (usually port 465).
    Tls,
}

impl SmtpTls {
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::StartTls),
            "tls" => Ok(SmtpTls::Tls),
            _ => Err(Error::invalid(
                "smtp_tls",
                "Choose none, STARTTLS or TLS for the connection.",
            )),
        }
    }
}

/// The channels' settings, with the secrets unsealed (never shown but to
/// an administrator, never logged).
#[derive(Debug, Clone)]
pub struct Channels {
    /// Empty: email alerts are not sent (their deliveries fail, and say so).
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    pub smtp_username: String,
    pub smtp_password: Option<Secret>,
    pub smtp_from: String,
    /// Signs webhook bodies (`X-Segment-Export-Signature`).
    pub webhook_secret: Secret,
}

/// What an administrator changes; a password left empty keeps the stored one.
#[derive(Debug, Clone)]
pub struct ChannelsInput {
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_tls: String,
    pub smtp_username: String,
    pub smtp_password: String,
    pub smtp_from: String,
}

fn new_secret() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("whsec_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The settings, creating the row (and its signing secret) on first use.
pub async fn get(db: &Db, cipher: &Cipher) -> Result<Channels> {
    sqlx::query(
        "INSERT INTO alert_channels (id, smtp_host, smtp_port, smtp_tls, smtp_username, smtp_from, \
           webhook_secret_enc, updated_at) VALUES (1, '', 587, 'starttls', '', '', $1, $2) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(cipher.encrypt(&new_secret())?)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    let r = sqlx::query(
        "SELECT smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password_enc, smtp_from, \
           webhook_secret_enc FROM alert_channels WHERE id = 1",
    )
    .fetch_one(db.pool())
    .await?;
    let port: i64 = col(&r, "smtp_port")?;
    let tls: String = col(&r, "smtp_tls")?;
    let password: Option<String> = col(&r, "smtp_password_enc")?;
    let secret: String = col(&r, "webhook_secret_enc")?;
    // Sealed under another SECRET_KEY (it was changed): the password must
    // be entered again, and webhooks get a new signing secret; alerts go on.
    let smtp_password = match password.map(|p| cipher.decrypt(&p)).transpose() {
        Ok(p) => p,
        Err(_) => {
            tracing::warn!(
                "the SMTP password cannot be unsealed (SECRET_KEY changed?): enter it again"
            );
            None
        }
    };
    let webhook_secret = match cipher.decrypt(&secret) {
        Ok(s) => s,
        Err(_) => {
            tracing::warn!("the webhook signing secret cannot be unsealed (SECRET_KEY changed?): a new one is made");
            let fresh = new_secret();
            sqlx::query("UPDATE alert_channels SET webhook_secret_enc = $1 WHERE id = 1")
                .bind(cipher.encrypt(&fresh)?)
                .execute(db.pool())
                .await?;
            fresh
        }
    };
    Ok(Channels {
        smtp_host: col(&r, "smtp_host")?,
        smtp_port: u16::try_from(port).unwrap_or(587),
        smtp_tls: SmtpTls::parse(&tls)?,
        smtp_username: col(&r, "smtp_username")?,
        smtp_password,
        smtp_from: col(&r, "smtp_from")?,
        webhook_secret,
    })
}

/// Saves the SMTP settings (administrators). Every problem at once.
pub async fn save(
    db: &Db,
    cipher: &Cipher,
    actor: &User,
    input: &ChannelsInput,
) -> Result<Channels> {
    policy::administer(actor)?;
    get(db, cipher).await?;
    let host = input.smtp_host.trim();
    let mut problems = Vec::new();
    if host.contains(char::is_whitespace) || host.contains('/') {
        problems.push((
            "smtp_host",
            String::from("Enter a host name such as smtp.example.com."),
        ));
    }
    let port = match input.smtp_port.trim().parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            problems.push((
                "smtp_port",
                String::from("The port must be a number from 1 to 65535."),
            ));
            0
        }
    };
    let tls = match SmtpTls::parse(input.smtp_tls.trim()) {
        Ok(t) => t,
        Err(e) => {
            problems.push(("smtp_tls", e.to_string()));
            SmtpTls::StartTls
        }
    };
    let from = input.smtp_from.trim();
    if !host.is_empty() && Email::parse(from).is_err() {
        problems.push((
            "smtp_from",
            String::from("Enter the address alerts are sent from."),
        ));
    }
    Error::from_problems(problems)?;
    let password = match input.smtp_password.as_str() {
        "" => None,
        p => Some(cipher.encrypt(&Secret::new(p))?),
    };
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE alert_channels SET smtp_host = $1, smtp_port = $2, smtp_tls = $3, smtp_username = $4, \
           smtp_password_enc = COALESCE($5, smtp_password_enc), smtp_from = $6, updated_at = $7 \
         WHERE id = 1",
    )
    .bind(host)
    .bind(i64::from(port))
    .bind(tls.as_str())
    .bind(input.smtp_username.trim())
    .bind(password)
    .bind(from)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    // Never the password.
    audit::record(
        &mut tx,
        Some(actor),
        "alerts.smtp",
        if host.is_empty() { "(none)" } else { host },
        &format!("port {port}, {}", tls.as_str()),
    )
    .await?;
    tx.commit().await?;
    get(db, cipher).await
}
