//! The run's place in the queue: its heartbeat, and when a stopped run is
//! resumed.

use crate::time::now_ms;

use super::*;

/// When the daily quota is back: Constant Contact counts per UTC day; a
/// few minutes past midnight.
pub(super) fn next_quota_day() -> i64 {
    const DAY: i64 = 24 * 60 * 60 * 1000;
    (now_ms() / DAY + 1) * DAY + 5 * 60 * 1000
}

impl Job<'_> {
    /// When a run stopped by a passing cause is resumed: later each time.
    pub(super) fn resume_at(&self) -> i64 {
        let base = self.ex.settings.resume_after.as_millis() as i64;
        let factor = 1i64 << self.run.resumes.clamp(0, 10);
        now_ms() + (base * factor).min(30 * 60 * 1000)
    }

    /// Reads the run's cancel flag and whether the lease still holds, now
    /// (the background heartbeat renews the lease; a read here waits for
    /// no write, see [`runs::peek`]).
    pub(super) async fn beat(&self) -> Step<()> {
        match runs::peek(&self.ex.db, &self.lease).await? {
            Beat::Held { cancel_requested } => {
                if cancel_requested {
                    self.cancel.store(true, Ordering::Relaxed);
                }
            }
            Beat::Lost => self.lost.store(true, Ordering::Relaxed),
        }
        self.check()
    }
}
