//! Alerts: telling people when an export needs them. An alert is raised
//! when a run fails, when a run partially succeeds with more than a
//! threshold of its profiles skipped or rejected, when a connection needs
//! signing in again, and when a Constant Contact application's daily quota
//! runs out. It goes out by email (SMTP) and by webhook (JSON signed with
//! HMAC-SHA256, with a Slack-compatible `text`).
//!
//! The parts:
//! - [`rules`]: when to alert and whom (a default, and per export); owns
//!   `alert_rules`.
//! - [`channels`]: the SMTP server and the webhook signing secret; owns
//!   `alert_channels`.
//! - [`raise`]: finds what happened and records each alert once, with one
//!   delivery per recipient; owns `alerts`.
//! - [`deliver`]: sends due deliveries, retrying with backoff, never in
//!   a run's way; owns `alert_deliveries`.
//!
//! [`run`] does the last two in a loop in every server process; the
//! database makes each alert raised and each delivery sent once.

pub mod channels;
pub mod deliver;
pub mod raise;
pub mod rules;

use crate::crypto::Cipher;
use crate::db::{col, Db};
use crate::error::Result;

pub use channels::{Channels, ChannelsInput, SmtpTls};
pub use rules::Rule;

/// An alert with its deliveries, as the alert log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub export_id: Option<i64>,
    pub run_id: Option<i64>,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub deliveries: Vec<Delivery>,
}

/// One alert's delivery to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: String,
    pub target: String,
    /// `pending` (to send, or to retry), `sent`, `failed` (gave up).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
}

/// The newest alerts first, with their deliveries.
pub async fn recent(db: &Db, limit: i64) -> Result<Vec<Alert>> {
    let rows = sqlx::query(
        "SELECT id, kind, export_id, run_id, subject, body, created_at FROM alerts \
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut alerts = rows
        .iter()
        .map(|r| {
            Ok(Alert {
                id: col(r, "id")?,
                kind: col(r, "kind")?,
                export_id: col(r, "export_id")?,
                run_id: col(r, "run_id")?,
                subject: col(r, "subject")?,
                body: col(r, "body")?,
                created_at: col(r, "created_at")?,
                deliveries: Vec::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(oldest) = alerts.last().map(|a| a.id) else {
        return Ok(alerts);
    };
    let rows = sqlx::query(
        "SELECT alert_id, channel, target, status, attempts, last_error, sent_at \
         FROM alert_deliveries WHERE alert_id >= $1 ORDER BY id",
    )
    .bind(oldest)
    .fetch_all(db.pool())
    .await?;
    for r in &rows {
        let alert_id: i64 = col(r, "alert_id")?;
        if let Some(a) = alerts.iter_mut().find(|a| a.id == alert_id) {
            a.deliveries.push(Delivery {
                channel: col(r, "channel")?,
                target: col(r, "target")?,
                status: col(r, "status")?,
                attempts: col(r, "attempts")?,
                last_error: col(r, "last_error")?,
                sent_at: col(r, "sent_at")?,
            });
        }
    }
    Ok(alerts)
}

/// How often [`run`] looks, and how deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub every: std::time::Duration,
    /// The first retry waits this long; each next one twice as long.
    pub retry_after_ms: i64,
    /// Attempts before a delivery is given up.
    pub max_attempts: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            every: std::time::Duration::from_secs(5),
            retry_after_ms: 30_000,
            max_attempts: 6,
        }
    }
}

/// Raises and delivers alerts until `stop` says so.
pub async fn run(
    db: Db,
    cipher: Cipher,
    settings: Settings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = tick(&db, &cipher, &settings).await {
            tracing::warn!(error = %e, "alerts: could not raise or deliver");
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.every) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One round: raise what happened, send what is due.
pub async fn tick(db: &Db, cipher: &Cipher, settings: &Settings) -> Result<()> {
    raise::everything(db).await?;
    deliver::due(db, cipher, settings).await
}
