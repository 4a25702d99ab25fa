//! The members of an export's segments: one stream in profile order, each
//! profile once, with its attributes and what this export last sent for it.

use futures_util::TryStreamExt;
use tokio::sync::mpsc;

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
/// attributes and its ledger entry. Each segment is read by a task of its
/// own, a chunk ahead of the stream, so a million members are never held
/// at once.
pub(super) struct Members {
    db: Db,
    export_id: ExportId,
    run_id: RunId,
    page: i64,
    cursors: Vec<Cursor>,
}

type Chunk = Result<Vec<Member>>;

struct Cursor {
    segment_id: SegmentId,
    buf: VecDeque<Member>,
    /// The segment's reader: chunks of members, in key order, until the
    /// channel closes. Started on the first read.
    reader: Option<(mpsc::Receiver<Chunk>, AbortOnDrop<()>)>,
    done: bool,
}

/// The members of one segment with their ledger entries. The ledger is
/// joined in rather than read as a stream of its own, and the query runs on
/// the backend's own pool: a re-run reads a million rows, and each row that
/// crosses from SQLite's thread and through `Any` costs more than the
/// join's lookup. (export id `$1`, segment id `$2`, run id `$3`; SQLite
/// pages by key with `$4` after and `$5` rows.)
const MEMBERS: &str = "SELECT m.profile_id, p.attributes, l.hash, l.config_hash, \
     CAST(CASE WHEN l.run_id = $3 THEN (CASE WHEN l.added_by_run = $3 THEN 2 ELSE 1 END) ELSE 0 END AS BIGINT) \
     FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
     LEFT JOIN export_ledger l ON l.export_id = $1 AND l.profile_id = m.profile_id \
     WHERE m.segment_id = $2";

type MemberRow = (String, String, Option<String>, Option<String>, i64);

fn member((key, attrs, hash, config_hash, by_this_run): MemberRow) -> Member {
    Member {
        key,
        attrs,
        sent: hash.zip(config_hash),
        by_this_run,
    }
}

/// SQLite: keyset pages, each a short read. A read held open for the whole
/// run would keep the write-ahead log from being checkpointed while the
/// run writes its ledger.
async fn read_sqlite(
    pool: sqlx::SqlitePool,
    (export_id, segment_id, run_id, page): (i64, i64, i64, i64),
    tx: mpsc::Sender<Chunk>,
) -> Result<()> {
    let sql = format!("{MEMBERS} AND m.profile_id > $4 ORDER BY m.profile_id LIMIT $5");
    let mut after = String::new();
    loop {
        let rows: Vec<MemberRow> = sqlx::query_as(&sql)
            .bind(export_id)
            .bind(segment_id)
            .bind(run_id)
            .bind(&after)
            .bind(page)
            .fetch_all(&pool)
            .await?;
        let last = (rows.len() as i64) < page;
        if let Some(row) = rows.last() {
            after = row.0.clone();
        }
        if tx
            .send(Ok(rows.into_iter().map(member).collect()))
            .await
            .is_err()
            || last
        {
            return Ok(());
        }
    }
}

/// PostgreSQL: one query, its rows streamed as the server sends them, on a
/// connection of its own ([`Db::own_connection`]). Keyset pages cost a plan
/// and a nested-loop join each (about 70 ms per 5,000 members); one query
/// lets the server join in bulk, and a snapshot held open does not hold up
/// anyone's writes.
async fn read_postgres(
    pool: sqlx::PgPool,
    (export_id, segment_id, run_id, page): (i64, i64, i64, i64),
    tx: mpsc::Sender<Chunk>,
) -> Result<()> {
    let mut conn = Db::own_connection(&pool).await?;
    let sql = format!("{MEMBERS} ORDER BY m.profile_id");
    let mut rows = sqlx::query_as::<_, MemberRow>(&sql)
        .bind(export_id)
        .bind(segment_id)
        .bind(run_id)
        .fetch(&mut conn);
    let mut chunk = Vec::with_capacity(page as usize);
    while let Some(row) = rows.try_next().await? {
        chunk.push(member(row));
        if chunk.len() as i64 >= page {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(page as usize));
            if tx.send(Ok(full)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk)).await;
    }
    Ok(())
}

impl Members {
    /// Members of `segment_ids`, with the ledger of export `export_id` (as
    /// run `run_id` sees it), read `page` at a time.
    pub(super) fn new(
        db: Db,
        export_id: ExportId,
        run_id: RunId,
        segment_ids: &[SegmentId],
        page: i64,
    ) -> Self {
        Members {
            db,
            export_id,
            run_id,
            page: page.max(1),
            cursors: segment_ids
                .iter()
                .map(|&segment_id| Cursor {
                    segment_id,
                    buf: VecDeque::new(),
                    reader: None,
                    done: false,
                })
                .collect(),
        }
    }

    /// Starts the reader of one segment: one chunk is read ahead while the
    /// stream uses the last.
    fn start(&self, segment_id: SegmentId) -> (mpsc::Receiver<Chunk>, AbortOnDrop<()>) {
        let (tx, rx) = mpsc::channel(1);
        let params = (
            self.export_id.get(),
            segment_id.get(),
            self.run_id.get(),
            self.page,
        );
        let db = self.db.clone();
        let task = tokio::spawn(async move {
            let result = match db.typed() {
                TypedPool::Sqlite(pool) => read_sqlite(pool.clone(), params, tx.clone()).await,
                TypedPool::Postgres(pool) => read_postgres(pool.clone(), params, tx.clone()).await,
            };
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        (rx, AbortOnDrop(task))
    }

    pub(super) async fn next(&mut self) -> Result<Option<Member>> {
        for i in 0..self.cursors.len() {
            if !self.cursors[i].buf.is_empty() || self.cursors[i].done {
                continue;
            }
            if self.cursors[i].reader.is_none() {
                let reader = self.start(self.cursors[i].segment_id);
                self.cursors[i].reader = Some(reader);
            }
            let c = &mut self.cursors[i];
            let next = match c.reader.as_mut() {
                Some((rx, _)) => rx.recv().await,
                None => None,
            };
            if let Some(chunk) = next {
                c.buf.extend(chunk?);
            }
            if c.buf.is_empty() {
                // The channel closed, or sent the empty last page.
                c.done = true;
                c.reader = None;
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
