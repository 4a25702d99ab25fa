//! The v3 API subset (reference §2–§4): contact lists, custom fields, the
//! privileges probe, JSON import, activities, removing list memberships,
//! and contact look-up. Every request passes [`gate`]: faults, bearer
//! token, rate limits, the request log.

// Helpers return ready-made error responses for handlers to pass on;
// their size does not matter at this rate of calls.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::Rng;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::state::{
    iso_ms, now_iso, now_ms, Activity, ActivityKind, ActivityState, Contact, CustomField, List,
    LogEntry, Permission, Shared, LOGGED_BODY_MAX,
};

mod contacts;
mod imports;
mod lists;

pub use contacts::*;
pub use imports::*;
pub use lists::*;

/// The account and scopes a valid bearer token stands for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: usize,
    pub scopes: Vec<String>,
}

pub const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_IMPORT_CONTACTS: usize = 40_000;
const MAX_LISTS_PER_REQUEST: usize = 50;
const MAX_LISTS_PER_CONTACT: usize = 50;
const MAX_REMOVE_CONTACT_IDS: usize = 500;
/// Bulk activities an account may have waiting before new ones get a 429.
pub const MAX_QUEUED_ACTIVITIES: usize = 1_000;
/// How long a stalled import (fault `stall_imports`) waits for nothing.
const STALL: Duration = Duration::from_secs(600);

/// 429 when the account already has too many unfinished activities.
fn queue_full(data: &crate::state::AccountData) -> Option<Response> {
    let waiting = data
        .activities
        .values()
        .filter(|a| a.state != ActivityState::Completed)
        .count();
    (waiting >= MAX_QUEUED_ACTIVITIES).then(|| {
        errors(
            StatusCode::TOO_MANY_REQUESTS,
            "activities.queue_full",
            "The account has exceeded 1,000 queued activities.",
        )
    })
}

/// The array error form (reference §3).
pub fn errors(status: StatusCode, key: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{ "error_key": key, "error_message": message }])),
    )
        .into_response()
}

/// The single-object form used for authentication and rate limits.
pub fn error_object(status: StatusCode, key: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error_key": key, "error_message": message })),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    errors(
        StatusCode::BAD_REQUEST,
        "contacts.api.validation.error",
        message,
    )
}

fn not_found(what: &str) -> Response {
    errors(
        StatusCode::NOT_FOUND,
        "contacts.api.not_found",
        &format!("{what} not found."),
    )
}

/// Faults, authentication, rate limits and logging for `/v3`.
pub async fn gate(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    // Read the body once, to log it (small JSON only) and pass it on.
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_IMPORT_BYTES + 64 * 1024).await else {
        return invalid("The request body is too large (the limit is 4 MB).");
    };
    let logged_body = (bytes.len() <= LOGGED_BODY_MAX)
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten();
    let mut req = Request::from_parts(parts, Body::from(bytes));
    let method = req.method().to_string();
    // Nested under `/v3`, the URI here lacks the prefix; log the original.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let faults = shared.lock().faults;
    if method == "POST" && path.ends_with("/activities/contacts_json_import") {
        let stalled = {
            let mut inner = shared.lock();
            let left = &mut inner.faults.stall_imports;
            *left > 0 && {
                *left -= 1;
                true
            }
        };
        if stalled {
            // No answer until the client gives up; nothing is processed.
            tokio::time::sleep(STALL).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        let refused = {
            let mut inner = shared.lock();
            match &mut inner.faults.fail_imports_after {
                Some(0) => true,
                Some(left) => {
                    *left -= 1;
                    false
                }
                None => false,
            }
        };
        if refused {
            return errors(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Internal server error.",
            );
        }
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let (caller, client_id, limited) = {
        let mut inner = shared.lock();
        let found = token
            .as_deref()
            .and_then(|t| inner.access_tokens.get(t))
            .cloned();
        match found {
            Some(t) if !t.revoked && t.expires_at > Instant::now() => {
                let limited = inner.rate(&t.client_id).err();
                (
                    Some(Caller {
                        account: t.account,
                        scopes: t.scopes,
                    }),
                    Some(t.client_id),
                    limited,
                )
            }
            _ => (None, None, None),
        }
    };
    let roll = |p: f64| p > 0.0 && rand::thread_rng().gen_bool(p.min(1.0));
    let response = if caller.is_none() {
        error_object(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
    } else if let Some(key) = limited {
        let message = if key == "quota_exceeded" {
            "Limit Exceeded"
        } else {
            "Too Many Requests"
        };
        error_object(StatusCode::TOO_MANY_REQUESTS, key, message)
    } else if roll(faults.drop) {
        // Headers go out, then the body fails: the client sees the
        // connection break. The request is not processed.
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "sandbox: dropped connection",
            ))
        });
        Response::builder()
            .status(StatusCode::OK)
            .body(Body::from_stream(broken))
            .unwrap_or_default()
    } else if roll(faults.p429) {
        error_object(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too Many Requests",
        )
    } else if roll(faults.p500) {
        errors(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal server error.",
        )
    } else if roll(faults.p503) {
        errors(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service unavailable.",
        )
    } else {
        if let Some(c) = caller {
            req.extensions_mut().insert(c);
        }
        next.run(req).await
    };
    shared.lock().record(LogEntry {
        at: now_iso(),
        method,
        path,
        status: response.status().as_u16(),
        client_id,
        body: logged_body,
    });
    response
}

fn require_scope(caller: &Caller, scope: &str) -> Result<(), Response> {
    if caller.scopes.iter().any(|s| s == scope) {
        Ok(())
    } else {
        Err(errors(
            StatusCode::FORBIDDEN,
            "unauthorized",
            &format!("The {scope} scope is required."),
        ))
    }
}

fn caller(req_ext: &axum::http::Extensions) -> Option<Caller> {
    req_ext.get::<Caller>().cloned()
}

/// The signed-in caller, if its token carries `scope`: 401 without a
/// caller, 403 without the scope.
fn authorized(req_ext: &axum::http::Extensions, scope: &str) -> Result<Caller, Response> {
    let caller = caller(req_ext).ok_or_else(|| StatusCode::UNAUTHORIZED.into_response())?;
    require_scope(&caller, scope)?;
    Ok(caller)
}

fn cursor(offset: usize) -> String {
    STANDARD.encode(format!("offset={offset}"))
}

fn offset_from(cursor: Option<&String>) -> Result<usize, Response> {
    match cursor {
        None => Ok(0),
        Some(c) => STANDARD
            .decode(c)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.strip_prefix("offset=").and_then(|n| n.parse().ok()))
            .ok_or_else(|| invalid("The cursor is not valid.")),
    }
}

/// A page's `limit` and the offset its `cursor` stands for.
fn paging(
    q: &HashMap<String, String>,
    default: usize,
    max: usize,
) -> Result<(usize, usize), Response> {
    Ok((limit_from(q, default, max)?, offset_from(q.get("cursor"))?))
}

fn limit_from(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, Response> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(invalid(&format!("limit must be between 1 and {max}."))),
        },
    }
}

async fn json_body(req: Request) -> Result<Value, Response> {
    let bytes = json_bytes(req).await?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(&format!("Malformed JSON: {e}")))
}

/// The raw body of a JSON request (checked to be JSON by its type).
async fn json_bytes(req: Request) -> Result<Bytes, Response> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "contacts.api.unsupported_media_type",
            "The body must be JSON (Content-Type: application/json).",
        ));
    }
    axum::body::to_bytes(req.into_body(), MAX_IMPORT_BYTES + 1024)
        .await
        .map_err(|_| invalid("The request body is too large (the limit is 4 MB)."))
}
