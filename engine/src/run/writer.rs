//! The run's writer: settled batches and checkpoints written beside the
//! stream, so reading the next batch does not wait for the last one's
//! ledger. Writes commit in the order they were sent, each fenced by the
//! lease: a worker that lost the run writes nothing more.
//!
//! On PostgreSQL two writes run at once: a batch's contacts go into the
//! ledger while the batch before it commits. The lease is checked at the
//! end of each transaction, after the ledger rows and before the commit,
//! so a write whose lease is gone rolls back whole. SQLite has one writer
//! and writes one at a time.

use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;

use super::batches::{finish, Checkpoint, Sent};
use crate::db::Backend;

use super::*;

pub(super) enum Write {
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

impl Write {
    /// The first and last profile ids whose ledger rows this write takes.
    fn span(&self) -> Option<(&str, &str)> {
        match self {
            Write::Batch {
                ok: true, contacts, ..
            } => {
                let ids = contacts.iter().map(|c| &*c.profile_id);
                Some((ids.clone().min()?, ids.max()?))
            }
            _ => None,
        }
    }
}

pub(super) struct Writer {
    pub(super) db: Db,
    pub(super) run_id: RunId,
    pub(super) lease: runs::Lease,
    pub(super) export_id: ExportId,
    pub(super) list_id: String,
    pub(super) config_hash: String,
    pub(super) lost: Arc<AtomicBool>,
}

/// A write's place in line: the commit of the write before it (`None`
/// for the first write; it never comes when that one failed or lost the
/// lease), and its own to give.
struct Turn {
    before: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
}

impl Writer {
    pub(super) async fn run(self, mut rx: tokio::sync::mpsc::Receiver<Write>) -> Result<()> {
        let at_once = match self.db.backend() {
            Backend::Postgres => 2,
            Backend::Sqlite => 1,
        };
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(at_once));
        let mut writes = JoinSet::new();
        let mut before: Option<oneshot::Receiver<()>> = None;
        // The ledger rows of the write before: a write that would take one
        // of them waits for its commit before it starts (two transactions
        // waiting on each other's rows would wait forever).
        let mut last_span: Option<(Box<str>, Box<str>)> = None;
        loop {
            let write = tokio::select! {
                biased;
                // A write that failed stops the writer: the run hears of it.
                Some(done) = writes.join_next(), if !writes.is_empty() => {
                    if let Err(e) = joined(done) {
                        // The writes still going end first (the ones
                        // after this one roll back): none is cut off
                        // halfway through its commit.
                        while writes.join_next().await.is_some() {}
                        return Err(e);
                    }
                    continue;
                }
                write = rx.recv() => match write {
                    Some(write) => write,
                    None => break,
                },
            };
            let slot = Arc::clone(&slots)
                .acquire_owned()
                .await
                .map_err(Error::internal)?;
            let span = write.span().map(|(a, b)| (Box::from(a), Box::from(b)));
            let overlaps = match (&span, &last_span) {
                (Some((first, last)), Some((prev_first, prev_last))) => {
                    first <= prev_last && prev_first <= last
                }
                _ => false,
            };
            if span.is_some() {
                last_span = span;
            }
            let (done, next) = oneshot::channel();
            let turn = Turn {
                before: before.replace(next),
                done,
            };
            let this = Arc::clone(&this);
            writes.spawn(async move {
                let _slot = slot;
                this.write(write, turn, overlaps).await
            });
        }
        let mut result = Ok(());
        while let Some(done) = writes.join_next().await {
            if let (Err(e), Ok(())) = (joined(done), &result) {
                result = Err(e);
            }
        }
        result
    }

    /// One write, in its turn. `overlaps`: it takes ledger rows the write
    /// before it takes too, so it starts only once that one committed.
    async fn write(&self, write: Write, mut turn: Turn, overlaps: bool) -> Result<()> {
        if overlaps && !wait(&mut turn.before).await {
            return Ok(());
        }
        let mut conn = self.db.pool().acquire().await?;
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        let (batch, cp) = match write {
            Write::Batch {
                seq,
                ok,
                outcome,
                contacts,
                checkpoint,
            } => {
                if ok {
                    let entry = ledger::Entry {
                        export_id: self.export_id,
                        list_id: &self.list_id,
                        config_hash: &self.config_hash,
                        run_id: self.run_id,
                    };
                    ledger::record(&mut tx, &self.db, &entry, &contacts).await?;
                }
                (Some((seq, ok, outcome)), checkpoint)
            }
            Write::Progress(checkpoint) => (None, checkpoint),
        };
        if !wait(&mut turn.before).await {
            // The write before failed (it says why) or lost the lease:
            // this one rolls back.
            return Ok(());
        }
        // The lease, checked last: its row stays locked only for the
        // commit, and a worker that lost the run rolls back what it wrote.
        if !runs::save_progress_on(&mut tx, &self.lease, cp.progress()).await? {
            self.lost.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if let Some((seq, ok, outcome)) = batch {
            finish(&mut tx, self.run_id, seq, ok, &outcome).await?;
        }
        runs::add_errors_on(&mut tx, &self.db, self.run_id, &cp.errors).await?;
        tx.commit().await?;
        let _ = turn.done.send(());
        Ok(())
    }
}

/// Waits for the write before to commit; false when it did not.
async fn wait(before: &mut Option<oneshot::Receiver<()>>) -> bool {
    match before.take() {
        Some(rx) => rx.await.is_ok(),
        None => true,
    }
}

fn joined(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.map_err(|e| Error::internal(format!("run writer: {e}")))?
}

impl Job<'_> {
    pub(super) fn open_writer(&mut self) {
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
    pub(super) async fn close_writer(&mut self) -> Step<()> {
        let Some((tx, handle)) = self.writer.take() else {
            return Ok(());
        };
        drop(tx);
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Stop::Db(e)),
            Err(e) => return Err(Stop::Db(Error::internal(format!("run writer: {e}")))),
        }
        if self.lost.load(Ordering::Relaxed) {
            return Err(Stop::Lost);
        }
        Ok(())
    }

    /// The writer stopped early: its error ends the run.
    pub(super) async fn writer_failed(&mut self) -> Step<()> {
        self.close_writer().await?;
        Err(Stop::Db(Error::internal(String::from(
            "the run's writer stopped",
        ))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;
    use crate::db::col;
    use crate::testing::TestDb;
    use tokio::sync::mpsc;

    /// An export and a run of it claimed by worker `w1`.
    async fn claimed(db: &Db) -> (ExportId, runs::Lease) {
        sqlx::query(
            "INSERT INTO exports (name, name_key, list_id, list_name, mapping, on_schedule, remove_left, \
               removal_limit_pct, enabled, created_at, updated_at) \
             VALUES ('E', 'e', 'L1', 'List', '[]', $1, $1, 10, $2, 0, 0)",
        )
        .bind(false)
        .bind(true)
        .execute(db.pool())
        .await
        .unwrap();
        let export_id = ExportId(
            col(
                &sqlx::query("SELECT id FROM exports")
                    .fetch_one(db.pool())
                    .await
                    .unwrap(),
                "id",
            )
            .unwrap(),
        );
        sqlx::query(
            "INSERT INTO runs (export_id, trigger, mode, status, queued_at, counts) \
             VALUES ($1, 'manual', 'incremental', 'queued', 0, '{}')",
        )
        .bind(export_id)
        .execute(db.pool())
        .await
        .unwrap();
        let run_id = runs::claim(db, "w1", 60_000).await.unwrap().unwrap();
        for seq in 1..=3i64 {
            sqlx::query(
                "INSERT INTO run_batches (run_id, seq, kind, first_key, last_key, size, state, at) \
                 VALUES ($1, $2, 'import', '', '', 3, 'sent', 0)",
            )
            .bind(run_id)
            .bind(seq)
            .execute(db.pool())
            .await
            .unwrap();
        }
        let lease = runs::Lease {
            run_id,
            worker: String::from("w1"),
            attempt: 1,
        };
        (export_id, lease)
    }

    fn start(db: &Db, export_id: ExportId, lease: &runs::Lease) -> Started {
        let lost = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            db: db.clone(),
            run_id: lease.run_id,
            lease: lease.clone(),
            export_id,
            list_id: String::from("L1"),
            config_hash: String::from("c"),
            lost: Arc::clone(&lost),
        };
        let (tx, rx) = mpsc::channel(8);
        Started {
            tx,
            handle: tokio::spawn(writer.run(rx)),
            lost,
        }
    }

    struct Started {
        tx: mpsc::Sender<Write>,
        handle: tokio::task::JoinHandle<Result<()>>,
        lost: Arc<AtomicBool>,
    }

    fn checkpoint(upto: &str) -> Checkpoint {
        Checkpoint {
            phase: "sending",
            total: None,
            counts: Counts::default(),
            resume: Counts::default(),
            upto: Some(upto.to_owned()),
            errors: Vec::new(),
        }
    }

    fn batch(seq: i64, contacts: &[(&str, &str)]) -> Write {
        Write::Batch {
            seq,
            ok: true,
            outcome: String::from("{}"),
            contacts: contacts
                .iter()
                .map(|(id, email)| Sent {
                    profile_id: (*id).into(),
                    email: (*email).into(),
                    hash: [0; 16],
                })
                .collect(),
            checkpoint: checkpoint(contacts.last().unwrap().0),
        }
    }

    async fn ledger(db: &Db) -> Vec<(String, String)> {
        sqlx::query("SELECT profile_id, email FROM export_ledger ORDER BY profile_id")
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (col(r, "profile_id").unwrap(), col(r, "email").unwrap()))
            .collect()
    }

    async fn run_row(db: &Db, lease: &runs::Lease) -> (Option<String>, Vec<String>) {
        let checkpoint = col(
            &sqlx::query("SELECT checkpoint FROM runs WHERE id = $1")
                .bind(lease.run_id)
                .fetch_one(db.pool())
                .await
                .unwrap(),
            "checkpoint",
        )
        .unwrap();
        let states = sqlx::query("SELECT state FROM run_batches WHERE run_id = $1 ORDER BY seq")
            .bind(lease.run_id)
            .fetch_all(db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| col(r, "state").unwrap())
            .collect();
        (checkpoint, states)
    }

    #[tokio::test]
    async fn writes_commit_in_order_and_a_profile_in_two_batches_keeps_the_later_one() {
        let t = TestDb::new().await;
        let (export_id, lease) = claimed(&t.db).await;
        let w = start(&t.db, export_id, &lease);
        w.tx.send(batch(1, &[("p01", "a@x"), ("p02", "b@x"), ("p03", "c@x")]))
            .await
            .unwrap();
        w.tx.send(batch(2, &[("p04", "d@x"), ("p05", "e@x")]))
            .await
            .unwrap();
        // Shares p05 with the batch before it: written after it, it wins.
        w.tx.send(batch(3, &[("p05", "new@x"), ("p06", "f@x")]))
            .await
            .unwrap();
        w.tx.send(Write::Progress(checkpoint("p99"))).await.unwrap();
        drop(w.tx);
        w.handle.await.unwrap().unwrap();
        assert!(!w.lost.load(Ordering::Relaxed));
        let emails: Vec<String> = ledger(&t.db).await.into_iter().map(|(_, e)| e).collect();
        assert_eq!(emails, ["a@x", "b@x", "c@x", "d@x", "new@x", "f@x"]);
        let (checkpoint, states) = run_row(&t.db, &lease).await;
        assert_eq!(checkpoint.as_deref(), Some("p99"));
        assert_eq!(states, ["done", "done", "done"]);
    }

    #[tokio::test]
    async fn a_writer_whose_run_was_taken_over_writes_nothing_more() {
        let t = TestDb::new().await;
        let (export_id, lease) = claimed(&t.db).await;
        let w = start(&t.db, export_id, &lease);
        w.tx.send(batch(1, &[("p01", "a@x"), ("p02", "b@x")]))
            .await
            .unwrap();
        for _ in 0..200 {
            if ledger(&t.db).await.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The worker pauses; another one takes the run over.
        sqlx::query("UPDATE runs SET lease_until = 0 WHERE id = $1")
            .bind(lease.run_id)
            .execute(t.db.pool())
            .await
            .unwrap();
        assert_eq!(
            runs::claim(&t.db, "w2", 60_000).await.unwrap(),
            Some(lease.run_id)
        );
        // It wakes up with two batches and a checkpoint to write.
        w.tx.send(batch(2, &[("p03", "c@x"), ("p04", "d@x")]))
            .await
            .unwrap();
        w.tx.send(batch(3, &[("p05", "e@x")])).await.unwrap();
        w.tx.send(Write::Progress(checkpoint("p99"))).await.unwrap();
        drop(w.tx);
        w.handle.await.unwrap().unwrap();
        assert!(w.lost.load(Ordering::Relaxed));
        let ids: Vec<String> = ledger(&t.db).await.into_iter().map(|(p, _)| p).collect();
        assert_eq!(ids, ["p01", "p02"]);
        let (checkpoint, states) = run_row(&t.db, &lease).await;
        assert_eq!(checkpoint.as_deref(), Some("p02"));
        assert_eq!(states, ["done", "sent", "sent"]);
    }
}
