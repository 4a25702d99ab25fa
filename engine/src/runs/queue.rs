//! The queue: a worker claims the oldest queued run (or one whose lease ran
//! out) in one statement, holds it under a lease it renews, and every write
//! it makes is fenced by that lease; attempts are capped.

use super::*;

/// Claims of one run before it is given up (see [`claim`]).
pub const MAX_ATTEMPTS: i64 = 10;

/// Claims the oldest queued run, or a running one whose lease expired (its
/// worker died), for `worker` until `lease_ms` from now. One statement, so
/// two workers never claim the same run; on PostgreSQL, `SKIP LOCKED` lets
/// them pass each other without waiting.
pub async fn claim(db: &Db, worker: &str, lease_ms: i64) -> Result<Option<RunId>> {
    let now = now_ms();
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE runs SET status = 'running', worker = $1, lease_until = $2, attempts = attempts + 1, \
           started_at = COALESCE(started_at, $3) \
         WHERE id = (SELECT id FROM runs WHERE (status = 'queued' AND (not_before IS NULL OR not_before <= $3)) \
                     OR (status = 'running' AND lease_until < $3) \
                     ORDER BY id LIMIT 1{lock}) \
         RETURNING id"
    );
    // An idle worker only reads: no write lock is taken every poll (on
    // SQLite a write, even one that changes nothing, holds the one lock).
    let claimable: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE (status = 'queued' AND (not_before IS NULL OR not_before <= $1)) \
         OR (status = 'running' AND lease_until < $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    if claimable.is_none() {
        return Ok(None);
    }
    // A run whose worker keeps dying (a crash it causes, say) is not
    // claimed forever: past the cap it fails with the reason.
    sqlx::query(
        "UPDATE runs SET status = 'failed', phase = 'finished', finished_at = $1, lease_until = NULL, \
           message = $2 \
         WHERE status = 'running' AND lease_until < $1 AND attempts - resumes >= $3",
    )
    .bind(now)
    .bind(format!(
        "The run was started {MAX_ATTEMPTS} times and its worker stopped each time without finishing \
         (a crash or a restart); it was given up. What was sent is recorded; run the export again \
         to continue, and tell your administrator if it keeps happening."
    ))
    .bind(MAX_ATTEMPTS)
    .execute(db.pool())
    .await?;
    // On PostgreSQL a claimable run whose row another transaction holds
    // for a moment (a worker's last write, a row added under it) is
    // skipped, not waited for: a run that was seen claimable is asked for
    // again a few times before the queue is called empty.
    for retry in 0..3u64 {
        if retry > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20 * retry)).await;
        }
        let mut conn = db.pool().acquire().await?;
        let mut tx = conn.begin().await?;
        let id: Option<RunId> = sqlx::query_scalar(&sql)
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        if id.is_some() || db.backend() == Backend::Sqlite {
            return Ok(id);
        }
    }
    Ok(None)
}

/// Claims one particular queued run (the CLI runs the run it queued).
pub async fn claim_run(db: &Db, run_id: RunId, worker: &str, lease_ms: i64) -> Result<bool> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE runs SET status = 'running', worker = $1, lease_until = $2, attempts = attempts + 1, \
           started_at = COALESCE(started_at, $3) WHERE id = $4 AND status = 'queued'",
    )
    .bind(worker)
    .bind(now + lease_ms)
    .bind(now)
    .bind(run_id)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One claim on a run: the worker and which claim it is (every claim
/// counts an attempt). Every write a worker makes for the run is fenced by
/// it, so a worker that lost the run (paused past its lease, say) writes
/// nothing after another took over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub run_id: RunId,
    pub worker: String,
    pub attempt: i64,
}

impl Lease {
    /// First thing in a transaction: true while this lease holds. The
    /// run's row is then locked (a write: PostgreSQL's row lock, SQLite's
    /// write lock) until the transaction ends, so a takeover waits for the
    /// write instead of racing it.
    pub async fn fence(&self, conn: &mut sqlx::AnyConnection) -> Result<bool> {
        let held = sqlx::query(
            "UPDATE runs SET lease_until = lease_until \
             WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'",
        )
        .bind(self.run_id)
        .bind(&self.worker)
        .bind(self.attempt)
        .execute(&mut *conn)
        .await?;
        Ok(held.rows_affected() == 1)
    }

    /// Puts the run back in the queue, to be resumed from its checkpoint
    /// at `not_before` (Unix ms) by any worker; `message` says why and when.
    pub async fn requeue(
        &self,
        db: &Db,
        not_before: i64,
        message: &str,
        counts: &Counts,
    ) -> Result<bool> {
        let counts = serde_json::to_string(counts).map_err(Error::internal)?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'queued', not_before = $1, message = $2, counts = $3, \
               resume_counts = $3, lease_until = NULL, resumes = resumes + 1, phase = 'waiting' \
             WHERE id = $4 AND worker = $5 AND attempts = $6 AND status = 'running'",
        )
        .bind(not_before)
        .bind(message)
        .bind(counts)
        .bind(self.run_id)
        .bind(&self.worker)
        .bind(self.attempt)
        .execute(db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the run up now (a shutdown): another worker may claim it at
    /// once and resume it from its checkpoint.
    pub async fn release(&self, db: &Db) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET lease_until = 0 \
             WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'",
        )
        .bind(self.run_id)
        .bind(&self.worker)
        .bind(self.attempt)
        .execute(db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// What a heartbeat learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// The lease is extended.
    Held { cancel_requested: bool },
    /// Another worker owns the run now (this one was presumed dead).
    Lost,
}

/// The run's row as the lease holder reads it: none when another worker
/// owns the run.
fn beat_of(row: Option<sqlx::any::AnyRow>) -> Result<Beat> {
    Ok(match row {
        Some(r) => Beat::Held {
            cancel_requested: flag(&r, "cancel_requested")?,
        },
        None => Beat::Lost,
    })
}

/// Extends the lease of a run this worker holds.
pub async fn heartbeat(db: &Db, lease: &Lease, lease_ms: i64) -> Result<Beat> {
    let row = sqlx::query(
        "UPDATE runs SET lease_until = $1 WHERE id = $2 AND worker = $3 AND attempts = $4 AND status = 'running' \
         RETURNING cancel_requested",
    )
    .bind(now_ms() + lease_ms)
    .bind(lease.run_id)
    .bind(&lease.worker)
    .bind(lease.attempt)
    .fetch_optional(db.pool())
    .await?;
    beat_of(row)
}

/// Whether this worker still holds the run, and whether a cancel was
/// asked for, without writing: a read waits for no lock. The run's row is
/// locked while the run's writer commits a batch (its fenced checkpoint);
/// a heartbeat written then waits for that commit (it waited about 0.7 s
/// per batch of 40,000 on PostgreSQL when the writer fenced first). The
/// lease itself is renewed by the run's background heartbeat.
pub async fn peek(db: &Db, lease: &Lease) -> Result<Beat> {
    let row = sqlx::query(
        "SELECT cancel_requested FROM runs WHERE id = $1 AND worker = $2 AND attempts = $3 AND status = 'running'",
    )
    .bind(lease.run_id)
    .bind(&lease.worker)
    .bind(lease.attempt)
    .fetch_optional(db.pool())
    .await?;
    beat_of(row)
}

/// A run's progress as saved: the live counts the run page shows, and the
/// counts as of the checkpoint that a later attempt resumes from.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    pub phase: &'a str,
    pub total: Option<i64>,
    pub counts: &'a Counts,
    /// The stream's counts up to the checkpoint, with Constant Contact's
    /// outcomes up to the last settled batch.
    pub resume: &'a Counts,
    /// Every profile up to this key is settled (unchanged if `None`).
    pub checkpoint: Option<&'a str>,
}

/// Saves progress if this worker still holds the run; false when it does
/// not.
pub async fn save_progress(db: &Db, lease: &Lease, progress: Progress<'_>) -> Result<bool> {
    let mut conn = db.pool().acquire().await?;
    save_progress_on(&mut conn, lease, progress).await
}

/// [`save_progress`] on a connection (inside the transaction that settles
/// a batch, so the ledger and the counts never disagree).
pub(crate) async fn save_progress_on(
    conn: &mut sqlx::AnyConnection,
    lease: &Lease,
    p: Progress<'_>,
) -> Result<bool> {
    let json = |c: &Counts| serde_json::to_string(c).map_err(Error::internal);
    let done = sqlx::query(
        "UPDATE runs SET phase = $1, total = COALESCE($2, total), counts = $3, resume_counts = $4, \
           checkpoint = COALESCE($5, checkpoint) \
         WHERE id = $6 AND worker = $7 AND attempts = $8 AND status = 'running'",
    )
    .bind(p.phase)
    .bind(p.total)
    .bind(json(p.counts)?)
    .bind(json(p.resume)?)
    .bind(p.checkpoint)
    .bind(lease.run_id)
    .bind(&lease.worker)
    .bind(lease.attempt)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the final status.
pub async fn finish(
    db: &Db,
    lease: &Lease,
    status: Status,
    message: Option<&str>,
    counts: &Counts,
) -> Result<bool> {
    let counts = serde_json::to_string(counts).map_err(Error::internal)?;
    let done = sqlx::query(
        "UPDATE runs SET status = $1, message = COALESCE($2, message), counts = $3, finished_at = $4, \
           phase = 'finished', lease_until = NULL \
         WHERE id = $5 AND worker = $6 AND attempts = $7 AND status = 'running'",
    )
    .bind(status.as_str())
    .bind(message)
    .bind(counts)
    .bind(now_ms())
    .bind(lease.run_id)
    .bind(&lease.worker)
    .bind(lease.attempt)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}
