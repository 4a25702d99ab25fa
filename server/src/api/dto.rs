//! What the REST API answers, as JSON: these types are the contract (the
//! OpenAPI document is generated from them), converted from the engine's.

use engine::exports::{Export, Mapping};
use engine::runs::{self, Run};
use engine::time::rfc3339_ms;
use engine::{ConnectionId, ExportId, RunId, SegmentId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An error: a stable `code` to branch on and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `unauthorized`, `forbidden`, `not_found`, `invalid`, `conflict`,
    /// `internal`.
    pub code: &'static str,
    pub message: String,
    /// The input the message is about, for `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A run's status and mode: the engine's own (shared) types.
pub use types::{RunMode, RunStatus};

/// `POST /exports/{id}/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// `incremental` when left out.
    #[serde(default)]
    pub mode: Option<RunMode>,
}

/// A run's counters (for a dry run, its plan): the engine's own, with
/// the skipped ones added up.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunCounts {
    #[serde(flatten)]
    pub counts: types::Counts,
    /// Profiles skipped for their data, all reasons together.
    pub skipped: u64,
}

impl From<&runs::Counts> for RunCounts {
    fn from(c: &runs::Counts) -> Self {
        RunCounts {
            counts: c.clone(),
            skipped: c.skipped(),
        }
    }
}

/// How far a run has got.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    /// `queued`, `reading`, `sending`, `finished`, … as the run page shows.
    pub phase: Option<String>,
    /// Profiles read so far.
    pub done: u64,
    /// Profiles to read, once known.
    pub total: Option<u64>,
    /// 0 to 100.
    pub percent: u64,
    /// Seconds left, while running and once it means something.
    pub eta_seconds: Option<u64>,
}

/// One run of an export.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDto {
    #[schema(value_type = i64)]
    pub id: RunId,
    #[schema(value_type = i64)]
    pub export_id: ExportId,
    pub export_name: String,
    pub status: RunStatus,
    pub mode: RunMode,
    /// `manual`, `schedule`, `cli` or `api`.
    pub trigger: String,
    /// Why it failed, was cancelled, or what it is waiting for.
    pub message: Option<String>,
    pub requested_by: Option<String>,
    pub cancel_requested: bool,
    /// RFC 3339 times.
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: Progress,
    pub counts: RunCounts,
    /// The run's per-contact errors.
    pub errors_url: String,
}

impl From<&Run> for RunDto {
    fn from(r: &Run) -> Self {
        let active = r.status.is_active();
        let total = r.total.map(|t| t.max(0) as u64);
        let percent = match total {
            Some(t) if t > 0 => (r.counts.read * 100 / t).min(100),
            _ if !active => 100,
            _ => 0,
        };
        RunDto {
            id: r.id,
            export_id: r.export_id,
            export_name: r.export_name.clone(),
            status: r.status,
            mode: r.mode,
            trigger: r.trigger.as_str().to_owned(),
            message: r.message.clone(),
            requested_by: r.requested_by.clone(),
            cancel_requested: r.cancel_requested,
            queued_at: rfc3339_ms(r.queued_at),
            started_at: r.started_at.map(rfc3339_ms),
            finished_at: r.finished_at.map(rfc3339_ms),
            progress: Progress {
                phase: r.phase.clone(),
                done: r.counts.read,
                total,
                percent,
                eta_seconds: (active && r.counts.eta_seconds > 0).then_some(r.counts.eta_seconds),
            },
            counts: RunCounts::from(&r.counts),
            errors_url: format!("/api/v1/runs/{}/errors", r.id),
        }
    }
}

/// An export (a destination).
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportDto {
    #[schema(value_type = i64)]
    pub id: ExportId,
    pub name: String,
    #[schema(value_type = Option<i64>)]
    pub connection_id: Option<ConnectionId>,
    pub connection_name: Option<String>,
    pub list_id: String,
    pub list_name: String,
    #[schema(value_type = Vec<i64>)]
    pub segment_ids: Vec<SegmentId>,
    pub mapping: Vec<Mapping>,
    pub on_schedule: bool,
    pub remove_left: bool,
    /// False when it cannot run (its connection was removed, say).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub owner: Option<String>,
    /// True when this token may run, cancel and change it.
    pub can_manage: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The newest run, if any.
    pub last_run: Option<RunDto>,
}

impl ExportDto {
    pub fn new(e: Export, can_manage: bool, last_run: Option<&Run>) -> Self {
        ExportDto {
            id: e.id,
            name: e.name,
            connection_id: e.connection_id,
            connection_name: e.connection_name,
            list_id: e.list_id,
            list_name: e.list_name,
            segment_ids: e.segment_ids,
            mapping: e.mapping,
            on_schedule: e.on_schedule,
            remove_left: e.remove_left,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            owner: e.owner_email,
            can_manage,
            created_at: rfc3339_ms(e.created_at),
            updated_at: rfc3339_ms(e.updated_at),
            last_run: last_run.map(RunDto::from),
        }
    }
}

/// `GET /exports`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportList {
    pub items: Vec<ExportDto>,
}

/// One problem with one contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactErrorDto {
    pub profile_id: String,
    pub email: String,
    /// `no_email`, `invalid_email`, `duplicate_email`, `invalid_value`,
    /// `unsubscribed`, `rejected`.
    pub problem: String,
    pub field: String,
    pub reason: String,
}

/// A page of a run's per-contact errors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorPage {
    pub items: Vec<ContactErrorDto>,
    /// Errors matching the filter, in all pages.
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}
