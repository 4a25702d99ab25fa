//! Executes one run: plan, stream the members of the export's segments in
//! key order, map and validate them, send new and changed contacts in
//! import batches, remove contacts who left, and record everything.
//!
//! Crash safety: every batch is written down before it is sent and its
//! activity id right after; the run's counts and checkpoint (every profile
//! up to that key is settled) are saved after each batch. A resumed run
//! re-reads the stream from the start (to rebuild the duplicate-email set),
//! does nothing for profiles up to the checkpoint, and waits for a batch
//! that was already sent instead of sending it again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::connect::{self, CcApp};
use crate::connections::{self, Status as ConnectionStatus};
use crate::constant_contact::api::Activity;
use crate::constant_contact::batch::{Batch, BatchBuilder, ImportContact, MAX_BYTES};
use crate::constant_contact::{ApiClient, CcError, RetryPolicy};
use crate::crypto::Cipher;
use crate::db::{col, Db, TypedPool};
use crate::error::{Error, Result};
use crate::exports::{self, hex, is_hex_of, Export};
use crate::runs::{self, Beat, ContactError, Counts, Mode, Run, Status};
use crate::time::now_ms;
use crate::users;

/// How runs behave; the defaults are the product's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// At most this many profiles per run (deduplicated by email).
    pub max_profiles: u64,
    /// Members read per query.
    pub page_size: i64,
    /// Contacts per import batch (at most Constant Contact's 40,000).
    pub batch_contacts: usize,
    pub poll_every: Duration,
    pub activity_timeout: Duration,
    /// How long a claim lasts without a heartbeat.
    pub lease_ms: i64,
    /// Profiles between checkpoints while nothing is being sent.
    pub checkpoint_every: u64,
    /// Spacing between Constant Contact requests (the client's default,
    /// under 4 a second, when `None`).
    pub api_interval: Option<Duration>,
    /// Retries of failed requests (the client's default when `None`).
    pub retry: Option<RetryPolicy>,
    /// Import batches with Constant Contact at once: the next batches are
    /// read and sent while earlier ones are processed.
    pub in_flight: usize,
    /// Rounds of attempts at sending one import batch: when a round's
    /// retries all fail on a cause that passes (a server error, a network
    /// failure, throttling), the batch is tried again after `round_pause`.
    pub import_rounds: u32,
    pub round_pause: Duration,
    /// A run stopped by a cause that passes is resumed after this (doubled
    /// on each resume, at most 30 minutes), at most `max_resumes` times.
    pub resume_after: Duration,
    pub max_resumes: i64,
    /// Status requests a run may spend on its imports: this many, plus 20
    /// a batch. Past it, the run goes back to the queue rather than spend
    /// the account's daily quota on an import that does not move.
    pub poll_budget: u64,
    /// The longest pause between two looks at an import that is slow
    /// (the pause grows by half each time, from `poll_every`).
    pub max_poll_every: Duration,
}

/// A run waiting for the daily quota is resumed at most this many times
/// (days) before it fails.
const MAX_QUOTA_RESUMES: i64 = 7;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_profiles: 1_000_000,
            page_size: 5_000,
            batch_contacts: crate::constant_contact::batch::MAX_CONTACTS,
            // Constant Contact allows 4 requests a second per application,
            // for all its runs and pages together: poll gently (the first
            // poll waits until an import should be done anyway).
            poll_every: Duration::from_secs(1),
            activity_timeout: Duration::from_secs(30 * 60),
            lease_ms: 30_000,
            checkpoint_every: 20_000,
            api_interval: None,
            retry: None,
            in_flight: 8,
            import_rounds: 3,
            round_pause: Duration::from_secs(30),
            resume_after: Duration::from_secs(60),
            max_resumes: 5,
            poll_budget: 500,
            max_poll_every: Duration::from_secs(60),
        }
    }
}

/// Sends on their way at once (waiting for the request pace or for the
/// answer): one being sent and the next.
const SENDS_AT_ONCE: usize = 2;

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

/// A plain syntax check: one `@`, a non-empty local part, a dotted domain
/// of letters, digits and hyphens, no spaces.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || local.contains('@') {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii());
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
    local_ok && domain_ok
}

/// The normalized form duplicates are found by.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn email_key(normalized: &str) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    normalized.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (normalized, 0x5eed_u32).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// The digest of what is sent for a contact.
fn contact_hash(contact: &[(&str, &str)]) -> [u8; 16] {
    let mut h = Sha256::new();
    for (k, v) in contact {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let mut hash = [0; 16];
    hash.copy_from_slice(&h.finalize()[..16]);
    hash
}

/// A member of the export's segments, with what this export last sent
/// for it.
struct Member {
    key: String,
    attrs: String,
    /// The ledger's (hash, config hash), if this export sent it before.
    sent: Option<(String, String)>,
    /// Whether the ledger entry was written by this run (an earlier
    /// attempt of it): 0 no, 1 as a changed contact, 2 as a new one.
    by_this_run: i64,
}

/// Members of several segments in key order, each profile once, with its
/// attributes and its ledger entry; paged, so a million members are never
/// held at once.
struct Members {
    db: Db,
    export_id: i64,
    run_id: i64,
    page: i64,
    cursors: Vec<Cursor>,
}

/// A page of members, being read beside the stream.
type Reading = AbortOnDrop<Result<Vec<Member>>>;

struct Cursor {
    segment_id: i64,
    after: String,
    buf: VecDeque<Member>,
    /// The next page, read while this one is used.
    next: Option<Reading>,
    done: bool,
}

/// A page of members with their ledger entries. The ledger is joined in
/// rather than read as a stream of its own, and the query runs on the
/// backend's own pool: a re-run reads a million rows, and each row that
/// crosses from SQLite's thread and through `Any` costs more than the
/// join's lookup.
const MEMBERS_PAGE: &str = "SELECT m.profile_id, p.attributes, l.hash, l.config_hash, \
     CAST(CASE WHEN l.run_id = $5 THEN (CASE WHEN l.added_by_run = $5 THEN 2 ELSE 1 END) ELSE 0 END AS BIGINT) \
     FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
     LEFT JOIN export_ledger l ON l.export_id = $1 AND l.profile_id = m.profile_id \
     WHERE m.segment_id = $2 AND m.profile_id > $3 ORDER BY m.profile_id LIMIT $4";

type MemberRow = (String, String, Option<String>, Option<String>, i64);

/// [`MEMBERS_PAGE`] on either backend's pool: (export id, segment id,
/// after this key, page size, run id).
async fn member_rows<DB>(
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
    fn new(db: Db, export_id: i64, run_id: i64, segment_ids: &[i64], page: i64) -> Self {
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

    fn read_page(
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

    async fn next(&mut self) -> Result<Option<Member>> {
        let (db, export_id, page) = (&self.db, (self.export_id, self.run_id), self.page);
        for c in &mut self.cursors {
            if c.buf.is_empty() && !c.done {
                // The page read ahead, or this one now.
                let mut reading = c.next.take().unwrap_or_else(|| {
                    Self::read_page(db, export_id, c.segment_id, &c.after, page)
                });
                let rows = (&mut reading.0)
                    .await
                    .map_err(|e| Error::Internal(format!("reading a page: {e}")))??;
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

/// A contact in a batch: what the ledger records once the batch is done.
#[derive(Clone)]
struct Sent {
    profile_id: Box<str>,
    email: Box<str>,
    /// Of the mapped values; the ledger keeps it in hex.
    hash: [u8; 16],
}

/// An import batch with Constant Contact whose outcome is not recorded
/// yet: sent by this attempt, or by an earlier one that stopped.
struct InFlight {
    seq: i64,
    /// The send, still going on beside the stream (this attempt's batches).
    posting: Option<AbortOnDrop<Posted>>,
    /// A send's answer, taken from `posting` before the batch is settled.
    posted: Option<std::result::Result<Posted, tokio::task::JoinError>>,
    activity_id: String,
    /// When this attempt sent it (not known for a resumed batch).
    sent_at: Option<Instant>,
    /// The batch's first and last profiles.
    first_key: String,
    last_key: String,
    contacts: Vec<Sent>,
    /// Every profile up to this key is settled once the batch is.
    upto: String,
    /// The stream's counts at the batch's boundary.
    counts: Counts,
    /// Problems of the profiles up to `upto`, not written yet.
    errors: Vec<ContactError>,
}

impl InFlight {
    /// Waits for the send's answer and keeps it.
    async fn take_posting(&mut self) {
        if let Some(mut h) = self.posting.take() {
            match (&mut h.0).await {
                Ok(Ok(Ok(a))) => self.activity_id = a.activity_id,
                other => self.posted = Some(other),
            }
        }
    }
}

/// What sending a batch came to: Constant Contact's answer, recorded.
type Posted = Result<std::result::Result<Activity, CcError>>;

/// A checkpoint: progress that holds up to `upto`.
struct Checkpoint {
    phase: &'static str,
    total: Option<i64>,
    /// The live counts (the run page's).
    counts: Counts,
    /// The counts a later attempt resumes from (see [`runs::Progress`]).
    resume: Counts,
    upto: Option<String>,
    errors: Vec<ContactError>,
}

impl Checkpoint {
    fn progress(&self) -> runs::Progress<'_> {
        runs::Progress {
            phase: self.phase,
            total: self.total,
            counts: &self.counts,
            resume: &self.resume,
            checkpoint: self.upto.as_deref(),
        }
    }
}

enum Write {
    /// A finished import: the ledger for its contacts, its outcome, then
    /// its checkpoint.
    Batch {
        seq: i64,
        ok: bool,
        outcome: String,
        contacts: Vec<Sent>,
        checkpoint: Checkpoint,
    },
    Progress(Checkpoint),
}

/// Writes finished batches and checkpoints in order, beside the stream:
/// reading the next batch does not wait for the last one's ledger.
struct Writer {
    db: Db,
    run_id: i64,
    lease: runs::Lease,
    export_id: i64,
    list_id: String,
    config_hash: String,
    lost: Arc<AtomicBool>,
}

impl Writer {
    async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Write>) -> Result<()> {
        while let Some(msg) = rx.recv().await {
            match msg {
                Write::Batch {
                    seq,
                    ok,
                    outcome,
                    contacts,
                    checkpoint,
                } => self.batch(seq, ok, &outcome, &contacts, checkpoint).await?,
                Write::Progress(checkpoint) => self.progress(checkpoint).await?,
            }
        }
        Ok(())
    }

    /// Progress and the errors found on the way, in one transaction that
    /// writes nothing once another worker owns the run.
    async fn progress(&self, cp: Checkpoint) -> Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !runs::save_progress_on(&mut tx, &self.lease, cp.progress()).await? {
            self.lost.store(true, Ordering::Relaxed);
            return Ok(());
        }
        runs::add_errors_on(&mut tx, &self.db, self.run_id, &cp.errors).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A settled batch: its contacts in the ledger, its outcome, its
    /// errors and the run's counts and checkpoint, in one transaction (a
    /// crash between them would leave the ledger ahead of the counts, and
    /// the attempt that takes over would count those contacts again).
    async fn batch(
        &self,
        seq: i64,
        ok: bool,
        outcome: &str,
        contacts: &[Sent],
        cp: Checkpoint,
    ) -> Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !self.lease.fence(&mut tx).await? {
            // Another worker owns the run now: not a word more from here.
            self.lost.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if ok {
            let now = now_ms();
            for chunk in contacts.chunks(1000) {
                let sql = format!(
                    "INSERT INTO export_ledger (export_id, profile_id, email, list_id, hash, config_hash, run_id, sent_at, added_by_run) VALUES {} \
                     ON CONFLICT (export_id, profile_id) DO UPDATE SET email = excluded.email, list_id = excluded.list_id, \
                     hash = excluded.hash, config_hash = excluded.config_hash, run_id = excluded.run_id, sent_at = excluded.sent_at",
                    self.db.placeholders().rows(chunk.len(), 9)
                );
                let mut q = sqlx::query(&sql);
                for c in chunk {
                    q = q
                        .bind(self.export_id)
                        .bind(&*c.profile_id)
                        .bind(&*c.email)
                        .bind(&self.list_id)
                        .bind(hex(&c.hash))
                        .bind(&self.config_hash)
                        .bind(self.run_id)
                        .bind(now)
                        .bind(self.run_id);
                }
                q.execute(&mut *tx).await?;
            }
        }
        sqlx::query(
            "UPDATE run_batches SET state = $1, outcome = $2 WHERE run_id = $3 AND seq = $4",
        )
        .bind(if ok { "done" } else { "failed" })
        .bind(outcome)
        .bind(self.run_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        runs::save_progress_on(&mut tx, &self.lease, cp.progress()).await?;
        runs::add_errors_on(&mut tx, &self.db, self.run_id, &cp.errors).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The stream's counts at a checkpoint, with Constant Contact's outcome
/// counts as they are now (batches settle in order).
fn merge(stream: &Counts, now: &Counts) -> Counts {
    Counts {
        sent: now.sent,
        accepted: now.accepted,
        rejected: now.rejected,
        unsubscribed: now.unsubscribed,
        batches_done: now.batches_done,
        api_calls: now.api_calls,
        quota_left: now.quota_left,
        eta_seconds: now.eta_seconds,
        ..stream.clone()
    }
}

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
    pub async fn execute(&self, run_id: i64) -> Result<()> {
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
                        Err(e) => tracing::warn!(run_id, error = %e, "heartbeat failed"),
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
            let settled: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM run_batches WHERE run_id = $1 AND kind = 'import' \
                 AND state = 'done' AND last_key > $2",
            )
            .bind(run_id)
            .bind(checkpoint)
            .fetch_one(self.db.pool())
            .await?;
            counts.batches += settled as u64;
        }
        let prior_rate = prior_rate(&runs::for_export(&self.db, run.export_id, 10).await?);
        let read_at_start = counts.read;
        let next_seq: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM run_batches WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_one(self.db.pool())
        .await?;
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
                tracing::error!(run_id, error = %e, "could not store contact errors");
            }
            job.store_tokens().await;
            // Counts as of the checkpoint: the resumed run reads on
            // from there and counts the rest itself.
            let counts = merge(&job.checkpoint_counts, &job.counts);
            if lease.requeue(&self.db, *at, &message, &counts).await? {
                tracing::info!(run_id, %message, "run goes back to the queue");
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
                tracing::warn!(run_id, "lease lost; another worker resumes this run");
                return Ok(());
            }
            Err(Stop::Shutdown) => {
                // The sends on their way get their answers (an answered
                // batch is polled by whoever resumes the run, an unanswered
                // one is sent again), then the run is free at once.
                job.await_postings().await;
                if lease.release(&self.db).await? {
                    tracing::info!(run_id, "shutting down: the run is left for another worker");
                }
                return Ok(());
            }
            Err(Stop::Db(e)) => {
                tracing::error!(run_id, error = %e, "run failed on an internal error");
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
            tracing::error!(run_id, error = %e, "could not store contact errors");
        }
        job.store_tokens().await;
        // The run ends here: a batch still marked as on its way never got
        // an answer.
        {
            let mut conn = self.db.pool().acquire().await?;
            let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
            if lease.fence(&mut tx).await? {
                sqlx::query(
                    "UPDATE run_batches SET state = 'failed', outcome = 'never answered by Constant Contact' \
                     WHERE run_id = $1 AND state = 'sending'",
                )
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        if !runs::finish(&self.db, &lease, status, Some(&message), &job.counts).await? {
            tracing::warn!(run_id, "the run was taken over before it finished here");
        }
        tracing::info!(run_id, status = status.as_str(), %message, "run finished");
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

    fn summary(&self) -> String {
        let c = &self.counts;
        let mut parts = if self.dry() {
            vec![format!(
                "Dry run: would send {} contacts ({} new, {} changed, {} unchanged but sent again) in {} batches; {} unchanged; {} skipped; {} to remove.",
                c.adds + c.updates + c.resent,
                c.adds,
                c.updates,
                c.resent,
                c.batches,
                c.unchanged,
                c.skipped(),
                c.removals
            )]
        } else {
            let resent = if c.resent > 0 {
                format!(", {} sent again unchanged", group(c.resent))
            } else {
                String::new()
            };
            vec![format!(
                "Sent {} contacts in {} batches ({} new, {} changed{resent}); {} unchanged; {} skipped; {} removed.",
                group(c.sent),
                group(c.batches_done),
                group(c.adds),
                group(c.updates),
                group(c.unchanged),
                group(c.skipped()),
                group(c.removed)
            )]
        };
        let data_skips = c.skipped_no_email + c.skipped_invalid_email + c.skipped_invalid_value;
        if data_skips > 0 {
            parts.push(format!("Skipped for their data: {}.", skip_reasons(c)));
        }
        if c.rejected > 0 {
            parts.push(format!("Constant Contact rejected {}.", c.rejected));
        }
        if c.unsubscribed > 0 {
            parts.push(format!(
                "{} had unsubscribed and were not added to the list.",
                c.unsubscribed
            ));
        }
        parts.extend(self.partial.iter().cloned());
        parts.extend(self.notes.iter().cloned());
        parts.join(" ")
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

    fn client(&self) -> &ApiClient {
        // Set in `prepare` before any use.
        self.client.as_deref().expect("client prepared")
    }

    /// Turns a Constant Contact error into the run's end, and keeps the
    /// connection's status true.
    async fn cc_failed(&self, what: &str, e: CcError) -> Stop {
        let name = self.export.connection_name.clone().unwrap_or_default();
        let conn_id = self.export.connection_id.unwrap_or_default();
        match e {
            CcError::NeedsReauthentication | CcError::Unauthorized => {
                let _ = connections::set_status(
                    &self.ex.db,
                    conn_id,
                    ConnectionStatus::NeedsReauthentication,
                    Some("Constant Contact no longer accepts this connection's sign-in."),
                )
                .await;
                Self::fail(format!(
                    "The connection \"{name}\" needs to be re-authenticated by an administrator ({what})."
                ))
            }
            CcError::QuotaExceeded => Stop::Resume {
                why: format!("The daily Constant Contact API quota is used up ({what})"),
                at: next_quota_day(),
                quota: true,
            },
            other if other.is_retryable() => Stop::Resume {
                why: format!("{what}: {other}"),
                at: self.resume_at(),
                quota: false,
            },
            other => Self::fail(format!("{what}: {other}")),
        }
    }

    /// When a run stopped by a passing cause is resumed: later each time.
    fn resume_at(&self) -> i64 {
        let base = self.ex.settings.resume_after.as_millis() as i64;
        let factor = 1i64 << self.run.resumes.clamp(0, 10);
        now_ms() + (base * factor).min(30 * 60 * 1000)
    }

    async fn store_tokens(&self) {
        let (Some(client), Some(id)) = (&self.client, self.export.connection_id) else {
            return;
        };
        let now = client.tokens().await;
        match connections::tokens(&self.ex.db, &self.ex.cipher, id).await {
            Ok(stored) if stored.access_token == now.access_token => {}
            _ => {
                if let Err(e) =
                    connections::store_tokens(&self.ex.db, &self.ex.cipher, None, id, &now).await
                {
                    tracing::error!(error = %e, "could not store refreshed tokens");
                }
            }
        }
    }

    async fn count_calls(&mut self) {
        if let Some(client) = &self.client {
            self.counts.api_calls =
                self.api_calls_before + client.requests_sent() + self.planned_calls;
            self.counts.quota_left = client.quota_left().await;
        }
    }

    async fn save(
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

    fn open_writer(&mut self) {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let writer = Writer {
            db: self.ex.db.clone(),
            run_id: self.run.id,
            lease: self.lease.clone(),
            export_id: self.export.id,
            list_id: self.export.list_id.clone(),
            config_hash: self.config_hash.clone(),
            lost: self.lost.clone(),
        };
        self.writer = Some((tx, tokio::spawn(writer.run(rx))));
    }

    /// Waits for everything sent to the writer to be written.
    async fn close_writer(&mut self) -> Step<()> {
        let Some((tx, handle)) = self.writer.take() else {
            return Ok(());
        };
        drop(tx);
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Stop::Db(e)),
            Err(e) => return Err(Stop::Db(Error::Internal(format!("run writer: {e}")))),
        }
        if self.lost.load(Ordering::Relaxed) {
            return Err(Stop::Lost);
        }
        Ok(())
    }

    /// The writer stopped early: its error ends the run.
    async fn writer_failed(&mut self) -> Step<()> {
        self.close_writer().await?;
        Err(Stop::Db(Error::Internal(String::from(
            "the run's writer stopped",
        ))))
    }

    async fn flush_errors(&mut self) -> Result<()> {
        let errors = std::mem::take(&mut self.errors);
        runs::add_errors(&self.ex.db, self.run.id, &errors).await
    }

    fn skip(&mut self, profile_id: &str, email: &str, kind: &str, field: &str, reason: String) {
        self.errors.push(ContactError {
            profile_id: profile_id.to_owned(),
            email: email.to_owned(),
            kind: kind.to_owned(),
            field: field.to_owned(),
            reason,
        });
    }

    /// Step 1: the export, its connection and a client with fresh tokens.
    async fn prepare(&mut self) -> Step<()> {
        let e = &self.export;
        if e.removed_at.is_some() {
            return Err(Stop::End(
                Status::Cancelled,
                String::from("The export was removed; nothing was sent."),
            ));
        }
        if !e.enabled {
            return Err(Self::fail(format!(
                "The export is disabled: {}",
                e.disabled_reason.as_deref().unwrap_or("")
            )));
        }
        let Some(conn_id) = e.connection_id else {
            return Err(Self::fail("The export's connection was removed."));
        };
        let connection = connections::get(&self.ex.db, conn_id)
            .await?
            .ok_or_else(|| Self::fail("The export's connection was removed."))?;
        if connection.status != ConnectionStatus::Authorized {
            return Err(Self::fail(format!(
                "The connection \"{}\" is not authorized ({}); an administrator must re-authenticate it.",
                connection.display_name,
                connection.status_reason.as_deref().unwrap_or("needs re-authentication")
            )));
        }
        let owner = match e.owner_id {
            Some(id) => users::get_user(&self.ex.db, id).await?,
            None => None,
        };
        match owner {
            Some(o) if o.active && connection.usable_by.allows(o.role) => {}
            Some(o) => {
                return Err(Self::fail(format!(
                    "The export's owner ({}) may no longer use the connection \"{}\"; an administrator can edit the export to take it over.",
                    o.email, connection.display_name
                )))
            }
            None => {
                return Err(Self::fail(
                    "The export has no owner who may use its connection.",
                ))
            }
        }
        let Some(app) = &self.ex.app else {
            return Err(Self::fail(
                "Constant Contact is not configured on this server (CC_CLIENT_ID, CC_CLIENT_SECRET).",
            ));
        };
        let mut client = connect::api_client(&self.ex.db, &self.ex.cipher, app, conn_id)
            .await
            .map_err(|e| Self::fail(e.to_string()))?;
        if let Some(i) = self.ex.settings.api_interval {
            client = client.with_interval(i);
        }
        if let Some(r) = self.ex.settings.retry {
            client = client.with_retry(r);
        }
        // Fresh tokens for the expected length of the run.
        if let Err(e) = client
            .refresh_if_expiring(Duration::from_secs(15 * 60))
            .await
        {
            self.client = Some(Arc::new(client));
            return Err(self.cc_failed("refreshing the access token", e).await);
        }
        self.client = Some(Arc::new(client));
        Ok(())
    }

    /// Step 2: the 1,000,000 limit, before anything is sent.
    async fn count(&mut self) -> Step<i64> {
        let ids = &self.export.segment_ids;
        if ids.is_empty() {
            return Err(Self::fail("The export has no segments."));
        }
        let profiles = exports::count_profiles(&self.ex.db, ids).await?;
        let max = self.ex.settings.max_profiles;
        if profiles as u64 <= max {
            return Ok(profiles);
        }
        // Over the limit by profile: count distinct emails before refusing.
        let source = self.export.email_source().unwrap_or("email").to_owned();
        let mut members = Members::new(
            self.ex.db.clone(),
            self.export.id,
            self.run.id,
            ids,
            self.ex.settings.page_size,
        );
        let mut seen = HashSet::new();
        while let Some(member) = members.next().await? {
            let email = Attrs::parse(&member.attrs)
                .get(&source)
                .map(normalize_email)
                .unwrap_or_default();
            if !email.is_empty() {
                seen.insert(email_key(&email));
            }
        }
        let n = seen.len() as u64;
        if n > max {
            return Err(Self::fail(format!(
                "The selected segments contain {} profiles; an export can send at most {}.",
                group(n),
                group(max)
            )));
        }
        Ok(profiles)
    }

    /// Step 6: contacts Constant Contact has as unsubscribed.
    async fn sync_suppressions(&mut self) -> Step<HashSet<String>> {
        let conn_id = self.export.connection_id.unwrap_or_default();
        let mut found = Vec::new();
        let result = self
            .client()
            .for_each_contact("unsubscribed", None, |page| {
                found.extend(
                    page.into_iter()
                        .map(|c| normalize_email(&c.email_address.address)),
                );
            })
            .await;
        if let Err(e) = result {
            return Err(self.cc_failed("reading unsubscribed contacts", e).await);
        }
        let now = now_ms();
        for chunk in found.chunks(500) {
            let sql = format!(
                "INSERT INTO suppressions (connection_id, email, at) VALUES {} ON CONFLICT DO NOTHING",
                self.ex.db.placeholders().rows(chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q.bind(conn_id).bind(e).bind(now);
            }
            q.execute(self.ex.db.pool()).await?;
        }
        let all: Vec<String> =
            sqlx::query_scalar("SELECT email FROM suppressions WHERE connection_id = $1")
                .bind(conn_id)
                .fetch_all(self.ex.db.pool())
                .await?;
        Ok(all.into_iter().collect())
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

    /// Steps 3, 4 and 7: stream, map, validate, compare, batch and send.
    async fn send_all(&mut self, suppressed: &HashSet<String>) -> Step<()> {
        let settings = self.ex.settings.clone();
        let checkpoint = self.run.checkpoint.clone().unwrap_or_default();
        let mut pending = if self.dry() {
            VecDeque::new()
        } else {
            self.open_writer();
            self.pending_batches(&checkpoint).await?
        };
        let source = self
            .export
            .email_source()
            .ok_or_else(|| Self::fail("The export maps no email field."))?
            .to_owned();
        let mapping = self.export.mapping.clone();
        let list_ids = vec![self.export.list_id.clone()];
        let mut builder = BatchBuilder::with_limits(&list_ids, settings.batch_contacts, MAX_BYTES);
        let mut in_builder: Vec<Sent> = Vec::new();
        let mut members = Members::new(
            self.ex.db.clone(),
            self.export.id,
            self.run.id,
            &self.export.segment_ids,
            settings.page_size,
        );
        let full = self.run.mode == Mode::Full;
        // Sized once: growing it would hold the old and new tables at once.
        let expected = self
            .run
            .total
            .unwrap_or(0)
            .clamp(0, settings.max_profiles as i64);
        let mut seen: HashSet<u128> = HashSet::with_capacity(expected as usize);
        let mut last_key = checkpoint.clone();
        let mut since_checkpoint = 0u64;
        while let Some(Member {
            key,
            attrs: attrs_json,
            sent: before,
            by_this_run,
        }) = members.next().await?
        {
            let attrs = Attrs::parse(&attrs_json);
            let raw_email = attrs.get(&source).map(|s| s.trim()).unwrap_or("");
            let normalized = normalize_email(raw_email);
            let settled = key <= checkpoint;
            let valid = is_valid_email(raw_email);
            let duplicate = !normalized.is_empty() && valid && !seen.insert(email_key(&normalized));
            if settled {
                continue;
            }
            // A batch an earlier attempt sent ends before this profile.
            while pending.front().is_some_and(|p| key > p.last_key) {
                if let Some(p) = pending.pop_front() {
                    self.settle_resumed(p, &last_key).await?;
                }
            }
            self.counts.read += 1;
            let mut classify = || -> Option<()> {
                if raw_email.is_empty() {
                    self.counts.skipped_no_email += 1;
                    self.skip(&key, "", "no_email", &source, format!("{source} is empty"));
                    return None;
                }
                if !valid {
                    self.counts.skipped_invalid_email += 1;
                    self.skip(
                        &key,
                        raw_email,
                        "invalid_email",
                        &source,
                        String::from("not a valid email address"),
                    );
                    return None;
                }
                if duplicate {
                    self.counts.skipped_duplicate_email += 1;
                    self.skip(
                        &key,
                        raw_email,
                        "duplicate_email",
                        &source,
                        String::from("another profile with this email comes first"),
                    );
                    return None;
                }
                if suppressed.contains(&normalized) {
                    self.counts.skipped_unsubscribed += 1;
                    self.skip(
                        &key,
                        raw_email,
                        "unsubscribed",
                        "email",
                        String::from(
                            "unsubscribed in Constant Contact; never re-subscribed by an export",
                        ),
                    );
                    return None;
                }
                Some(())
            };
            if classify().is_none() {
                last_key = key;
                since_checkpoint += 1;
                continue;
            }
            // The values this export sends, in mapping order (empty when
            // missing): what the ledger compares.
            let values: Vec<(&str, &str)> = mapping
                .iter()
                .map(|m| {
                    let v = if m.target == "email" {
                        raw_email
                    } else {
                        attrs.get(&m.source).map(str::trim).unwrap_or("")
                    };
                    (m.target.as_str(), v)
                })
                .collect();
            let hash = contact_hash(&values);
            let is_update = before.is_some();
            let same = before
                .as_ref()
                .is_some_and(|(h, c)| is_hex_of(h, &hash) && *c == self.config_hash);
            if by_this_run > 0 && same {
                // An earlier attempt of this run sent it and Constant
                // Contact took it (past a checkpoint held behind a failed
                // batch): counted as that attempt counted it, not resent.
                match (by_this_run, full) {
                    (2, _) => self.counts.adds += 1,
                    (_, true) => self.counts.resent += 1,
                    _ => self.counts.updates += 1,
                }
                last_key = key;
                since_checkpoint += 1;
                continue;
            }
            if !full && same {
                self.counts.unchanged += 1;
                last_key = key;
                since_checkpoint += 1;
                // Nothing waits to be sent: a cheap place for a checkpoint.
                if in_builder.is_empty()
                    && pending.is_empty()
                    && self.inflight.is_empty()
                    && since_checkpoint >= settings.checkpoint_every
                {
                    since_checkpoint = 0;
                    self.save("sending", None, Some(&last_key)).await?;
                }
                continue;
            }
            let mut contact = ImportContact::new(raw_email);
            for (target, v) in &values {
                if *target != "email" && !v.is_empty() {
                    contact = contact.set(*target, *v);
                }
            }
            if let Err(r) = BatchBuilder::validate(&key, &contact) {
                self.counts.skipped_invalid_value += 1;
                self.skip(&key, raw_email, "invalid_value", &r.field, r.reason);
                last_key = key;
                since_checkpoint += 1;
                continue;
            }
            let sent = Sent {
                profile_id: key.as_str().into(),
                email: normalized.into_boxed_str(),
                hash,
            };
            let resent = pending.front().is_some_and(|p| key >= p.first_key);
            if resent {
                // Part of a batch an earlier attempt sent: not sent again.
                // Contacts before it (of a batch whose send was never
                // confirmed) are sent and settled first, so the checkpoint
                // never passes one of them still on its way.
                if !in_builder.is_empty() {
                    let filled = std::mem::replace(
                        &mut builder,
                        BatchBuilder::with_limits(&list_ids, settings.batch_contacts, MAX_BYTES),
                    );
                    if let Some(batch) = filled.finish() {
                        let contacts = std::mem::take(&mut in_builder);
                        self.send_batch(batch, contacts, &last_key, 1).await?;
                    }
                }
                while !self.inflight.is_empty() {
                    self.settle_oldest().await?;
                }
                if let Some(p) = pending.front_mut() {
                    p.contacts.push(sent);
                }
            } else {
                match builder.push(key.clone(), &contact) {
                    Ok(Some(batch)) => {
                        let contacts = std::mem::take(&mut in_builder);
                        self.send_batch(batch, contacts, &last_key, 1).await?;
                    }
                    Ok(None) => {}
                    Err(r) => {
                        self.counts.skipped_invalid_value += 1;
                        self.skip(&key, &sent.email, "invalid_value", &r.field, r.reason);
                        last_key = key;
                        continue;
                    }
                }
                in_builder.push(sent);
            }
            match (is_update, same) {
                (false, _) => self.counts.adds += 1,
                (true, true) => self.counts.resent += 1,
                (true, false) => self.counts.updates += 1,
            }
            last_key = key;
            since_checkpoint += 1;
        }
        while let Some(p) = pending.pop_front() {
            self.settle_resumed(p, &last_key).await?;
        }
        if let Some(batch) = builder.finish() {
            let contacts = std::mem::take(&mut in_builder);
            self.send_batch(batch, contacts, &last_key, 0).await?;
        }
        self.drained = true;
        while !self.inflight.is_empty() {
            self.settle_oldest().await?;
        }
        if !last_key.is_empty() {
            self.save("sending", None, Some(&last_key)).await?;
        }
        let closing = Instant::now();
        self.close_writer().await?;
        tracing::info!(
            run_id = self.run.id,
            total_ms = self.started.elapsed().as_millis() as u64,
            sending_ms = self.time_sending.as_millis() as u64,
            waiting_ms = self.time_waiting.as_millis() as u64,
            writer_tail_ms = closing.elapsed().as_millis() as u64,
            batches = self.counts.batches,
            "run timings"
        );
        Ok(())
    }

    /// The batches an earlier attempt sent (their activity ids are known)
    /// but did not see finish, in order. A batch that may not have reached
    /// Constant Contact (no activity id) is marked failed and its contacts
    /// are sent again.
    async fn pending_batches(&mut self, checkpoint: &str) -> Step<VecDeque<InFlight>> {
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

    /// Polls an import until it finishes. A cancel takes effect at once:
    /// the run says that this batch is in Constant Contact's hands.
    async fn wait_import(
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
                    tracing::info!(run_id = self.run.id, seq, error = %e, "an import's status could not be read; asking again");
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
    async fn nap(&self, d: Duration) -> Step<()> {
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
    async fn note_slow(&self, seq: i64, activity: &Activity, waited: Duration) -> Step<()> {
        let note = format!(
            "slower than expected: {}% done after {} s; looked at less often from now on",
            activity.percent_done,
            waited.as_secs()
        );
        tracing::info!(run_id = self.run.id, seq, %note, "slow import");
        let mut conn = self.ex.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        if !self.lease.fence(&mut tx).await? {
            return Err(Stop::Lost);
        }
        sqlx::query(
            "UPDATE run_batches SET outcome = $1 WHERE run_id = $2 AND seq = $3 AND state = 'sent'",
        )
        .bind(&note)
        .bind(self.run.id)
        .bind(seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How an import is doing. With later imports in flight too, one
    /// request for the account's recent activities answers for all of
    /// them (the finished ones are kept for their turn); an import not in
    /// that page is asked for alone.
    async fn poll(&mut self, activity_id: &str) -> std::result::Result<Activity, CcError> {
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
    async fn await_postings(&mut self) {
        let wait = async {
            for f in &mut self.inflight {
                f.take_posting().await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .is_err()
        {
            tracing::warn!(run_id = self.run.id, "sends still unanswered at shutdown");
        }
    }

    /// Takes the answers of sends that are done, so their activity ids
    /// are known to [`Self::poll`].
    async fn collect_postings(&mut self) {
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
    async fn drain(&mut self) {
        self.stopping = true;
        while let Some(f) = self.inflight.pop_front() {
            let held = self.hold_checkpoint;
            let (seq, size) = (f.seq, f.contacts.len());
            match self.settle(f).await {
                Ok(()) => {
                    tracing::info!(
                        run_id = self.run.id,
                        seq,
                        size,
                        "in-flight import settled after the stop"
                    );
                }
                Err(Stop::End(..)) | Err(Stop::Resume { .. }) if self.hold_checkpoint && !held => {
                    tracing::info!(
                        run_id = self.run.id,
                        seq,
                        "a batch in flight was not accepted"
                    );
                }
                Err(Stop::End(..)) | Err(Stop::Resume { .. }) => {
                    tracing::warn!(
                        run_id = self.run.id,
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
    async fn hand_over(&mut self) {
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
                    tracing::error!(run_id = self.run.id, error = %e, "could not hand imports over");
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

    async fn write_unsettled(&self, f: &InFlight) -> Result<bool> {
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
    async fn settle_handed_over(&mut self) -> Step<()> {
        let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(
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
                sqlx::query(
                    "INSERT INTO export_ledger (export_id, profile_id, email, list_id, hash, config_hash, run_id, sent_at, added_by_run) \
                     SELECT export_id, profile_id, email, list_id, hash, config_hash, run_id, $4, run_id FROM unsettled_imports \
                     WHERE export_id = $1 AND run_id = $2 AND seq = $3 \
                     ON CONFLICT (export_id, profile_id) DO UPDATE SET email = excluded.email, list_id = excluded.list_id, \
                     hash = excluded.hash, config_hash = excluded.config_hash, run_id = excluded.run_id, sent_at = excluded.sent_at",
                )
                .bind(self.export.id)
                .bind(run_id)
                .bind(seq)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE run_batches SET state = 'done', outcome = $3 WHERE run_id = $1 AND seq = $2",
                )
                .bind(run_id)
                .bind(seq)
                .bind(format!("confirmed by run {}", self.run.id))
                .execute(&mut *tx)
                .await?;
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

    /// A batch an earlier attempt sent: every profile up to `upto` has
    /// been read again, so its contacts and checkpoint are known.
    async fn settle_resumed(&mut self, mut p: InFlight, upto: &str) -> Step<()> {
        // Made by an attempt before the checkpoint's: not counted in it.
        self.counts.batches += 1;
        p.upto = upto.to_owned();
        p.counts = self.counts.clone();
        p.errors = std::mem::take(&mut self.errors);
        self.settle(p).await
    }

    async fn settle_oldest(&mut self) -> Step<()> {
        match self.inflight.pop_front() {
            Some(f) => self.settle(f).await,
            None => Ok(()),
        }
    }

    /// Waits for a batch's import and hands its outcome to the writer.
    async fn settle(&mut self, mut f: InFlight) -> Step<()> {
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
                Err(e) => return Err(Stop::Db(Error::Internal(format!("sending a batch: {e}")))),
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

    /// Reads the run's cancel flag and renews the lease now (the background
    /// heartbeat does so too, less often).
    async fn beat(&self) -> Step<()> {
        match runs::heartbeat(&self.ex.db, &self.lease, self.ex.settings.lease_ms).await? {
            Beat::Held { cancel_requested } => {
                if cancel_requested {
                    self.cancel.store(true, Ordering::Relaxed);
                }
            }
            Beat::Lost => self.lost.store(true, Ordering::Relaxed),
        }
        self.check()
    }

    /// Writes a batch down before it is sent (`kind`: `import` or
    /// `removal`), fenced by the lease.
    async fn record_sending(
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
    async fn send_batch(
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
                        .map_err(|e| Stop::Db(Error::Internal(format!("sending a batch: {e}"))))?
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
                    return Err(Error::Internal(String::from("no client")));
                };
                let mut imported = client.import(&batch).await;
                for _ in 1..rounds.max(1) {
                    match &imported {
                        Err(e) if e.is_retryable() => {
                            tracing::warn!(run_id, seq, error = %e, "an import batch failed a round of retries; trying again");
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

    /// Step 5: contacts this export sent to this list who are no longer in
    /// the segments are removed from the list, behind a circuit breaker.
    async fn remove_left(&mut self) -> Step<()> {
        let ids = &self.export.segment_ids;
        let list = (0..ids.len())
            .map(|i| format!("${}", i + 3))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT l.profile_id, l.email FROM export_ledger l WHERE l.export_id = $1 AND l.list_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM segment_members m WHERE m.profile_id = l.profile_id AND m.segment_id IN ({list})) \
             ORDER BY l.profile_id"
        );
        let mut q = sqlx::query(&sql)
            .bind(self.export.id)
            .bind(&self.export.list_id);
        for id in ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(self.ex.db.pool()).await?;
        let left: Vec<(String, String)> = rows
            .iter()
            .map(|r| Ok((col(r, "profile_id")?, col(r, "email")?)))
            .collect::<Result<_>>()?;
        self.counts.removals = left.len() as u64;
        if left.is_empty() {
            return Ok(());
        }
        let list_size = match self.client().list(&self.export.list_id).await {
            Ok(l) => l.membership_count.unwrap_or(0),
            Err(e) => return Err(self.cc_failed("reading the list", e).await),
        };
        let limit = self.export.removal_limit_pct as u64;
        if left.len() as u64 * 100 > list_size.max(1) * limit {
            self.partial.push(format!(
                "Removal stopped by the circuit breaker: {} contacts left the segments, more than {limit}% of the list's {list_size} members. Nothing was removed; check the segments, or raise the limit on the export.",
                left.len()
            ));
            return Ok(());
        }
        if self.dry() {
            let lookups = (left.len() as u64).min(list_size / 500 + 1);
            self.planned_calls += lookups + (left.len() as u64).div_ceil(500) * 2;
            return Ok(());
        }
        // Contact ids: looked up one by one for a few, else read from the list.
        let mut ids_by_email: HashMap<String, String> = HashMap::new();
        let wanted: HashSet<&str> = left.iter().map(|(_, e)| e.as_str()).collect();
        if (left.len() as u64) <= list_size / 500 + 1 {
            for (_, email) in &left {
                self.check()?;
                match self.client().find_contact(email).await {
                    Ok(Some(c)) if c.list_memberships.contains(&self.export.list_id) => {
                        ids_by_email.insert(email.clone(), c.contact_id);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self.cc_failed("looking up a contact to remove", e).await)
                    }
                }
            }
        } else {
            let list_id = self.export.list_id.clone();
            let result = self
                .client()
                .for_each_contact("all", Some(&list_id), |page| {
                    for c in page {
                        let email = normalize_email(&c.email_address.address);
                        if wanted.contains(email.as_str()) {
                            ids_by_email.insert(email, c.contact_id);
                        }
                    }
                })
                .await;
            if let Err(e) = result {
                return Err(self.cc_failed("reading the list's members", e).await);
            }
        }
        let list_ids = vec![self.export.list_id.clone()];
        for chunk in left.chunks(crate::constant_contact::api::MAX_REMOVE_IDS) {
            self.check()?;
            let contact_ids: Vec<String> = chunk
                .iter()
                .filter_map(|(_, e)| ids_by_email.get(e).cloned())
                .collect();
            let seq = self.next_seq;
            self.next_seq += 1;
            self.record_sending(
                seq,
                "removal",
                &chunk[0].0,
                &chunk[chunk.len() - 1].0,
                contact_ids.len(),
            )
            .await?;
            if !contact_ids.is_empty() {
                let activity = match self
                    .client()
                    .remove_list_memberships(&contact_ids, &list_ids)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        return Err(self.cc_failed("removing contacts from the list", e).await)
                    }
                };
                if let Err(e) = self
                    .client()
                    .wait_for(
                        &activity.activity_id,
                        self.ex.settings.poll_every,
                        self.ex.settings.activity_timeout,
                    )
                    .await
                {
                    return Err(self.cc_failed("waiting for a removal", e).await);
                }
            }
            // Contacts no longer on the list are forgotten either way.
            let mut conn = self.ex.db.pool().acquire().await?;
            let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
            if !self.lease.fence(&mut tx).await? {
                return Err(Stop::Lost);
            }
            for (profile_id, _) in chunk {
                sqlx::query("DELETE FROM export_ledger WHERE export_id = $1 AND profile_id = $2")
                    .bind(self.export.id)
                    .bind(profile_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("UPDATE run_batches SET state = 'done', outcome = $1 WHERE run_id = $2 AND seq = $3")
                .bind(format!("{{\"removed\":{}}}", contact_ids.len()))
                .bind(self.run.id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            self.counts.removed += contact_ids.len() as u64;
            self.save("removing", None, None).await?;
        }
        Ok(())
    }

    /// A dry run's API calls and duration estimates (removals were
    /// counted when planned).
    fn plan_estimate(&mut self) {
        let c = &mut self.counts;
        // An import and, polled together with the others in flight, about
        // one status request.
        self.planned_calls += c.batches * 2;
        let read_seconds = self.started.elapsed().as_secs_f64();
        // Reading and sending overlap; requests go out 4 a second; the
        // last import takes a moment to finish.
        let calls_seconds = self.planned_calls as f64 * 0.26;
        let last_import = if c.batches > 0 { 2.0 } else { 0.0 };
        c.eta_seconds = (read_seconds.max(calls_seconds) + last_import).ceil() as u64;
    }
}

/// A profile's attributes, borrowed from the stored JSON when it has no
/// escapes (the common case: no allocation per field), else owned.
enum Attrs<'a> {
    Borrowed(HashMap<&'a str, &'a str>),
    Owned(HashMap<String, String>),
}

impl<'a> Attrs<'a> {
    fn parse(json: &'a str) -> Self {
        match serde_json::from_str(json) {
            Ok(m) => Attrs::Borrowed(m),
            Err(_) => Attrs::Owned(serde_json::from_str(json).unwrap_or_default()),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        match self {
            Attrs::Borrowed(m) => m.get(key).copied(),
            Attrs::Owned(m) => m.get(key).map(String::as_str),
        }
    }
}

/// When the daily quota is back: Constant Contact counts per UTC day; a
/// few minutes past midnight.
fn next_quota_day() -> i64 {
    const DAY: i64 = 24 * 60 * 60 * 1000;
    (now_ms() / DAY + 1) * DAY + 5 * 60 * 1000
}

/// Why profiles were skipped for their data, in words: "40 had no email
/// address, 4 had an invalid one".
fn skip_reasons(c: &Counts) -> String {
    [
        (c.skipped_no_email, "had no email address"),
        (c.skipped_invalid_email, "had an invalid email address"),
        (
            c.skipped_invalid_value,
            "had a value Constant Contact would refuse",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{} {why}", group(n)))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Profiles a second read by the export's finished real runs (`runs`,
/// newest first): what the next run can expect before it has measured
/// itself.
fn prior_rate(runs: &[Run]) -> Option<f64> {
    let (mut read, mut seconds) = (0u64, 0f64);
    for r in runs.iter().filter(|r| {
        r.mode != Mode::DryRun && matches!(r.status, Status::Succeeded | Status::PartiallySucceeded)
    }) {
        if let (Some(start), Some(end)) = (r.started_at, r.finished_at) {
            if end > start && r.counts.read > 0 {
                read += r.counts.read;
                seconds += (end - start) as f64 / 1000.0;
            }
        }
    }
    (read > 0 && seconds > 0.0).then(|| read as f64 / seconds)
}

/// Seconds until a run that has read `read` of `total` profiles is done,
/// or `None` while that cannot be said honestly: until this attempt has
/// run for a few seconds and read a twentieth of what it has to, its own
/// pace means little, and only the export's earlier runs (`prior`, profiles
/// a second) can say; once everything is read only Constant Contact's
/// processing is left, which has no pace to go by. The measured pace
/// counts for more as the run goes on.
pub fn eta_seconds(
    total: u64,
    read: u64,
    read_at_start: u64,
    elapsed: Duration,
    prior: Option<f64>,
) -> Option<u64> {
    if read >= total {
        return None;
    }
    let left = (total - read) as f64;
    let todo = total.saturating_sub(read_at_start).max(1) as f64;
    let done = read.saturating_sub(read_at_start) as f64;
    let secs = elapsed.as_secs_f64();
    let measured = (secs >= 3.0 && done >= todo / 20.0 && done > 0.0).then(|| done / secs);
    let rate = match (measured, prior) {
        (Some(m), Some(p)) => {
            let weight = (done / todo).clamp(0.0, 1.0).sqrt();
            m * weight + p * (1.0 - weight)
        }
        (Some(m), None) => m,
        (None, Some(p)) if secs >= 1.0 => p,
        _ => return None,
    };
    (rate > 0.0).then(|| (left / rate).ceil() as u64)
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_waits_for_a_measured_pace() {
        let s = Duration::from_secs;
        // Queued or just started, with no history: no estimate.
        assert_eq!(eta_seconds(1000, 0, 0, s(0), None), None);
        assert_eq!(eta_seconds(7500, 1, 0, s(1), None), None);
        // Under a twentieth read, or under three seconds: still none.
        assert_eq!(eta_seconds(10_000, 400, 0, s(10), None), None);
        assert_eq!(eta_seconds(10_000, 5_000, 0, s(2), None), None);
        // Half read in 10 s: 10 s to go.
        assert_eq!(eta_seconds(10_000, 5_000, 0, s(10), None), Some(10));
        // Everything read: only Constant Contact's processing is left.
        assert_eq!(eta_seconds(10_000, 10_000, 0, s(10), None), None);
        // A resumed run measures what this attempt read.
        assert_eq!(eta_seconds(10_000, 7_500, 5_000, s(10), None), Some(10));
        // Earlier runs' pace speaks before this run's does...
        assert_eq!(eta_seconds(1_000, 0, 0, s(1), Some(100.0)), Some(10));
        // ...and less and less after: half done at 250/s against 100/s.
        let blended = eta_seconds(10_000, 5_000, 0, s(20), Some(100.0)).unwrap();
        assert!((21..=50).contains(&blended), "{blended}");
    }

    #[test]
    fn prior_rate_comes_from_finished_real_runs() {
        let run = |mode, status, read, secs: i64| Run {
            id: 1,
            export_id: 1,
            export_name: String::new(),
            trigger: String::from("manual"),
            mode,
            status,
            message: None,
            requested_by: None,
            cancel_requested: false,
            attempts: 1,
            queued_at: 0,
            started_at: Some(1_000),
            finished_at: Some(1_000 + secs * 1000),
            phase: None,
            total: None,
            counts: Counts {
                read,
                ..Counts::default()
            },
            resume_counts: None,
            checkpoint: None,
            not_before: None,
            resumes: 0,
        };
        assert_eq!(prior_rate(&[]), None);
        let runs = [
            run(Mode::Incremental, Status::Succeeded, 1_000, 10),
            run(Mode::Full, Status::PartiallySucceeded, 2_000, 10),
            run(Mode::DryRun, Status::Succeeded, 1_000_000, 1),
            run(Mode::Incremental, Status::Failed, 1_000_000, 1),
        ];
        assert_eq!(prior_rate(&runs), Some(150.0));
    }

    #[test]
    fn email_syntax() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.co",
            "ü@exämple.hu",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a b@example.com",
            "a@@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-x.com",
            "a@example.123",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn attributes_are_borrowed_unless_escaped() {
        let plain = Attrs::parse(r#"{"email":"a@example.com","name":"Zoë"}"#);
        assert!(matches!(plain, Attrs::Borrowed(_)));
        assert_eq!(plain.get("name"), Some("Zoë"));
        let escaped = Attrs::parse(r#"{"name":"Say \"hi\""}"#);
        assert!(matches!(escaped, Attrs::Owned(_)));
        assert_eq!(escaped.get("name"), Some("Say \"hi\""));
        assert_eq!(Attrs::parse("not json").get("name"), None);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
