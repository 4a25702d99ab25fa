//! Runs of an export: a row per run (queued → running → a final status),
//! claimed by one worker at a time under a lease, with its counts, its
//! checkpoint and its per-contact errors.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::db::{col, flag, Backend, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::User;
use crate::{ExportId, RunId, UserId};

mod errors;
mod queue;

pub use errors::{add_errors, errors, errors_matching, write_errors_csv, ContactError};
pub(crate) use errors::{add_errors_on, drop_errors_after};
pub(crate) use queue::save_progress_on;
pub use queue::{
    claim, claim_run, finish, heartbeat, peek, save_progress, Beat, Lease, Progress, MAX_ATTEMPTS,
};

/// Where a run is, how it sends, and its counters: shared with the
/// browser (the `types` crate).
pub use types::{Counts, RunMode as Mode, RunStatus as Status};

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Schedule,
    Cli,
    /// The REST API, with this token (see [`crate::api_tokens`]).
    Api {
        token_id: i64,
    },
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }

    /// What lists show (the API's token aside).
    pub fn kind(self) -> types::TriggerKind {
        match self {
            Trigger::Manual => types::TriggerKind::Manual,
            Trigger::Schedule => types::TriggerKind::Schedule,
            Trigger::Cli => types::TriggerKind::Cli,
            Trigger::Api { .. } => types::TriggerKind::Api,
        }
    }

    /// The `trigger` column's value (an API run is stored as manual, with
    /// its token beside it).
    fn stored(self) -> &'static str {
        match self {
            Trigger::Api { .. } => Trigger::Manual.as_str(),
            other => other.as_str(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub export_id: ExportId,
    pub export_name: String,
    pub trigger: types::TriggerKind,
    pub mode: Mode,
    pub status: Status,
    pub message: Option<String>,
    pub requested_by: Option<String>,
    pub cancel_requested: bool,
    pub attempts: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub phase: Option<String>,
    pub total: Option<i64>,
    pub counts: Counts,
    /// The counts as of the checkpoint (see [`Progress::resume`]): where a
    /// later attempt starts counting from.
    pub resume_counts: Option<Counts>,
    pub checkpoint: Option<String>,
    /// A queued run waiting to be resumed is not started before this
    /// (Unix ms).
    pub not_before: Option<i64>,
    /// Times the run went back to the queue to be resumed later.
    pub resumes: i64,
}

#[cfg(test)]
impl Run {
    /// A finished incremental run of export 1, for tests to adjust.
    pub(crate) fn example() -> Run {
        Run {
            id: RunId(1),
            export_id: ExportId(1),
            export_name: String::from("E"),
            trigger: types::TriggerKind::Manual,
            mode: Mode::Incremental,
            status: Status::Succeeded,
            message: None,
            requested_by: None,
            cancel_requested: false,
            attempts: 1,
            queued_at: 0,
            started_at: Some(0),
            finished_at: Some(1),
            phase: None,
            total: None,
            counts: Counts::default(),
            resume_counts: None,
            checkpoint: None,
            not_before: None,
            resumes: 0,
        }
    }
}

const COLUMNS: &str = "r.id, r.export_id, e.name AS export_name, \
    CASE WHEN r.api_token_id IS NULL THEN r.trigger ELSE 'api' END AS trigger, r.mode, r.status, r.message, \
    u.email AS requested_by, r.cancel_requested, r.attempts, r.queued_at, r.started_at, r.finished_at, \
    r.phase, r.total, r.counts, r.resume_counts, r.checkpoint, r.not_before, r.resumes";

const FROM: &str =
    "FROM runs r JOIN exports e ON e.id = r.export_id LEFT JOIN users u ON u.id = r.requested_by";

fn from_row(row: &AnyRow) -> Result<Run> {
    let status: String = col(row, "status")?;
    let mode: String = col(row, "mode")?;
    let counts: String = col(row, "counts")?;
    Ok(Run {
        id: col(row, "id")?,
        export_id: col(row, "export_id")?,
        export_name: col(row, "export_name")?,
        trigger: types::TriggerKind::parse(&col::<String>(row, "trigger")?)?,
        mode: Mode::parse(&mode)?,
        status: Status::parse(&status)?,
        message: col(row, "message")?,
        requested_by: col(row, "requested_by")?,
        cancel_requested: flag(row, "cancel_requested")?,
        attempts: col(row, "attempts")?,
        queued_at: col(row, "queued_at")?,
        started_at: col(row, "started_at")?,
        finished_at: col(row, "finished_at")?,
        phase: col(row, "phase")?,
        total: col(row, "total")?,
        counts: serde_json::from_str(&counts).unwrap_or_default(),
        resume_counts: col::<Option<String>>(row, "resume_counts")?
            .and_then(|c| serde_json::from_str(&c).ok()),
        checkpoint: col(row, "checkpoint")?,
        not_before: col(row, "not_before")?,
        resumes: col(row, "resumes")?,
    })
}

pub async fn get(db: &Db, id: RunId) -> Result<Option<Run>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// An export's runs, newest first.
pub async fn for_export(db: &Db, export_id: ExportId, limit: i64) -> Result<Vec<Run>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} {FROM} WHERE r.export_id = $1 ORDER BY r.id DESC LIMIT $2"
    ))
    .bind(export_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The newest run of every export that has one.
pub async fn latest(db: &Db) -> Result<Vec<Run>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} {FROM} WHERE r.id IN (SELECT MAX(id) FROM runs GROUP BY export_id)"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every export's newest `per_export` runs, oldest first within each
/// export (for the overview's charts).
pub async fn recent_by_export(db: &Db, per_export: i64) -> Result<Vec<Run>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} {FROM} WHERE r.id IN (\
           SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY export_id ORDER BY id DESC) AS n \
                           FROM runs) ranked WHERE n <= $1) \
         ORDER BY r.export_id, r.id"
    ))
    .bind(per_export)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

fn already_active(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Error::Conflict(String::from(
            "This export is already queued or running. Wait for that run to finish, or cancel it.",
        )),
        other => Error::from(other),
    }
}

/// What a trigger or a cancel needs to know of an export. Read here,
/// from the `exports` table the run rows join anyway, so that this module
/// does not import `exports` (which cancels runs when an export goes).
struct ExportFacts {
    owner_id: Option<UserId>,
    enabled: bool,
    disabled_reason: Option<String>,
    removed: bool,
}

async fn export_facts(db: &Db, export_id: ExportId) -> Result<Option<ExportFacts>> {
    let row = sqlx::query(
        "SELECT owner_id, enabled, disabled_reason, removed_at FROM exports WHERE id = $1",
    )
    .bind(export_id)
    .fetch_optional(db.pool())
    .await?;
    row.map(|r| {
        Ok(ExportFacts {
            owner_id: col(&r, "owner_id")?,
            enabled: flag(&r, "enabled")?,
            disabled_reason: col(&r, "disabled_reason")?,
            removed: col::<Option<i64>>(&r, "removed_at")?.is_some(),
        })
    })
    .transpose()
}

/// Queues a run. A second trigger while one is queued or running is
/// refused (the database allows one active run per export); the schedule
/// skips such an export instead (see `schedule::queue_scheduled`).
pub async fn trigger(
    db: &Db,
    export_id: ExportId,
    trigger: Trigger,
    mode: Mode,
    actor: Option<&User>,
) -> Result<Run> {
    let export = export_facts(db, export_id)
        .await?
        .filter(|e| !e.removed)
        .ok_or(Error::NotFound("The export"))?;
    if let Some(a) = actor {
        crate::policy::manage_export(a, export.owner_id)?;
    }
    if !export.enabled {
        return Err(Error::Conflict(format!(
            "This export is disabled: {} Edit it to choose another connection.",
            export.disabled_reason.as_deref().unwrap_or("")
        )));
    }
    let id: RunId = sqlx::query_scalar(
        "INSERT INTO runs (export_id, trigger, mode, status, requested_by, queued_at, counts, api_token_id) \
         VALUES ($1, $2, $3, 'queued', $4, $5, '{}', $6) RETURNING id",
    )
    .bind(export_id)
    .bind(trigger.stored())
    .bind(mode.as_str())
    .bind(actor.map(|a| a.id))
    .bind(now_ms())
    .bind(match trigger {
        Trigger::Api { token_id } => Some(token_id),
        _ => None,
    })
    .fetch_one(db.pool())
    .await
    .map_err(already_active)?;
    get(db, id).await?.ok_or(Error::NotFound("The run"))
}

/// Cancels a run: a queued run at once, a running one at its next batch
/// boundary (its status then says what was sent).
pub async fn cancel(db: &Db, actor: &User, run_id: RunId) -> Result<Run> {
    let run = get(db, run_id).await?.ok_or(Error::NotFound("The run"))?;
    let owner = export_facts(db, run.export_id)
        .await?
        .and_then(|e| e.owner_id);
    crate::policy::manage_export(actor, owner)?;
    if !run.status.is_active() {
        return Err(Error::Conflict(format!(
            "This run has already finished ({}).",
            run.status.as_str().replace('_', " ")
        )));
    }
    let by = format!("Cancelled by {}.", actor.email);
    let mut conn = db.pool().acquire().await?;
    cancel_where(&mut conn, "id", run_id.get(), &by).await?;
    get(db, run_id).await?.ok_or(Error::NotFound("The run"))
}

/// Cancels an export's active run inside the caller's transaction.
pub(crate) async fn cancel_active_in(
    conn: &mut sqlx::AnyConnection,
    export_id: ExportId,
    reason: &str,
) -> Result<()> {
    cancel_where(conn, "export_id", export_id.get(), reason).await
}

/// Cancels the queued run and asks the running one to stop at its next
/// batch, where `column` (`id` or `export_id`) is `key`.
async fn cancel_where(
    conn: &mut sqlx::AnyConnection,
    column: &'static str,
    key: i64,
    reason: &str,
) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE runs SET status = 'cancelled', message = $1, finished_at = $2, phase = 'finished' \
         WHERE {column} = $3 AND status = 'queued'"
    ))
    .bind(reason)
    .bind(now_ms())
    .bind(key)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "UPDATE runs SET cancel_requested = TRUE, message = $1 WHERE {column} = $2 AND status = 'running'"
    ))
    .bind(reason)
    .bind(key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One step of a run's timeline: a batch sent to Constant Contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStep {
    pub seq: i64,
    pub kind: String,
    pub size: i64,
    pub state: String,
    pub activity_id: Option<String>,
    pub outcome: Option<String>,
    pub at: i64,
}

pub async fn batches(db: &Db, run_id: RunId) -> Result<Vec<BatchStep>> {
    let rows = sqlx::query(
        "SELECT seq, kind, size, state, activity_id, outcome, at FROM run_batches WHERE run_id = $1 ORDER BY seq",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(BatchStep {
                seq: col(r, "seq")?,
                kind: col(r, "kind")?,
                size: col(r, "size")?,
                state: col(r, "state")?,
                activity_id: col(r, "activity_id")?,
                outcome: col(r, "outcome")?,
                at: col(r, "at")?,
            })
        })
        .collect()
}
