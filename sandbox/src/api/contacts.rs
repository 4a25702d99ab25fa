//! Removing list memberships, and contacts as the API shows them.

use super::*;

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
