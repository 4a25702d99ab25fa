//! Finds what needs an alert and records each one once: runs that failed
//! or skipped too much (under their export's rule), connections that need
//! signing in again and quotas used up (under the default rule). An alert
//! has an event key; recording it again, from any process, does nothing.
//! Owns `alerts` (and creates the deliveries of each alert it records).

use super::rules::{self, Rule};
use crate::db::{col, Db};
use crate::error::Result;
use crate::runs::{self, Status};
use crate::time::{format_ms, now_ms};

const DAY_MS: i64 = 86_400_000;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RunFailed,
    RunPartial,
    ConnectionNeedsReauth,
    QuotaExhausted,
    /// Sent by an administrator to try the channels.
    Test,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RunFailed => "run_failed",
            Kind::RunPartial => "run_partially_succeeded",
            Kind::ConnectionNeedsReauth => "connection_needs_reauth",
            Kind::QuotaExhausted => "quota_exhausted",
            Kind::Test => "test",
        }
    }
}

/// An alert to record.
#[derive(Debug, Clone)]
pub struct Raised {
    pub key: String,
    pub kind: Kind,
    pub export_id: Option<i64>,
    pub run_id: Option<i64>,
    pub subject: String,
    pub body: String,
}

/// Raises every alert due now (runs of the last day, connections, quotas).
pub async fn everything(db: &Db) -> Result<()> {
    for (raised, rule) in runs_to_alert(db).await? {
        record(db, &raised, &rule).await?;
    }
    // A connection or the quota: the default rule's recipients, and those
    // of every export with its own rule that uses the connection (any
    // export, for the quota) and asks for it.
    let default = rules::default_rule(db).await?;
    let own = exports_with_own_rules(db).await?;
    for (raised, connection) in connections_to_alert(db).await? {
        if default.on_reauth {
            record(db, &raised, &default).await?;
        }
        for (export, uses, rule) in &own {
            if *uses == Some(connection) && rule.on_reauth {
                record(db, &raised.for_export(*export), rule).await?;
            }
        }
    }
    for raised in quotas_to_alert(db).await? {
        if default.on_quota {
            record(db, &raised, &default).await?;
        }
        for (export, _, rule) in &own {
            if rule.on_quota {
                record(db, &raised.for_export(*export), rule).await?;
            }
        }
    }
    Ok(())
}

impl Raised {
    /// The same event, for one export's own rule (raised once more, to its
    /// recipients).
    fn for_export(&self, export_id: i64) -> Raised {
        Raised {
            key: format!("{}:export:{export_id}", self.key),
            export_id: Some(export_id),
            ..self.clone()
        }
    }
}

/// Exports (not removed) with their own rule, with the connection each uses.
async fn exports_with_own_rules(db: &Db) -> Result<Vec<(i64, Option<i64>, Rule)>> {
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT e.id, e.connection_id FROM exports e JOIN alert_rules r ON r.export_id = e.id \
         WHERE e.removed_at IS NULL ORDER BY e.id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, connection) in rows {
        if let Some(rule) = rules::own_rule(db, id).await? {
            out.push((id, connection, rule));
        }
    }
    Ok(out)
}

/// Why a finished run needs an alert under `rule`, if it does.
pub fn run_alert(run: &runs::Run, rule: &Rule) -> Option<Kind> {
    match run.status {
        Status::Failed if rule.on_failure => Some(Kind::RunFailed),
        Status::PartiallySucceeded if rule.on_partial => {
            let c = &run.counts;
            let missed = c.skipped() + c.rejected;
            let over = missed * 100 > c.read.max(1) * rule.partial_threshold_pct.max(0) as u64;
            over.then_some(Kind::RunPartial)
        }
        _ => None,
    }
}

async fn runs_to_alert(db: &Db) -> Result<Vec<(Raised, Rule)>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT r.id FROM runs r WHERE r.status IN ('failed', 'partially_succeeded') \
           AND r.mode <> 'dry_run' AND r.finished_at >= $1 \
           AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.run_id = r.id) \
         ORDER BY r.id",
    )
    .bind(now_ms() - DAY_MS)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for id in ids {
        let Some(run) = runs::get(db, crate::RunId(id)).await? else {
            continue;
        };
        let rule = rules::for_export(db, run.export_id.get()).await?;
        let Some(kind) = run_alert(&run, &rule) else {
            continue;
        };
        let c = &run.counts;
        let (subject, outcome) = match kind {
            Kind::RunFailed => (
                format!("Export \u{201c}{}\u{201d} failed", run.export_name),
                String::from("failed"),
            ),
            _ => (
                format!(
                    "Export \u{201c}{}\u{201d} skipped {} of {} profiles",
                    run.export_name,
                    c.skipped() + c.rejected,
                    c.read
                ),
                String::from("partially succeeded"),
            ),
        };
        let body = format!(
            "Run #{} of \u{201c}{}\u{201d} {outcome} at {}. {} read, {} sent, {} skipped, {} rejected.{} See /runs/{}",
            run.id,
            run.export_name,
            format_ms(run.finished_at.unwrap_or_else(now_ms)),
            c.read,
            c.sent,
            c.skipped(),
            c.rejected,
            run.message
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default(),
            run.id
        );
        out.push((
            Raised {
                key: format!("run:{}", run.id),
                kind,
                export_id: Some(run.export_id.get()),
                run_id: Some(run.id.get()),
                subject,
                body,
            },
            rule,
        ));
    }
    Ok(out)
}

/// Connections that need signing in again, each with its alert.
async fn connections_to_alert(db: &Db) -> Result<Vec<(Raised, i64)>> {
    let rows = sqlx::query(
        "SELECT id, display_name, status, status_reason, updated_at FROM connections \
         WHERE status <> 'authorized'",
    )
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let id: i64 = col(r, "id")?;
        let name: String = col(r, "display_name")?;
        let status: String = col(r, "status")?;
        let reason: Option<String> = col(r, "status_reason")?;
        let since: i64 = col(r, "updated_at")?;
        let users = crate::exports::names_using(db, crate::ConnectionId(id)).await?;
        out.push((
            Raised {
                key: format!("connection:{id}:{status}:{since}"),
                kind: Kind::ConnectionNeedsReauth,
                export_id: None,
                run_id: None,
                subject: format!("Connection \u{201c}{name}\u{201d} needs signing in again"),
                body: format!(
                "The Constant Contact connection \u{201c}{name}\u{201d} stopped working at {}{}. \
                 An administrator must sign in with Constant Contact again (Admin > Connections). \
                 Exports using it: {}.",
                format_ms(since),
                reason
                    .map(|r| format!(": {}", r.trim_end_matches('.')))
                    .unwrap_or_default(),
                if users.is_empty() {
                    String::from("none")
                } else {
                    users.join(", ")
                }
            ),
            },
            id,
        ));
    }
    Ok(out)
}

async fn quotas_to_alert(db: &Db) -> Result<Vec<Raised>> {
    let rows = sqlx::query(
        "SELECT app, day, exhausted_at FROM api_usage WHERE exhausted_at IS NOT NULL AND day >= $1",
    )
    .bind(now_ms().div_euclid(DAY_MS) - 1)
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let app: String = col(r, "app")?;
        let day: i64 = col(r, "day")?;
        let at: i64 = col(r, "exhausted_at")?;
        let client = crate::quota::client_id(&app).to_owned();
        out.push(Raised {
            key: format!("quota:{app}:{day}"),
            kind: Kind::QuotaExhausted,
            export_id: None,
            run_id: None,
            subject: String::from("Constant Contact's daily quota is used up"),
            body: format!(
                "Constant Contact refused requests of application {client} at {}: its daily \
                 quota is used up. Runs wait and resume after midnight UTC.",
                format_ms(at)
            ),
        });
    }
    Ok(out)
}

/// Raises a test alert to the default rule's recipients (administrators);
/// returns how many deliveries it made.
pub async fn test(db: &Db, actor: &crate::users::User) -> Result<usize> {
    crate::policy::administer(actor)?;
    let rule = rules::default_rule(db).await?;
    let now = now_ms();
    let raised = Raised {
        key: format!("test:{now}:{}", actor.id),
        kind: Kind::Test,
        export_id: None,
        run_id: None,
        subject: String::from("Test alert"),
        body: format!(
            "{} sent this test alert at {}. Alerts reach you here.",
            actor.email,
            format_ms(now)
        ),
    };
    record(db, &raised, &rule).await?;
    Ok(rule.emails.len() + usize::from(rule.webhook_url.is_some()))
}

/// Records an alert once, with a delivery per recipient of `rule`.
/// Returns its id when this call recorded it.
pub async fn record(db: &Db, raised: &Raised, rule: &Rule) -> Result<Option<i64>> {
    let now = now_ms();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO alerts (event_key, kind, export_id, run_id, subject, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_key) DO NOTHING RETURNING id",
    )
    .bind(&raised.key)
    .bind(raised.kind.as_str())
    .bind(raised.export_id)
    .bind(raised.run_id)
    .bind(&raised.subject)
    .bind(&raised.body)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    let Some(id) = id else { return Ok(None) };
    let targets = rule
        .emails
        .iter()
        .map(|e| ("email", e.clone()))
        .chain(rule.webhook_url.iter().map(|u| ("webhook", u.clone())));
    for (channel, target) in targets {
        sqlx::query(
            "INSERT INTO alert_deliveries (alert_id, channel, target, status, next_attempt_at) \
             VALUES ($1, $2, $3, 'pending', $4)",
        )
        .bind(id)
        .bind(channel)
        .bind(target)
        .bind(now)
        .execute(db.pool())
        .await?;
    }
    tracing::info!(alert = id, kind = raised.kind.as_str(), "alert raised");
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Counts, Run};

    fn run(status: Status, read: u64, skipped: u64, rejected: u64) -> Run {
        Run {
            status,
            counts: Counts {
                read,
                skipped_no_email: skipped,
                rejected,
                ..Counts::default()
            },
            ..Run::example()
        }
    }

    #[test]
    fn which_runs_alert_under_which_rule() {
        let all = Rule::default(); // threshold 10%
        let none = Rule {
            on_failure: false,
            on_partial: false,
            ..Rule::default()
        };
        #[rustfmt::skip]
        let table = [
            (run(Status::Failed, 100, 0, 0), &all, Some(Kind::RunFailed)),
            (run(Status::Failed, 100, 0, 0), &none, None),
            (run(Status::PartiallySucceeded, 100, 10, 0), &all, None),          // 10% is not over 10%
            (run(Status::PartiallySucceeded, 100, 6, 5), &all, Some(Kind::RunPartial)), // 11%
            (run(Status::PartiallySucceeded, 100, 50, 0), &none, None),
            (run(Status::PartiallySucceeded, 0, 0, 1), &all, Some(Kind::RunPartial)),
            (run(Status::Succeeded, 100, 0, 0), &all, None),
            (run(Status::Cancelled, 100, 0, 0), &all, None),
        ];
        for (r, rule, expected) in table {
            assert_eq!(
                run_alert(&r, rule),
                expected,
                "{:?} {:?}",
                r.status,
                r.counts
            );
        }
    }

    #[test]
    fn rules_are_parsed_with_every_problem_at_once() {
        let e = Rule::parse(
            true,
            true,
            "101",
            true,
            true,
            "ops@example.com, nope",
            "ftp://x",
        )
        .unwrap_err();
        match e {
            crate::Error::InvalidFields(f) => {
                let names: Vec<_> = f.iter().map(|(n, _)| *n).collect();
                assert_eq!(names, ["partial_threshold_pct", "emails", "webhook_url"]);
            }
            other => panic!("{other:?}"),
        }
        let r = Rule::parse(
            true,
            false,
            " 5 ",
            false,
            true,
            "A@Example.com;b@example.com\n",
            "",
        )
        .unwrap();
        assert_eq!(r.emails, ["a@example.com", "b@example.com"]);
        assert_eq!((r.partial_threshold_pct, r.webhook_url), (5, None));
    }
}
