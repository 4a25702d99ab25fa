//! Who may do what: every role and ownership rule of the product, one
//! function per action. Server functions, plain routes (uploads,
//! downloads, the OAuth callback) and the engine's own entry points ask
//! here and nowhere else. A refusal is [`Error::Forbidden`] (403).
//!
//! The rules:
//! - Viewers read everything but the admin screens (users, connections,
//!   system, audit log), which are for admins.
//! - Contributors and admins add segments, upload profiles and add exports
//!   on connections usable by their role.
//! - An admin manages every export; a contributor the exports they own.
//!   Running, cancelling and removing are managing.
//! - A segment that an export reads may be changed only by someone who may
//!   manage every such export on a connection their role may use: a
//!   contributor cannot change what an admin-only export sends.

use crate::db::Db;
use crate::error::{Error, Result};
use crate::users::{Role, User};
use crate::{SegmentId, UserId};

/// Who may use a connection for exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsableBy {
    Admins,
    AdminsAndContributors,
}

impl UsableBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UsableBy::Admins => "admins",
            UsableBy::AdminsAndContributors => "admins_and_contributors",
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "admins" => Ok(UsableBy::Admins),
            "admins_and_contributors" => Ok(UsableBy::AdminsAndContributors),
            _ => Err(Error::invalid(
                "usable_by",
                "Choose who can use this connection.",
            )),
        }
    }

    /// True when a user with `role` may use the connection.
    pub fn allows(self, role: Role) -> bool {
        match self {
            UsableBy::Admins => role == Role::Admin,
            UsableBy::AdminsAndContributors => role >= Role::Contributor,
        }
    }
}

fn at_least(actor: &User, role: Role) -> Result<()> {
    if actor.role.allows(role) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// Reading exports, runs, segments and profiles' fields.
pub fn read(actor: &User) -> Result<()> {
    at_least(actor, Role::Viewer)
}

/// Admin > Users, Connections, System and the audit log.
pub fn administer(actor: &User) -> Result<()> {
    at_least(actor, Role::Admin)
}

/// Uploading profiles.
pub fn upload_profiles(actor: &User) -> Result<()> {
    at_least(actor, Role::Contributor)
}

/// Creating a segment (by rule, or by importing a new static list), and
/// previewing a rule.
pub fn create_segment(actor: &User) -> Result<()> {
    at_least(actor, Role::Contributor)
}

/// An export that reads a segment, as [`change_segment`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentUse {
    pub export_owner: Option<UserId>,
    /// `None` when the export's connection was removed.
    pub usable_by: Option<UsableBy>,
}

/// Changing a segment (its rule, name, members by import, a refresh):
/// the caller must be allowed to manage every export that reads it.
pub fn change_segment(actor: &User, uses: &[SegmentUse]) -> Result<()> {
    at_least(actor, Role::Contributor)?;
    if actor.role == Role::Admin {
        return Ok(());
    }
    let all_theirs = uses.iter().all(|u| {
        u.export_owner == Some(actor.id) && u.usable_by.is_some_and(|c| c.allows(actor.role))
    });
    if all_theirs {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// The exports (not removed) that read segment `id`.
pub async fn segment_uses(db: &Db, id: SegmentId) -> Result<Vec<SegmentUse>> {
    let rows: Vec<(Option<UserId>, Option<String>)> = sqlx::query_as(
        "SELECT e.owner_id, c.usable_by FROM export_segments es \
         JOIN exports e ON e.id = es.export_id \
         LEFT JOIN connections c ON c.id = e.connection_id \
         WHERE es.segment_id = $1 AND e.removed_at IS NULL",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(export_owner, usable_by)| SegmentUse {
            export_owner,
            usable_by: usable_by.and_then(|u| UsableBy::parse(&u).ok()),
        })
        .collect())
}

/// [`change_segment`] for segment `id`, reading who uses it.
pub async fn may_change_segment(db: &Db, actor: &User, id: SegmentId) -> Result<()> {
    at_least(actor, Role::Contributor)?;
    change_segment(actor, &segment_uses(db, id).await?)
}

/// Using a connection for an export (choosing it, reading its lists).
pub fn use_connection(actor: &User, usable_by: UsableBy) -> Result<()> {
    at_least(actor, Role::Contributor)?;
    if usable_by.allows(actor.role) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// Adding an export.
pub fn create_export(actor: &User) -> Result<()> {
    at_least(actor, Role::Contributor)
}

/// Managing an existing export: edit, run, cancel its runs, remove.
pub fn manage_export(actor: &User, owner: Option<UserId>) -> Result<()> {
    at_least(actor, Role::Contributor)?;
    if actor.role == Role::Admin || owner == Some(actor.id) {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// True when [`manage_export`] allows it (to show or hide buttons).
pub fn can_manage_export(actor: &User, owner: Option<UserId>) -> bool {
    manage_export(actor, owner).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, role: Role) -> User {
        User {
            id: UserId(id),
            email: format!("u{id}@example.com"),
            role,
            active: true,
            created_at: 0,
            last_sign_in_at: None,
        }
    }

    type Rule<'a> = Box<dyn Fn(&User) -> Result<()> + 'a>;

    /// Each role's answer for one action, in the order viewer,
    /// contributor (id 2), admin.
    fn answers(action: impl Fn(&User) -> Result<()>) -> [bool; 3] {
        [
            action(&user(1, Role::Viewer)).is_ok(),
            action(&user(2, Role::Contributor)).is_ok(),
            action(&user(3, Role::Admin)).is_ok(),
        ]
    }

    #[test]
    fn every_action_by_role_and_ownership() {
        let own = Some(UserId(2));
        let other = Some(UserId(3));
        let theirs = move |usable_by| SegmentUse {
            export_owner: own,
            usable_by: Some(usable_by),
        };
        #[rustfmt::skip]
        let table: Vec<(&str, [bool; 3], Rule<'_>)> = vec![
            ("read", [true, true, true], Box::new(read)),
            ("administer", [false, false, true], Box::new(administer)),
            ("upload profiles", [false, true, true], Box::new(upload_profiles)),
            ("create a segment", [false, true, true], Box::new(create_segment)),
            ("change an unused segment", [false, true, true], Box::new(|u| change_segment(u, &[]))),
            ("change a segment of own export", [false, true, true],
                Box::new(move |u| change_segment(u, &[theirs(UsableBy::AdminsAndContributors)]))),
            ("change a segment of own export on an admin-only connection", [false, false, true],
                Box::new(move |u| change_segment(u, &[theirs(UsableBy::Admins)]))),
            ("change a segment of another's export", [false, false, true],
                Box::new(move |u| change_segment(u, &[SegmentUse { export_owner: other, usable_by: Some(UsableBy::AdminsAndContributors) }]))),
            ("change a segment of an export whose connection was removed", [false, false, true],
                Box::new(move |u| change_segment(u, &[SegmentUse { export_owner: own, usable_by: None }]))),
            ("use an admins-and-contributors connection", [false, true, true],
                Box::new(|u| use_connection(u, UsableBy::AdminsAndContributors))),
            ("use an admin-only connection", [false, false, true], Box::new(|u| use_connection(u, UsableBy::Admins))),
            ("create an export", [false, true, true], Box::new(create_export)),
            ("manage own export", [false, true, true], Box::new(move |u| manage_export(u, own))),
            ("manage another's export", [false, false, true], Box::new(move |u| manage_export(u, other))),
            ("manage an export without owner", [false, false, true], Box::new(|u| manage_export(u, None))),
        ];
        for (action, expected, rule) in &table {
            assert_eq!(&answers(rule), expected, "{action}");
        }
        // A viewer who owns an export (demoted since) still may not run it.
        assert!(manage_export(&user(2, Role::Viewer), own).is_err());
    }
}
