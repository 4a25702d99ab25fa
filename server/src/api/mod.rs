//! The REST API under `/api/v1`, for other tools: list and read exports,
//! trigger runs (with an idempotency key), follow a run, page or download
//! its per-contact errors, cancel it. Callers authenticate with an API
//! token (`Authorization: Bearer sxp_…`, see [`engine::api_tokens`]) and
//! are held to the same [`engine::policy`] as people in the UI. Errors are
//! JSON with a stable `code`. The OpenAPI document at
//! `/api/v1/openapi.json` is generated from these handlers.

pub mod dto;
mod openapi;

use app::ssr::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use engine::api_tokens::{self, Caller, Claim};
use engine::runs::{self, Trigger};
use engine::Error;
use serde::Deserialize;

use crate::error::RouteError;

use dto::{
    ContactErrorDto, ErrorBody, ErrorDetail, ErrorPage, ExportDto, ExportList, RunDto,
    TriggerRequest,
};

/// The API's routes, to nest under `/api/v1`.
pub fn routes<S: Clone + Send + Sync + 'static>(state: AppState) -> Router<S> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/exports", get(list_exports))
        .route("/exports/{id}", get(get_export))
        .route("/exports/{id}/runs", post(trigger_run))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/errors", get(run_errors))
        .route("/runs/{id}/errors.csv", get(run_errors_csv))
        .route("/runs/{id}/cancel", post(cancel_run))
        .fallback(|| async {
            ApiError(RouteError::NotFound(String::from("No such API endpoint.")))
        })
        .with_state(state)
}

/// An API failure: the server's one error ([`RouteError`]), answered as
/// [`ErrorBody`] with a stable `code` instead of the plain routes' text.
#[derive(Debug)]
pub struct ApiError(pub RouteError);

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        ApiError(e)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(RouteError::Engine(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, field) = match self.0 {
            RouteError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                String::from(
                    "A valid API token is required: send it as `Authorization: Bearer <token>`.",
                ),
                None,
            ),
            e @ RouteError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", e.to_string(), None),
            RouteError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            RouteError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid", m, None),
            RouteError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid", m, None),
            RouteError::Engine(Error::Invalid { field, message }) => (
                StatusCode::BAD_REQUEST,
                "invalid",
                message,
                Some(field.to_owned()),
            ),
            RouteError::Engine(e @ Error::InvalidFields(_)) => {
                (StatusCode::BAD_REQUEST, "invalid", e.to_string(), None)
            }
            RouteError::Engine(e @ Error::Forbidden) => {
                (StatusCode::FORBIDDEN, "forbidden", e.to_string(), None)
            }
            RouteError::Engine(e @ Error::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found", e.to_string(), None)
            }
            RouteError::Engine(Error::Conflict(m)) => (StatusCode::CONFLICT, "conflict", m, None),
            other => {
                other.log();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    String::from("An internal error occurred."),
                    None,
                )
            }
        };
        let mut res = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message,
                    field,
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        res
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The token's caller, from `Authorization: Bearer …`. Session cookies
/// are not accepted here: a page cannot be made to call the API.
pub struct Api(pub Caller);

impl FromRequestParts<AppState> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError(RouteError::Unauthorized))?;
        match api_tokens::authenticate(&state.db, secret).await? {
            Some(caller) => Ok(Api(caller)),
            None => Err(ApiError(RouteError::Unauthorized)),
        }
    }
}

fn bad_query(rejection: QueryRejection) -> ApiError {
    ApiError(RouteError::BadRequest(rejection.body_text()))
}

/// A path id that is not a number is a 404, as an id that does not exist.
fn id<T: std::str::FromStr>(raw: &str, what: &str) -> ApiResult<T> {
    raw.parse()
        .map_err(|_| ApiError(RouteError::NotFound(format!("{what} was not found."))))
}

async fn export_of(state: &AppState, raw: &str) -> ApiResult<engine::exports::Export> {
    engine::exports::get(&state.db, id(raw, "The export")?)
        .await?
        .filter(|e| e.removed_at.is_none())
        .ok_or(ApiError::from(Error::NotFound("The export")))
}

async fn run_of(state: &AppState, raw: &str) -> ApiResult<runs::Run> {
    runs::get(&state.db, id(raw, "The run")?)
        .await?
        .ok_or(ApiError::from(Error::NotFound("The run")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    /// Only exports whose name, connection or list contains this (any case).
    pub q: Option<String>,
    /// Only exports whose newest run has this status (`never` for none).
    pub status: Option<String>,
}

/// Lists exports, newest run included.
#[utoipa::path(get, path = "/api/v1/exports", tag = "exports",
    params(ExportFilter),
    responses((status = 200, body = ExportList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
async fn list_exports(
    State(state): State<AppState>,
    Api(caller): Api,
    filter: Result<Query<ExportFilter>, QueryRejection>,
) -> ApiResult<Json<ExportList>> {
    engine::policy::read(&caller.user)?;
    let Query(filter) = filter.map_err(bad_query)?;
    let wanted = match filter.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("never") => Some(None),
        Some(s) => Some(Some(runs::Status::parse(s).map_err(|_| {
            ApiError(RouteError::BadRequest(format!(
                "Unknown status {s:?}: use queued, running, succeeded, partially_succeeded, failed, cancelled or never."
            )))
        })?)),
    };
    let q = filter.q.unwrap_or_default().trim().to_lowercase();
    let latest = runs::latest(&state.db).await?;
    let items = engine::exports::list(&state.db)
        .await?
        .into_iter()
        .filter(|e| {
            q.is_empty()
                || [
                    Some(&e.name),
                    e.connection_name.as_ref(),
                    Some(&e.list_name),
                ]
                .into_iter()
                .flatten()
                .any(|text| text.to_lowercase().contains(&q))
        })
        .filter_map(|e| {
            let last = latest.iter().find(|r| r.export_id == e.id);
            match wanted {
                Some(status) if last.map(|r| r.status) != status => None,
                _ => {
                    let manage = engine::policy::can_manage_export(&caller.user, e.owner_id);
                    Some(ExportDto::new(e, manage, last))
                }
            }
        })
        .collect();
    Ok(Json(ExportList { items }))
}

/// One export, with its newest run.
#[utoipa::path(get, path = "/api/v1/exports/{id}", tag = "exports",
    params(("id" = i64, Path, description = "The export's id")),
    responses((status = 200, body = ExportDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn get_export(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
) -> ApiResult<Json<ExportDto>> {
    engine::policy::read(&caller.user)?;
    let export = export_of(&state, &raw).await?;
    let last = runs::for_export(&state.db, export.id, 1).await?;
    let manage = engine::policy::can_manage_export(&caller.user, export.owner_id);
    Ok(Json(ExportDto::new(export, manage, last.first())))
}

/// Queues a run of an export. With an `Idempotency-Key` header, the same
/// key again (within a day, from the same token) answers with the run the
/// first request queued instead of queuing another.
#[utoipa::path(post, path = "/api/v1/exports/{id}/runs", tag = "runs",
    params(("id" = i64, Path, description = "The export's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key answers with the same run")),
    request_body(content = TriggerRequest, description = "The mode; incremental when left out"),
    responses((status = 202, description = "Queued", body = RunDto),
              (status = 200, description = "Queued before, by the same Idempotency-Key", body = RunDto),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "A run is already active, or the export is disabled", body = ErrorBody)),
    security(("token" = [])))]
async fn trigger_run(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let request: TriggerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerRequest { mode: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(RouteError::BadRequest(format!(
                "The request body is not valid: {e}."
            )))
        })?
    };
    let export = export_of(&state, &raw).await?;
    engine::policy::manage_export(&caller.user, export.owner_id)?;
    let mode = request.mode.unwrap_or(dto::RunMode::Incremental);
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError(RouteError::BadRequest(String::from(
                        "The Idempotency-Key must be printable ASCII.",
                    )))
                })?
                .trim()
                .to_owned(),
        ),
    };
    let token_id = caller.token.id;
    if let Some(key) = &key {
        match api_tokens::claim_key(&state.db, token_id, key, export.id, mode.as_str()).await? {
            Claim::Done(run) => {
                let run = runs::get(&state.db, run)
                    .await?
                    .ok_or(Error::NotFound("The run"))?;
                return Ok((StatusCode::OK, Json(RunDto::from(&run))).into_response());
            }
            Claim::New => {}
        }
    }
    let queued = runs::trigger(
        &state.db,
        export.id,
        Trigger::Api { token_id },
        mode,
        Some(&caller.user),
    )
    .await;
    if let Some(key) = &key {
        let run_id = queued.as_ref().ok().map(|r| r.id);
        api_tokens::remember(&state.db, token_id, key, run_id).await?;
    }
    let run = queued?;
    Ok((StatusCode::ACCEPTED, Json(RunDto::from(&run))).into_response())
}

/// A run, with its progress and counts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, body = RunDto), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn get_run(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
) -> ApiResult<Json<RunDto>> {
    engine::policy::read(&caller.user)?;
    Ok(Json(RunDto::from(&run_of(&state, &raw).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ErrorQuery {
    /// 1 and up; 1 when left out.
    pub page: Option<i64>,
    /// 1 to 1000; 100 when left out.
    pub per_page: Option<i64>,
    /// Only errors whose email, profile id, problem or reason contains this.
    pub q: Option<String>,
}

/// A page of a run's per-contact errors.
#[utoipa::path(get, path = "/api/v1/runs/{id}/errors", tag = "runs",
    params(("id" = i64, Path, description = "The run's id"), ErrorQuery),
    responses((status = 200, body = ErrorPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn run_errors(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
    query: Result<Query<ErrorQuery>, QueryRejection>,
) -> ApiResult<Json<ErrorPage>> {
    engine::policy::read(&caller.user)?;
    let Query(query) = query.map_err(bad_query)?;
    let run = run_of(&state, &raw).await?;
    let page = query.page.unwrap_or(1);
    let per_page = query.per_page.unwrap_or(100);
    if page < 1 {
        return Err(ApiError(RouteError::BadRequest(String::from(
            "`page` starts at 1.",
        ))));
    }
    if !(1..=1000).contains(&per_page) {
        return Err(ApiError(RouteError::BadRequest(String::from(
            "`per_page` must be 1 to 1000.",
        ))));
    }
    let (items, total) = runs::errors_matching(
        &state.db,
        run.id,
        query.q.as_deref().unwrap_or(""),
        (page - 1).saturating_mul(per_page),
        per_page,
    )
    .await?;
    Ok(Json(ErrorPage {
        items: items
            .into_iter()
            .map(|e| ContactErrorDto {
                profile_id: e.profile_id,
                email: e.email,
                problem: e.kind,
                field: e.field,
                reason: e.reason,
            })
            .collect(),
        total,
        page,
        per_page,
    }))
}

/// Every per-contact error of a run, as CSV.
#[utoipa::path(get, path = "/api/v1/runs/{id}/errors.csv", tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, content_type = "text/csv", body = String), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
async fn run_errors_csv(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    engine::policy::read(&caller.user)?;
    let run = run_of(&state, &raw).await?;
    let mut body = Vec::new();
    runs::write_errors_csv(&state.db, run.id, &mut body).await?;
    Ok(crate::downloads::csv_attachment(
        &format!("run-{}-errors.csv", run.id),
        body,
    ))
}

/// Cancels a run: a queued one at once, a running one at its next batch
/// (`cancel_requested` is true until it has stopped).
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, body = RunDto), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "The run has already finished", body = ErrorBody)),
    security(("token" = [])))]
async fn cancel_run(
    State(state): State<AppState>,
    Api(caller): Api,
    Path(raw): Path<String>,
) -> ApiResult<Json<RunDto>> {
    let run = run_of(&state, &raw).await?;
    let run = runs::cancel(&state.db, &caller.user, run.id).await?;
    Ok(Json(RunDto::from(&run)))
}
