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
