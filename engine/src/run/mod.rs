//! One run, stage by stage, as the README's "how a run works" tells it.
//!
//! A worker claims a queued run and holds its lease while it works
//! ([`queue`]: heartbeat, attempts, when a stopped run resumes). The run
//! checks its export and connection and refreshes the tokens, counts the
//! segments' members (failing above the limit before sending anything) and
//! reads the account's unsubscribed contacts ([`prepare`]). It then streams
//! the members in key order, each profile once ([`members`]), decides each
//! one's fate without the database ([`classify`]: skipped for its data,
//! unchanged since the ledger's entry, or sent) and packs the contacts to
//! send into import batches, each written down before it is sent
//! ([`batches`], which also takes up an earlier attempt's batches on
//! resume). Imports stay with Constant Contact while the next batches are
//! read; they are polled to their end and settled in order, and a run that
//! stops hands the unsettled ones to the next attempt ([`inflight`]). A
//! settled batch writes its contacts to the export's ledger
//! ([`ledger`]) with the run's counts and checkpoint, beside the stream
//! and in order ([`writer`]). Contacts who left the
//! segments are removed last, behind the breaker ([`removal`]). A dry run
//! stops before any write and estimates what a real run would cost
//! ([`plan`]); every run ends with counts and a summary ([`counts`]).
//!
//! Crash safety: every batch is written down before it is sent and its
//! activity id right after; the run's counts and checkpoint (every profile
//! up to that key is settled) are saved after each batch. A resumed run
//! re-reads the stream from the start (to rebuild the duplicate-email set),
//! does nothing for profiles up to the checkpoint, and waits for a batch
//! that was already sent instead of sending it again.

mod batches;
mod classify;
mod counts;
mod inflight;
mod ledger;
mod members;
mod plan;
mod prepare;
mod queue;
mod removal;
mod settings;
mod stream;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connect::CcApp;
use crate::constant_contact::api::Activity;
use crate::constant_contact::ApiClient;
use crate::crypto::Cipher;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::exports::{self, Export};
use crate::runs::{self, Beat, ContactError, Counts, Mode, Run, Status};
use crate::{ConnectionId, ExportId, RunId, SegmentId};

use inflight::InFlight;
use writer::Write;

use counts::{merge, skip_reasons};
use plan::prior_rate;
use settings::{MAX_QUOTA_RESUMES, SENDS_AT_ONCE};

pub use classify::{is_valid_email, normalize_email};
pub use counts::group;
pub use plan::eta_seconds;
pub use settings::Settings;

/// What a run needs from the process it runs in.
#[derive(Clone)]
pub struct Executor {
    pub db: Db,
    pub cipher: Cipher,
    pub app: Option<CcApp>,
    /// This worker's name, unique per process.
    pub worker: String,
    pub settings: Settings,
    /// Set when the process shuts down: a run stops at its next safe
    /// point, writes what it settled and gives its lease up, so another
    /// worker resumes it at once instead of after the lease runs out.
    pub shutdown: Arc<AtomicBool>,
}

/// A spawned task that ends with its owner: a worker that stops (or is
/// aborted, as a crash is simulated) leaves nothing running behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a run stopped early.
enum Stop {
    /// The run ends with this status and message.
    End(Status, String),
    /// A cause that passes: the run goes back to the queue and is resumed
    /// from its checkpoint at `at` (Unix ms); `quota` when it waits for
    /// the daily quota.
    Resume {
        why: String,
        at: i64,
        quota: bool,
    },
    /// Another worker took the run over: write nothing more.
    Lost,
    /// The process is shutting down: give the run up for another worker.
    Shutdown,
    Db(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Db(e)
    }
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Db(Error::from(e))
    }
}

type Step<T> = std::result::Result<T, Stop>;

/// The state of one run while it executes.
struct Job<'a> {
    ex: &'a Executor,
    run: Run,
    /// This worker's claim on the run; every write is fenced by it.
    lease: runs::Lease,
    export: Export,
    client: Option<Arc<ApiClient>>,
    config_hash: String,
    counts: Counts,
    api_calls_before: u64,
    cancel: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    next_seq: i64,
    errors: Vec<ContactError>,
    started: Instant,
    /// Profiles read before this attempt (a resumed run starts later).
    read_at_start: u64,
    /// Profiles a second the export's last finished runs read, if any.
    prior_rate: Option<f64>,
    partial: Vec<String>,
    /// Things the summary says that are no problem.
    notes: Vec<String>,
    /// A dry run's estimate of the calls a real run would add.
    planned_calls: u64,
    /// Imports with Constant Contact, oldest first.
    inflight: VecDeque<InFlight>,
    /// How long Constant Contact took per contact on the last import: the
    /// next is first polled when it should be done (polls spend requests,
    /// and requests are limited to 4 a second).
    secs_per_contact: Option<f64>,
    /// The stream has ended: nothing more will be sent.
    drained: bool,
    /// Later imports seen finished while polling for an earlier one.
    finished: HashMap<String, Activity>,
    /// Status requests this run has made for its imports (see
    /// [`Settings::poll_budget`]).
    polls: u64,
    /// Whether the recent-activities page has shown the imports polled
    /// for; once it does not (another order, a busy account), imports are
    /// polled one by one for the rest of the run.
    poll_together: bool,
    /// A permit a send: a send holds its body until Constant Contact has
    /// it, and sends wait their turn for the request pace, so the stream
    /// (much faster than the pace) waits for a permit rather than pile up
    /// bodies. A send that hangs holds only its own.
    sending: Arc<tokio::sync::Semaphore>,
    /// Where the time went: waiting for sends to be answered, waiting for
    /// imports to finish.
    time_sending: Duration,
    time_waiting: Duration,
    /// The run has stopped (failed, cancelled): imports already with
    /// Constant Contact are being settled, and a cancel no longer
    /// interrupts that.
    stopping: bool,
    /// A batch's send failed: batches settled after it record their
    /// contacts in the ledger, but the checkpoint stays before the failed
    /// batch, whose contacts were never accepted.
    hold_checkpoint: bool,
    /// The stream's counts at the last checkpoint written.
    checkpoint_counts: Counts,
    writer: Option<(
        tokio::sync::mpsc::Sender<Write>,
        tokio::task::JoinHandle<Result<()>>,
    )>,
}

impl Executor {
    /// Runs `run_id`, which this worker has claimed. Returns when the run
    /// has a final status, or when the lease was lost.
    pub async fn execute(&self, run_id: RunId) -> Result<()> {
        let Some(run) = runs::get(&self.db, run_id).await? else {
            return Ok(());
        };
        let cancel = Arc::new(AtomicBool::new(run.cancel_requested));
        let lost = Arc::new(AtomicBool::new(false));
        let held = runs::Lease {
            run_id,
            worker: self.worker.clone(),
            attempt: run.attempts,
        };
        let beat = {
            let (db, held, lease) = (self.db.clone(), held.clone(), self.settings.lease_ms);
            let (cancel, lost) = (cancel.clone(), lost.clone());
            tokio::spawn(async move {
                let every = Duration::from_millis((lease / 3).max(50) as u64);
                loop {
                    tokio::time::sleep(every).await;
                    match runs::heartbeat(&db, &held, lease).await {
                        Ok(Beat::Held { cancel_requested }) => {
                            if cancel_requested {
                                cancel.store(true, Ordering::Relaxed);
                            }
                        }
                        Ok(Beat::Lost) => {
                            lost.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => tracing::warn!(run_id = %run_id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        // The heartbeat ends with this future, however it ends (a worker
        // task that is aborted must look dead, and its lease run out).
        let _beat = AbortOnDrop(beat);
        self.execute_inner(run, held, cancel, lost).await
    }

    async fn execute_inner(
        &self,
        run: Run,
        lease: runs::Lease,
        cancel: Arc<AtomicBool>,
        lost: Arc<AtomicBool>,
    ) -> Result<()> {
        let run_id = run.id;
        let export = exports::get(&self.db, run.export_id)
            .await?
            .ok_or(Error::NotFound("The export"))?;
        // A resumed run counts on from its checkpoint: what was read after
        // it is read (and counted) again.
        let mut counts = if run.mode == Mode::DryRun {
            Counts::default()
        } else {
            run.resume_counts
                .clone()
                .unwrap_or_else(|| run.counts.clone())
        };
        if run.mode != Mode::DryRun && run.attempts + run.resumes > 1 {
            let checkpoint = run.checkpoint.as_deref().unwrap_or("");
            runs::drop_errors_after(&self.db, run_id, checkpoint).await?;
            // Batches settled past the checkpoint (held behind a batch
            // whose send failed) are not made again from the stream.
            let settled = batches::settled_past(&self.db, run_id, checkpoint).await?;
            counts.batches += settled as u64;
        }
        let prior_rate = prior_rate(&runs::for_export(&self.db, run.export_id, 10).await?);
        let read_at_start = counts.read;
        let next_seq = batches::next_seq(&self.db, run_id).await?;
        let mut job = Job {
            ex: self,
            config_hash: export.config_hash(),
            api_calls_before: counts.api_calls,
            checkpoint_counts: counts.clone(),
            lease: lease.clone(),
            counts,
            export,
            run,
            client: None,
            cancel,
            lost,
            next_seq,
            errors: Vec::new(),
            started: Instant::now(),
            read_at_start,
            prior_rate,
            partial: Vec::new(),
            notes: Vec::new(),
            planned_calls: 0,
            inflight: VecDeque::new(),
            secs_per_contact: None,
            drained: false,
            finished: HashMap::new(),
            polls: 0,
            poll_together: true,
            sending: Arc::new(tokio::sync::Semaphore::new(SENDS_AT_ONCE)),
            time_sending: Duration::ZERO,
            time_waiting: Duration::ZERO,
            stopping: false,
            hold_checkpoint: false,
            writer: None,
        };
        let mut result = job.go().await;
        // The most times a run may go back to the queue for this cause.
        let resume_limit = |quota: bool| {
            if quota {
                MAX_QUOTA_RESUMES
            } else {
                self.settings.max_resumes
            }
        };
        // A run resumed as often as it may be ends here instead.
        if let Err(Stop::Resume { why, quota, .. }) = &result {
            let limit = resume_limit(*quota);
            if job.run.resumes >= limit {
                result = Err(Stop::End(
                    Status::Failed,
                    format!("{why}. It was resumed {limit} times and did not get through."),
                ));
            }
        }
        // A run that stops by itself (failure, cancel) first settles the
        // imports Constant Contact already accepted: they were sent, and
        // the ledger must say so, or the next run sends them again. (A run
        // that goes back to the queue leaves them to its resumed self,
        // which polls the batches recorded as sent.)
        if let Err(Stop::End(..)) = &result {
            job.drain().await;
            job.hand_over().await;
        }
        // Whatever happened, what was settled is written before the end.
        if let Err(e) = job.close_writer().await {
            if result.is_ok() {
                result = Err(e);
            }
        }
        job.count_calls().await;
        if let Err(Stop::Resume { why, at, quota }) = &result {
            let limit = resume_limit(*quota);
            let sent = group(job.counts.sent);
            let when = crate::time::format_ms(*at);
            let message = if *quota {
                format!("Waiting for the daily Constant Contact quota: {why}. Resumes at {when}; {sent} contacts were sent so far.")
            } else {
                format!(
                        "Waiting to resume: {why}. Resumes at {when} (resume {} of {limit}); {sent} contacts were sent so far.",
                        job.run.resumes + 1
                    )
            };
            if let Err(e) = job.flush_errors().await {
                tracing::error!(run_id = %run_id, error = %e, "could not store contact errors");
            }
            job.store_tokens().await;
            // Counts as of the checkpoint: the resumed run reads on
            // from there and counts the rest itself.
            let counts = merge(&job.checkpoint_counts, &job.counts);
            if lease.requeue(&self.db, *at, &message, &counts).await? {
                tracing::info!(run_id = %run_id, %message, "run goes back to the queue");
            }
            return Ok(());
        }
        let (status, message) = match result {
            Ok(()) => {
                let c = &job.counts;
                let data_skips =
                    c.skipped_no_email + c.skipped_invalid_email + c.skipped_invalid_value;
                if !job.dry() && data_skips > 0 && data_skips == c.read && c.removals == 0 {
                    // Every profile was skipped for its data: nothing of the
                    // export reached Constant Contact, which is no success.
                    (
                        Status::Failed,
                        format!(
                            "None of the {} profiles could be sent: {}. Check the export's Email mapping and the profiles' data.",
                            group(c.read),
                            skip_reasons(c)
                        ),
                    )
                } else {
                    // A dry run planned: it did what it was asked.
                    let status = if job.dry()
                        || job.partial.is_empty()
                            && c.rejected == 0
                            && c.unsubscribed == 0
                            && data_skips == 0
                    {
                        Status::Succeeded
                    } else {
                        Status::PartiallySucceeded
                    };
                    (status, job.summary())
                }
            }
            Err(Stop::End(Status::Cancelled, m)) if m.is_empty() => {
                let c = &job.counts;
                (
                    Status::Cancelled,
                    format!(
                        "Cancelled after sending {} contacts in {} batches; nothing more was sent.",
                        group(c.sent),
                        group(c.batches_done)
                    ),
                )
            }
            Err(Stop::End(Status::Failed, message)) if job.counts.batches > 0 => (
                Status::Failed,
                format!(
                    "{message} {} contacts were sent before it stopped; run it again to send the rest.",
                    group(job.counts.sent)
                ),
            ),
            Err(Stop::End(status, message)) => (status, message),
            Err(Stop::Resume { why, .. }) => (Status::Failed, why),
            Err(Stop::Lost) => {
                tracing::warn!(run_id = %run_id, "lease lost; another worker resumes this run");
                return Ok(());
            }
            Err(Stop::Shutdown) => {
                // The sends on their way get their answers (an answered
                // batch is polled by whoever resumes the run, an unanswered
                // one is sent again), then the run is free at once.
                job.await_postings().await;
                if lease.release(&self.db).await? {
                    tracing::info!(run_id = %run_id, "shutting down: the run is left for another worker");
                }
                return Ok(());
            }
            Err(Stop::Db(e)) => {
                tracing::error!(run_id = %run_id, error = %e, "run failed on an internal error");
                (
                    Status::Failed,
                    format!("The run stopped on an internal error: {e} Run it again to continue where it stopped."),
                )
            }
        };
        // What a stopped run handed over is said however it stopped (the
        // summary of a finished run says it already).
        let message = if status != Status::Succeeded
            && status != Status::PartiallySucceeded
            && !job.notes.is_empty()
        {
            format!("{message} {}", job.notes.join(" "))
        } else {
            message
        };
        if let Err(e) = job.flush_errors().await {
            tracing::error!(run_id = %run_id, error = %e, "could not store contact errors");
        }
        job.store_tokens().await;
        // The run ends here: a batch still marked as on its way never got
        // an answer.
        batches::close_unanswered(&self.db, &lease).await?;
        if !runs::finish(&self.db, &lease, status, Some(&message), &job.counts).await? {
            tracing::warn!(run_id = %run_id, "the run was taken over before it finished here");
        }
        tracing::info!(run_id = %run_id, status = status.as_str(), %message, "run finished");
        // Many new ledger rows: fresh statistics, so the next run's plans
        // know the table's size.
        if job.counts.sent >= crate::db::BULK_ROWS as u64 {
            self.db.refresh_statistics(&["export_ledger"]).await;
        }
        Ok(())
    }
}

impl Job<'_> {
    fn dry(&self) -> bool {
        self.run.mode == Mode::DryRun
    }

    fn check(&self) -> Step<()> {
        if self.lost.load(Ordering::Relaxed) {
            return Err(Stop::Lost);
        }
        if self.ex.shutdown.load(Ordering::Relaxed) {
            return Err(Stop::Shutdown);
        }
        if self.cancel.load(Ordering::Relaxed) && !self.stopping {
            // The message is written when the run ends, with what was sent.
            return Err(Stop::End(Status::Cancelled, String::new()));
        }
        Ok(())
    }

    fn fail(message: impl Into<String>) -> Stop {
        Stop::End(Status::Failed, message.into())
    }

    async fn go(&mut self) -> Step<()> {
        self.check()?;
        self.prepare().await?;
        self.save("planning", None, None).await?;
        let total = self.count().await?;
        self.run.total = Some(total);
        let suppressed = self.sync_suppressions().await?;
        if !self.dry() {
            self.settle_handed_over().await?;
        }
        self.save("sending", Some(total), None).await?;
        self.send_all(&suppressed).await?;
        if self.export.remove_left {
            self.save("removing", None, None).await?;
            self.remove_left().await?;
        }
        if self.dry() {
            self.plan_estimate();
        }
        self.save("finishing", None, None).await?;
        Ok(())
    }
}
