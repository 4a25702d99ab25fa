//! Sends due deliveries: email over SMTP, webhooks as signed JSON. A
//! delivery that fails is retried later, each wait twice the last, until
//! its attempts run out; then it is `failed`, with the last error shown in
//! the alert log. Nothing here waits on a run or holds one up. Owns
//! `alert_deliveries`.
//!
//! A webhook is a `POST` of JSON with `text` (what Slack's incoming
//! webhooks show) and the event's fields, signed: the
//! `X-Segment-Export-Signature` header is `sha256=` and the hex
//! HMAC-SHA256, under the signing secret, of the
//! `X-Segment-Export-Timestamp` header's value, a `.`, and the body.

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use super::channels::{self, Channels, SmtpTls};
use super::Settings;
use crate::crypto::Cipher;
use crate::db::{col, Db};
use crate::error::Result;
use crate::time::{now_ms, rfc3339_ms};

/// Deliveries one round sends at most.
const PER_ROUND: usize = 50;

/// How long a process holds a delivery it is sending.
const CLAIM_MS: i64 = 60_000;

struct Due {
    id: i64,
    channel: String,
    target: String,
    attempts: i64,
    alert_id: i64,
    kind: String,
    export_id: Option<i64>,
    run_id: Option<i64>,
    subject: String,
    body: String,
    created_at: i64,
}

async fn claim(db: &Db) -> Result<Option<Due>> {
    let now = now_ms();
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE alert_deliveries SET claimed_until = $1 \
         WHERE id = (SELECT id FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= $2 \
                       AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY id LIMIT 1) \
           AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < $2) \
         RETURNING id",
    )
    .bind(now + CLAIM_MS)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    let Some(id) = id else { return Ok(None) };
    let r = sqlx::query(
        "SELECT d.id, d.channel, d.target, d.attempts, a.id AS alert_id, a.kind, a.export_id, a.run_id, \
           a.subject, a.body, a.created_at \
         FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(db.pool())
    .await?;
    Ok(Some(Due {
        id,
        channel: col(&r, "channel")?,
        target: col(&r, "target")?,
        attempts: col(&r, "attempts")?,
        alert_id: col(&r, "alert_id")?,
        kind: col(&r, "kind")?,
        export_id: col(&r, "export_id")?,
        run_id: col(&r, "run_id")?,
        subject: col(&r, "subject")?,
        body: col(&r, "body")?,
        created_at: col(&r, "created_at")?,
    }))
}

/// Sends what is due, up to [`PER_ROUND`].
pub async fn due(db: &Db, cipher: &Cipher, settings: &Settings) -> Result<()> {
    let mut channels: Option<Channels> = None;
    // One client for the round's webhooks (its connection pool with it).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(crate::Error::internal)?;
    for _ in 0..PER_ROUND {
        let Some(d) = claim(db).await? else {
            return Ok(());
        };
        if channels.is_none() {
            channels = Some(channels::get(db, cipher).await?);
        }
        let Some(ch) = channels.as_ref() else {
            return Ok(());
        };
        let outcome = match d.channel.as_str() {
            "email" => send_email(ch, &d).await,
            _ => send_webhook(&http, ch, &d).await,
        };
        settle(db, &d, outcome, settings).await?;
    }
    Ok(())
}

async fn settle(
    db: &Db,
    d: &Due,
    outcome: std::result::Result<(), String>,
    settings: &Settings,
) -> Result<()> {
    let now = now_ms();
    let attempts = d.attempts + 1;
    match outcome {
        Ok(()) => {
            sqlx::query(
                "UPDATE alert_deliveries SET status = 'sent', attempts = $1, sent_at = $2, \
                   claimed_until = NULL, last_error = NULL WHERE id = $3",
            )
            .bind(attempts)
            .bind(now)
            .bind(d.id)
            .execute(db.pool())
            .await?;
            tracing::info!(alert = d.alert_id, channel = %d.channel, "alert delivered");
        }
        Err(error) => {
            let gave_up = attempts >= settings.max_attempts;
            let wait = settings
                .retry_after_ms
                .saturating_mul(1 << (attempts - 1).clamp(0, 20));
            let error: String = error.chars().take(500).collect();
            sqlx::query(
                "UPDATE alert_deliveries SET status = $1, attempts = $2, last_error = $3, \
                   next_attempt_at = $4, claimed_until = NULL WHERE id = $5",
            )
            .bind(if gave_up { "failed" } else { "pending" })
            .bind(attempts)
            .bind(&error)
            .bind(now.saturating_add(wait))
            .bind(d.id)
            .execute(db.pool())
            .await?;
            tracing::warn!(alert = d.alert_id, channel = %d.channel, attempts, gave_up, %error, "alert not delivered");
        }
    }
    Ok(())
}

async fn send_email(ch: &Channels, d: &Due) -> std::result::Result<(), String> {
    if ch.smtp_host.is_empty() {
        return Err(String::from(
            "No SMTP server is set up (Admin > System > Alerts).",
        ));
    }
    let from = ch
        .smtp_from
        .parse()
        .map_err(|e| format!("The sender address is not valid: {e}"))?;
    let to = d
        .target
        .parse()
        .map_err(|e| format!("The recipient address is not valid: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(format!("[Segment Export] {}", d.subject))
        .header(ContentType::TEXT_PLAIN)
        .body(d.body.clone())
        .map_err(|e| format!("The message could not be built: {e}"))?;
    let builder = match ch.smtp_tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&ch.smtp_host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&ch.smtp_host)
            .map_err(|e| format!("SMTP: {e}"))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&ch.smtp_host)
            .map_err(|e| format!("SMTP: {e}"))?,
    };
    let mut builder = builder
        .port(ch.smtp_port)
        .timeout(Some(Duration::from_secs(15)));
    if !ch.smtp_username.is_empty() {
        let password = ch
            .smtp_password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(ch.smtp_username.clone(), password));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

/// The signature of a webhook body sent at `timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn send_webhook(
    client: &reqwest::Client,
    ch: &Channels,
    d: &Due,
) -> std::result::Result<(), String> {
    let body = serde_json::json!({
        "text": format!("{}\n{}", d.subject, d.body),
        "event": d.kind,
        "alert_id": d.alert_id,
        "export_id": d.export_id,
        "run_id": d.run_id,
        "subject": d.subject,
        "body": d.body,
        "at": rfc3339_ms(d.created_at),
    })
    .to_string();
    let timestamp = (now_ms() / 1000).to_string();
    let signature = sign(ch.webhook_secret.expose(), &timestamp, body.as_bytes());
    let res = client
        .post(&d.target)
        .header("Content-Type", "application/json")
        .header("X-Segment-Export-Timestamp", &timestamp)
        .header("X-Segment-Export-Signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("The webhook could not be reached: {}", without_url(&e)))?;
    if res.status().is_success() {
        Ok(())
    } else {
        let status = res.status();
        let text: String = res
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        Err(format!("The webhook answered {status}: {text}"))
    }
}

/// A request error without its URL (which may carry a token, as Slack's do).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the webhook");
    }
    if e.is_timeout() {
        return String::from("timed out");
    }
    if e.is_connect() {
        return String::from("the connection was refused or failed");
    }
    text
}
