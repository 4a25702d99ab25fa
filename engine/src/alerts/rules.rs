//! When to alert and whom. The default rule (Admin > System) covers every
//! export without its own rule, and the connection and quota alerts; an
//! export's own rule replaces it for that export's runs. Owns
//! `alert_rules` (export id 0 is the default).

use sqlx::Acquire;

use crate::audit;
use crate::db::{col, flag, Db};
use crate::error::{Error, Result};
use crate::policy;
use crate::time::now_ms;
use crate::users::{Email, User};

/// The default rule's key.
const DEFAULT: i64 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub on_failure: bool,
    pub on_partial: bool,
    /// A partially succeeded run alerts when more than this percent of
    /// the profiles it read were skipped or rejected.
    pub partial_threshold_pct: i64,
    pub on_reauth: bool,
    pub on_quota: bool,
    pub emails: Vec<String>,
    pub webhook_url: Option<String>,
}

impl Default for Rule {
    /// Until an admin says otherwise: alert on everything, to no one.
    fn default() -> Self {
        Rule {
            on_failure: true,
            on_partial: true,
            partial_threshold_pct: 10,
            on_reauth: true,
            on_quota: true,
            emails: Vec::new(),
            webhook_url: None,
        }
    }
}

impl Rule {
    /// Parses what a form sends: every problem at once.
    pub fn parse(
        on_failure: bool,
        on_partial: bool,
        partial_threshold_pct: &str,
        on_reauth: bool,
        on_quota: bool,
        emails: &str,
        webhook_url: &str,
    ) -> Result<Rule> {
        let mut problems = Vec::new();
        let threshold = match partial_threshold_pct.trim().parse::<i64>() {
            Ok(n) if (0..=100).contains(&n) => n,
            _ => {
                problems.push((
                    "partial_threshold_pct",
                    String::from("The threshold must be a whole percent from 0 to 100."),
                ));
                0
            }
        };
        let mut list = Vec::new();
        for raw in emails.split([',', ';', '\n']).map(str::trim) {
            if raw.is_empty() {
                continue;
            }
            match Email::parse(raw) {
                Ok(e) => list.push(e.as_str().to_owned()),
                Err(_) => {
                    problems.push(("emails", format!("{raw:?} is not an email address.")));
                    break;
                }
            }
        }
        let webhook = webhook_url.trim();
        let webhook_url = if webhook.is_empty() {
            None
        } else {
            match url::Url::parse(webhook) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    Some(webhook.to_owned())
                }
                _ => {
                    problems.push((
                        "webhook_url",
                        String::from("The webhook must be an http:// or https:// address."),
                    ));
                    None
                }
            }
        };
        Error::from_problems(problems)?;
        Ok(Rule {
            on_failure,
            on_partial,
            partial_threshold_pct: threshold,
            on_reauth,
            on_quota,
            emails: list,
            webhook_url,
        })
    }

    /// True when someone would hear of it.
    pub fn has_recipients(&self) -> bool {
        !self.emails.is_empty() || self.webhook_url.is_some()
    }
}

async fn read(db: &Db, export_id: i64) -> Result<Option<Rule>> {
    let row = sqlx::query(
        "SELECT on_failure, on_partial, partial_threshold_pct, on_reauth, on_quota, emails, webhook_url \
         FROM alert_rules WHERE export_id = $1",
    )
    .bind(export_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let emails: String = col(&r, "emails")?;
    let webhook: String = col(&r, "webhook_url")?;
    Ok(Some(Rule {
        on_failure: flag(&r, "on_failure")?,
        on_partial: flag(&r, "on_partial")?,
        partial_threshold_pct: col(&r, "partial_threshold_pct")?,
        on_reauth: flag(&r, "on_reauth")?,
        on_quota: flag(&r, "on_quota")?,
        emails: emails
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        webhook_url: (!webhook.is_empty()).then_some(webhook),
    }))
}

/// The default rule.
pub async fn default_rule(db: &Db) -> Result<Rule> {
    Ok(read(db, DEFAULT).await?.unwrap_or_default())
}

/// An export's own rule, if it has one.
pub async fn own_rule(db: &Db, export_id: i64) -> Result<Option<Rule>> {
    read(db, export_id).await
}

/// The rule that applies to an export's runs: its own, or the default.
pub async fn for_export(db: &Db, export_id: i64) -> Result<Rule> {
    match read(db, export_id).await? {
        Some(r) => Ok(r),
        None => default_rule(db).await,
    }
}

async fn write(db: &Db, actor: &User, export_id: i64, rule: Option<&Rule>) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("DELETE FROM alert_rules WHERE export_id = $1")
        .bind(export_id)
        .execute(&mut *tx)
        .await?;
    if let Some(rule) = rule {
        sqlx::query(
            "INSERT INTO alert_rules (export_id, on_failure, on_partial, partial_threshold_pct, \
               on_reauth, on_quota, emails, webhook_url, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(export_id)
        .bind(rule.on_failure)
        .bind(rule.on_partial)
        .bind(rule.partial_threshold_pct)
        .bind(rule.on_reauth)
        .bind(rule.on_quota)
        .bind(rule.emails.join(","))
        .bind(rule.webhook_url.clone().unwrap_or_default())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    let target = if export_id == DEFAULT {
        String::from("default")
    } else {
        format!("export {export_id}")
    };
    let detail = match rule {
        None => String::from("uses the default"),
        Some(r) => format!(
            "failure {}, partial {} (over {}%), re-authentication {}, quota {}; {} email(s){}",
            on_off(r.on_failure),
            on_off(r.on_partial),
            r.partial_threshold_pct,
            on_off(r.on_reauth),
            on_off(r.on_quota),
            r.emails.len(),
            if r.webhook_url.is_some() {
                ", webhook"
            } else {
                ""
            }
        ),
    };
    audit::record(&mut tx, Some(actor), "alerts.rule", &target, &detail).await?;
    tx.commit().await?;
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Saves the default rule (administrators).
pub async fn save_default(db: &Db, actor: &User, rule: &Rule) -> Result<()> {
    policy::administer(actor)?;
    write(db, actor, DEFAULT, Some(rule)).await
}

/// Saves an export's own rule, or with `None` goes back to the default
/// (whoever may manage the export).
pub async fn save_for_export(
    db: &Db,
    actor: &User,
    export_id: i64,
    rule: Option<&Rule>,
) -> Result<()> {
    let export = crate::exports::get(db, crate::ExportId(export_id))
        .await?
        .filter(|e| e.removed_at.is_none())
        .ok_or(Error::NotFound("The export"))?;
    policy::manage_export(actor, export.owner_id)?;
    // A webhook makes this server call an address: only an administrator
    // chooses one; anyone else keeps the one there is.
    if policy::administer(actor).is_err() {
        let current = read(db, export_id).await?.and_then(|r| r.webhook_url);
        if let Some(rule) = rule {
            let wanted = rule.webhook_url.clone();
            if wanted.is_some() && wanted != current {
                return Err(Error::invalid(
                    "webhook_url",
                    "Only an administrator can set a webhook.",
                ));
            }
            let kept = Rule {
                webhook_url: current,
                ..rule.clone()
            };
            return write(db, actor, export_id, Some(&kept)).await;
        }
    }
    write(db, actor, export_id, rule).await
}
