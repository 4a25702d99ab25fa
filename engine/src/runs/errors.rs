//! A run's per-contact errors: written with the batch they belong to,
//! paged for the run's page and streamed as CSV. Owns the `run_errors`
//! table.

use super::*;

/// One problem with one contact (shared with the browser).
pub use types::ContactError;

/// Appends per-contact errors (one statement per 500: no read before
/// the write, so concurrent writers never conflict).
pub async fn add_errors(db: &Db, run_id: RunId, errors: &[ContactError]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let mut conn = db.pool().acquire().await?;
    add_errors_on(&mut conn, db, run_id, errors).await
}

/// [`add_errors`] on a connection.
pub(crate) async fn add_errors_on(
    conn: &mut sqlx::AnyConnection,
    db: &Db,
    run_id: RunId,
    errors: &[ContactError],
) -> Result<()> {
    for chunk in errors.chunks(500) {
        let sql = format!(
            "INSERT INTO run_errors (run_id, profile_id, email, kind, field, reason) VALUES {}",
            db.placeholders().rows(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(run_id)
                .bind(&e.profile_id)
                .bind(&e.email)
                .bind(&e.kind)
                .bind(&e.field)
                .bind(&e.reason);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Drops errors a crashed attempt recorded past the checkpoint (they are
/// found again when the run resumes).
pub(crate) async fn drop_errors_after(db: &Db, run_id: RunId, checkpoint: &str) -> Result<()> {
    sqlx::query("DELETE FROM run_errors WHERE run_id = $1 AND profile_id > $2")
        .bind(run_id)
        .bind(checkpoint)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A page of a run's per-contact errors, in order, and their total.
pub async fn errors(
    db: &Db,
    run_id: RunId,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ContactError>, i64)> {
    errors_matching(db, run_id, "", offset, limit).await
}

/// [`errors`] whose email, profile id, problem or reason contains
/// `filter` (any case); all of them for an empty filter.
pub async fn errors_matching(
    db: &Db,
    run_id: RunId,
    filter: &str,
    offset: i64,
    limit: i64,
) -> Result<(Vec<ContactError>, i64)> {
    let filter = filter.trim();
    let pattern = crate::audit::contains_pattern(filter);
    let matching = if filter.is_empty() {
        ""
    } else {
        " AND (LOWER(email) LIKE $2 ESCAPE '\\' OR LOWER(profile_id) LIKE $2 ESCAPE '\\' \
           OR LOWER(kind) LIKE $2 ESCAPE '\\' OR LOWER(reason) LIKE $2 ESCAPE '\\')"
    };
    let count_sql = format!("SELECT COUNT(*) FROM run_errors WHERE run_id = $1{matching}");
    let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(run_id);
    if !filter.is_empty() {
        count = count.bind(&pattern);
    }
    let total = count.fetch_one(db.pool()).await?;
    let (limit_at, offset_at) = if filter.is_empty() { (2, 3) } else { (3, 4) };
    let sql = format!(
        "SELECT profile_id, email, kind, field, reason FROM run_errors WHERE run_id = $1{matching} \
         ORDER BY id LIMIT ${limit_at} OFFSET ${offset_at}"
    );
    let mut page = sqlx::query(&sql).bind(run_id);
    if !filter.is_empty() {
        page = page.bind(&pattern);
    }
    let rows = page.bind(limit).bind(offset).fetch_all(db.pool()).await?;
    let list = rows
        .iter()
        .map(|r| {
            Ok(ContactError {
                profile_id: col(r, "profile_id")?,
                email: col(r, "email")?,
                kind: col(r, "kind")?,
                field: col(r, "field")?,
                reason: col(r, "reason")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((list, total))
}

/// Writes every per-contact error of a run as CSV, page by page. Cells are
/// made inert for spreadsheets (profile data is the attacker's text).
pub async fn write_errors_csv<W: std::io::Write>(db: &Db, run_id: RunId, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["profile_id", "email", "problem", "field", "reason"])
        .map_err(Error::internal)?;
    let mut offset = 0;
    loop {
        let (page, _) = errors(db, run_id, offset, 5000).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as i64;
        for e in page {
            let cells = [&e.profile_id, &e.email, &e.kind, &e.field, &e.reason];
            w.write_record(
                cells
                    .map(|c| crate::csv_safe::cell(c))
                    .iter()
                    .map(|c| c.as_bytes()),
            )
            .map_err(Error::internal)?;
        }
    }
    w.flush()?;
    Ok(())
}
