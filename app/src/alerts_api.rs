//! Alerts: server functions. The default rule, the SMTP settings, the
//! signing secret and the alert log are for administrators; an export's
//! own rule for whoever may manage the export (a webhook for admins only).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::model::{ExportId, RunId};

/// A rule as its form shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub on_failure: bool,
    pub on_partial: bool,
    pub partial_threshold_pct: i64,
    pub on_reauth: bool,
    pub on_quota: bool,
    pub emails: String,
    pub webhook_url: String,
}

/// One alert's delivery to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub channel: String,
    pub target: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub sent: Option<String>,
}

/// An alert in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub body: String,
    pub export_id: Option<ExportId>,
    pub run_id: Option<RunId>,
    pub at: String,
    pub deliveries: Vec<DeliveryView>,
}

/// Admin > System > Alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSettings {
    pub rule: RuleView,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: String,
    pub smtp_username: String,
    pub smtp_password_set: bool,
    pub smtp_from: String,
    /// For receivers to check signatures.
    pub webhook_secret: String,
    pub alerts: Vec<AlertView>,
}

/// An export's alerts: its own rule, if any, and the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportAlerts {
    pub own: Option<RuleView>,
    pub default: RuleView,
    pub can_manage: bool,
    pub can_set_webhook: bool,
}

#[cfg(feature = "ssr")]
mod convert {
    use super::*;
    use engine::time::format_ms;

    pub fn rule(r: engine::alerts::Rule) -> RuleView {
        RuleView {
            on_failure: r.on_failure,
            on_partial: r.on_partial,
            partial_threshold_pct: r.partial_threshold_pct,
            on_reauth: r.on_reauth,
            on_quota: r.on_quota,
            emails: r.emails.join(", "),
            webhook_url: r.webhook_url.unwrap_or_default(),
        }
    }

    pub fn alert(a: engine::alerts::Alert) -> AlertView {
        AlertView {
            id: a.id,
            kind: a.kind,
            subject: a.subject,
            body: a.body,
            export_id: a.export_id.map(ExportId),
            run_id: a.run_id.map(RunId),
            at: format_ms(a.created_at),
            deliveries: a
                .deliveries
                .into_iter()
                .map(|d| DeliveryView {
                    channel: d.channel,
                    target: d.target,
                    status: d.status,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    sent: d.sent_at.map(format_ms),
                })
                .collect(),
        }
    }

    /// A rule from its form (checkboxes send a value only when ticked).
    pub fn parse(form: &RuleForm) -> Result<engine::alerts::Rule, AppError> {
        Ok(engine::alerts::Rule::parse(
            form.on_failure.is_some(),
            form.on_partial.is_some(),
            &form.partial_threshold_pct,
            form.on_reauth.is_some(),
            form.on_quota.is_some(),
            &form.emails,
            &form.webhook_url,
        )?)
    }
}

/// What a rule's form sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RuleForm {
    pub on_failure: Option<String>,
    pub on_partial: Option<String>,
    pub partial_threshold_pct: String,
    pub on_reauth: Option<String>,
    pub on_quota: Option<String>,
    pub emails: String,
    pub webhook_url: String,
}

#[server(endpoint = "get_alert_settings")]
pub async fn get_alert_settings() -> Result<AlertSettings, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let db = call.db();
        let ch = engine::alerts::channels::get(db, &call.state().cipher).await?;
        Ok(AlertSettings {
            rule: convert::rule(engine::alerts::rules::default_rule(db).await?),
            smtp_host: ch.smtp_host,
            smtp_port: ch.smtp_port,
            smtp_tls: ch.smtp_tls.as_str().to_owned(),
            smtp_username: ch.smtp_username,
            smtp_password_set: ch.smtp_password.is_some(),
            smtp_from: ch.smtp_from,
            webhook_secret: ch.webhook_secret.expose().to_owned(),
            alerts: engine::alerts::recent(db, 50)
                .await?
                .into_iter()
                .map(convert::alert)
                .collect(),
        })
    })
    .await
}

#[server(endpoint = "save_default_alert_rule")]
pub async fn save_default_alert_rule(rule: RuleForm) -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        let rule = convert::parse(&rule)?;
        engine::alerts::rules::save_default(call.db(), &actor, &rule).await?;
        Ok(())
    })
    .await
}

#[server(endpoint = "save_smtp_settings")]
pub async fn save_smtp_settings(
    smtp_host: String,
    smtp_port: String,
    smtp_tls: String,
    smtp_username: String,
    smtp_password: String,
    smtp_from: String,
) -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        let input = engine::alerts::ChannelsInput {
            smtp_host,
            smtp_port,
            smtp_tls,
            smtp_username,
            smtp_password,
            smtp_from,
        };
        engine::alerts::channels::save(call.db(), &call.state().cipher, &actor, &input).await?;
        Ok(())
    })
    .await
}

/// Sends a test alert to the default rule's recipients; it shows in the
/// log like any other.
#[server(endpoint = "send_test_alert")]
pub async fn send_test_alert() -> Result<usize, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        Ok(engine::alerts::raise::test(call.db(), &actor).await?)
    })
    .await
}

#[server(endpoint = "get_export_alerts")]
pub async fn get_export_alerts(export_id: ExportId) -> Result<ExportAlerts, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::read).await?;
        let db = call.db();
        let export = engine::exports::get(db, export_id)
            .await?
            .filter(|e| e.removed_at.is_none())
            .ok_or_else(|| AppError::Refused(String::from("The export was not found.")))?;
        Ok(ExportAlerts {
            own: engine::alerts::rules::own_rule(db, export_id.get())
                .await?
                .map(convert::rule),
            default: convert::rule(engine::alerts::rules::default_rule(db).await?),
            can_manage: engine::policy::can_manage_export(&user, export.owner_id),
            can_set_webhook: engine::policy::administer(&user).is_ok(),
        })
    })
    .await
}

/// Saves an export's own rule; `use_default` set goes back to the default.
#[server(endpoint = "save_export_alert_rule")]
pub async fn save_export_alert_rule(
    export_id: ExportId,
    use_default: Option<String>,
    rule: RuleForm,
) -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::read).await?;
        let rule = match use_default {
            Some(_) => None,
            None => Some(convert::parse(&rule)?),
        };
        engine::alerts::rules::save_for_export(call.db(), &actor, export_id.get(), rule.as_ref())
            .await?;
        Ok(())
    })
    .await
}
