//! The overview (the home page): every export's health, the connections'
//! state and the quota used today, for anyone signed in.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::model::{ConnectionId, ExportId, RunId, RunStatus, RunView};

/// One bar of an export's chart: one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBar {
    pub id: RunId,
    pub status: RunStatus,
    pub sent: u64,
    /// Contacts that did not make it: skipped for their data, or rejected.
    pub failed: u64,
}

/// One export's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHealth {
    pub id: ExportId,
    pub name: String,
    pub connection: Option<String>,
    /// `authorized`, `needs_reauth`, `error`; `None` when removed.
    pub connection_status: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub last_run: Option<RunView>,
    /// When the scheduled refresh runs it next (`None`: not on the schedule).
    pub next_run: Option<String>,
    /// The last 30 runs, oldest first.
    pub history: Vec<RunBar>,
    /// Needs attention: its last run failed or skipped contacts, it is
    /// disabled, or its connection needs signing in again.
    pub failing: bool,
}

/// One connection's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionHealth {
    pub id: ConnectionId,
    pub name: String,
    pub status: String,
    pub status_reason: Option<String>,
    /// When an admin last signed in with Constant Contact for it.
    pub authorized: Option<String>,
    /// Days since then.
    pub token_age_days: Option<i64>,
}

/// Requests one Constant Contact application made today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaToday {
    pub application: String,
    pub used: i64,
    pub left: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    pub exports: Vec<ExportHealth>,
    pub connections: Vec<ConnectionHealth>,
    pub quota: Vec<QuotaToday>,
}

#[server(endpoint = "get_dashboard")]
pub async fn get_dashboard() -> Result<Dashboard, AppError> {
    use engine::runs::Status;
    use engine::time::{format_ms, now_ms};
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::read).await?;
        let db = call.db();
        let now = now_ms();
        let next_refresh = engine::schedule::get(db)
            .await?
            .schedule
            .plan()
            .ok()
            .and_then(|p| p.next_after(now).map(|t| p.format(t)));
        let connections = engine::connections::list(db).await?;
        let history = engine::runs::recent_by_export(db, 30).await?;
        let mut exports: Vec<ExportHealth> = engine::exports::list(db)
            .await?
            .into_iter()
            .map(|e| {
                let runs: Vec<&engine::runs::Run> =
                    history.iter().filter(|r| r.export_id == e.id).collect();
                let last = runs.last().map(|r| (*r).clone());
                let connection_status = e.connection_id.and_then(|id| {
                    connections
                        .iter()
                        .find(|c| c.id == id)
                        .map(|c| c.status.as_str().to_owned())
                });
                let failing = !e.enabled
                    || connection_status
                        .as_deref()
                        .is_some_and(|s| s != "authorized")
                    || last.as_ref().is_some_and(|r| {
                        matches!(r.status, Status::Failed | Status::PartiallySucceeded)
                    });
                ExportHealth {
                    id: e.id,
                    name: e.name,
                    connection: e.connection_name,
                    connection_status,
                    enabled: e.enabled,
                    disabled_reason: e.disabled_reason,
                    next_run: (e.on_schedule && e.enabled)
                        .then(|| next_refresh.clone())
                        .flatten(),
                    history: runs
                        .iter()
                        .map(|r| RunBar {
                            id: r.id,
                            status: r.status,
                            sent: r.counts.sent,
                            failed: r.counts.skipped() + r.counts.rejected,
                        })
                        .collect(),
                    last_run: last.map(crate::exports_api::convert::run),
                    failing,
                }
            })
            .collect();
        // Failing exports first, then by name.
        exports.sort_by(|a, b| {
            (!a.failing, a.name.to_lowercase()).cmp(&(!b.failing, b.name.to_lowercase()))
        });
        let connections = connections
            .into_iter()
            .map(|c| ConnectionHealth {
                id: c.id,
                name: c.display_name,
                status: c.status.as_str().to_owned(),
                status_reason: c.status_reason,
                authorized: c.authorized_at.map(format_ms),
                token_age_days: c.authorized_at.map(|at| (now - at).max(0) / 86_400_000),
            })
            .collect();
        let quota = engine::quota::usage(db)
            .await?
            .into_iter()
            .filter(|u| u.requests_today > 0 || u.left_today == 0)
            .map(|u| QuotaToday {
                application: engine::quota::client_id(&u.app).to_owned(),
                used: u.requests_today,
                left: u.left_today,
                limit: engine::constant_contact::api::DAILY_QUOTA,
            })
            .collect();
        Ok(Dashboard {
            exports,
            connections,
            quota,
        })
    })
    .await
}
