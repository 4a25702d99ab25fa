//! Exports (destinations): which connection, which Constant Contact list,
//! how profile fields map to contact fields, and which segments. Saving an
//! export never runs it (see [`crate::runs`]).

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::audit;
use crate::constant_contact::batch::max_chars;
use crate::db::{col, flag, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::User;
use crate::{connections, segments};
use crate::{ConnectionId, ExportId, SegmentId, UserId};

mod counts;
mod validate;

pub use counts::{count_filled, count_profiles};
pub use validate::{is_list_id, target_label, usable_connection, validate_shape, CONTACT_FIELDS};
use validate::{name_taken, validate};

/// The default circuit breaker: a run never removes more than this share
/// of the list (percent).
pub const DEFAULT_REMOVAL_LIMIT_PCT: i64 = 20;

/// One profile field sent as one Constant Contact import field (shared
/// with the browser).
pub use types::Mapping;

/// What a user fills in to add or edit an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInput {
    pub name: String,
    pub connection_id: ConnectionId,
    pub list_id: String,
    pub list_name: String,
    pub mapping: Vec<Mapping>,
    pub segment_ids: Vec<SegmentId>,
    pub on_schedule: bool,
    pub remove_left: bool,
    pub removal_limit_pct: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub id: ExportId,
    pub name: String,
    pub connection_id: Option<ConnectionId>,
    pub connection_name: Option<String>,
    pub list_id: String,
    pub list_name: String,
    pub mapping: Vec<Mapping>,
    pub segment_ids: Vec<SegmentId>,
    pub on_schedule: bool,
    pub remove_left: bool,
    pub removal_limit_pct: i64,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub owner_id: Option<UserId>,
    pub owner_email: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub removed_at: Option<i64>,
}

impl Export {
    /// The profile field holding the email address.
    pub fn email_source(&self) -> Option<&str> {
        self.mapping
            .iter()
            .find(|m| m.target == "email")
            .map(|m| m.source.as_str())
    }

    /// A digest of the list and the mapping: contacts sent under another
    /// one are sent again (a mapping or list change forces a full send).
    pub fn config_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.list_id.as_bytes());
        for m in &self.mapping {
            h.update([0]);
            h.update(m.source.as_bytes());
            h.update([1]);
            h.update(m.target.as_bytes());
        }
        hex(&h.finalize()[..16])
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 0xf)]));
    }
    out
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether `text` is the lower-case hex of `bytes` (no allocation).
pub(crate) fn is_hex_of(text: &str, bytes: &[u8]) -> bool {
    text.len() == bytes.len() * 2
        && text.as_bytes().chunks_exact(2).zip(bytes).all(|(pair, b)| {
            pair[0] == HEX_DIGITS[usize::from(b >> 4)]
                && pair[1] == HEX_DIGITS[usize::from(b & 0xf)]
        })
}

const COLUMNS: &str = "e.id, e.name, e.connection_id, c.display_name AS connection_name, e.list_id, \
    e.list_name, e.mapping, e.on_schedule, e.remove_left, e.removal_limit_pct, e.enabled, \
    e.disabled_reason, e.owner_id, u.email AS owner_email, e.created_at, e.updated_at, e.removed_at";

const FROM: &str = "FROM exports e LEFT JOIN connections c ON c.id = e.connection_id \
    LEFT JOIN users u ON u.id = e.owner_id";

fn from_row(row: &AnyRow) -> Result<Export> {
    let mapping: String = col(row, "mapping")?;
    Ok(Export {
        id: col(row, "id")?,
        name: col(row, "name")?,
        connection_id: col(row, "connection_id")?,
        connection_name: col(row, "connection_name")?,
        list_id: col(row, "list_id")?,
        list_name: col(row, "list_name")?,
        mapping: serde_json::from_str(&mapping)
            .map_err(|e| Error::internal(format!("stored mapping: {e}")))?,
        segment_ids: Vec::new(),
        on_schedule: flag(row, "on_schedule")?,
        remove_left: flag(row, "remove_left")?,
        removal_limit_pct: col(row, "removal_limit_pct")?,
        enabled: flag(row, "enabled")?,
        disabled_reason: col(row, "disabled_reason")?,
        owner_id: col(row, "owner_id")?,
        owner_email: col(row, "owner_email")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        removed_at: col(row, "removed_at")?,
    })
}

async fn with_segments(db: &Db, mut e: Export) -> Result<Export> {
    e.segment_ids = sqlx::query_scalar(
        "SELECT segment_id FROM export_segments WHERE export_id = $1 ORDER BY segment_id",
    )
    .bind(e.id)
    .fetch_all(db.pool())
    .await?;
    Ok(e)
}

/// An export, removed or not.
pub async fn get(db: &Db, id: ExportId) -> Result<Option<Export>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some(r) => Ok(Some(with_segments(db, from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// Every export that has not been removed, by name.
pub async fn list(db: &Db) -> Result<Vec<Export>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} {FROM} WHERE e.removed_at IS NULL ORDER BY e.name_key"
    ))
    .fetch_all(db.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(with_segments(db, from_row(r)?).await?);
    }
    Ok(out)
}

/// How many live exports use each connection.
pub async fn count_by_connection(db: &Db) -> Result<Vec<(ConnectionId, i64)>> {
    let rows = sqlx::query(
        "SELECT connection_id, COUNT(*) AS n FROM exports WHERE removed_at IS NULL AND connection_id IS NOT NULL GROUP BY connection_id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| Ok((col(r, "connection_id")?, col(r, "n")?)))
        .collect()
}

/// Names of the live exports that use a connection.
pub async fn names_using(db: &Db, connection_id: ConnectionId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM exports WHERE connection_id = $1 AND removed_at IS NULL ORDER BY name_key",
    )
    .bind(connection_id)
    .fetch_all(db.pool())
    .await?)
}

async fn write_segments(
    conn: &mut sqlx::AnyConnection,
    id: ExportId,
    segment_ids: &[SegmentId],
) -> Result<()> {
    for s in segment_ids {
        sqlx::query(
            "INSERT INTO export_segments (export_id, segment_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(s)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn may_change(actor: &User, export: &Export) -> Result<()> {
    crate::policy::manage_export(actor, export.owner_id)?;
    if export.removed_at.is_some() {
        return Err(Error::NotFound("The export"));
    }
    Ok(())
}

/// Saves a new export. The caller has checked the list against the
/// account (see [`crate::export_lists`]); this checks everything else.
pub async fn create(db: &Db, actor: &User, input: &ExportInput) -> Result<Export> {
    validate(db, actor, input).await?;
    let now = now_ms();
    let mapping = serde_json::to_string(&input.mapping).map_err(Error::internal)?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    let id: ExportId = sqlx::query_scalar(
        "INSERT INTO exports (name, name_key, connection_id, list_id, list_name, mapping, on_schedule, \
           remove_left, removal_limit_pct, enabled, owner_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, TRUE, $10, $11, $11) RETURNING id",
    )
    .bind(input.name.trim())
    .bind(input.name.trim().to_lowercase())
    .bind(input.connection_id)
    .bind(input.list_id.trim())
    .bind(input.list_name.trim())
    .bind(mapping)
    .bind(input.on_schedule)
    .bind(input.remove_left)
    .bind(input.removal_limit_pct)
    .bind(actor.id)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken)?;
    write_segments(&mut tx, id, &input.segment_ids).await?;
    audit::record(
        &mut tx,
        Some(actor),
        "export.create",
        input.name.trim(),
        &format!("list {}", input.list_id.trim()),
    )
    .await?;
    tx.commit().await?;
    get(db, id).await?.ok_or(Error::NotFound("The export"))
}

/// Changes an export. Its ledger is kept: a changed list or mapping makes
/// the next run send everyone again (the config hash differs).
pub async fn update(db: &Db, actor: &User, id: ExportId, input: &ExportInput) -> Result<Export> {
    let export = get(db, id).await?.ok_or(Error::NotFound("The export"))?;
    may_change(actor, &export)?;
    validate(db, actor, input).await?;
    let mapping = serde_json::to_string(&input.mapping).map_err(Error::internal)?;
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE exports SET name = $1, name_key = $2, connection_id = $3, list_id = $4, list_name = $5, \
           mapping = $6, on_schedule = $7, remove_left = $8, removal_limit_pct = $9, updated_at = $10, \
           enabled = TRUE, disabled_reason = NULL \
         WHERE id = $11",
    )
    .bind(input.name.trim())
    .bind(input.name.trim().to_lowercase())
    .bind(input.connection_id)
    .bind(input.list_id.trim())
    .bind(input.list_name.trim())
    .bind(mapping)
    .bind(input.on_schedule)
    .bind(input.remove_left)
    .bind(input.removal_limit_pct)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(name_taken)?;
    sqlx::query("DELETE FROM export_segments WHERE export_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    write_segments(&mut tx, id, &input.segment_ids).await?;
    audit::record(
        &mut tx,
        Some(actor),
        "export.update",
        input.name.trim(),
        &format!("list {}", input.list_id.trim()),
    )
    .await?;
    tx.commit().await?;
    get(db, id).await?.ok_or(Error::NotFound("The export"))
}

/// Removes an export: it never runs again, a queued run is cancelled and a
/// running one stops at its next batch. Its run history stays readable.
pub async fn remove(db: &Db, actor: &User, id: ExportId) -> Result<Export> {
    let export = get(db, id).await?.ok_or(Error::NotFound("The export"))?;
    may_change(actor, &export)?;
    let now = now_ms();
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(
        "UPDATE exports SET removed_at = $1, removed_by = $2, enabled = FALSE, \
           disabled_reason = 'removed' WHERE id = $3",
    )
    .bind(now)
    .bind(actor.id)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    crate::runs::cancel_active_in(&mut tx, id, "The export was removed.").await?;
    audit::record(&mut tx, Some(actor), "export.remove", &export.name, "").await?;
    tx.commit().await?;
    Ok(export)
}

/// Called when a connection is removed: its exports are disabled and their
/// runs cancelled, inside the caller's transaction.
pub(crate) async fn disable_for_connection(
    conn: &mut sqlx::AnyConnection,
    connection_id: ConnectionId,
    connection_name: &str,
) -> Result<()> {
    let reason = format!("Its connection \"{connection_name}\" was removed.");
    // The write first: a read before it could not be upgraded to a write
    // if a run's writer committed in between (SQLite).
    sqlx::query(
        "UPDATE exports SET enabled = FALSE, disabled_reason = $1, updated_at = $2 WHERE connection_id = $3",
    )
    .bind(&reason)
    .bind(now_ms())
    .bind(connection_id)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<ExportId> = sqlx::query_scalar(
        "SELECT id FROM exports WHERE connection_id = $1 AND removed_at IS NULL",
    )
    .bind(connection_id)
    .fetch_all(&mut *conn)
    .await?;
    for id in ids {
        crate::runs::cancel_active_in(conn, id, &reason).await?;
    }
    Ok(())
}

/// Exports the scheduled refresh queues: live, enabled and not opted out.
pub async fn scheduled(db: &Db) -> Result<Vec<ExportId>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM exports WHERE removed_at IS NULL AND enabled = TRUE AND on_schedule = TRUE ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_is_recognised_without_allocating() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(hex(&bytes), "000fa5ff");
        assert!(is_hex_of("000fa5ff", &bytes));
        assert!(!is_hex_of("000FA5FF", &bytes));
        assert!(!is_hex_of("000fa5fe", &bytes));
        assert!(!is_hex_of("000fa5f", &bytes));
        assert!(!is_hex_of("", &bytes));
        assert!(is_hex_of("", &[]));
    }

    fn input() -> ExportInput {
        ExportInput {
            name: String::from("Newsletter"),
            connection_id: ConnectionId(1),
            list_id: String::from("1b3c5d7e-0000-4000-8000-123456789abc"),
            list_name: String::from("Newsletter"),
            mapping: vec![Mapping {
                source: String::from("email"),
                target: String::from("email"),
            }],
            segment_ids: vec![SegmentId(1)],
            on_schedule: true,
            remove_left: false,
            removal_limit_pct: DEFAULT_REMOVAL_LIMIT_PCT,
        }
    }

    #[test]
    fn every_problem_of_an_export_is_reported_at_once() {
        let all = ExportInput {
            name: String::new(),
            list_id: String::new(),
            mapping: vec![],
            segment_ids: vec![],
            ..input()
        };
        match validate_shape(&all) {
            Err(Error::InvalidFields(problems)) => {
                let fields: Vec<&str> = problems.iter().map(|(f, _)| *f).collect();
                assert_eq!(fields, ["name", "list_id", "email", "segments"]);
            }
            other => panic!("expected every problem, got {other:?}"),
        }
    }

    #[test]
    fn the_shape_of_an_export_is_checked_field_by_field() {
        assert!(validate_shape(&input()).is_ok());
        let field = |i: ExportInput| match validate_shape(&i) {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            field(ExportInput {
                name: " ".into(),
                ..input()
            }),
            "name"
        );
        assert_eq!(
            field(ExportInput {
                list_id: "not-a-list".into(),
                ..input()
            }),
            "list_id"
        );
        assert_eq!(
            field(ExportInput {
                mapping: vec![],
                ..input()
            }),
            "email"
        );
        let mut twice = input();
        twice.mapping.push(Mapping {
            source: "work".into(),
            target: "email".into(),
        });
        assert_eq!(field(twice), "mapping");
        let mut unknown = input();
        unknown.mapping.push(Mapping {
            source: "x".into(),
            target: "favourite".into(),
        });
        assert_eq!(field(unknown), "mapping");
        assert_eq!(
            field(ExportInput {
                segment_ids: vec![],
                ..input()
            }),
            "segments"
        );
    }

    #[test]
    fn a_mapping_change_changes_the_config_hash() {
        let export = |mapping: Vec<Mapping>| Export {
            id: ExportId(1),
            name: String::new(),
            connection_id: None,
            connection_name: None,
            list_id: String::from("l"),
            list_name: String::new(),
            mapping,
            segment_ids: vec![],
            on_schedule: true,
            remove_left: false,
            removal_limit_pct: 20,
            enabled: true,
            disabled_reason: None,
            owner_id: None,
            owner_email: None,
            created_at: 0,
            updated_at: 0,
            removed_at: None,
        };
        let a = export(input().mapping);
        let mut more = input().mapping;
        more.push(Mapping {
            source: "first".into(),
            target: "first_name".into(),
        });
        assert_ne!(a.config_hash(), export(more).config_hash());
        assert_eq!(a.config_hash(), export(input().mapping).config_hash());
    }
}
