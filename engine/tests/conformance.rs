//! Conformance with Constant Contact's official spec
//! (`spec/constant-contact/swagger.yaml`): the JSON our client sends and
//! the JSON the sandbox answers, for every endpoint the product uses, are
//! validated against the spec's schemas. A mismatch fails the test.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use engine::constant_contact::{
    ApiClient, BatchBuilder, Endpoints, ImportContact, OAuthClient, RetryPolicy, Secret,
};
use serde_json::{json, Value};

const CLIENT: &str = "segment-export-demo";
const REDIRECT: &str = "http://127.0.0.1:3000/oauth/constant-contact/callback";

fn spec() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/constant-contact/swagger.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: Value = serde_norway::from_str(&text).unwrap();
    drop_meaningless_max_items(&mut v);
    v
}

/// The spec puts `maxItems: 0` on arrays whose real limits are in the
/// descriptions (reference §2.7); as JSON Schema it would forbid any item.
fn drop_meaningless_max_items(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("maxItems") == Some(&json!(0)) {
                map.remove("maxItems");
            }
            map.values_mut().for_each(drop_meaningless_max_items);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_meaningless_max_items),
        _ => {}
    }
}

enum Part {
    Body,
    Response(&'static str),
}

/// Validates `instance` against the schema of one operation's body or
/// response, reporting every violation.
fn check(spec: &Value, path: &str, method: &str, part: Part, instance: &Value) {
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "the spec has no {method} {path}");
    let (schema, what) = match part {
        Part::Body => {
            let p = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["in"] == "body")
                .unwrap();
            (p["schema"].clone(), String::from("request body"))
        }
        Part::Response(code) => (
            op["responses"][code]["schema"].clone(),
            format!("{code} response"),
        ),
    };
    let mut root = schema.clone();
    root["definitions"] = spec["definitions"].clone();
    let validator = jsonschema::draft4::options().build(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {what} does not match the spec:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn client_requests_and_sandbox_responses_match_the_official_spec() {
    let spec = spec();
    let sb = sandbox::spawn(
        sandbox::Config {
            rate_per_second: 0,
            processing_delay_ms: 5,
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    http.post(format!("{}/_sandbox/custom_fields", sb.url()))
        .json(&json!({ "label": "Favorite Color" }))
        .send()
        .await
        .unwrap();

    // Sign in as a browser would, then use the client for everything.
    let oauth = OAuthClient::new(
        &Endpoints::at(&sb.url()),
        CLIENT,
        &Secret::new("demo-client-secret"),
        REDIRECT,
    )
    .unwrap();
    let request = oauth.authorization_request();
    let (base, query) = request.url.split_once('?').unwrap();
    let mut form: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    form.extend([
        ("username".into(), "demo@example.com".into()),
        ("password".into(), "demo-password".into()),
        ("decision".into(), "allow".into()),
    ]);
    let back = http.post(base).form(&form).send().await.unwrap();
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    let code = form_urlencoded::parse(location.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = oauth
        .exchange_code(&code, &request.pkce_verifier)
        .await
        .unwrap();
    let token = tokens.access_token.expose().to_owned();
    let api = ApiClient::new(Endpoints::at(&sb.url()), tokens, Some(oauth))
        .unwrap()
        .with_interval(Duration::ZERO)
        .with_retry(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });

    let list = api
        .create_list("Conformance", Some("Lists made by the conformance test"))
        .await
        .unwrap();
    api.lists().await.unwrap();
    api.list(&list.list_id).await.unwrap();
    api.custom_fields().await.unwrap();
    api.privileges().await.unwrap();
    let mut builder = BatchBuilder::new(std::slice::from_ref(&list.list_id));
    let contact = ImportContact::new("ann@example.com")
        .set("first_name", "Ann")
        .set("last_name", "Example")
        .set("job_title", "Buyer")
        .set("birthday_month", "4")
        .set("birthday_day", "12")
        .set("city", "Pécs")
        .set("home_country", "Hungary")
        .set("cf:Favorite_Color", "blue");
    assert!(builder.push("p1", &contact).unwrap().is_none());
    assert!(builder
        .push("p2", &ImportContact::new("bob@example.com"))
        .unwrap()
        .is_none());
    let import = api.import(&builder.finish().unwrap()).await.unwrap();
    api.wait_for(
        &import.activity_id,
        Duration::from_millis(10),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let ann = api.find_contact("ann@example.com").await.unwrap().unwrap();
    let removal = api
        .remove_list_memberships(
            std::slice::from_ref(&ann.contact_id),
            std::slice::from_ref(&list.list_id),
        )
        .await
        .unwrap();

    // What the client sent.
    let log: Value = http
        .get(format!("{}/_sandbox/requests", sb.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for r in log["requests"].as_array().unwrap() {
        let (Some(body), "POST") = (r.get("body"), r["method"].as_str().unwrap()) else {
            continue;
        };
        let path = r["path"].as_str().unwrap().strip_prefix("/v3").unwrap();
        check(&spec, path, "post", Part::Body, body);
        checked += 1;
        // The schema allows any key; every key we send must be one it
        // documents (or a custom field).
        let documented = spec["definitions"]["JsonImportContact"]["properties"]
            .as_object()
            .unwrap();
        for contact in body["import_data"].as_array().into_iter().flatten() {
            for key in contact.as_object().unwrap().keys() {
                assert!(
                    documented.contains_key(key) || key.starts_with("cf:"),
                    "{key:?} is not a documented import field"
                );
            }
        }
    }
    assert_eq!(checked, 3, "create list, import, remove memberships");

    // What the sandbox answers.
    let get = |path: String| {
        let http = http.clone();
        let token = token.clone();
        let url = format!("{}/v3{path}", sb.url());
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    check(
        &spec,
        "/contact_lists",
        "get",
        Part::Response("200"),
        &get("/contact_lists?include_count=true&include_membership_count=all".into()).await,
    );
    check(
        &spec,
        "/contact_lists/{list_id}",
        "get",
        Part::Response("200"),
        &get(format!(
            "/contact_lists/{}?include_membership_count=active",
            list.list_id
        ))
        .await,
    );
    check(
        &spec,
        "/contact_custom_fields",
        "get",
        Part::Response("200"),
        &get("/contact_custom_fields".into()).await,
    );
    check(
        &spec,
        "/account/user/privileges",
        "get",
        Part::Response("200"),
        &get("/account/user/privileges".into()).await,
    );
    check(
        &spec,
        "/activities/{activity_id}",
        "get",
        Part::Response("200"),
        &get(format!("/activities/{}", import.activity_id)).await,
    );
    check(
        &spec,
        "/activities/{activity_id}",
        "get",
        Part::Response("200"),
        &get(format!("/activities/{}", removal.activity_id)).await,
    );
    check(
        &spec,
        "/activities",
        "get",
        Part::Response("200"),
        &get("/activities?limit=1".into()).await,
    );
    check(
        &spec,
        "/contacts",
        "get",
        Part::Response("200"),
        &get(
            "/contacts?status=all&include=list_memberships,custom_fields&include_count=true".into(),
        )
        .await,
    );
    let created = http
        .post(format!("{}/v3/contact_lists", sb.url()))
        .bearer_auth(&token)
        .json(&json!({ "name": "Second", "favorite": true, "description": "Another" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    check(
        &spec,
        "/contact_lists",
        "post",
        Part::Response("201"),
        &created.json().await.unwrap(),
    );
    let imported = http
        .post(format!("{}/v3/activities/contacts_json_import", sb.url()))
        .bearer_auth(&token)
        .json(
            &json!({ "import_data": [{ "email": "cy@example.com" }], "list_ids": [list.list_id] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 201);
    check(
        &spec,
        "/activities/contacts_json_import",
        "post",
        Part::Response("201"),
        &imported.json().await.unwrap(),
    );
    let removed = http
        .post(format!(
            "{}/v3/activities/remove_list_memberships",
            sb.url()
        ))
        .bearer_auth(&token)
        .json(&json!({ "source": { "list_ids": [list.list_id] }, "list_ids": [list.list_id] }))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 201);
    check(
        &spec,
        "/activities/remove_list_memberships",
        "post",
        Part::Response("201"),
        &removed.json().await.unwrap(),
    );
}

#[test]
fn a_mismatch_is_caught() {
    // The check is only evidence if it can fail: a list without its
    // required `name`, and an import without `list_ids`.
    let spec = spec();
    let bad_list = json!({ "list_id": "06526938-56dd-11e9-932a-fa163ea075fa" });
    let bad_import = json!({ "import_data": [{ "email": "a@example.com" }] });
    for (path, method, part, instance) in [
        (
            "/contact_lists/{list_id}",
            "get",
            Part::Response("200"),
            bad_list,
        ),
        (
            "/activities/contacts_json_import",
            "post",
            Part::Body,
            bad_import,
        ),
    ] {
        let outcome = std::panic::catch_unwind(|| check(&spec, path, method, part, &instance));
        assert!(
            outcome.is_err(),
            "{method} {path} accepted an invalid instance"
        );
    }
}
