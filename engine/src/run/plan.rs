//! Estimates: what a dry run says a real run would cost, and the time left.

use super::*;

/// Profiles a second read by the export's finished real runs (`runs`,
/// newest first): what the next run can expect before it has measured
/// itself.
pub(super) fn prior_rate(runs: &[Run]) -> Option<f64> {
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

impl Job<'_> {
    /// A dry run's API calls and duration estimates (removals were
    /// counted when planned).
    pub(super) fn plan_estimate(&mut self) {
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
            mode,
            status,
            started_at: Some(1_000),
            finished_at: Some(1_000 + secs * 1000),
            counts: Counts {
                read,
                ..Counts::default()
            },
            ..Run::example()
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
}
