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

/// The client id in an application key (`"<api base> <client id>"`, see
/// [`crate::connect::CcApp::key`]), as people know the application.
pub fn client_id(app: &str) -> &str {
    app.rsplit(' ').next().unwrap_or(app)
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

/// Counts a 429 answer to `app` today.
pub async fn record_throttled(db: &Db, app: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO api_usage (app, day, throttled) VALUES ($1, $2, 1) \
         ON CONFLICT (app, day) DO UPDATE SET throttled = api_usage.throttled + 1",
    )
    .bind(app)
    .bind(today())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// One application's Constant Contact requests, for metrics and the
/// overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub app: String,
    /// Requests sent, since the first one counted.
    pub requests_total: i64,
    /// 429 answers received, since the first one counted.
    pub throttled_total: i64,
    /// Requests sent today (UTC).
    pub requests_today: i64,
    /// Requests left today.
    pub left_today: u64,
}

/// Every application's usage.
pub async fn usage(db: &Db) -> Result<Vec<Usage>> {
    let day = today();
    let rows = sqlx::query(
        "SELECT app, CAST(SUM(requests) AS BIGINT) AS requests_total, \
                CAST(SUM(throttled) AS BIGINT) AS throttled_total, \
                CAST(SUM(CASE WHEN day = $1 THEN requests ELSE 0 END) AS BIGINT) AS requests_today, \
                MAX(CASE WHEN day = $1 THEN exhausted_at ELSE NULL END) AS exhausted_at \
         FROM api_usage GROUP BY app ORDER BY app",
    )
    .bind(day)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let requests_today: i64 = col(r, "requests_today")?;
            let exhausted: Option<i64> = col(r, "exhausted_at")?;
            Ok(Usage {
                app: col(r, "app")?,
                requests_total: col(r, "requests_total")?,
                throttled_total: col(r, "throttled_total")?,
                requests_today,
                left_today: if exhausted.is_some() {
                    0
                } else {
                    DAILY_QUOTA.saturating_sub(requests_today.max(0) as u64)
                },
            })
        })
        .collect()
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

    async fn throttled(&self) {
        if let Err(e) = record_throttled(&self.db, &self.app).await {
            tracing::warn!(error = %e, "could not count a Constant Contact 429");
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
