//! Request pacing per Constant Contact application. The limits (4
//! requests a second, 10,000 a day) are per API key, not per connection,
//! so every client of one application in this process shares one
//! [`Pacer`]: two exports running at once stay within 4 a second together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Hands out request slots `interval` apart and counts the day's requests.
#[derive(Debug)]
pub struct Pacer {
    next_slot: Mutex<Instant>,
    interval: Duration,
    day: AtomicI64,
    requests_today: AtomicU64,
}

/// The pacers of this process, by application and interval.
type Registry = std::sync::Mutex<HashMap<(String, Duration), Arc<Pacer>>>;
static SHARED: LazyLock<Registry> = LazyLock::new(Default::default);

fn utc_day() -> i64 {
    crate::time::now_ms().div_euclid(86_400_000)
}

impl Pacer {
    /// A pacer of its own.
    pub fn new(interval: Duration) -> Arc<Pacer> {
        Arc::new(Pacer {
            next_slot: Mutex::new(Instant::now()),
            interval,
            day: AtomicI64::new(utc_day()),
            requests_today: AtomicU64::new(0),
        })
    }

    /// The pacer every client of application `app` shares in this process.
    pub fn shared(app: &str, interval: Duration) -> Arc<Pacer> {
        let mut pacers = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        pacers
            .entry((app.to_owned(), interval))
            .or_insert_with(|| Pacer::new(interval))
            .clone()
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for the next free slot, and counts the request.
    pub async fn wait(&self) {
        let at = {
            let mut next = self.next_slot.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        let today = utc_day();
        if self.day.swap(today, Ordering::Relaxed) != today {
            self.requests_today.store(0, Ordering::Relaxed);
        }
        self.requests_today.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests sent today (UTC) through this pacer.
    pub fn requests_today(&self) -> u64 {
        if self.day.load(Ordering::Relaxed) != utc_day() {
            return 0;
        }
        self.requests_today.load(Ordering::Relaxed)
    }
}
