//! `/_sandbox/…`: looking inside and steering the sandbox, for tests and
//! the demo. Not part of Constant Contact's API; needs no token.

// Helpers return ready-made error responses for handlers to pass on;
// their size does not matter at this rate of calls.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::{activity_json, contact_json};
use crate::state::{now_iso, CustomField, Faults, Inner, Permission, Settings, Shared};

fn account_index(inner: &Inner, name: Option<&String>) -> Result<usize, Response> {
    match name {
        None => Ok(0),
        Some(n) => inner
            .accounts
            .iter()
            .position(|a| &a.username == n)
            .ok_or_else(|| {
                (StatusCode::NOT_FOUND, format!("no sandbox account {n}")).into_response()
            }),
    }
}

type Q = Query<HashMap<String, String>>;

/// `GET /_sandbox/lists`: every list with its member count.
pub async fn lists(State(shared): State<Shared>, Query(q): Q) -> Response {
    let inner = shared.lock();
    let i = match account_index(&inner, q.get("account")) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &inner.accounts[i].data;
    let lists: Vec<Value> = data
        .lists
        .iter()
        .map(|l| json!({ "list_id": l.id, "name": l.name, "members": data.membership_count(l.id, false) }))
        .collect();
    Json(json!({ "lists": lists })).into_response()
}

/// `GET /_sandbox/lists/{id}/members`: the emails on a list, sorted.
pub async fn members(State(shared): State<Shared>, Path(id): Path<Uuid>, Query(q): Q) -> Response {
    let inner = shared.lock();
    let i = match account_index(&inner, q.get("account")) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut emails: Vec<&str> = inner.accounts[i]
        .data
        .contacts
        .iter()
        .filter(|c| c.lists.contains(&id))
        .map(|c| c.email.as_str())
        .collect();
    emails.sort_unstable();
    Json(json!({ "list_id": id, "count": emails.len(), "emails": emails })).into_response()
}

/// `GET /_sandbox/contacts?email=…`: one contact, everything known.
pub async fn contact(State(shared): State<Shared>, Query(q): Q) -> Response {
    let inner = shared.lock();
    let i = match account_index(&inner, q.get("account")) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &inner.accounts[i].data;
    let email = q
        .get("email")
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default();
    match data.by_email.get(&email) {
        Some(&c) => {
            let mut v = contact_json(
                &data.contacts[c],
                "list_memberships,custom_fields",
                &data.custom_fields,
            );
            v["fields"] = json!(data.contacts[c]
                .fields
                .iter()
                .cloned()
                .collect::<HashMap<_, _>>());
            Json(v).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such contact").into_response(),
    }
}

#[derive(Deserialize)]
pub struct Unsubscribe {
    email: String,
    account: Option<String>,
    /// `Contact` (the person opted out) or `Account`.
    #[serde(default)]
    source: Option<String>,
}

/// `POST /_sandbox/contacts/unsubscribe`: opts a contact out (creating it
/// if needed), as if they had clicked "unsubscribe".
pub async fn unsubscribe(State(shared): State<Shared>, Json(body): Json<Unsubscribe>) -> Response {
    let mut inner = shared.lock();
    let i = match account_index(&inner, body.account.as_ref()) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &mut inner.accounts[i].data;
    let email = body.email.trim().to_lowercase();
    let source = if body.source.as_deref() == Some("Account") {
        "Account"
    } else {
        "Contact"
    };
    let idx = data.contact_index(&email, crate::state::now_ms());
    let c = &mut data.contacts[idx];
    c.permission = Permission::Unsubscribed;
    c.opt_out_source = Some(source);
    c.lists.clear();
    Json(json!({ "contact_id": c.id })).into_response()
}

#[derive(Deserialize)]
pub struct NewField {
    label: String,
    account: Option<String>,
    #[serde(default)]
    r#type: Option<String>,
}

/// `POST /_sandbox/custom_fields`: creates a custom field (its `name` is
/// the label with spaces as underscores).
pub async fn create_custom_field(
    State(shared): State<Shared>,
    Json(body): Json<NewField>,
) -> Response {
    let mut inner = shared.lock();
    let i = match account_index(&inner, body.account.as_ref()) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &mut inner.accounts[i].data;
    let name = body.label.trim().replace(' ', "_");
    if data.custom_fields.iter().any(|f| f.name == name) {
        return (StatusCode::CONFLICT, "custom field exists").into_response();
    }
    let field = CustomField {
        id: Uuid::new_v4(),
        label: body.label.trim().to_owned(),
        name: name.clone(),
        kind: body.r#type.unwrap_or_else(|| "string".into()),
        created_at: now_iso(),
    };
    let id = field.id;
    data.custom_fields.push(field);
    (
        StatusCode::CREATED,
        Json(json!({ "custom_field_id": id, "name": name })),
    )
        .into_response()
}

/// `GET /_sandbox/activities`: every activity, oldest first.
pub async fn activities(State(shared): State<Shared>, Query(q): Q) -> Response {
    let inner = shared.lock();
    let i = match account_index(&inner, q.get("account")) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &inner.accounts[i].data;
    let all: Vec<Value> = data
        .activity_order
        .iter()
        .filter_map(|id| data.activities.get(id))
        .map(activity_json)
        .collect();
    Json(json!({ "activities": all })).into_response()
}

/// `GET /_sandbox/import_stats`: how often imports named each contact:
/// contacts, import rows in all, contacts imported more than once, and
/// up to 20 of their emails.
pub async fn import_stats(State(shared): State<Shared>, Query(q): Q) -> Response {
    let inner = shared.lock();
    let i = match account_index(&inner, q.get("account")) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let data = &inner.accounts[i].data;
    let rows: u64 = data.contacts.iter().map(|c| u64::from(c.imports)).sum();
    let twice: Vec<&str> = data
        .contacts
        .iter()
        .filter(|c| c.imports > 1)
        .map(|c| c.email.as_str())
        .collect();
    Json(json!({
        "contacts": data.contacts.len(),
        "import_rows": rows,
        "imported_more_than_once": twice.len(),
        "examples": twice.iter().take(20).collect::<Vec<_>>(),
    }))
    .into_response()
}

/// `GET /_sandbox/requests`: the request log (newest last).
pub async fn requests(State(shared): State<Shared>) -> Response {
    let inner = shared.lock();
    Json(json!({ "requests": inner.log })).into_response()
}

/// `POST /_sandbox/reset`: forgets all data, tokens, counters and faults.
pub async fn reset(State(shared): State<Shared>) -> Response {
    shared.lock().reset();
    StatusCode::NO_CONTENT.into_response()
}

pub async fn get_faults(State(shared): State<Shared>) -> Response {
    Json(shared.lock().faults).into_response()
}

pub async fn put_faults(State(shared): State<Shared>, Json(faults): Json<Faults>) -> Response {
    shared.lock().faults = faults;
    Json(faults).into_response()
}

pub async fn get_settings(State(shared): State<Shared>) -> Response {
    Json(shared.lock().settings).into_response()
}

pub async fn put_settings(
    State(shared): State<Shared>,
    Json(settings): Json<Settings>,
) -> Response {
    shared.lock().settings = settings;
    Json(settings).into_response()
}

/// `POST /_sandbox/tokens/revoke_all`: every access and refresh token
/// stops working (as if the user disconnected the app).
pub async fn revoke_all(State(shared): State<Shared>) -> Response {
    let mut inner = shared.lock();
    inner
        .access_tokens
        .values_mut()
        .for_each(|t| t.revoked = true);
    inner
        .refresh_tokens
        .values_mut()
        .for_each(|t| t.revoked = true);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_sandbox/tokens/expire_access`: every access token expires now;
/// refresh tokens still work.
pub async fn expire_access(State(shared): State<Shared>) -> Response {
    let mut inner = shared.lock();
    let now = Instant::now();
    inner
        .access_tokens
        .values_mut()
        .for_each(|t| t.expires_at = now);
    StatusCode::NO_CONTENT.into_response()
}
