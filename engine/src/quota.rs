//! The daily Constant Contact quota, kept in the database: every request
//! of every process is counted per application (API key) and UTC day, and
//! a `quota_exceeded` answer marks the day spent whatever the count says.

use crate::constant_contact::api::{UsageBook, DAILY_QUOTA};
use crate::db::{col, Db};
use crate::error::Result;
use crate::time::now_ms;

const DAY_MS: i64 = 86_400_000;

fn today() -> i64 {
    now_ms().div_euclid(DAY_MS)
}

/// One application's usage, as a client's [`UsageBook`].
pub struct AppUsage {
    pub db: Db,
    /// The application's key (see [`crate::connect::CcApp::key`]).
    pub app: String,
}

/// Counts `requests` sent today by `app`; `exhausted` records Constant
/// Contact's word that the day's quota is used up.
pub async fn record(db: &Db, app: &str, requests: i64, exhausted: bool) -> Result<()> {
    let at = exhausted.then(now_ms);
    sqlx::query(
        "INSERT INTO api_usage (app, day, requests, exhausted_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app, day) DO UPDATE SET requests = api_usage.requests + $3, \
           exhausted_at = COALESCE(api_usage.exhausted_at, $4)",
    )
    .bind(app)
    .bind(today())
    .bind(requests)
    .bind(at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Requests `app` has left today: none once Constant Contact said so.
pub async fn left_today(db: &Db, app: &str) -> Result<u64> {
    let row =
        sqlx::query("SELECT requests, exhausted_at FROM api_usage WHERE app = $1 AND day = $2")
            .bind(app)
            .bind(today())
            .fetch_optional(db.pool())
            .await?;
    let Some(row) = row else {
        return Ok(DAILY_QUOTA);
    };
    let exhausted: Option<i64> = col(&row, "exhausted_at")?;
    if exhausted.is_some() {
        return Ok(0);
    }
    let used: i64 = col(&row, "requests")?;
    Ok(DAILY_QUOTA.saturating_sub(used.max(0) as u64))
}

#[async_trait::async_trait]
impl UsageBook for AppUsage {
    async fn count(&self, exhausted: bool) {
        let requests = i64::from(!exhausted);
        if let Err(e) = record(&self.db, &self.app, requests, exhausted).await {
            tracing::warn!(error = %e, "could not count a Constant Contact request");
        }
    }

    async fn left_today(&self) -> Option<u64> {
        match left_today(&self.db, &self.app).await {
            Ok(left) => Some(left),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the quota used today");
                None
            }
        }
    }
}
