//! Admin > System: the scheduled refresh. Administrators only.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// The schedule as the form edits it (the engine's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInput {
    /// `off`, `daily`, `weekly` or `cron`.
    pub mode: String,
    pub times: Vec<String>,
    /// 0 Sunday … 6 Saturday.
    pub weekdays: Vec<u8>,
    pub cron: String,
    pub time_zone: String,
}

/// What Admin > System shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemView {
    pub schedule: ScheduleInput,
    /// The next refreshes, in the schedule's time zone.
    pub next_runs: Vec<String>,
    pub last_refresh: Option<String>,
    /// Exports that run on the schedule.
    pub scheduled_exports: usize,
}

#[cfg(feature = "ssr")]
async fn view(db: &engine::Db) -> Result<SystemView, AppError> {
    let state = engine::schedule::get(db).await?;
    let s = state.schedule;
    let next_runs = match s.plan() {
        Ok(plan) => plan
            .upcoming(engine::time::now_ms(), 5)
            .into_iter()
            .map(|t| plan.format(t))
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok(SystemView {
        schedule: ScheduleInput {
            mode: s.mode,
            times: s.times,
            weekdays: s.weekdays,
            cron: s.cron,
            time_zone: s.time_zone,
        },
        next_runs,
        last_refresh: state.last_refresh_at.map(engine::time::format_ms),
        scheduled_exports: engine::exports::scheduled(db).await?.len(),
    })
}

#[server(endpoint = "get_system")]
pub async fn get_system() -> Result<SystemView, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        view(call.db()).await
    })
    .await
}

/// Saves the schedule (`schedule`: [`ScheduleInput`] as JSON).
#[server(endpoint = "save_schedule")]
pub async fn save_schedule(schedule: String) -> Result<SystemView, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::administer).await?;
        let input: ScheduleInput = serde_json::from_str(&schedule)
            .map_err(|_| AppError::Refused(String::from("The form could not be read.")))?;
        let s = engine::schedule::Schedule {
            mode: input.mode,
            times: input
                .times
                .into_iter()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
            weekdays: input.weekdays,
            cron: input.cron,
            time_zone: input.time_zone.trim().to_owned(),
        };
        engine::schedule::save(call.db(), &user, &s).await?;
        view(call.db()).await
    })
    .await
}

/// "Refresh now": re-evaluates the rule segments and queues every
/// scheduled export; returns how many runs were queued.
#[server(endpoint = "refresh_now")]
pub async fn refresh_now() -> Result<usize, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let r = engine::schedule::refresh(call.db()).await?;
        Ok(r.runs_queued.len())
    })
    .await
}
