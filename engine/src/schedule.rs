//! The scheduled refresh: when it is due (daily or weekly at set times, or
//! a cron expression, in a time zone), every rule segment is re-evaluated
//! and every enabled export on the schedule is queued. Every server
//! process ticks; a compare-and-set on the last fired slot lets exactly one
//! of them fire each slot.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};
use sqlx::Acquire;

use crate::db::{col, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::User;
use crate::{audit, runs, segments};

/// An admin's schedule, as the form edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// `off`, `daily`, `weekly` or `cron`.
    pub mode: String,
    /// Local times of day, `HH:MM` (daily and weekly).
    #[serde(default)]
    pub times: Vec<String>,
    /// Days of the week for `weekly`: 0 Sunday … 6 Saturday.
    #[serde(default)]
    pub weekdays: Vec<u8>,
    /// A five-field cron expression for `cron`.
    #[serde(default)]
    pub cron: String,
    /// An IANA time zone such as `Europe/Budapest`.
    pub time_zone: String,
}

impl Default for Schedule {
    /// Every night at 02:00 UTC.
    fn default() -> Self {
        Schedule {
            mode: String::from("daily"),
            times: vec![String::from("02:00")],
            weekdays: Vec::new(),
            cron: String::new(),
            time_zone: String::from("UTC"),
        }
    }
}

/// A schedule checked and ready to compute with.
#[derive(Debug, Clone)]
pub struct Plan {
    zone: Tz,
    crons: Vec<Cron>,
}

fn parse_time(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

impl Schedule {
    /// Checks the schedule; the error names the form field.
    pub fn plan(&self) -> Result<Plan> {
        let zone = Tz::from_str(self.time_zone.trim()).map_err(|_| {
            Error::invalid(
                "time_zone",
                "Choose a time zone by its name, such as UTC or Europe/Budapest.",
            )
        })?;
        let patterns: Vec<String> = match self.mode.as_str() {
            "off" => Vec::new(),
            "daily" | "weekly" => {
                if self.times.is_empty() {
                    return Err(Error::invalid(
                        "times",
                        "Give at least one time of day, such as 02:00.",
                    ));
                }
                let days = if self.mode == "weekly" {
                    if self.weekdays.is_empty() || self.weekdays.iter().any(|d| *d > 6) {
                        return Err(Error::invalid("weekdays", "Choose at least one day."));
                    }
                    let mut d = self.weekdays.clone();
                    d.sort_unstable();
                    d.dedup();
                    d.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
                } else {
                    String::from("*")
                };
                let mut out = Vec::new();
                for t in &self.times {
                    let (h, m) = parse_time(t).ok_or_else(|| {
                        Error::invalid(
                            "times",
                            format!("{} is not a time of day (HH:MM, 00:00 to 23:59).", t.trim()),
                        )
                    })?;
                    out.push(format!("{m} {h} * * {days}"));
                }
                out
            }
            "cron" => {
                if self.cron.split_whitespace().count() != 5 {
                    return Err(Error::invalid(
                        "cron",
                        "A cron expression has five fields: minute hour day-of-month month day-of-week.",
                    ));
                }
                vec![self.cron.trim().to_owned()]
            }
            _ => return Err(Error::invalid("mode", "Choose how often to refresh.")),
        };
        let crons = patterns
            .iter()
            .map(|p| {
                Cron::from_str(p).map_err(|e| {
                    Error::invalid("cron", format!("This cron expression is not valid: {e}."))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan { zone, crons })
    }
}

impl Plan {
    /// The first slot strictly after `after_ms`, if the schedule has any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<Tz> = self.zone.timestamp_millis_opt(after_ms).single()?;
        self.crons
            .iter()
            .filter_map(|c| c.find_next_occurrence(&after, false).ok())
            .map(|t| t.timestamp_millis())
            .min()
    }

    /// The next `n` slots after `after_ms`.
    pub fn upcoming(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut at = after_ms;
        while out.len() < n {
            match self.next_after(at) {
                Some(t) => {
                    out.push(t);
                    at = t;
                }
                None => break,
            }
        }
        out
    }

    /// A slot in the zone, for people: `2026-11-30 02:00 CET`.
    pub fn format(&self, ms: i64) -> String {
        match self.zone.timestamp_millis_opt(ms).single() {
            Some(t) => t.format("%Y-%m-%d %H:%M %Z").to_string(),
            None => crate::time::format_ms(ms),
        }
    }
}

/// The stored schedule and when it last fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub schedule: Schedule,
    /// Slots up to this instant have been handled.
    pub last_slot: i64,
    /// When a refresh last ran (scheduled or by hand).
    pub last_refresh_at: Option<i64>,
    pub updated_at: i64,
}

pub async fn get(db: &Db) -> Result<State> {
    let row = sqlx::query(
        "SELECT config, last_slot, last_refresh_at, updated_at FROM schedule WHERE id = 1",
    )
    .fetch_optional(db.pool())
    .await?;
    match row {
        Some(r) => {
            let config: String = col(&r, "config")?;
            Ok(State {
                schedule: serde_json::from_str(&config).unwrap_or_default(),
                last_slot: col(&r, "last_slot")?,
                last_refresh_at: col(&r, "last_refresh_at")?,
                updated_at: col(&r, "updated_at")?,
            })
        }
        None => {
            // First use: the default schedule, counting from now.
            let now = now_ms();
            let config = serde_json::to_string(&Schedule::default()).map_err(Error::internal)?;
            sqlx::query(
                "INSERT INTO schedule (id, config, last_slot, updated_at) VALUES (1, $1, $2, $2) ON CONFLICT (id) DO NOTHING",
            )
            .bind(config)
            .bind(now)
            .execute(db.pool())
            .await?;
            Box::pin(get(db)).await
        }
    }
}

impl Schedule {
    /// The schedule in words, for the audit log: "daily at 06:30 and
    /// 18:00 (Europe/Budapest)".
    pub fn describe(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        let times = self.times.join(" and ");
        let zone = &self.time_zone;
        match self.mode.as_str() {
            "off" => String::from("off"),
            "daily" => format!("daily at {times} ({zone})"),
            "weekly" => {
                let days: Vec<&str> = self
                    .weekdays
                    .iter()
                    .filter_map(|d| DAYS.get(usize::from(*d)).copied())
                    .collect();
                format!("weekly on {} at {times} ({zone})", days.join(", "))
            }
            "cron" => format!("cron \"{}\" ({zone})", self.cron),
            other => other.to_owned(),
        }
    }
}

/// Saves a schedule; slots before now are not fired for it.
pub async fn save(db: &Db, actor: &User, schedule: &Schedule) -> Result<State> {
    schedule.plan()?;
    get(db).await?;
    let config = serde_json::to_string(schedule).map_err(Error::internal)?;
    let now = now_ms();
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("UPDATE schedule SET config = $1, last_slot = $2, updated_at = $2 WHERE id = 1")
        .bind(&config)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(actor),
        "schedule.update",
        "scheduled refresh",
        &schedule.describe(),
    )
    .await?;
    tx.commit().await?;
    get(db).await
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub segments_refreshed: usize,
    pub runs_queued: Vec<crate::RunId>,
}

/// Queues every export on the schedule that has no active run; returns
/// the runs queued.
pub async fn queue_scheduled(db: &Db) -> Result<Vec<crate::RunId>> {
    let mut queued = Vec::new();
    for id in crate::exports::scheduled(db).await? {
        match runs::trigger(
            db,
            id,
            runs::Trigger::Schedule,
            runs::Mode::Incremental,
            None,
        )
        .await
        {
            Ok(run) => queued.push(run.id),
            // Coalesced: the run that is active will send the same data.
            Err(Error::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(queued)
}

/// Re-evaluates every rule segment, then queues every enabled export on
/// the schedule (an export with an active run is skipped: that run sends
/// the same data).
pub async fn refresh(db: &Db) -> Result<Refresh> {
    let mut n = 0;
    for s in segments::list(db, "").await? {
        if s.kind == segments::Kind::Rule {
            segments::refresh(db, s.id).await?;
            n += 1;
        }
    }
    let runs_queued = queue_scheduled(db).await?;
    sqlx::query("UPDATE schedule SET last_refresh_at = $1 WHERE id = 1")
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(Refresh {
        segments_refreshed: n,
        runs_queued,
    })
}

/// Fires the refresh if a slot is due at `now` and no other process took
/// it first. Several missed slots (the server was down) fire once.
pub async fn tick(db: &Db, now: i64) -> Result<Option<Refresh>> {
    let state = get(db).await?;
    let Ok(plan) = state.schedule.plan() else {
        return Ok(None);
    };
    match plan.next_after(state.last_slot) {
        Some(slot) if slot <= now => {}
        _ => return Ok(None),
    }
    let won = sqlx::query("UPDATE schedule SET last_slot = $1 WHERE id = 1 AND last_slot = $2")
        .bind(now)
        .bind(state.last_slot)
        .execute(db.pool())
        .await?
        .rows_affected()
        == 1;
    if !won {
        return Ok(None);
    }
    tracing::info!("scheduled refresh");
    refresh(db).await.map(Some)
}

/// Ticks every `every` until `stop` turns true.
pub async fn run(db: Db, every: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match tick(&db, now_ms()).await {
            Ok(Some(r)) => tracing::info!(
                segments = r.segments_refreshed,
                runs = r.runs_queued.len(),
                "scheduled refresh queued its runs"
            ),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "scheduled refresh failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_described_in_words() {
        let s = |mode: &str, times: &[&str], weekdays: &[u8], cron: &str| Schedule {
            mode: mode.into(),
            times: times.iter().map(|t| (*t).to_owned()).collect(),
            weekdays: weekdays.to_vec(),
            cron: cron.into(),
            time_zone: String::from("Europe/Budapest"),
        };
        assert_eq!(s("off", &[], &[], "").describe(), "off");
        assert_eq!(
            s("daily", &["06:30", "18:00"], &[], "").describe(),
            "daily at 06:30 and 18:00 (Europe/Budapest)"
        );
        assert_eq!(
            s("weekly", &["07:00"], &[1, 5], "").describe(),
            "weekly on Mon, Fri at 07:00 (Europe/Budapest)"
        );
        assert_eq!(
            s("cron", &[], &[], "0 6 * * *").describe(),
            "cron \"0 6 * * *\" (Europe/Budapest)"
        );
    }
    use chrono::Utc;

    fn ms(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    #[test]
    fn daily_times_follow_the_time_zone_across_daylight_saving() {
        let s = Schedule {
            mode: "daily".into(),
            times: vec!["02:00".into(), "14:30".into()],
            weekdays: vec![],
            cron: String::new(),
            time_zone: "Europe/Budapest".into(),
        };
        let plan = s.plan().unwrap();
        // Winter: Budapest is UTC+1.
        let next = plan.upcoming(ms(2026, 11, 29, 12, 0), 3);
        assert_eq!(
            next,
            vec![
                ms(2026, 11, 29, 13, 30),
                ms(2026, 11, 30, 1, 0),
                ms(2026, 11, 30, 13, 30)
            ]
        );
        // Summer: UTC+2.
        // Summer: UTC+2, and 02:00 local is exactly the start, so 14:30 is next.
        assert_eq!(
            plan.next_after(ms(2026, 7, 1, 0, 0)),
            Some(ms(2026, 7, 1, 12, 30))
        );
        assert_eq!(plan.format(ms(2026, 11, 30, 1, 0)), "2026-11-30 02:00 CET");
    }

    #[test]
    fn weekly_and_cron_schedules() {
        let weekly = Schedule {
            mode: "weekly".into(),
            times: vec!["06:15".into()],
            weekdays: vec![1, 4],
            cron: String::new(),
            time_zone: "UTC".into(),
        };
        // 2026-11-29 is a Sunday: next Monday and Thursday.
        assert_eq!(
            weekly.plan().unwrap().upcoming(ms(2026, 11, 29, 0, 0), 2),
            vec![ms(2026, 11, 30, 6, 15), ms(2026, 12, 3, 6, 15)]
        );
        let cron = Schedule {
            mode: "cron".into(),
            cron: "0 */6 * * *".into(),
            ..weekly.clone()
        };
        assert_eq!(
            cron.plan().unwrap().next_after(ms(2026, 11, 29, 1, 0)),
            Some(ms(2026, 11, 29, 6, 0))
        );
        let off = Schedule {
            mode: "off".into(),
            ..weekly.clone()
        };
        assert_eq!(off.plan().unwrap().next_after(0), None);
    }

    #[test]
    fn mistakes_are_named_by_field() {
        let field = |s: Schedule| match s.plan() {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        let base = Schedule::default();
        assert_eq!(
            field(Schedule {
                time_zone: "Mars/Olympus".into(),
                ..base.clone()
            }),
            "time_zone"
        );
        assert_eq!(
            field(Schedule {
                times: vec!["25:00".into()],
                ..base.clone()
            }),
            "times"
        );
        assert_eq!(
            field(Schedule {
                times: vec![],
                ..base.clone()
            }),
            "times"
        );
        assert_eq!(
            field(Schedule {
                mode: "weekly".into(),
                ..base.clone()
            }),
            "weekdays"
        );
        assert_eq!(
            field(Schedule {
                mode: "cron".into(),
                cron: "every day".into(),
                ..base.clone()
            }),
            "cron"
        );
        assert_eq!(
            field(Schedule {
                mode: "cron".into(),
                cron: "61 * * * *".into(),
                ..base.clone()
            }),
            "cron"
        );
        assert_eq!(
            field(Schedule {
                mode: "sometimes".into(),
                ..base
            }),
            "mode"
        );
    }
}
