//! Import batches: written down before they are sent, their outcome and the
//! run's checkpoint written after, and an earlier attempt's batches taken up
//! again on resume. Owns the `run_batches` table.

use super::counts::merge;
use crate::constant_contact::batch::Batch;
use crate::db::col;
use crate::time::now_ms;

use super::*;

/// A contact in a batch: what the ledger records once the batch is done.
#[derive(Clone)]
pub(super) struct Sent {
    pub(super) profile_id: Box<str>,
    pub(super) email: Box<str>,
    /// Of the mapped values; the ledger keeps it in hex.
    pub(super) hash: [u8; 16],
}

/// A checkpoint: progress that holds up to `upto`.
pub(super) struct Checkpoint {
    pub(super) phase: &'static str,
    pub(super) total: Option<i64>,
    /// The live counts (the run page's).
    pub(super) counts: Counts,
    /// The counts a later attempt resumes from (see [`runs::Progress`]).
    pub(super) resume: Counts,
    pub(super) upto: Option<String>,
    pub(super) errors: Vec<ContactError>,
}

impl Checkpoint {
    pub(super) fn progress(&self) -> runs::Progress<'_> {
        runs::Progress {
            phase: self.phase,
            total: self.total,
            counts: &self.counts,
            resume: &self.resume,
            checkpoint: self.upto.as_deref(),
        }
    }
}

impl Job<'_> {
    pub(super) async fn save(
        &mut self,
        phase: &'static str,
        total: Option<i64>,
        checkpoint: Option<&str>,
    ) -> Step<()> {
        self.count_calls().await;
        if let Some(total) = self.run.total.or(total) {
            self.counts.eta_seconds = eta_seconds(
                total.max(0) as u64,
                self.counts.read,
                self.read_at_start,
                self.started.elapsed(),
                self.prior_rate,
            )
            .unwrap_or(0);
        }
        let checkpoint = if self.dry() || self.hold_checkpoint {
            None
        } else {
            checkpoint
        };
        if checkpoint.is_some() {
            self.checkpoint_counts = self.counts.clone();
        }
        if let Some((tx, _)) = &self.writer {
            // In order behind the batches being written.
            let cp = Checkpoint {
                phase,
                total,
                counts: self.counts.clone(),
                resume: merge(&self.checkpoint_counts, &self.counts),
                upto: checkpoint.map(str::to_owned),
                errors: std::mem::take(&mut self.errors),
            };
            if tx.send(Write::Progress(cp)).await.is_err() {
                return self.writer_failed().await;
            }
        } else {
            self.flush_errors().await?;
            let progress = runs::Progress {
                phase,
                total,
                counts: &self.counts,
                resume: &self.counts,
                checkpoint,
            };
            if !runs::save_progress(&self.ex.db, &self.lease, progress).await? {
                return Err(Stop::Lost);
            }
        }
        if self.dry() {
            self.check()
        } else {
            self.beat().await
        }
    }

    pub(super) async fn flush_errors(&mut self) -> Result<()> {
        let errors = std::mem::take(&mut self.errors);
        runs::add_errors(&self.ex.db, self.run.id, &errors).await
    }

    /// The batches an earlier attempt sent (their activity ids are known)
    /// but did not see finish, in order. A batch that may not have reached
    /// Constant Contact (no activity id) is marked failed and its contacts
    /// are sent again.
    pub(super) async fn pending_batches(&mut self, checkpoint: &str) -> Step<VecDeque<InFlight>> {
        {
            let mut conn = self.ex.db.pool().acquire().await?;
            let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
            if !self.lease.fence(&mut tx).await? {
                return Err(Stop::Lost);
            }
            sqlx::query("UPDATE run_batches SET state = 'failed', outcome = 'not confirmed by Constant Contact; sent again' WHERE run_id = $1 AND state = 'sending'")
                .bind(self.run.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let rows = sqlx::query(
            "SELECT seq, first_key, last_key, activity_id FROM run_batches WHERE run_id = $1 AND state = 'sent' AND kind = 'import' AND last_key > $2 ORDER BY seq",
        )
        .bind(self.run.id)
        .bind(checkpoint)
        .fetch_all(self.ex.db.pool())
        .await?;
        let mut out = VecDeque::new();
        for r in &rows {
            out.push_back(InFlight {
                posting: None,
                posted: None,
                seq: col(r, "seq")?,
                activity_id: col::<Option<String>>(r, "activity_id")?.unwrap_or_default(),
                first_key: col(r, "first_key")?,
                last_key: col(r, "last_key")?,
                sent_at: None,
                contacts: Vec::new(),
                upto: String::new(),
                counts: Counts::default(),
                errors: Vec::new(),
            });
        }
        Ok(out)
    }

    /// A batch an earlier attempt sent: every profile up to `upto` has
    /// been read again, so its contacts and checkpoint are known.
    pub(super) async fn settle_resumed(&mut self, mut p: InFlight, upto: &str) -> Step<()> {
        // Made by an attempt before the checkpoint's: not counted in it.
        self.counts.batches += 1;
        p.upto = upto.to_owned();
        p.counts = self.counts.clone();
        p.errors = std::mem::take(&mut self.errors);
        self.settle(p).await
    }

    /// Writes a batch down before it is sent (`kind`: `import` or
    /// `removal`), fenced by the lease.
    pub(super) async fn record_sending(
        &self,
        seq: i64,
        kind: &str,
        first: &str,
        last: &str,
        size: usize,
    ) -> Step<()> {
        let mut conn = self.ex.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !self.lease.fence(&mut tx).await? {
            self.lost.store(true, Ordering::Relaxed);
            return Err(Stop::Lost);
        }
        sqlx::query(
            "INSERT INTO run_batches (run_id, seq, kind, first_key, last_key, size, state, at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'sending', $7)",
        )
        .bind(self.run.id)
        .bind(seq)
        .bind(kind)
        .bind(first)
        .bind(last)
        .bind(size as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sends a batch (after waiting for the oldest one if enough are with
    /// Constant Contact already); it is settled later, in order.
    /// `ahead`: profiles the stream has read (and counted) past `upto`,
    /// the batch's boundary: the one whose contact did not fit.
    pub(super) async fn send_batch(
        &mut self,
        mut batch: Batch,
        contacts: Vec<Sent>,
        upto: &str,
        ahead: u64,
    ) -> Step<()> {
        if !self.dry() {
            self.beat().await?;
        }
        self.counts.batches += 1;
        if self.dry() {
            return Ok(());
        }
        while self.inflight.len() >= self.ex.settings.in_flight.max(1) {
            self.settle_oldest().await?;
        }
        // The lease and a cancel are looked at while waiting for a turn.
        let at = Instant::now();
        let permit = loop {
            let turn = Arc::clone(&self.sending).acquire_owned();
            match tokio::time::timeout(Duration::from_secs(1), turn).await {
                Ok(permit) => {
                    break permit
                        .map_err(|e| Stop::Db(Error::internal(format!("sending a batch: {e}"))))?
                }
                Err(_) => self.beat().await?,
            }
        };
        self.time_sending += at.elapsed();
        if self.writer.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            return self.writer_failed().await;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let first = contacts
            .first()
            .map(|s| String::from(&*s.profile_id))
            .unwrap_or_default();
        let last = contacts
            .last()
            .map(|s| String::from(&*s.profile_id))
            .unwrap_or_default();
        self.record_sending(seq, "import", &first, &last, contacts.len())
            .await?;
        // Sent beside the stream: the next batch is read meanwhile. The
        // answer (the activity id) is recorded as soon as it comes. Only
        // the body goes (`contacts` has the keys).
        batch.keys = Vec::new();
        let posting = {
            let client = self.client.clone();
            let (db, run_id, lease) = (self.ex.db.clone(), self.run.id, self.lease.clone());
            let (rounds, pause) = (self.ex.settings.import_rounds, self.ex.settings.round_pause);
            tokio::spawn(async move {
                let _permit = permit;
                let Some(client) = client else {
                    return Err(Error::internal(String::from("no client")));
                };
                let mut imported = client.import(&batch).await;
                for _ in 1..rounds.max(1) {
                    match &imported {
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(run_id = %run_id, seq, error = %e, "an import batch failed a round of retries; trying again");
                            tokio::time::sleep(pause).await;
                            imported = client.import(&batch).await;
                        }
                        _ => break,
                    }
                }
                let (state, activity_id, outcome) = match &imported {
                    Ok(a) => ("sent", Some(a.activity_id.clone()), None),
                    Err(e) => ("failed", None, Some(e.to_string())),
                };
                let mut conn = db.pool().acquire().await?;
                let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
                // A takeover's owner decides this batch's fate now.
                if lease.fence(&mut tx).await? {
                    sqlx::query("UPDATE run_batches SET state = $1, activity_id = $2, outcome = $3 WHERE run_id = $4 AND seq = $5")
                        .bind(state)
                        .bind(activity_id)
                        .bind(outcome)
                        .bind(run_id)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Ok(imported)
            })
        };
        self.inflight.push_back(InFlight {
            seq,
            posting: Some(AbortOnDrop(posting)),
            posted: None,
            activity_id: String::new(),
            sent_at: Some(Instant::now()),
            first_key: first,
            last_key: last,
            contacts,
            upto: upto.to_owned(),
            // The stream's counts at the boundary.
            counts: Counts {
                read: self.counts.read - ahead,
                ..self.counts.clone()
            },
            errors: std::mem::take(&mut self.errors),
        });
        Ok(())
    }
}

/// Import batches of `run_id` settled past `checkpoint` (held behind a
/// batch whose send failed): a resumed run does not make them again.
pub(super) async fn settled_past(db: &Db, run_id: RunId, checkpoint: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND kind = 'import' \
         AND state = 'done' AND last_key > $2",
    )
    .bind(run_id)
    .bind(checkpoint)
    .fetch_one(db.pool())
    .await?;
    Ok(n as u64)
}

/// The number the run's next batch gets.
pub(super) async fn next_seq(db: &Db, run_id: RunId) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM run_batches WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(db.pool())
            .await?,
    )
}

/// The run ends: a batch still marked as on its way never got an answer.
/// Written only while `lease` holds.
pub(super) async fn close_unanswered(db: &Db, lease: &runs::Lease) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
    if lease.fence(&mut tx).await? {
        sqlx::query(
            "UPDATE run_batches SET state = 'failed', outcome = 'never answered by Constant Contact' \
             WHERE run_id = $1 AND state = 'sending'",
        )
        .bind(lease.run_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Records a batch's end, in `tx`: `done` or `failed`, with its outcome.
pub(super) async fn finish(
    tx: &mut sqlx::AnyConnection,
    run_id: RunId,
    seq: i64,
    ok: bool,
    outcome: &str,
) -> Result<()> {
    sqlx::query("UPDATE run_batches SET state = $1, outcome = $2 WHERE run_id = $3 AND seq = $4")
        .bind(if ok { "done" } else { "failed" })
        .bind(outcome)
        .bind(run_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Notes on a sent batch's row what its import is doing (slower than
/// expected, say), in `tx`, while it is still being polled.
pub(super) async fn note(
    tx: &mut sqlx::AnyConnection,
    run_id: RunId,
    seq: i64,
    outcome: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE run_batches SET outcome = $1 WHERE run_id = $2 AND seq = $3 AND state = 'sent'",
    )
    .bind(outcome)
    .bind(run_id)
    .bind(seq)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
