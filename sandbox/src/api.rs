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

fn list_json(list: &List, count: Option<usize>) -> Value {
    let mut v = json!({
        "list_id": list.id,
        "name": list.name,
        "favorite": list.favorite,
        "created_at": list.created_at,
        "updated_at": list.updated_at,
    });
    if let Some(d) = &list.description {
        v["description"] = json!(d);
    }
    if let Some(n) = count {
        v["membership_count"] = json!(n);
    }
    v
}

fn membership_mode(q: &HashMap<String, String>) -> Result<Option<bool>, Response> {
    match q.get("include_membership_count").map(String::as_str) {
        None => Ok(None),
        Some("all") => Ok(Some(false)),
        Some("active") => Ok(Some(true)),
        Some(_) => Err(invalid("include_membership_count must be all or active.")),
    }
}

/// `GET /v3/contact_lists`.
pub async fn get_lists(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (limit, offset, counts) = match (
        limit_from(&q, 50, 1000),
        offset_from(q.get("cursor")),
        membership_mode(&q),
    ) {
        (Ok(l), Ok(o), Ok(m)) => (l, o, m),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let inner = shared.lock();
    let data = &inner.accounts[c.account].data;
    let matching: Vec<&List> = data
        .lists
        .iter()
        .filter(|l| q.get("name").is_none_or(|n| &l.name == n))
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|l| list_json(l, counts.map(|active| data.membership_count(l.id, active))))
        .collect();
    let mut body = json!({ "lists": page });
    if q.get("include_count").map(String::as_str) == Some("true") {
        body["lists_count"] = json!(matching.len());
    }
    if offset + limit < matching.len() {
        let mut next = format!(
            "/v3/contact_lists?cursor={}&limit={limit}",
            cursor(offset + limit)
        );
        if let Some(m) = q.get("include_membership_count") {
            next.push_str(&format!("&include_membership_count={m}"));
        }
        body["_links"] = json!({ "next": { "href": next } });
    }
    Json(body).into_response()
}

/// `GET /v3/contact_lists/{list_id}`.
pub async fn get_list(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let counts = match membership_mode(&q) {
        Ok(m) => m,
        Err(r) => return r,
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found("List");
    };
    let inner = shared.lock();
    let data = &inner.accounts[c.account].data;
    match data.list(id) {
        Some(l) => Json(list_json(
            l,
            counts.map(|active| data.membership_count(id, active)),
        ))
        .into_response(),
        None => not_found("List"),
    }
}

/// `POST /v3/contact_lists`: 201, or 409 for a name already in use.
pub async fn create_list(State(shared): State<Shared>, req: Request) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
    else {
        return invalid("name is required.");
    };
    if name.chars().count() > 255 {
        return invalid("name must be at most 255 characters.");
    }
    let mut inner = shared.lock();
    let data = &mut inner.accounts[c.account].data;
    if data.lists.iter().any(|l| l.name.eq_ignore_ascii_case(name)) {
        return errors(
            StatusCode::CONFLICT,
            "contacts.api.conflict",
            "A list with this name already exists.",
        );
    }
    if data.lists.len() >= 1000 {
        return invalid("An account can have at most 1,000 lists.");
    }
    let now = now_iso();
    let list = List {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        favorite: body
            .get("favorite")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created_at: now.clone(),
        updated_at: now,
    };
    let v = list_json(&list, None);
    data.lists.push(list);
    (StatusCode::CREATED, Json(v)).into_response()
}

/// `GET /v3/contact_custom_fields`.
pub async fn get_custom_fields(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (limit, offset) = match paging(&q, 50, 100) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let inner = shared.lock();
    let fields = &inner.accounts[c.account].data.custom_fields;
    let page: Vec<Value> = fields
        .iter()
        .skip(offset)
        .take(limit)
        .map(|f| {
            json!({ "custom_field_id": f.id, "label": f.label, "name": f.name, "type": f.kind,
                    "created_at": f.created_at, "updated_at": f.created_at })
        })
        .collect();
    let mut body = json!({ "custom_fields": page });
    if offset + limit < fields.len() {
        body["_links"] = json!({ "next": { "href": format!("/v3/contact_custom_fields?cursor={}&limit={limit}", cursor(offset + limit)) } });
    }
    Json(body).into_response()
}

/// `GET /v3/account/user/privileges`: any valid token.
pub async fn get_privileges() -> Response {
    let privileges: Vec<Value> = [
        (30, "campaign:create"),
        (41, "contacts:lists:read"),
        (42, "contacts:read"),
        (43, "contacts:write"),
        (50, "account:read"),
    ]
    .iter()
    .map(|(id, name)| json!({ "privilege_id": id, "privilege_name": name }))
    .collect();
    Json(Value::Array(privileges)).into_response()
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

fn parse_list_ids(value: Option<&Value>, lists: &[List]) -> Result<Vec<Uuid>, Response> {
    let Some(arr) = value.and_then(Value::as_array) else {
        return Err(invalid("list_ids is required."));
    };
    if arr.is_empty() || arr.len() > MAX_LISTS_PER_REQUEST {
        return Err(invalid("list_ids must name between 1 and 50 lists."));
    }
    let mut ids = Vec::with_capacity(arr.len());
    for v in arr {
        let Some(id) = v.as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
            return Err(invalid("list_ids must be UUIDs."));
        };
        if !lists.iter().any(|l| l.id == id) {
            return Err(not_found(&format!("List {id}")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Maximum lengths of `JsonImportContact` fields (reference §2.4).
fn max_len(key: &str) -> Option<usize> {
    match key {
        "email" | "first_name" | "last_name" | "job_title" | "company_name" | "phone"
        | "home_phone" | "work_phone" | "mobile_phone" | "other_phone" => Some(50),
        "anniversary" => Some(10),
        "sms_number" | "sms_consent_date" => Some(16),
        // The spec spells the home address's country with a space; the
        // underscore form it does not document.
        "home country" => Some(50),
        "home_country" => None,
        k if k.starts_with("cf:") => Some(255),
        k if k.ends_with("street") || k.ends_with("street2") => Some(255),
        k if ["city", "state", "zip", "country"]
            .iter()
            .any(|s| k == *s || k.ends_with(&format!("_{s}"))) =>
        {
            Some(50)
        }
        _ => None,
    }
}

fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains(char::is_whitespace)
        && !domain.contains('@')
}

/// One contact of an import, validated.
struct Incoming {
    email: Option<String>,
    fields: Vec<(String, String)>,
}

/// `POST /v3/activities/contacts_json_import`: 201 with the activity,
/// processed in the background.
pub async fn import_contacts(State(shared): State<Shared>, req: Request) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n >= MAX_IMPORT_BYTES) {
        return invalid("The payload must be smaller than 4 MB.");
    }
    let bytes = match json_bytes(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The limit is on the body as sent.
    if bytes.len() >= MAX_IMPORT_BYTES {
        return invalid("The payload must be smaller than 4 MB.");
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return invalid(&format!("Malformed JSON: {e}")),
    };
    drop(bytes);
    let Some(rows) = body.get("import_data").and_then(Value::as_array) else {
        return invalid("import_data is required.");
    };
    if rows.len() > MAX_IMPORT_CONTACTS {
        return invalid("import_data can hold at most 40,000 contacts.");
    }
    // Checked without holding the lock: other requests go on meanwhile.
    let (delay, lists, custom_fields) = {
        let inner = shared.lock();
        let data = &inner.accounts[c.account].data;
        let lists = match parse_list_ids(body.get("list_ids"), &data.lists) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let names: Vec<String> = data.custom_fields.iter().map(|f| f.name.clone()).collect();
        (inner.settings.processing_delay_ms, lists, names)
    };
    let mut incoming = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let Some(obj) = row.as_object() else {
            return invalid(&format!("import_data[{i}] must be an object."));
        };
        let mut fields = Vec::with_capacity(obj.len());
        let mut email = None;
        for (key, value) in obj {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if key.starts_with("birthday_") => n.to_string(),
                _ => return invalid(&format!("import_data[{i}].{key} must be a string.")),
            };
            let Some(max) = max_len(key).or_else(|| key.starts_with("birthday_").then_some(2))
            else {
                return invalid(&format!("import_data[{i}] has an unknown field {key}."));
            };
            if text.chars().count() > max {
                return invalid(&format!(
                    "import_data[{i}].{key} is longer than {max} characters."
                ));
            }
            if let Some(name) = key.strip_prefix("cf:") {
                if !custom_fields.iter().any(|f| f == name) {
                    return invalid(&format!(
                        "import_data[{i}]: custom field {name} does not exist."
                    ));
                }
            }
            if key == "email" {
                email = Some(text.trim().to_lowercase());
            } else {
                fields.push((key.clone(), text));
            }
        }
        if fields.iter().filter(|(k, _)| k.starts_with("cf:")).count() > 25 {
            return invalid(&format!("import_data[{i}] has more than 25 custom fields."));
        }
        incoming.push(Incoming { email, fields });
    }
    let mut inner = shared.lock();
    let data = &mut inner.accounts[c.account].data;
    if let Some(r) = queue_full(data) {
        return r;
    }
    let activity = data.add_activity(
        ActivityKind::Import,
        incoming.len() as u64,
        lists.len() as u64,
    );
    let v = activity_json(&data.activities[&activity]);
    drop(inner);
    tokio::spawn(process_import(
        shared, c.account, activity, incoming, lists, delay,
    ));
    (StatusCode::CREATED, Json(v)).into_response()
}

fn update_activity(shared: &Shared, account: usize, id: Uuid, f: impl FnOnce(&mut Activity)) {
    let mut inner = shared.lock();
    if let Some(a) = inner
        .accounts
        .get_mut(account)
        .and_then(|acc| acc.data.activities.get_mut(&id))
    {
        f(a);
        a.updated_at = now_iso();
    }
}

async fn process_import(
    shared: Shared,
    account: usize,
    id: Uuid,
    incoming: Vec<Incoming>,
    lists: Vec<Uuid>,
    delay_ms: u64,
) {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    update_activity(&shared, account, id, |a| {
        a.state = ActivityState::Processing;
        a.started_at = Some(now_iso());
    });
    let total = incoming.len().max(1);
    for (chunk_no, chunk) in incoming.chunks(10_000).enumerate() {
        {
            let mut inner = shared.lock();
            let Some(acc) = inner.accounts.get_mut(account) else {
                return;
            };
            let data = &mut acc.data;
            let (mut correctable, mut cannot_add, mut errors_n, mut people) =
                (0u64, 0u64, 0u64, 0u64);
            for item in chunk {
                let Some(email) = item.email.as_deref().filter(|e| plausible_email(e)) else {
                    correctable += 1;
                    continue;
                };
                people += 1;
                let now = now_ms();
                let idx = data.contact_index(email, now);
                let contact = &mut data.contacts[idx];
                for (k, v) in &item.fields {
                    contact.set(k, v.clone());
                }
                contact.updated_at = now;
                contact.imports += 1;
                if contact.permission == Permission::Unsubscribed {
                    cannot_add += 1;
                    continue;
                }
                for list in &lists {
                    if !contact.lists.contains(list) {
                        if contact.lists.len() >= MAX_LISTS_PER_CONTACT {
                            errors_n += 1;
                            break;
                        }
                        contact.lists.push(*list);
                    }
                }
            }
            if let Some(a) = data.activities.get_mut(&id) {
                a.correctable_count += correctable;
                a.cannot_add_to_list_count += cannot_add;
                a.error_count += errors_n;
                a.person_count += people;
                a.items_completed += chunk.len() as u64;
                a.percent_done = ((a.items_completed as usize * 100) / total).min(99) as u32;
                a.updated_at = now_iso();
            }
        }
        if chunk_no > 0 || incoming.len() > 10_000 {
            tokio::time::sleep(Duration::from_millis(delay_ms / 4)).await;
        }
    }
    update_activity(&shared, account, id, |a| {
        a.state = ActivityState::Completed;
        a.percent_done = 100;
        a.completed_at = Some(now_iso());
    });
}

pub fn activity_json(a: &Activity) -> Value {
    let mut status = Map::new();
    status.insert("items_total_count".into(), json!(a.items_total));
    status.insert("items_completed_count".into(), json!(a.items_completed));
    if a.kind == ActivityKind::Import {
        status.insert("person_count".into(), json!(a.person_count));
        status.insert("error_count".into(), json!(a.error_count));
        status.insert("correctable_count".into(), json!(a.correctable_count));
        status.insert(
            "cannot_add_to_list_count".into(),
            json!(a.cannot_add_to_list_count),
        );
    }
    status.insert("list_count".into(), json!(a.list_count));
    let mut v = json!({
        "activity_id": a.id,
        "state": a.state,
        "created_at": a.created_at,
        "updated_at": a.updated_at,
        "percent_done": a.percent_done,
        "activity_errors": a.errors,
        "status": Value::Object(status),
        "_links": { "self": { "href": format!("/v3/activities/{}", a.id) } },
    });
    if let Some(s) = &a.started_at {
        v["started_at"] = json!(s);
    }
    if let Some(s) = &a.completed_at {
        v["completed_at"] = json!(s);
    }
    v
}

/// `GET /v3/activities/{activity_id}`.
pub async fn get_activity(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let Some(c) = caller(req.extensions()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return not_found("Activity");
    };
    let inner = shared.lock();
    match inner.accounts[c.account].data.activities.get(&id) {
        Some(a) => Json(activity_json(a)).into_response(),
        None => not_found("Activity"),
    }
}

/// `GET /v3/activities?limit=&state=`: the account's activities, newest
/// first, a page at a time (`limit` 1–500, default 50).
pub async fn get_activities(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (limit, offset) = match paging(&q, 50, 500) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state = q.get("state").map(String::as_str);
    let wanted = match state {
        None => None,
        Some("processing") => Some(Some(ActivityState::Processing)),
        Some("completed") => Some(Some(ActivityState::Completed)),
        // The sandbox never cancels, fails or times out an activity.
        Some("cancelled" | "failed" | "timed_out") => Some(None),
        Some(_) => {
            return invalid(
                "state must be one of processing, completed, cancelled, failed, timed_out.",
            )
        }
    };
    let inner = shared.lock();
    let data = &inner.accounts[c.account].data;
    let found: Vec<&Activity> = data
        .activity_order
        .iter()
        .rev()
        .filter_map(|id| data.activities.get(id))
        .filter(|a| wanted.is_none_or(|w| w == Some(a.state)))
        .collect();
    let page: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|a| activity_json(a))
        .collect();
    let mut body = json!({ "activities": page });
    if offset + limit < found.len() {
        let state = state.map(|s| format!("&state={s}")).unwrap_or_default();
        body["_links"] = json!({ "next": { "href": format!("/v3/activities?cursor={}&limit={limit}{state}", cursor(offset + limit)) } });
    }
    Json(body).into_response()
}

/// `POST /v3/activities/remove_list_memberships`.
pub async fn remove_memberships(State(shared): State<Shared>, req: Request) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut inner = shared.lock();
    let delay = inner.settings.processing_delay_ms;
    let data = &mut inner.accounts[c.account].data;
    let targets = match parse_list_ids(body.get("list_ids"), &data.lists) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(source) = body.get("source").and_then(Value::as_object) else {
        return invalid("source is required.");
    };
    if source.len() != 1 {
        return invalid(
            "source must have exactly one of contact_ids, list_ids or all_active_contacts.",
        );
    }
    let exclude: Vec<Uuid> = body
        .get("exclude")
        .and_then(|e| e.get("contact_ids"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let members: Vec<usize> = if let Some(ids) = source.get("contact_ids").and_then(Value::as_array)
    {
        if ids.is_empty() || ids.len() > MAX_REMOVE_CONTACT_IDS {
            return invalid("source.contact_ids must hold between 1 and 500 contact ids.");
        }
        let mut out = Vec::new();
        for v in ids {
            let Some(id) = v.as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
                return invalid("source.contact_ids must be UUIDs.");
            };
            if let Some(&i) = data.by_id.get(&id) {
                out.push(i);
            }
        }
        out
    } else if source.contains_key("list_ids") {
        let from = match parse_list_ids(source.get("list_ids"), &data.lists) {
            Ok(l) => l,
            Err(r) => return r,
        };
        (0..data.contacts.len())
            .filter(|&i| {
                data.contacts[i].lists.iter().any(|l| from.contains(l))
                    && !exclude.contains(&data.contacts[i].id)
            })
            .collect()
    } else if source.get("all_active_contacts").and_then(Value::as_bool) == Some(true) {
        (0..data.contacts.len())
            .filter(|&i| {
                data.contacts[i].permission != Permission::Unsubscribed
                    && !exclude.contains(&data.contacts[i].id)
            })
            .collect()
    } else {
        return invalid("source must have contact_ids, list_ids or all_active_contacts.");
    };
    if let Some(r) = queue_full(data) {
        return r;
    }
    let id = data.add_activity(
        ActivityKind::RemoveMemberships,
        members.len() as u64,
        targets.len() as u64,
    );
    let v = activity_json(&data.activities[&id]);
    drop(inner);
    let account = c.account;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut inner = shared.lock();
        let Some(acc) = inner.accounts.get_mut(account) else {
            return;
        };
        for &i in &members {
            acc.data.contacts[i].lists.retain(|l| !targets.contains(l));
        }
        if let Some(a) = acc.data.activities.get_mut(&id) {
            let now = now_iso();
            a.state = ActivityState::Completed;
            a.items_completed = a.items_total;
            a.percent_done = 100;
            a.started_at = Some(now.clone());
            a.completed_at = Some(now.clone());
            a.updated_at = now;
        }
    });
    (StatusCode::CREATED, Json(v)).into_response()
}

pub fn contact_json(c: &Contact, include: &str, fields: &[CustomField]) -> Value {
    let mut v = json!({
        "contact_id": c.id,
        "email_address": {
            "address": c.email,
            "permission_to_send": c.permission,
            "created_at": iso_ms(c.created_at),
            "updated_at": iso_ms(c.updated_at),
            "opt_in_source": "Account",
        },
        "create_source": "Account",
        "created_at": iso_ms(c.created_at),
        "updated_at": iso_ms(c.updated_at),
    });
    if let Some(src) = c.opt_out_source {
        v["email_address"]["opt_out_source"] = json!(src);
    }
    for key in ["first_name", "last_name", "job_title", "company_name"] {
        if let Some(val) = c.get(key) {
            v[key] = json!(val);
        }
    }
    if include.split(',').any(|i| i == "list_memberships") {
        v["list_memberships"] = json!(c.lists);
    }
    if include.split(',').any(|i| i == "custom_fields") {
        let cfs: Vec<Value> = c
            .fields
            .iter()
            .filter_map(|(k, val)| {
                let name = k.strip_prefix("cf:")?;
                let field = fields.iter().find(|f| f.name == name)?;
                Some(json!({ "custom_field_id": field.id, "value": val }))
            })
            .collect();
        v["custom_fields"] = json!(cfs);
    }
    v
}

/// `GET /v3/contacts`: by `email`, or members of `lists`, with `status`.
pub async fn get_contacts(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let c = match authorized(req.extensions(), "contact_data") {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (limit, offset) = match paging(&q, 50, 500) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let lists: Vec<Uuid> = q
        .get("lists")
        .map(|l| {
            l.split(',')
                .filter_map(|s| Uuid::parse_str(s.trim()).ok())
                .collect()
        })
        .unwrap_or_default();
    let status = q.get("status").map(String::as_str).unwrap_or("active");
    let include = q.get("include").cloned().unwrap_or_default();
    let inner = shared.lock();
    let data = &inner.accounts[c.account].data;
    let email = q.get("email").map(|e| e.trim().to_lowercase());
    let matches = |ct: &&Contact| {
        email.as_ref().is_none_or(|e| &ct.email == e)
            && (lists.is_empty() || ct.lists.iter().any(|l| lists.contains(l)))
            && match status {
                "all" => true,
                "unsubscribed" => ct.permission == Permission::Unsubscribed,
                _ => ct.permission != Permission::Unsubscribed,
            }
    };
    let found: Vec<&Contact> = match email.as_ref().and_then(|e| data.by_email.get(e)) {
        Some(&i) => std::iter::once(&data.contacts[i]).filter(matches).collect(),
        None if email.is_some() => Vec::new(),
        None => data.contacts.iter().filter(matches).collect(),
    };
    let page: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|ct| contact_json(ct, &include, &data.custom_fields))
        .collect();
    let mut body = json!({ "contacts": page });
    if q.get("include_count").map(String::as_str) == Some("true") {
        body["contacts_count"] = json!(found.len());
    }
    if offset + limit < found.len() {
        body["_links"] = json!({ "next": { "href": format!("/v3/contacts?cursor={}&limit={limit}&status={status}", cursor(offset + limit)) } });
    }
    Json(body).into_response()
}
