//! Imports with Constant Contact: polled to their end with a backoff and a
//! budget, settled in order, and handed over to the next attempt when this
//! one stops. Owns the `unsettled_imports` table.

use super::batches::{Checkpoint, Sent};
use super::counts::merge;
use crate::constant_contact::CcError;
use crate::exports::hex;

use super::*;

/// An import batch with Constant Contact whose outcome is not recorded
/// yet: sent by this attempt, or by an earlier one that stopped.
pub(super) struct InFlight {
    pub(super) seq: i64,
    /// The send, still going on beside the stream (this attempt's batches).
    pub(super) posting: Option<AbortOnDrop<Posted>>,
    /// A send's answer, taken from `posting` before the batch is settled.
    pub(super) posted: Option<std::result::Result<Posted, tokio::task::JoinError>>,
    pub(super) activity_id: String,
    /// When this attempt sent it (not known for a resumed batch).
    pub(super) sent_at: Option<Instant>,
    /// The batch's first and last profiles.
    pub(super) first_key: String,
    pub(super) last_key: String,
    pub(super) contacts: Vec<Sent>,
    /// Every profile up to this key is settled once the batch is.
    pub(super) upto: String,
    /// The stream's counts at the batch's boundary.
    pub(super) counts: Counts,
    /// Problems of the profiles up to `upto`, not written yet.
    pub(super) errors: Vec<ContactError>,
}

impl InFlight {
    /// Waits for the send's answer and keeps it.
    pub(super) async fn take_posting(&mut self) {
        if let Some(mut h) = self.posting.take() {
            match (&mut h.0).await {
                Ok(Ok(Ok(a))) => self.activity_id = a.activity_id,
                other => self.posted = Some(other),
            }
        }
    }
}

/// What sending a batch came to: Constant Contact's answer, recorded.
pub(super) type Posted = Result<std::result::Result<Activity, CcError>>;

impl Job<'_> {
    /// Polls an import until it finishes. A cancel takes effect at once:
    /// the run says that this batch is in Constant Contact's hands.
    pub(super) async fn wait_import(
        &mut self,
        seq: i64,
        activity_id: &str,
        size: usize,
        not_before: Option<Instant>,
    ) -> Step<(Activity, u32)> {
        let started = Instant::now();
        let deadline = started + self.ex.settings.activity_timeout;
        if let Some(done) = self.finished.remove(activity_id) {
            return Ok((done, 1));
        }
        // Not polled before it can be done; the lease and a cancel are
        // still looked at every second.
        if let Some(at) = not_before {
            self.nap(at.saturating_duration_since(Instant::now()))
                .await?;
        }
        // Slower than expected: twice the expected wait, or a minute (a
        // quarter of the time it is given) when nothing is known yet.
        let slow_after = not_before
            .map(|at| at.saturating_duration_since(started) * 2)
            .unwrap_or_else(|| Duration::from_secs(60).min(self.ex.settings.activity_timeout / 4))
            .max(self.ex.settings.poll_every * 10);
        let mut noted = false;
        let mut every = self.ex.settings.poll_every;
        let mut polls = 0;
        loop {
            if let Some(done) = self.finished.remove(activity_id) {
                return Ok((done, polls.max(1)));
            }
            let budget = self.ex.settings.poll_budget + 20 * self.counts.batches;
            if self.polls >= budget {
                return Err(Stop::Resume {
                    why: format!(
                        "Constant Contact's imports were slow: the run spent its {budget} status requests waiting for them"
                    ),
                    at: self.resume_at(),
                    quota: false,
                });
            }
            polls += 1;
            self.polls += 1;
            let activity = match self.poll(activity_id).await {
                Ok(a) => a,
                // Asking again costs nothing but a request: a poll whose
                // retries all met a passing fault (a 429, a 5xx, a drop)
                // is tried again after the next pause, within the run's
                // budget and the import's time, instead of stopping the run.
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tracing::info!(run_id = %self.run.id, seq, error = %e, "an import's status could not be read; asking again");
                    self.nap(every.max(Duration::from_secs(1))).await?;
                    every = (every.mul_f64(1.5)).min(self.ex.settings.max_poll_every);
                    continue;
                }
                Err(e) => return Err(self.cc_failed("waiting for an import", e).await),
            };
            if activity.is_finished() {
                return Ok((activity, polls));
            }
            self.beat().await?;
            if Instant::now() >= deadline {
                // It may still finish: whoever resumes the run polls it again.
                return Err(Stop::Resume {
                    why: format!(
                        "Constant Contact did not finish an import of {size} contacts in {} minutes ({}% done)",
                        self.ex.settings.activity_timeout.as_secs() / 60,
                        activity.percent_done,
                    ),
                    at: self.resume_at(),
                    quota: false,
                });
            }
            if !noted && started.elapsed() >= slow_after {
                noted = true;
                self.note_slow(seq, &activity, started.elapsed()).await?;
            }
            // Looked at less often the longer it takes.
            self.nap(every).await?;
            every = every.mul_f64(1.5).min(self.ex.settings.max_poll_every);
        }
    }

    /// Waits `d`, renewing the lease and looking for a cancel every second.
    pub(super) async fn nap(&self, d: Duration) -> Step<()> {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            if left > Duration::from_secs(1) {
                self.beat().await?;
            }
        }
    }

    /// Says on the run's timeline that an import is slower than expected.
    pub(super) async fn note_slow(
        &self,
        seq: i64,
        activity: &Activity,
        waited: Duration,
    ) -> Step<()> {
        let note = format!(
            "slower than expected: {}% done after {} s; looked at less often from now on",
            activity.percent_done,
            waited.as_secs()
        );
        tracing::info!(run_id = %self.run.id, seq, %note, "slow import");
        let mut conn = self.ex.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !self.lease.fence(&mut tx).await? {
            return Err(Stop::Lost);
        }
        batches::note(&mut tx, self.run.id, seq, &note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// How an import is doing. With later imports in flight too, one
    /// request for the account's recent activities answers for all of
    /// them (the finished ones are kept for their turn); an import not in
    /// that page is asked for alone.
    pub(super) async fn poll(
        &mut self,
        activity_id: &str,
    ) -> std::result::Result<Activity, CcError> {
        self.collect_postings().await;
        let ours: HashSet<&str> = self
            .inflight
            .iter()
            .map(|f| f.activity_id.as_str())
            .filter(|id| !id.is_empty())
            .collect();
        if ours.is_empty() || !self.poll_together {
            return self.client().activity(activity_id).await;
        }
        let limit = (2 * ours.len() + 10) as u32;
        let mut target = None;
        let mut seen = Vec::new();
        for a in self.client().recent_activities(limit).await? {
            if a.activity_id == activity_id {
                target = Some(a);
            } else if a.is_finished() && ours.contains(a.activity_id.as_str()) {
                seen.push(a);
            }
        }
        for a in seen {
            self.finished.insert(a.activity_id.clone(), a);
        }
        match target {
            Some(a) => Ok(a),
            None => {
                self.poll_together = false;
                self.client().activity(activity_id).await
            }
        }
    }

    /// Waits (a little) for the sends still on their way to be answered,
    /// so that their batches are recorded as sent or failed.
    pub(super) async fn await_postings(&mut self) {
        let wait = async {
            for f in &mut self.inflight {
                f.take_posting().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            tracing::warn!(run_id = %self.run.id, "sends still unanswered at shutdown");
        }
    }

    /// Takes the answers of sends that are done, so their activity ids
    /// are known to [`Self::poll`].
    pub(super) async fn collect_postings(&mut self) {
        for f in &mut self.inflight {
            if f.posting.as_ref().is_some_and(|h| h.0.is_finished()) {
                f.take_posting().await;
            }
        }
    }

    /// After the run stopped: the imports still with Constant Contact are
    /// awaited and recorded in order (sends not answered yet included: an
    /// answered send is an accepted import). One whose send failed is
    /// skipped, and the checkpoint stays before it; when Constant Contact
    /// can no longer be asked (quota, sign-in), the rest stay recorded as
    /// sent-but-unsettled batches for a resumed run.
    pub(super) async fn drain(&mut self) {
        self.stopping = true;
        while let Some(f) = self.inflight.pop_front() {
            let held = self.hold_checkpoint;
            let (seq, size) = (f.seq, f.contacts.len());
            match self.settle(f).await {
                Ok(()) => {
                    tracing::info!(
                        run_id = %self.run.id,
                        seq,
                        size,
                        "in-flight import settled after the stop"
                    );
                }
                Err(Stop::End(..)) | Err(Stop::Resume { .. }) if self.hold_checkpoint && !held => {
                    tracing::info!(
                        run_id = %self.run.id,
                        seq,
                        "a batch in flight was not accepted"
                    );
                }
                Err(Stop::End(..)) | Err(Stop::Resume { .. }) => {
                    tracing::warn!(
                        run_id = %self.run.id,
                        seq,
                        "in-flight imports left unsettled"
                    );
                    break;
                }
                Err(Stop::Lost) | Err(Stop::Db(_)) | Err(Stop::Shutdown) => break,
            }
        }
    }

    /// Imports still with Constant Contact after a stop that could not see
    /// them through (the drain could not poll: a revoked sign-in, say):
    /// their contacts are written down for the export's next run, which
    /// asks about them before it sends anything. Imports never accepted
    /// (no activity) are not: their contacts were not sent.
    pub(super) async fn hand_over(&mut self) {
        let mut left = std::mem::take(&mut self.inflight);
        let mut handed = 0usize;
        for f in &mut left {
            f.take_posting().await;
            if f.activity_id.is_empty() || f.contacts.is_empty() {
                continue;
            }
            match self.write_unsettled(f).await {
                Ok(true) => handed += f.contacts.len(),
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(run_id = %self.run.id, error = %e, "could not hand imports over");
                    return;
                }
            }
        }
        if handed > 0 {
            self.notes.push(format!(
                "{} contacts are in imports Constant Contact accepted but the run could not see finish; the export's next run checks them first and does not send them again if they went through.",
                group(handed as u64)
            ));
        }
    }

    pub(super) async fn write_unsettled(&self, f: &InFlight) -> Result<bool> {
        let mut conn = self.ex.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !self.lease.fence(&mut tx).await? {
            return Ok(false);
        }
        for chunk in f.contacts.chunks(500) {
            let sql = format!(
                "INSERT INTO unsettled_imports (export_id, run_id, seq, activity_id, profile_id, email, list_id, hash, config_hash) \
                 VALUES {} ON CONFLICT DO NOTHING",
                self.ex.db.placeholders().rows(chunk.len(), 9)
            );
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = q
                    .bind(self.export.id)
                    .bind(self.run.id)
                    .bind(f.seq)
                    .bind(&f.activity_id)
                    .bind(&*c.profile_id)
                    .bind(&*c.email)
                    .bind(&self.export.list_id)
                    .bind(hex(&c.hash))
                    .bind(&self.config_hash);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Imports an earlier run of the export handed over (see
    /// [`Self::hand_over`]): each is asked about (and waited for); the
    /// contacts of those that went through are recorded in the ledger as
    /// sent by that run, the others are sent again by this one.
    pub(super) async fn settle_handed_over(&mut self) -> Step<()> {
        let rows: Vec<(RunId, i64, String, i64)> = sqlx::query_as(
            "SELECT run_id, seq, activity_id, COUNT(*) FROM unsettled_imports WHERE export_id = $1 \
             GROUP BY run_id, seq, activity_id ORDER BY run_id, seq",
        )
        .bind(self.export.id)
        .fetch_all(self.ex.db.pool())
        .await?;
        let mut recorded = 0u64;
        for (run_id, seq, activity_id, size) in rows {
            let went_through = match self.poll(&activity_id).await {
                Ok(a) if a.is_finished() => a.state == "completed",
                Ok(_) => {
                    let (a, _) = self
                        .wait_import(seq, &activity_id, size as usize, None)
                        .await?;
                    a.state == "completed"
                }
                // Constant Contact no longer knows it: nothing to record.
                Err(CcError::NotFound(_)) => false,
                Err(e) => return Err(self.cc_failed("checking an earlier run's import", e).await),
            };
            let mut conn = self.ex.db.pool().acquire().await?;
            let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
            if !self.lease.fence(&mut tx).await? {
                return Err(Stop::Lost);
            }
            if went_through {
                ledger::record_handed_over(&mut tx, self.export.id, run_id, seq).await?;
                let outcome = format!("confirmed by run {}", self.run.id);
                batches::finish(&mut tx, run_id, seq, true, &outcome).await?;
                recorded += size as u64;
            }
            sqlx::query(
                "DELETE FROM unsettled_imports WHERE export_id = $1 AND run_id = $2 AND seq = $3",
            )
            .bind(self.export.id)
            .bind(run_id)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        if recorded > 0 {
            self.notes.push(format!(
                "{} contacts of an earlier run's imports were confirmed by Constant Contact and recorded as sent.",
                group(recorded)
            ));
        }
        Ok(())
    }

    pub(super) async fn settle_oldest(&mut self) -> Step<()> {
        match self.inflight.pop_front() {
            Some(f) => self.settle(f).await,
            None => Ok(()),
        }
    }

    /// Waits for a batch's import and hands its outcome to the writer.
    pub(super) async fn settle(&mut self, mut f: InFlight) -> Step<()> {
        let posted = match (f.posting.take(), f.posted.take()) {
            (Some(mut posting), _) => {
                let at = Instant::now();
                let posted = (&mut posting.0).await;
                self.time_sending += at.elapsed();
                Some(posted)
            }
            (None, posted) => posted,
        };
        if let Some(posted) = posted {
            match posted {
                Ok(Ok(Ok(activity))) => f.activity_id = activity.activity_id,
                Ok(Ok(Err(e))) => {
                    // Never accepted: the batches after it may have been,
                    // but the checkpoint must not pass its contacts.
                    self.hold_checkpoint = true;
                    return Err(self.cc_failed("sending an import batch", e).await);
                }
                Ok(Err(e)) => return Err(Stop::Db(e)),
                Err(e) => return Err(Stop::Db(Error::internal(format!("sending a batch: {e}")))),
            }
        }
        let waiting = f.contacts.len()
            + self
                .inflight
                .iter()
                .map(|x| x.contacts.len())
                .sum::<usize>();
        let expect = |x: &InFlight| match (x.sent_at, self.secs_per_contact) {
            (Some(at), Some(rate)) => {
                Some(at + Duration::from_secs_f64(rate * x.contacts.len() as f64))
            }
            _ => None,
        };
        let mut expected = expect(&f);
        if self.drained && self.poll_together {
            // Nothing more to send: one poll, when the newest import should
            // be done, answers for all of them.
            expected = self.inflight.iter().map(expect).fold(expected, Option::max);
        }
        let waited = Instant::now();
        let (activity, polls) = match self
            .wait_import(f.seq, &f.activity_id, waiting, expected)
            .await
        {
            Ok(done) => done,
            Err(stop) => {
                // Still with Constant Contact: first in line for a drain.
                self.inflight.push_front(f);
                return Err(stop);
            }
        };
        self.time_waiting += waited.elapsed();
        if let Some(at) = f.sent_at {
            // Seen finishing (after an unfinished poll), the time is known to
            // a poll; finished at the first look, it took at most this long.
            let rate = at.elapsed().as_secs_f64() * 0.9 / f.contacts.len().max(1) as f64;
            self.secs_per_contact = match self.secs_per_contact {
                Some(old) if polls <= 1 => Some(old.min(rate)),
                _ => Some(rate),
            };
        }
        let s = &activity.status;
        self.counts.sent += f.contacts.len() as u64;
        self.counts.accepted += s.person_count;
        self.counts.rejected += s.correctable_count + s.error_count;
        self.counts.unsubscribed += s.cannot_add_to_list_count;
        self.counts.batches_done += 1;
        self.count_calls().await;
        for e in &activity.activity_errors {
            let reason = e
                .as_str()
                .map(str::to_owned)
                .or_else(|| e.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| e.to_string());
            f.errors.push(ContactError {
                profile_id: String::new(),
                email: String::new(),
                kind: String::from("rejected"),
                field: String::new(),
                reason,
            });
        }
        let ok = activity.state == "completed";
        if !ok {
            self.partial.push(format!(
                "Import batch {} ended as {} at Constant Contact.",
                f.seq, activity.state
            ));
        }
        let outcome = serde_json::json!({
            "state": activity.state,
            "person_count": s.person_count,
            "correctable_count": s.correctable_count,
            "error_count": s.error_count,
            "cannot_add_to_list_count": s.cannot_add_to_list_count,
        })
        .to_string();
        let checkpoint = if self.hold_checkpoint {
            // Its contacts are in the ledger (written with the batch), the
            // stream's position and counts stay where they were.
            Checkpoint {
                phase: "sending",
                total: None,
                counts: self.counts.clone(),
                resume: merge(&self.checkpoint_counts, &self.counts),
                upto: None,
                errors: Vec::new(),
            }
        } else {
            self.checkpoint_counts = f.counts.clone();
            Checkpoint {
                phase: "sending",
                total: None,
                counts: self.counts.clone(),
                resume: merge(&f.counts, &self.counts),
                upto: Some(f.upto),
                errors: f.errors,
            }
        };
        let sent = match &self.writer {
            Some((tx, _)) => tx
                .send(Write::Batch {
                    seq: f.seq,
                    ok,
                    outcome,
                    contacts: f.contacts,
                    checkpoint,
                })
                .await
                .is_ok(),
            None => false,
        };
        if !sent {
            return self.writer_failed().await;
        }
        self.beat().await
    }
}
