//! Data shared by the server functions and the pages.

use serde::{Deserialize, Serialize};

/// The shortest password the engine accepts (shown as a hint).
pub const MIN_PASSWORD_CHARS: usize = 10;
#[cfg(feature = "ssr")]
const _: () = assert!(MIN_PASSWORD_CHARS == engine::password::Password::MIN_CHARS);

/// A user's role, a run's status, mode and trigger, and its counters: the
/// engine's own types, shared through the `types` crate.
pub use types::{
    ConnectionId, ContactError, Counts, ExportId, Mapping, Role, RunId, RunMode, RunStatus,
    SegmentId, TriggerKind, UserId,
};

/// A user as pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    pub email: String,
    pub role: Role,
    pub active: bool,
    pub created: String,
    pub last_sign_in: Option<String>,
}

#[cfg(feature = "ssr")]
impl From<engine::users::User> for UserView {
    fn from(u: engine::users::User) -> Self {
        UserView {
            id: u.id,
            email: u.email,
            role: u.role,
            active: u.active,
            created: engine::time::format_ms(u.created_at),
            last_sign_in: u.last_sign_in_at.map(engine::time::format_ms),
        }
    }
}

/// Who is asking, and whether the product still needs its first admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub setup_needed: bool,
    pub user: Option<UserView>,
}

/// The overview page's facts about this installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub database: String,
    pub admins: i64,
    pub contributors: i64,
    pub viewers: i64,
    pub version: String,
}

/// An API token as Admin > API tokens lists it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The secret's first characters.
    pub prefix: String,
    pub created_by: String,
    pub created: String,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
}

/// A token just created, with the secret shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedToken {
    pub token: ApiTokenView,
    pub secret: String,
}

/// A connection as Admin > Connections shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub id: ConnectionId,
    pub kind: String,
    pub display_name: String,
    /// `admins` or `admins_and_contributors`.
    pub usable_by: String,
    /// `authorized`, `needs_reauth` or `error`.
    pub status: String,
    pub status_reason: Option<String>,
    pub export_user: Option<String>,
    pub authorized: Option<String>,
    pub consent: String,
    /// Names of the exports that use it.
    pub exports: Vec<String>,
}

impl ConnectionView {
    pub fn usable_by_label(&self) -> &'static str {
        usable_by_label(&self.usable_by)
    }

    pub fn status_label(&self) -> &'static str {
        match self.status.as_str() {
            "authorized" => "Authorized",
            "needs_reauth" => "Needs re-authentication",
            _ => "Error",
        }
    }
}

pub fn usable_by_label(key: &str) -> &'static str {
    match key {
        "admins_and_contributors" => "Administrators and contributors",
        _ => "Administrators",
    }
}

#[cfg(feature = "ssr")]
impl From<engine::connections::Connection> for ConnectionView {
    fn from(c: engine::connections::Connection) -> Self {
        let consent = match &c.consent_by_email {
            Some(who) => format!("{who}, {}", engine::time::format_ms(c.consent_at)),
            None => engine::time::format_ms(c.consent_at),
        };
        ConnectionView {
            id: c.id,
            kind: String::from("Constant Contact"),
            display_name: c.display_name,
            usable_by: c.usable_by.as_str().to_owned(),
            status: c.status.as_str().to_owned(),
            status_reason: c.status_reason,
            export_user: c.export_user_email,
            authorized: c.authorized_at.map(engine::time::format_ms),
            consent,
            exports: Vec::new(),
        }
    }
}

/// The connections page: whether Constant Contact is configured, the
/// connections, and a one-time message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionsPage {
    pub configured: bool,
    pub connections: Vec<ConnectionView>,
    pub notice: Option<String>,
}

/// A connection someone may use for exports: name and type only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsableConnection {
    pub id: ConnectionId,
    pub kind: String,
    pub display_name: String,
}

/// The Add connection form between Connect and Save.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionDraft {
    pub configured: bool,
    pub display_name: String,
    pub usable_by: String,
    pub agreed: bool,
    pub authorized: bool,
    pub export_user: Option<String>,
    pub error: Option<String>,
}

/// One line of Admin > Audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

/// A segment in lists and on its page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    pub id: SegmentId,
    pub name: String,
    pub description: String,
    /// `static` or `rule`.
    pub kind: String,
    pub member_count: i64,
    pub refreshed: Option<String>,
    /// The rule in words, e.g. `country = HU AND lifetime_value > 100`.
    pub rule_text: Option<String>,
}

/// One condition of a rule as the builder edits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionInput {
    pub field: String,
    /// `eq`, `ne`, `gt`, `ge`, `lt`, `le`, `contains`, `starts_with`,
    /// `ends_with`, `before`, `after`, `is_set`, `is_not_set`.
    pub op: String,
    pub value: String,
}

/// A rule as the builder edits it (`matching`: `all` or `any`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInput {
    #[serde(rename = "match")]
    pub matching: String,
    pub conditions: Vec<ConditionInput>,
}

impl Default for RuleInput {
    fn default() -> Self {
        RuleInput {
            matching: String::from("all"),
            conditions: vec![ConditionInput {
                field: String::new(),
                op: String::from("eq"),
                value: String::new(),
            }],
        }
    }
}

/// Operators offered by the builder: key and words.
pub const OPS: [(&str, &str); 13] = [
    ("eq", "="),
    ("ne", "≠"),
    ("gt", ">"),
    ("ge", "≥"),
    ("lt", "<"),
    ("le", "≤"),
    ("contains", "contains"),
    ("starts_with", "starts with"),
    ("ends_with", "ends with"),
    ("before", "before"),
    ("after", "after"),
    ("is_set", "is set"),
    ("is_not_set", "is not set"),
];

pub fn op_words(op: &str) -> &'static str {
    OPS.iter()
        .find(|(k, _)| *k == op)
        .map(|(_, w)| *w)
        .unwrap_or("?")
}

impl RuleInput {
    /// `country = HU AND lifetime_value > 100`.
    pub fn text(&self) -> String {
        let joiner = if self.matching == "any" {
            " OR "
        } else {
            " AND "
        };
        self.conditions
            .iter()
            .map(|c| match c.op.as_str() {
                "is_set" | "is_not_set" => format!("{} {}", c.field, op_words(&c.op)),
                _ => format!("{} {} {}", c.field, op_words(&c.op), c.value),
            })
            .collect::<Vec<_>>()
            .join(joiner)
    }
}

/// A profile field of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldView {
    pub name: String,
    pub kind: String,
    pub filled: i64,
}

/// Everything the segment page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDetail {
    pub segment: SegmentView,
    pub rule: Option<RuleInput>,
    /// The fields shown in the preview, in order.
    pub preview_fields: Vec<String>,
    /// The first members: profile id and the preview fields' values.
    pub preview: Vec<(String, Vec<String>)>,
    /// Field name and how many members have it.
    pub fill_rates: Vec<(String, i64)>,
    /// True when the caller may change or refresh the segment.
    pub can_manage: bool,
}

/// A run as lists and the run page show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    pub id: RunId,
    pub export_id: ExportId,
    pub export_name: String,
    pub trigger: TriggerKind,
    pub mode: RunMode,
    pub status: RunStatus,
    pub message: Option<String>,
    pub requested_by: Option<String>,
    pub cancel_requested: bool,
    pub attempts: i64,
    pub queued_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Seconds from start to finish (or to now).
    pub duration_seconds: Option<i64>,
    pub phase: Option<String>,
    pub total: Option<i64>,
    pub counts: Counts,
}

impl RunView {
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    pub fn is_dry_run(&self) -> bool {
        self.mode == RunMode::DryRun
    }

    /// The status as a user should read it: a run asked to stop is
    /// "Cancelling…" until it has (it settles what Constant Contact
    /// already has first), and a run back in the queue to be resumed
    /// later is "Waiting to resume".
    pub fn status_label(&self) -> &'static str {
        match self.status {
            RunStatus::Running if self.cancel_requested => "Cancelling…",
            // A dry run sends nothing: it did not "succeed" at exporting.
            RunStatus::Succeeded if self.is_dry_run() => "Dry run complete",
            RunStatus::Queued if self.phase.as_deref() == Some("waiting") => "Waiting to resume",
            other => other.label(),
        }
    }

    /// Which badge colour the status gets (a finished dry run has its own).
    pub fn badge(&self) -> &'static str {
        if self.is_dry_run() && self.status == RunStatus::Succeeded {
            "dry_run"
        } else {
            self.status.as_str()
        }
    }

    /// Percent of the profiles read so far.
    pub fn percent(&self) -> u64 {
        match self.total {
            Some(t) if t > 0 => (self.counts.read * 100 / t as u64).min(100),
            _ if !self.is_active() => 100,
            _ => 0,
        }
    }
}

/// An export in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRow {
    pub id: ExportId,
    pub name: String,
    pub connection: Option<String>,
    pub connection_kind: String,
    pub list_id: String,
    pub list_name: String,
    pub segments: Vec<String>,
    pub mapping: Vec<Mapping>,
    pub on_schedule: bool,
    pub remove_left: bool,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub owner: Option<String>,
    pub last_run: Option<RunView>,
    /// True when the caller may run, edit or remove it.
    pub can_change: bool,
}

/// Data > Exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportsPage {
    pub exports: Vec<ExportRow>,
    /// The caller may add exports (contributor or admin).
    pub can_add: bool,
    /// The next scheduled refresh, if the schedule is on.
    pub next_refresh: Option<String>,
}

/// A Constant Contact list offered by the picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListOption {
    pub list_id: String,
    pub name: String,
    pub members: Option<u64>,
}

/// A segment offered by the export form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentOption {
    pub id: SegmentId,
    pub name: String,
    pub members: i64,
}

/// What the Add destination / Edit form starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportForm {
    pub connections: Vec<UsableConnection>,
    pub fields: Vec<FieldView>,
    pub profiles: i64,
    pub segments: Vec<SegmentOption>,
    /// Constant Contact's contact fields: key and label.
    pub contact_fields: Vec<(String, String)>,
    /// The export being edited.
    pub export: Option<ExportInputView>,
    pub is_admin: bool,
    pub max_profiles: u64,
}

/// An export as the form edits it (sent to `save_export` as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportInputView {
    pub name: String,
    /// None until one is chosen (there may be none to choose).
    pub connection_id: Option<ConnectionId>,
    pub list_id: String,
    pub mapping: Vec<Mapping>,
    pub segment_ids: Vec<SegmentId>,
    pub on_schedule: bool,
    pub remove_left: bool,
    pub removal_limit_pct: i64,
}

/// One step of a run's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchView {
    pub seq: i64,
    pub kind: String,
    pub size: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub at: String,
}

/// The run page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunView,
    pub batches: Vec<BatchView>,
    pub errors: Vec<ContactError>,
    pub errors_total: i64,
    pub can_cancel: bool,
}

/// An export's page: the export and its runs, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDetail {
    pub export: ExportRow,
    pub runs: Vec<RunView>,
}
