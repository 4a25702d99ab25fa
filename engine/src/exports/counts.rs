//! What the export form counts for the segments it selects: their
//! profiles, each once, and how many have a value in a field.

use crate::db::{Backend, Db};
use crate::error::Result;
use crate::SegmentId;

/// Profiles in any of the segments, each counted once.
pub async fn count_profiles(db: &Db, segment_ids: &[SegmentId]) -> Result<i64> {
    if segment_ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(1, segment_ids.len());
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT DISTINCT profile_id FROM segment_members WHERE segment_id IN ({list})) t"
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql);
    for id in segment_ids {
        q = q.bind(id);
    }
    Ok(q.fetch_one(db.pool()).await?)
}

/// Of the profiles in any of the segments (each counted once), how many
/// have a non-empty value in `field`: `(with a value, all)`. The form uses
/// it to warn before an export maps its email to a field most of its
/// profiles lack.
pub async fn count_filled(db: &Db, segment_ids: &[SegmentId], field: &str) -> Result<(i64, i64)> {
    let all = count_profiles(db, segment_ids).await?;
    if all == 0 || field.is_empty() {
        return Ok((0, all));
    }
    // A segment's fill rates are kept per refresh, so the form does not
    // read every member's attributes each time it opens: the largest
    // segment's count comes from them, and only the members of the others
    // that are not in it are read.
    let sql = format!(
        "SELECT id FROM segments WHERE id IN ({}) ORDER BY member_count DESC, id LIMIT 1",
        placeholders(1, segment_ids.len())
    );
    let mut q = sqlx::query_scalar::<_, SegmentId>(&sql);
    for id in segment_ids {
        q = q.bind(id);
    }
    let Some(base) = q.fetch_optional(db.pool()).await? else {
        return Ok((0, all));
    };
    let in_base = crate::segments::fill_rates(db, base)
        .await?
        .get(field)
        .copied()
        .unwrap_or(0);
    let others: Vec<SegmentId> = segment_ids
        .iter()
        .copied()
        .filter(|id| *id != base)
        .collect();
    if others.is_empty() {
        return Ok((in_base, all));
    }
    // Attributes are a JSON object of strings; both backends read one key.
    let (value, trim) = match db.backend() {
        Backend::Sqlite => (
            "(SELECT j.value FROM json_each(p.attributes) j WHERE j.key = $1)",
            "TRIM",
        ),
        Backend::Postgres => ("(p.attributes::jsonb ->> $1)", "BTRIM"),
    };
    // The value is tested in the count, not in a WHERE clause that a
    // planner would apply to every profile before joining.
    let sql = format!(
        "SELECT COUNT(CASE WHEN {trim}(COALESCE({value}, ''), $2) <> '' THEN 1 END) \
         FROM (SELECT DISTINCT m.profile_id FROM segment_members m \
         WHERE m.segment_id IN ({list}) AND NOT EXISTS \
         (SELECT 1 FROM segment_members b WHERE b.segment_id = $3 AND b.profile_id = m.profile_id)) r \
         JOIN profiles p ON p.id = r.profile_id",
        list = placeholders(4, others.len()),
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql)
        .bind(field)
        .bind(white_space())
        .bind(base);
    for id in &others {
        q = q.bind(id);
    }
    Ok((in_base + q.fetch_one(db.pool()).await?, all))
}

/// `$first, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every character Rust's `str::trim` takes off, for SQL's `TRIM`: a
/// value of only these is empty to a run (see `run::classify`), so the
/// members read must be counted as the kept fill rates count them
/// (`segments::fill_rates`, which trims in Rust).
fn white_space() -> &'static str {
    static SET: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        (0..=u32::from(char::MAX))
            .filter_map(char::from_u32)
            .filter(|c| c.is_whitespace())
            .collect()
    });
    &SET
}
