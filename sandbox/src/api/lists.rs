//! Contact lists, custom fields and the privileges probe.

use super::*;

pub(crate) fn list_json(list: &List, count: Option<usize>) -> Value {
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

pub(crate) fn membership_mode(q: &HashMap<String, String>) -> Result<Option<bool>, Response> {
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
