//! JSON contact imports and the activities that report them.

use super::*;

pub(crate) fn parse_list_ids(value: Option<&Value>, lists: &[List]) -> Result<Vec<Uuid>, Response> {
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
pub(crate) fn max_len(key: &str) -> Option<usize> {
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

pub(crate) fn plausible_email(email: &str) -> bool {
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
pub(crate) struct Incoming {
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

pub(crate) fn update_activity(
    shared: &Shared,
    account: usize,
    id: Uuid,
    f: impl FnOnce(&mut Activity),
) {
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

pub(crate) async fn process_import(
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
