//! The members of an export's segments: one stream in profile order, each
//! profile once, with its attributes and what this export last sent for it.

use crate::db::TypedPool;

use super::*;

/// A member of the export's segments, with what this export last sent
/// for it.
pub(super) struct Member {
    pub(super) key: String,
    pub(super) attrs: String,
    /// The ledger's (hash, config hash), if this export sent it before.
    pub(super) sent: Option<(String, String)>,
    /// Whether the ledger entry was written by this run (an earlier
    /// attempt of it): 0 no, 1 as a changed contact, 2 as a new one.
    pub(super) by_this_run: i64,
}

/// Members of several segments in key order, each profile once, with its
/// attributes and its ledger entry; paged, so a million members are never
/// held at once.
pub(super) struct Members {
    pub(super) db: Db,
    pub(super) export_id: i64,
    pub(super) run_id: i64,
    pub(super) page: i64,
    pub(super) cursors: Vec<Cursor>,
}

/// A page of members, being read beside the stream.
pub(super) type Reading = AbortOnDrop<Result<Vec<Member>>>;

pub(super) struct Cursor {
    pub(super) segment_id: i64,
    pub(super) after: String,
    pub(super) buf: VecDeque<Member>,
    /// The next page, read while this one is used.
    pub(super) next: Option<Reading>,
    pub(super) done: bool,
}

/// A page of members with their ledger entries. The ledger is joined in
/// rather than read as a stream of its own, and the query runs on the
/// backend's own pool: a re-run reads a million rows, and each row that
/// crosses from SQLite's thread and through `Any` costs more than the
/// join's lookup.
pub(super) const MEMBERS_PAGE: &str = "SELECT m.profile_id, p.attributes, l.hash, l.config_hash, \
     CAST(CASE WHEN l.run_id = $5 THEN (CASE WHEN l.added_by_run = $5 THEN 2 ELSE 1 END) ELSE 0 END AS BIGINT) \
     FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
     LEFT JOIN export_ledger l ON l.export_id = $1 AND l.profile_id = m.profile_id \
     WHERE m.segment_id = $2 AND m.profile_id > $3 ORDER BY m.profile_id LIMIT $4";

pub(super) type MemberRow = (String, String, Option<String>, Option<String>, i64);

/// [`MEMBERS_PAGE`] on either backend's pool: (export id, segment id,
/// after this key, page size, run id).
pub(super) async fn member_rows<DB>(
    pool: &sqlx::Pool<DB>,
    (export_id, segment_id, after, page, run_id): (i64, i64, String, i64, i64),
) -> sqlx::Result<Vec<MemberRow>>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> MemberRow: sqlx::FromRow<'r, DB::Row>,
{
    sqlx::query_as(MEMBERS_PAGE)
        .bind(export_id)
        .bind(segment_id)
        .bind(after)
        .bind(page)
        .bind(run_id)
        .fetch_all(pool)
        .await
}

impl Members {
    /// Members of `segment_ids`, with the ledger of export `export_id` (as
    /// run `run_id` sees it).
    pub(super) fn new(db: Db, export_id: i64, run_id: i64, segment_ids: &[i64], page: i64) -> Self {
        Members {
            db,
            export_id,
            run_id,
            page,
            cursors: segment_ids
                .iter()
                .map(|&segment_id| Cursor {
                    segment_id,
                    after: String::new(),
                    buf: VecDeque::new(),
                    next: None,
                    done: false,
                })
                .collect(),
        }
    }

    pub(super) fn read_page(
        db: &Db,
        (export_id, run_id): (i64, i64),
        segment_id: i64,
        after: &str,
        page: i64,
    ) -> Reading {
        let (db, after) = (db.clone(), after.to_owned());
        AbortOnDrop(tokio::spawn(async move {
            let params = (export_id, segment_id, after, page, run_id);
            let rows = match db.typed() {
                TypedPool::Sqlite(pool) => member_rows(pool, params).await?,
                TypedPool::Postgres(pool) => member_rows(pool, params).await?,
            };
            Ok(rows
                .into_iter()
                .map(|(key, attrs, hash, config_hash, by_this_run)| Member {
                    key,
                    attrs,
                    sent: hash.zip(config_hash),
                    by_this_run,
                })
                .collect())
        }))
    }

    pub(super) async fn next(&mut self) -> Result<Option<Member>> {
        let (db, export_id, page) = (&self.db, (self.export_id, self.run_id), self.page);
        for c in &mut self.cursors {
            if c.buf.is_empty() && !c.done {
                // The page read ahead, or this one now.
                let mut reading = c.next.take().unwrap_or_else(|| {
                    Self::read_page(db, export_id, c.segment_id, &c.after, page)
                });
                let rows = (&mut reading.0)
                    .await
                    .map_err(|e| Error::internal(format!("reading a page: {e}")))??;
                c.done = (rows.len() as i64) < page;
                c.buf.extend(rows);
                if let Some(last) = c.buf.back() {
                    c.after = last.key.clone();
                }
                if !c.done {
                    c.next = Some(Self::read_page(db, export_id, c.segment_id, &c.after, page));
                }
            }
        }
        let Some(min) = self
            .cursors
            .iter()
            .filter_map(|c| c.buf.front().map(|m| m.key.clone()))
            .min()
        else {
            return Ok(None);
        };
        let mut out = None;
        for c in &mut self.cursors {
            if c.buf.front().is_some_and(|m| m.key == min) {
                out = c.buf.pop_front();
            }
        }
        Ok(out)
    }
}
