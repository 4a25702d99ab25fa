//! Segments: named member sets of profiles, either *static* (an imported
//! list of profile ids) or *rule* (conditions on profile fields, evaluated
//! in Rust on refresh). Members are stored, so an export reads a
//! consistent snapshot in key order; every refresh records who entered and
//! who left.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::db::{col, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::User;
use crate::SegmentId;

mod import;
mod members;
mod rule;

pub use import::{import_static, import_static_csv, read_ids, StaticImport, UNKNOWN_SHOWN};
pub use members::{changes, count_matching, evaluate, members_after, refresh};
pub use rule::{Condition, Match, Op, Rule, MAX_CONDITIONS, MAX_FIELD_CHARS, MAX_VALUE_CHARS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Static,
    Rule,
}

/// A segment as the product shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: SegmentId,
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub rule: Option<Rule>,
    pub member_count: i64,
    pub refreshed_at: Option<i64>,
    /// How many refreshes have run (the changes of each are kept).
    pub refresh_no: i64,
}

fn from_row(row: &AnyRow) -> Result<Segment> {
    let kind: String = col(row, "kind")?;
    let rule: Option<String> = col(row, "rule")?;
    Ok(Segment {
        id: col(row, "id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        kind: if kind == "rule" {
            Kind::Rule
        } else {
            Kind::Static
        },
        rule: rule.and_then(|r| serde_json::from_str(&r).ok()),
        member_count: col(row, "member_count")?,
        refreshed_at: col(row, "refreshed_at")?,
        refresh_no: col(row, "refresh_no")?,
    })
}

const COLUMNS: &str = "id, name, description, kind, rule, member_count, refreshed_at, refresh_no";

fn parse_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid(
            "name",
            "A segment name has 1 to 100 characters.",
        ));
    }
    Ok(name.to_owned())
}

/// A rule segment's name and rule (as parsed by the caller), with every
/// problem of both reported at once.
pub fn check(name: &str, rule: Result<Rule>) -> Result<(String, Rule)> {
    match (
        parse_name(name),
        rule.and_then(|r| r.validate().map(|()| r)),
    ) {
        (Ok(name), Ok(rule)) => Ok((name, rule)),
        (name, rule) => Err(Error::gather(
            [name.err(), rule.err()].into_iter().flatten(),
        )),
    }
}

fn name_taken(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::invalid("name", "A segment with this name already exists.")
        }
        other => Error::from(other),
    }
}

async fn insert(
    db: &Db,
    name: &str,
    description: &str,
    kind: Kind,
    rule: Option<&Rule>,
) -> Result<SegmentId> {
    let name = parse_name(name)?;
    let now = now_ms();
    let rule = rule
        .map(serde_json::to_string)
        .transpose()
        .map_err(Error::internal)?;
    sqlx::query_scalar(
        "INSERT INTO segments (name, name_key, description, kind, rule, member_count, refresh_no, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6) RETURNING id",
    )
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(description.trim())
    .bind(if kind == Kind::Rule { "rule" } else { "static" })
    .bind(rule)
    .bind(now)
    .fetch_one(db.pool())
    .await
    .map_err(name_taken)
}

/// Creates a rule segment and evaluates it.
/// `actor` is who asked (`None`: the command line, demo data); the
/// creation is audited.
pub async fn create_rule(
    db: &Db,
    actor: Option<&User>,
    name: &str,
    description: &str,
    rule: &Rule,
) -> Result<Segment> {
    rule.validate()?;
    let id = insert(db, name, description, Kind::Rule, Some(rule)).await?;
    let segment = refresh(db, id).await?;
    let detail = serde_json::to_string(rule).unwrap_or_default();
    record_change(db, actor, "segment.create", &segment, &detail).await?;
    Ok(segment)
}

/// Records a change to a segment in the audit log.
async fn record_change(
    db: &Db,
    actor: Option<&User>,
    action: &str,
    segment: &Segment,
    detail: &str,
) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    crate::audit::record(&mut conn, actor, action, &segment.name, detail).await
}

pub async fn get(db: &Db, id: SegmentId) -> Result<Option<Segment>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM segments WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_name(db: &Db, name: &str) -> Result<Option<Segment>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE name_key = $1"
    ))
    .bind(name.trim().to_lowercase())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Segments whose name contains `search` (all when empty), by name.
pub async fn list(db: &Db, search: &str) -> Result<Vec<Segment>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE name_key LIKE $1 ORDER BY name_key"
    ))
    .bind(format!(
        "%{}%",
        search.trim().to_lowercase().replace(['%', '_'], "")
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Changes a rule segment's name, description and rule, and re-evaluates it.
pub async fn update_rule(
    db: &Db,
    actor: Option<&User>,
    id: SegmentId,
    name: &str,
    description: &str,
    rule: &Rule,
) -> Result<Segment> {
    rule.validate()?;
    let segment = get(db, id).await?.ok_or(Error::NotFound("The segment"))?;
    if segment.kind != Kind::Rule {
        return Err(Error::invalid(
            "rule",
            "A static segment has no rule; import its list again instead.",
        ));
    }
    let name = parse_name(name)?;
    let rule_json = serde_json::to_string(rule).map_err(Error::internal)?;
    sqlx::query("UPDATE segments SET name = $1, name_key = $2, description = $3, rule = $4, updated_at = $5 WHERE id = $6")
        .bind(&name)
        .bind(name.to_lowercase())
        .bind(description.trim())
        .bind(rule_json)
        .bind(now_ms())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(name_taken)?;
    let updated = refresh(db, id).await?;
    let detail = if segment.name == updated.name {
        serde_json::to_string(rule).unwrap_or_default()
    } else {
        format!(
            "renamed from {:?}; {}",
            segment.name,
            serde_json::to_string(rule).unwrap_or_default()
        )
    };
    record_change(db, actor, "segment.update", &updated, &detail).await?;
    Ok(updated)
}

/// A refresh someone asked for, audited.
pub async fn refresh_by(db: &Db, actor: &User, id: SegmentId) -> Result<Segment> {
    let segment = refresh(db, id).await?;
    let detail = format!("{} members", segment.member_count);
    record_change(db, Some(actor), "segment.refresh", &segment, &detail).await?;
    Ok(segment)
}

/// The first `limit` members with their attributes, in key order.
pub async fn preview(
    db: &Db,
    id: SegmentId,
    limit: i64,
) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let rows = sqlx::query(
        "SELECT m.profile_id, p.attributes FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
         WHERE m.segment_id = $1 ORDER BY m.profile_id LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let text: String = col(r, "attributes")?;
            Ok((
                col(r, "profile_id")?,
                serde_json::from_str(&text).unwrap_or_default(),
            ))
        })
        .collect()
}

/// For each field, how many members have a non-empty value: kept per
/// refresh of the segment (`segment_fill_rates`), computed when missing.
pub async fn fill_rates(db: &Db, id: SegmentId) -> Result<BTreeMap<String, i64>> {
    let refresh_no: Option<i64> =
        sqlx::query_scalar("SELECT refresh_no FROM segments WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    let Some(refresh_no) = refresh_no else {
        return Err(Error::NotFound("The segment"));
    };
    let kept: Option<String> = sqlx::query_scalar(
        "SELECT rates FROM segment_fill_rates WHERE segment_id = $1 AND refresh_no = $2",
    )
    .bind(id)
    .bind(refresh_no)
    .fetch_optional(db.pool())
    .await?;
    if let Some(rates) = kept.and_then(|k| serde_json::from_str(&k).ok()) {
        return Ok(rates);
    }
    let counts = count_filled(db, id).await?;
    let rates = serde_json::to_string(&counts).map_err(Error::internal)?;
    sqlx::query(
        "INSERT INTO segment_fill_rates (segment_id, refresh_no, rates) VALUES ($1, $2, $3) \
         ON CONFLICT (segment_id) DO UPDATE SET refresh_no = excluded.refresh_no, rates = excluded.rates",
    )
    .bind(id)
    .bind(refresh_no)
    .bind(rates)
    .execute(db.pool())
    .await?;
    Ok(counts)
}

/// [`fill_rates`] counted from the members (streamed).
async fn count_filled(db: &Db, id: SegmentId) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    let mut rows = sqlx::query(
        "SELECT p.attributes FROM segment_members m JOIN profiles p ON p.id = m.profile_id WHERE m.segment_id = $1",
    )
    .bind(id)
    .fetch(db.pool());
    while let Some(row) = rows.try_next().await? {
        let text: String = col(&row, "attributes")?;
        let attrs: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
        for (k, v) in attrs {
            let n = counts.entry(k).or_insert(0);
            if !v.trim().is_empty() {
                *n += 1;
            }
        }
    }
    Ok(counts)
}
