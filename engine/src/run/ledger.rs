//! The export's ledger: what this export last sent for each profile (a hash
//! of the mapped values, the list and the mapping's hash). A profile whose
//! entry matches is unchanged and not sent again; a removal forgets it.
//! Owns the `export_ledger` table (the member stream joins it in as it
//! reads, see [`super::members`]).

use super::batches::Sent;
use crate::db::{col, Backend};
use crate::exports::hex;
use crate::time::now_ms;

use super::*;

/// The upsert every write of the ledger shares: the newest send wins, and
/// `added_by_run` keeps the run that first added the profile.
const UPSERT: &str = "ON CONFLICT (export_id, profile_id) DO UPDATE SET email = excluded.email, \
     list_id = excluded.list_id, hash = excluded.hash, config_hash = excluded.config_hash, \
     run_id = excluded.run_id, sent_at = excluded.sent_at";

/// Whose ledger, and what it records about the list and mapping.
pub(super) struct Entry<'a> {
    pub(super) export_id: ExportId,
    pub(super) list_id: &'a str,
    pub(super) config_hash: &'a str,
    pub(super) run_id: RunId,
}

/// Records `contacts` as sent by this run, in `tx`.
pub(super) async fn record(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    entry: &Entry<'_>,
    contacts: &[Sent],
) -> Result<()> {
    let now = now_ms();
    if db.backend() == Backend::Postgres {
        return record_as_json(tx, entry, contacts, now).await;
    }
    for chunk in contacts.chunks(1000) {
        let sql = format!(
            "INSERT INTO export_ledger (export_id, profile_id, email, list_id, hash, config_hash, run_id, sent_at, added_by_run) \
             VALUES {} {UPSERT}",
            db.placeholders().rows(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q
                .bind(entry.export_id)
                .bind(&*c.profile_id)
                .bind(&*c.email)
                .bind(entry.list_id)
                .bind(hex(&c.hash))
                .bind(entry.config_hash)
                .bind(entry.run_id)
                .bind(now)
                .bind(entry.run_id);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// [`record`] on PostgreSQL: the contacts travel as one JSON array per
/// 5,000, unpacked by the server, in a statement whose text never changes
/// (prepared once per connection). Nine bound values per contact made
/// each statement cost more to parse and plan than to run.
async fn record_as_json(
    tx: &mut sqlx::AnyConnection,
    entry: &Entry<'_>,
    contacts: &[Sent],
    now: i64,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO export_ledger (export_id, profile_id, email, list_id, hash, config_hash, run_id, sent_at, added_by_run) \
         SELECT $1::bigint, c->>0, c->>1, $2::text, c->>2, $3::text, $4::bigint, $5::bigint, $4::bigint \
         FROM jsonb_array_elements($6::jsonb) AS c {UPSERT}"
    );
    for chunk in contacts.chunks(5000) {
        let hashes: Vec<String> = chunk.iter().map(|c| hex(&c.hash)).collect();
        let rows: Vec<[&str; 3]> = chunk
            .iter()
            .zip(&hashes)
            .map(|(c, h)| [&*c.profile_id, &*c.email, h.as_str()])
            .collect();
        let json = serde_json::to_string(&rows).map_err(Error::internal)?;
        sqlx::query(&sql)
            .bind(entry.export_id)
            .bind(entry.list_id)
            .bind(entry.config_hash)
            .bind(entry.run_id)
            .bind(now)
            .bind(json)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Records the contacts of an import an earlier attempt handed over (kept
/// in `unsettled_imports`) once Constant Contact says it went through.
pub(super) async fn record_handed_over(
    tx: &mut sqlx::AnyConnection,
    export_id: ExportId,
    run_id: RunId,
    seq: i64,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO export_ledger (export_id, profile_id, email, list_id, hash, config_hash, run_id, sent_at, added_by_run) \
         SELECT export_id, profile_id, email, list_id, hash, config_hash, run_id, $4, run_id FROM unsettled_imports \
         WHERE export_id = $1 AND run_id = $2 AND seq = $3 {UPSERT}"
    ))
    .bind(export_id)
    .bind(run_id)
    .bind(seq)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The profiles this export sent to `list_id` that are in none of
/// `segment_ids` any more, with the email they were sent with.
pub(super) async fn left(
    db: &Db,
    export_id: ExportId,
    list_id: &str,
    segment_ids: &[SegmentId],
) -> Result<Vec<(String, String)>> {
    let mut p = db.placeholders();
    let (export, list) = (p.one(), p.one());
    let segments = p.list(segment_ids.len());
    let sql = format!(
        "SELECT l.profile_id, l.email FROM export_ledger l WHERE l.export_id = {export} AND l.list_id = {list} \
         AND NOT EXISTS (SELECT 1 FROM segment_members m WHERE m.profile_id = l.profile_id AND m.segment_id IN ({segments})) \
         ORDER BY l.profile_id"
    );
    let mut q = sqlx::query(&sql).bind(export_id).bind(list_id);
    for id in segment_ids {
        q = q.bind(id);
    }
    q.fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| Ok((col(r, "profile_id")?, col(r, "email")?)))
        .collect()
}

/// Forgets the profiles removed from the list (`(profile id, email)`
/// pairs, as [`left`] gives them), in `tx`: 500 to a statement.
pub(super) async fn forget(
    tx: &mut sqlx::AnyConnection,
    db: &Db,
    export_id: ExportId,
    removed: &[(String, String)],
) -> Result<()> {
    for chunk in removed.chunks(500) {
        let mut p = db.placeholders();
        let sql = format!(
            "DELETE FROM export_ledger WHERE export_id = {} AND profile_id IN ({})",
            p.one(),
            p.list(chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(export_id);
        for (profile_id, _) in chunk {
            q = q.bind(profile_id);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}
