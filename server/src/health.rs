//! For orchestrators and monitoring: `/health/live` (the process answers),
//! `/health/ready` (the database answers and its schema is this build's),
//! and Prometheus metrics at `/metrics` when enabled.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use engine::{Backend, Db};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `GET /health`: 200 when the database answers.
pub async fn health(State(db): State<Db>) -> Response {
    match sqlx::query("SELECT 1").execute(db.pool()).await {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `GET /health/live`: the process is up and serving.
pub async fn live() -> Response {
    (StatusCode::OK, "live").into_response()
}

/// `GET /health/ready`: 200 when the database answers and every migration
/// of this build is applied; 503 with the reason otherwise.
pub async fn ready(State(db): State<Db>) -> Response {
    let unavailable = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response()
    };
    if let Err(e) = sqlx::query("SELECT 1").execute(db.pool()).await {
        tracing::error!(error = %e, "readiness: the database does not answer");
        return unavailable(String::from("The database does not answer."));
    }
    match db.pending_migrations().await {
        Ok(pending) if pending.is_empty() => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "ready": true, "database": db.backend().name() })),
        )
            .into_response(),
        Ok(pending) => unavailable(format!(
            "Database migrations not applied: {}.",
            pending
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(e) => {
            tracing::error!(error = %e, "readiness: cannot read the migrations");
            unavailable(String::from(
                "The database's migrations cannot be read (not migrated yet?).",
            ))
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route's pattern (`/runs/{id}/errors.csv`), never the raw path:
    /// ids would make a series per object.
    route: String,
    status: u16,
}

/// What this process measures itself (request latency); the rest is read
/// from the database at each scrape.
#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::new_with_constructor(|| {
                // 1 ms to about 8 s.
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
        }
    }
}

/// Times every request for [`Metrics`].
pub async fn measure(
    State(metrics): State<Arc<Metrics>>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let res = next.run(req).await;
    // Unmatched paths (the page fallback, static files) share one label.
    let route = route.unwrap_or_else(|| String::from("other"));
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    application: String,
}

/// `GET /metrics` (OpenMetrics text).
pub async fn metrics(State((db, metrics)): State<(Db, Arc<Metrics>)>) -> Response {
    match render(&db, &metrics).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics could not be read");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable").into_response()
        }
    }
}

async fn render(db: &Db, metrics: &Metrics) -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("segment_export");

    let runs = Family::<StatusLabel, Gauge>::default();
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM runs GROUP BY status")
            .fetch_all(db.pool())
            .await?;
    for status in [
        "queued",
        "running",
        "succeeded",
        "partially_succeeded",
        "failed",
        "cancelled",
    ] {
        let n = by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        runs.get_or_create(&StatusLabel {
            status: status.to_owned(),
        })
        .set(n);
    }
    registry.register(
        "runs",
        "Runs by status (every process reports the same figures: the database's)",
        runs,
    );

    let sent_sql = match db.backend() {
        Backend::Sqlite => {
            "SELECT CAST(COALESCE(SUM(json_extract(counts, '$.sent')), 0) AS BIGINT) FROM runs"
        }
        Backend::Postgres => {
            "SELECT CAST(COALESCE(SUM((counts::jsonb ->> 'sent')::bigint), 0) AS BIGINT) FROM runs"
        }
    };
    let sent: i64 = sqlx::query_scalar(sent_sql).fetch_one(db.pool()).await?;
    let contacts = Counter::<u64>::default();
    contacts.inc_by(sent.max(0) as u64);
    registry.register(
        "contacts_sent",
        "Contacts sent to Constant Contact by every run",
        contacts,
    );

    let exports: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM exports WHERE removed_at IS NULL")
        .fetch_one(db.pool())
        .await?;
    let exports_gauge = Gauge::<i64>::default();
    exports_gauge.set(exports);
    registry.register("exports", "Exports (not removed)", exports_gauge);

    let requests = Family::<AppLabel, Counter>::default();
    let throttled = Family::<AppLabel, Counter>::default();
    let left = Family::<AppLabel, Gauge>::default();
    for usage in engine::quota::usage(db).await? {
        let label = AppLabel {
            application: usage.app,
        };
        requests
            .get_or_create(&label)
            .inc_by(usage.requests_total.max(0) as u64);
        throttled
            .get_or_create(&label)
            .inc_by(usage.throttled_total.max(0) as u64);
        left.get_or_create(&label)
            .set(i64::try_from(usage.left_today).unwrap_or(i64::MAX));
    }
    registry.register(
        "constant_contact_requests",
        "Requests sent to Constant Contact, per application",
        requests,
    );
    registry.register(
        "constant_contact_throttled",
        "429 answers from Constant Contact (throttled or quota spent), per application",
        throttled,
    );
    registry.register(
        "constant_contact_requests_left_today",
        "Requests left of the daily quota, per application",
        left,
    );

    registry.register(
        "http_request_duration_seconds",
        "Time to answer HTTP requests in this process",
        metrics.requests.clone(),
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}
