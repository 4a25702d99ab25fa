//! The types the server and the browser share, compiled for both: a
//! user's role, a run's status, mode and trigger, and its counts. They
//! cross the wire as themselves (serde, `snake_case`), so a renamed
//! variant or field fails to compile or to parse instead of reading as a
//! default. Ids are newtypes of the database's integers. No dependency
//! but serde in the browser: the wasm bundle pays nothing for it (the
//! server adds utoipa's schemas and sqlx's encoding by features).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Text that names none of a type's values; `field` says which input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// An id of one kind of record: the database's integer, typed so an
/// export's id cannot be passed where a run's is expected. It crosses the
/// wire and the database as the bare integer.
macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        pub struct $name(pub i64);

        impl $name {
            /// The bare integer (for a URL or a statement).
            pub fn get(self) -> i64 {
                self.0
            }

            /// Parses a URL's or a form's text: a positive integer.
            pub fn parse(text: &str) -> Result<Self, ParseError> {
                match text.trim().parse::<i64>() {
                    Ok(n) if n > 0 => Ok($name(n)),
                    _ => Err(ParseError {
                        field: $field,
                        message: format!("\"{text}\" is not a valid {}.", $field.replace('_', " ")),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ParseError;

            fn from_str(text: &str) -> Result<Self, ParseError> {
                Self::parse(text)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }
    };
}

id!(
    /// A destination (an export of segments to a list).
    ExportId,
    "export_id"
);
id!(
    /// One run of an export.
    RunId,
    "run_id"
);
id!(
    /// A Constant Contact connection.
    ConnectionId,
    "connection_id"
);
id!(
    /// A segment of profiles.
    SegmentId,
    "segment_id"
);
id!(
    /// A user of this server.
    UserId,
    "user_id"
);

/// What a user may do. Ordered: a higher role can do all a lower one can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Viewer,
    Contributor,
    Admin,
}

impl Role {
    /// Highest first, as lists show them.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Contributor, Role::Viewer];

    /// The value stored and used in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Contributor => "contributor",
            Role::Viewer => "viewer",
        }
    }

    /// The same as [`Role::as_str`] (the forms' word for it).
    pub fn key(self) -> &'static str {
        self.as_str()
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        match text.trim() {
            "admin" => Ok(Role::Admin),
            "contributor" => Ok(Role::Contributor),
            "viewer" => Ok(Role::Viewer),
            _ => Err(ParseError {
                field: "role",
                message: String::from("The role must be admin, contributor or viewer."),
            }),
        }
    }

    /// True when this role includes everything `required` may do.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::Contributor => "Contributor",
            Role::Viewer => "Viewer",
        }
    }

    /// What this role may do, in the words of the product.
    pub fn summary(self) -> &'static str {
        match self {
            Role::Admin => "Manages users, connections and system settings, and everything a contributor can do.",
            Role::Contributor => "Configures and runs exports on the connections shared with contributors, and manages segments.",
            Role::Viewer => "Sees segments, exports and their runs, but cannot change or run them.",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::PartiallySucceeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartiallySucceeded => "partially_succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        RunStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| ParseError {
                field: "status",
                message: format!(
                    "\"{text}\" is not a run status (queued, running, succeeded, partially_succeeded, failed or cancelled)."
                ),
            })
    }

    /// Queued or running.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Queued | RunStatus::Running)
    }

    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::Succeeded => "Succeeded",
            RunStatus::PartiallySucceeded => "Partially succeeded",
            RunStatus::Failed => "Failed",
            RunStatus::Cancelled => "Cancelled",
        }
    }
}

/// How a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Only new and changed contacts (the default).
    Incremental,
    /// Everyone, whatever the ledger says ("Full resend").
    Full,
    /// The plan only: nothing is written to Constant Contact.
    DryRun,
}

impl RunMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Incremental => "incremental",
            RunMode::Full => "full",
            RunMode::DryRun => "dry_run",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        [RunMode::Incremental, RunMode::Full, RunMode::DryRun]
            .into_iter()
            .find(|m| m.as_str() == text)
            .ok_or_else(|| ParseError {
                field: "mode",
                message: format!("\"{text}\" is not a run mode (incremental, full or dry_run)."),
            })
    }

    pub fn label(self) -> &'static str {
        match self {
            RunMode::Incremental => "Incremental",
            RunMode::Full => "Full resend",
            RunMode::DryRun => "Dry run",
        }
    }
}

/// What started a run, as lists show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    /// Run now (or Dry run, Full resend) in the UI.
    Manual,
    /// The scheduled refresh.
    Schedule,
    /// The command line.
    Cli,
    /// The REST API, with a token.
    Api,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Manual => "manual",
            TriggerKind::Schedule => "schedule",
            TriggerKind::Cli => "cli",
            TriggerKind::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Result<Self, ParseError> {
        [
            TriggerKind::Manual,
            TriggerKind::Schedule,
            TriggerKind::Cli,
            TriggerKind::Api,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| ParseError {
            field: "trigger",
            message: format!("\"{text}\" is not a run trigger (manual, schedule, cli or api)."),
        })
    }
}

/// One profile field sent as one Constant Contact field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mapping {
    /// The profile field.
    pub source: String,
    /// `email`, `first_name`, `last_name`, … or `cf:<custom field name>`.
    pub target: String,
}

/// One problem with one contact of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactError {
    pub profile_id: String,
    pub email: String,
    /// `no_email`, `invalid_email`, `duplicate_email`, `invalid_value`,
    /// `unsubscribed`, `rejected`.
    pub kind: String,
    pub field: String,
    pub reason: String,
}

/// A run's counters; for a dry run, its plan. Every field is read with
/// its own name on both sides (a missing one is 0: older runs lack newer
/// counters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Counts {
    /// Profiles read from the segments (each once).
    pub read: u64,
    pub skipped_no_email: u64,
    pub skipped_invalid_email: u64,
    pub skipped_duplicate_email: u64,
    /// A value Constant Contact would not take (too long, not a number…).
    pub skipped_invalid_value: u64,
    /// Unsubscribed in Constant Contact: never sent again.
    pub skipped_unsubscribed: u64,
    /// Sent before with the same values: not sent again.
    pub unchanged: u64,
    /// Contacts to send that this export never sent.
    pub adds: u64,
    /// Contacts to send whose values changed since this export sent them.
    pub updates: u64,
    /// A full resend's contacts sent again with the values they had: they
    /// are neither new nor changed.
    pub resent: u64,
    /// Contacts sent in import batches.
    pub sent: u64,
    /// Contacts Constant Contact processed (its `person_count`).
    pub accepted: u64,
    /// Contacts Constant Contact rejected (invalid data).
    pub rejected: u64,
    /// Contacts Constant Contact could not add because they unsubscribed.
    pub unsubscribed: u64,
    /// Contacts who left the segments, to remove from the list.
    pub removals: u64,
    pub removed: u64,
    pub batches: u64,
    pub batches_done: u64,
    /// Constant Contact requests made (for a dry run: needed).
    pub api_calls: u64,
    /// Daily requests left, as far as this server knows.
    pub quota_left: u64,
    /// Expected duration of the run in seconds (dry run and while running).
    pub eta_seconds: u64,
}

impl Counts {
    /// Profiles skipped for their data (not sent).
    pub fn skipped(&self) -> u64 {
        self.skipped_no_email
            + self.skipped_invalid_email
            + self.skipped_duplicate_email
            + self.skipped_invalid_value
            + self.skipped_unsubscribed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_text_and_json() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        for s in RunStatus::ALL {
            assert_eq!(RunStatus::parse(s.as_str()), Ok(s));
            let json = format!("\"{}\"", s.as_str());
            assert_eq!(serde_json::to_string(&s).unwrap(), json);
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), s);
        }
        for m in [RunMode::Incremental, RunMode::Full, RunMode::DryRun] {
            assert_eq!(RunMode::parse(m.as_str()), Ok(m));
        }
        assert_eq!(RunMode::parse("everything").unwrap_err().field, "mode");
        // Ids cross as bare integers and parse only from positive ones.
        assert_eq!(serde_json::to_string(&ExportId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<RunId>("12").unwrap(), RunId(12));
        assert_eq!("42".parse::<SegmentId>(), Ok(SegmentId(42)));
        for bad in ["", "0", "-3", "x1", "1.5"] {
            assert_eq!(
                ExportId::parse(bad).unwrap_err().field,
                "export_id",
                "{bad:?}"
            );
        }
        assert!(Role::Admin.allows(Role::Contributor) && !Role::Viewer.allows(Role::Contributor));
        // A counter the other side does not know yet reads as 0, a known
        // one by its own name.
        let c: Counts = serde_json::from_str(r#"{"sent": 3}"#).unwrap();
        assert_eq!((c.sent, c.read), (3, 0));
    }
}

#[cfg(all(test, feature = "openapi"))]
mod openapi_tests {
    #[test]
    fn the_shared_types_describe_themselves() {
        fn described<T: utoipa::ToSchema>() {}
        described::<super::Counts>();
        described::<super::RunStatus>();
        described::<super::RunMode>();
        described::<super::Mapping>();
    }
}
