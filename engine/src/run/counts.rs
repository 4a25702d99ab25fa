//! The run's counts: merged at checkpoints and told in the run's summary.

use super::classify::{Change, Skip};
use super::*;

/// What the stream adds to the run's counts.
pub(super) trait Tally {
    /// A member skipped for its data.
    fn skip(&mut self, why: Skip);
    /// A contact sent (or, on resume, sent by an earlier attempt).
    fn count(&mut self, change: Change);
}

impl Tally for Counts {
    fn skip(&mut self, why: Skip) {
        match why {
            Skip::NoEmail => self.skipped_no_email += 1,
            Skip::InvalidEmail => self.skipped_invalid_email += 1,
            Skip::DuplicateEmail => self.skipped_duplicate_email += 1,
            Skip::Unsubscribed => self.skipped_unsubscribed += 1,
        }
    }

    fn count(&mut self, change: Change) {
        match change {
            Change::New => self.adds += 1,
            Change::Changed => self.updates += 1,
            Change::Resent => self.resent += 1,
        }
    }
}

/// The stream's counts at a checkpoint, with Constant Contact's outcome
/// counts as they are now (batches settle in order).
pub(super) fn merge(stream: &Counts, now: &Counts) -> Counts {
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

/// Why profiles were skipped for their data, in words: "40 had no email
/// address, 4 had an invalid one".
pub(super) fn skip_reasons(c: &Counts) -> String {
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

impl Job<'_> {
    pub(super) fn summary(&self) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000_000), "1,000,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }
}
