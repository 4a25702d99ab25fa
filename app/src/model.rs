//! Data shared by the server functions and the pages.

use serde::{Deserialize, Serialize};

/// The shortest password the engine accepts (shown as a hint).
pub const MIN_PASSWORD_CHARS: usize = 10;
#[cfg(feature = "ssr")]
const _: () = assert!(MIN_PASSWORD_CHARS == engine::password::Password::MIN_CHARS);

/// A user's role, as the UI knows it (the engine has its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Viewer,
    Contributor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Contributor, Role::Viewer];

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

    /// The value used in forms and by the engine.
    pub fn key(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Contributor => "contributor",
            Role::Viewer => "viewer",
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

#[cfg(feature = "ssr")]
impl From<engine::users::Role> for Role {
    fn from(r: engine::users::Role) -> Self {
        match r {
            engine::users::Role::Admin => Role::Admin,
            engine::users::Role::Contributor => Role::Contributor,
            engine::users::Role::Viewer => Role::Viewer,
        }
    }
}

/// A user as pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: i64,
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
            role: u.role.into(),
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

/// A connection as Admin > Connections shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub id: i64,
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
    pub id: i64,
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
    pub id: i64,
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
