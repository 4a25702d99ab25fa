//! How runs behave: the settings and the limits that hold for every run.

use crate::constant_contact::RetryPolicy;

use super::*;

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
pub(super) const MAX_QUOTA_RESUMES: i64 = 7;

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
pub(super) const SENDS_AT_ONCE: usize = 2;
