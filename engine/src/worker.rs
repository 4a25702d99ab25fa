//! The workers every server process runs: claim a queued run (or one whose
//! worker died), execute it, repeat. The claim is one atomic statement with
//! a lease (see [`crate::runs::claim`]), so any number of processes can
//! share one PostgreSQL database.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::run::Executor;
use crate::runs;

/// Runs workers until `stop` turns true. Each worker takes one run at a
/// time; `count` of them run side by side.
pub fn spawn(executor: Executor, count: usize, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    // A shutdown reaches the runs in progress too, not only idle workers.
    {
        let (flag, mut stop) = (executor.shutdown.clone(), stop.clone());
        tokio::spawn(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    (0..count.max(1))
        .map(|i| {
            let mut ex = executor.clone();
            ex.worker = format!("{}-{i}", executor.worker);
            let stop = stop.clone();
            tokio::spawn(work(ex, stop))
        })
        .collect()
}

/// A worker name unique to this process.
pub fn process_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| String::from("server"));
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn work(ex: Executor, mut stop: watch::Receiver<bool>) {
    let idle = Duration::from_millis(500);
    loop {
        if *stop.borrow() || ex.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match runs::claim(&ex.db, &ex.worker, ex.settings.lease_ms).await {
            Ok(Some(run_id)) => {
                tracing::info!(run_id = %run_id, worker = %ex.worker, "run claimed");
                if let Err(e) = ex.execute(run_id).await {
                    tracing::error!(run_id = %run_id, error = %e, "run could not be executed");
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "could not claim a run"),
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            // A dropped sender means stop too.
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// Claims and executes queued runs until none is left (the CLI and tests
/// use this instead of background workers).
pub async fn drain(ex: &Executor) -> crate::Result<Vec<crate::RunId>> {
    let mut done = Vec::new();
    while !ex.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(run_id) = runs::claim(&ex.db, &ex.worker, ex.settings.lease_ms).await? else {
            break;
        };
        ex.execute(run_id).await?;
        done.push(run_id);
    }
    Ok(done)
}
