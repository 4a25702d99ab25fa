//! The real server, started on port 0 with its own database, driven over
//! HTTP with a cookie-keeping client. Runs on SQLite, and on PostgreSQL
//! when `TEST_DATABASE=postgres`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{TestApp, ADMIN_PW, USER_PW};
use reqwest::{Client, StatusCode};

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("segment_export_session="))
        .map(str::to_owned)
}

#[tokio::test]
async fn signed_out_visitors_are_sent_to_sign_in_and_non_admins_get_no_admin_page() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let res = app.page(&app.client(), "/admin/users").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/login");

    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let page = app
        .page(&viewer, "/admin/users")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("No access"), "{page}");
    assert!(!page.contains("admin@example.com"));

    let page = app.page(&admin, "/admin/users").await.text().await.unwrap();
    assert!(page.contains("viewer@example.com"));
}

#[tokio::test]
async fn health_answers_when_the_database_does() {
    let app = TestApp::spawn().await;
    let res = app.client().get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn pages_redirect_to_setup_until_the_first_admin_exists_and_never_after() {
    let app = TestApp::spawn().await;
    let c = app.client();
    let res = app.page(&c, "/").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/setup");

    let page = app.page(&c, "/setup").await.text().await.unwrap();
    assert!(page.contains("Create the first administrator"));

    app.setup_admin().await;
    let anon = app.client();
    let res = app.page(&anon, "/setup").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/login");
    let (status, body) = app
        .call(
            &anon,
            "create_first_admin",
            &[
                ("email", "x@example.com"),
                ("password", "another password"),
                ("confirm_password", "another password"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("already been created"), "{body}");
}

#[tokio::test]
async fn the_session_cookie_is_signed_http_only_lax_and_cycled_on_sign_in() {
    let app = TestApp::spawn().await;
    app.setup_admin().await;
    let c = app.client();
    let sign_in = |c: Client| {
        let url = app.url("/api/sign_in");
        async move {
            c.post(url)
                .form(&[("email", "admin@example.com"), ("password", ADMIN_PW)])
                .send()
                .await
                .unwrap()
        }
    };
    let first = sign_in(c.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_cookie = session_cookie(&first).unwrap();
    assert!(first_cookie.contains("HttpOnly"), "{first_cookie}");
    assert!(first_cookie.contains("SameSite=Lax"), "{first_cookie}");
    let second_cookie = session_cookie(&sign_in(c.clone()).await).unwrap();
    let value = |cookie: &str| cookie.split(';').next().unwrap().to_owned();
    assert_ne!(
        value(&first_cookie),
        value(&second_cookie),
        "the session id must change at sign-in"
    );

    // The replaced session no longer signs anyone in.
    let stale = app.client();
    let res = stale
        .post(app.url("/api/get_session"))
        .header(reqwest::header::COOKIE, value(&first_cookie))
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("\"user\":null"));

    // A tampered cookie is ignored.
    let mut forged = value(&second_cookie);
    forged.push('x');
    let res = stale
        .post(app.url("/api/list_users"))
        .header(reqwest::header::COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Signing out ends the session on the server.
    let (status, _) = app.call(&c, "sign_out", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(&c, "list_users", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let res = stale
        .post(app.url("/api/list_users"))
        .header(reqwest::header::COOKIE, value(&second_cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_read_the_same_and_repeated_failures_lock_out() {
    let app = TestApp::spawn().await;
    app.setup_admin().await;
    let c = app.client();
    let (s1, wrong) = app
        .call(
            &c,
            "sign_in",
            &[
                ("email", "admin@example.com"),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    let (s2, unknown) = app
        .call(
            &c,
            "sign_in",
            &[
                ("email", "ghost@example.com"),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::CONFLICT, StatusCode::CONFLICT));
    assert_eq!(wrong, unknown);
    assert!(wrong.contains("The email or password is not correct."));
    for _ in 1..engine::users::MAX_FAILURES {
        app.call(
            &c,
            "sign_in",
            &[
                ("email", "admin@example.com"),
                ("password", "nope nope nope"),
            ],
        )
        .await;
    }
    let (_, locked) = app
        .call(
            &c,
            "sign_in",
            &[("email", "admin@example.com"), ("password", ADMIN_PW)],
        )
        .await;
    assert!(
        locked.contains("Too many failed sign-in attempts"),
        "{locked}"
    );
}

#[tokio::test]
async fn every_server_function_checks_the_callers_role() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    let contributor = app
        .user(&admin, "contributor@example.com", "contributor")
        .await;
    let anonymous = app.client();
    let target = app.user_id("viewer@example.com").await.to_string();

    // (function, form, lowest role allowed: 0 anyone, 1 viewer, 2 contributor, 3 admin)
    type Form = Vec<(&'static str, String)>;
    let functions: Vec<(&str, Form, u8)> = vec![
        ("get_session", vec![], 0),
        ("get_overview", vec![], 1),
        ("list_users", vec![], 3),
        (
            "create_user",
            vec![("role", "viewer".into()), ("password", USER_PW.into())],
            3,
        ),
        (
            "set_user_role",
            vec![("user_id", target.clone()), ("role", "viewer".into())],
            3,
        ),
        (
            "set_user_active",
            vec![("user_id", target.clone()), ("active", "true".into())],
            3,
        ),
    ];
    let callers = [
        (&anonymous, 0u8, "anonymous"),
        (&viewer, 1, "viewer"),
        (&contributor, 2, "contributor"),
        (&admin, 3, "admin"),
    ];
    for (n, (function, form, needed)) in functions.iter().enumerate() {
        for (i, (client, level, who)) in callers.iter().enumerate() {
            let mut form: Vec<(&str, String)> = form.clone();
            if *function == "create_user" {
                form.push(("email", format!("new{n}{i}@example.com")));
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = app.call(client, function, &form).await;
            let expected = if level >= needed {
                StatusCode::OK
            } else if *level == 0 {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "{function} as {who}: {body}");
        }
    }
    // Nothing was created by the refused calls.
    let emails: Vec<String> = engine::users::list_users(&app.db.db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(
        emails.iter().filter(|e| e.starts_with("new")).count(),
        1,
        "{emails:?}"
    );
}

#[tokio::test]
async fn a_deactivated_users_session_stops_working_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let viewer = app.user(&admin, "viewer@example.com", "viewer").await;
    assert_eq!(
        app.call(&viewer, "get_overview", &[]).await.0,
        StatusCode::OK
    );
    let id = app.user_id("viewer@example.com").await.to_string();
    let (status, body) = app
        .call(
            &admin,
            "set_user_active",
            &[("user_id", &id), ("active", "false")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        app.call(&viewer, "get_overview", &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_role_change_applies_to_the_next_request() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let carol = app.user(&admin, "carol@example.com", "contributor").await;
    assert_eq!(
        app.call(&carol, "list_users", &[]).await.0,
        StatusCode::FORBIDDEN
    );
    let id = app.user_id("carol@example.com").await.to_string();
    app.call(
        &admin,
        "set_user_role",
        &[("user_id", &id), ("role", "admin")],
    )
    .await;
    assert_eq!(app.call(&carol, "list_users", &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn validation_errors_name_their_field() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let (status, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("email", "not-an-email"),
                ("role", "viewer"),
                ("password", USER_PW),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["Field"]["field"], "email", "{body}");
    let (status, body) = app
        .call(
            &admin,
            "create_user",
            &[
                ("email", "ok@example.com"),
                ("role", "owner"),
                ("password", USER_PW),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("\"role\""), "{body}");
}

#[tokio::test]
async fn cross_origin_writes_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let res = admin
        .post(app.url("/api/create_user"))
        .header(reqwest::header::ORIGIN, "https://evil.example")
        .form(&[
            ("email", "evil@example.com"),
            ("role", "admin"),
            ("password", USER_PW),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let same = admin
        .post(app.url("/api/list_users"))
        .header(reqwest::header::ORIGIN, format!("http://{}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_page_is_a_404_with_the_app_around_it() {
    let app = TestApp::spawn().await;
    app.setup_admin().await;
    let res = app.page(&app.client(), "/no/such/page").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(res.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn pages_and_answers_are_compressed_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let admin = app.setup_admin().await;
    let page = admin
        .get(app.url("/data/exports"))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-encoding"], "br");
    let answer = admin
        .post(app.url("/api/list_exports"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["content-encoding"], "gzip");
    // A client that does not say it accepts either gets plain text.
    let plain = admin
        .post(app.url("/api/list_exports"))
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().starts_with('{'));
}

#[tokio::test]
async fn a_form_with_several_problems_gets_all_of_them_at_once() {
    let app = TestApp::spawn().await;
    app.setup_admin().await;
    let (status, body) = app
        .call(
            &app.client(),
            "sign_in",
            &[("email", " "), ("password", "")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fields: Vec<&str> = err["Fields"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"]);
}

/// The bundle goes out under its hashed names, precompressed when the
/// browser accepts it, and is kept for good; pages name the current files.
#[tokio::test]
async fn the_bundle_is_served_by_hashed_name_precompressed_and_kept_for_good() {
    let site = tempfile::tempdir().unwrap();
    let pkg = site.path().join("pkg");
    std::fs::create_dir_all(pkg.join("snippets/app-0/")).unwrap();
    std::fs::write(
        site.path().join("hash.txt"),
        "js: 1111111111111111\nwasm: 2222222222222222\ncss: 3333333333333333\n",
    )
    .unwrap();
    let js = "segment-export.1111111111111111.js";
    let wasm = "segment-export.2222222222222222.wasm";
    std::fs::write(pkg.join(js), "export default function () {}").unwrap();
    std::fs::write(pkg.join(format!("{js}.br")), "brotli bytes").unwrap();
    std::fs::write(pkg.join(wasm), b"\0asm").unwrap();
    std::fs::write(pkg.join(format!("{wasm}.gz")), "gzip bytes").unwrap();
    std::fs::write(pkg.join("segment-export.3333333333333333.css"), "body{}").unwrap();
    std::fs::write(pkg.join("snippets/app-0/inline0.js"), "export {}").unwrap();
    let root = site.path().to_string_lossy().into_owned();
    let (app, _sb) = TestApp::spawn_with_sandbox(move |c, _| c.site_root = root).await;

    let admin = app.setup_admin().await;
    let page = app.page(&admin, "/").await.text().await.unwrap();
    for name in [js, wasm, "segment-export.3333333333333333.css"] {
        assert!(page.contains(&format!("/pkg/{name}")), "{name} not linked");
    }

    let get = |path: &str, accept: Option<&str>| {
        let mut req = app.client().get(app.url(path));
        if let Some(accept) = accept {
            req = req.header("accept-encoding", accept);
        }
        req.send()
    };
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let immutable = Some(String::from("public, max-age=31536000, immutable"));

    let res = get(&format!("/pkg/{js}"), Some("gzip, br")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "content-encoding").as_deref(), Some("br"));
    assert_eq!(header(&res, "cache-control"), immutable);
    assert!(header(&res, "content-type").unwrap().contains("javascript"));
    assert_eq!(res.text().await.unwrap(), "brotli bytes");

    let res = get(&format!("/pkg/{wasm}"), Some("gzip, br"))
        .await
        .unwrap();
    assert_eq!(header(&res, "content-encoding").as_deref(), Some("gzip"));
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/wasm")
    );
    assert_eq!(header(&res, "cache-control"), immutable);
    assert_eq!(res.text().await.unwrap(), "gzip bytes");

    // A browser that accepts neither gets the file as it is.
    let res = get(&format!("/pkg/{wasm}"), None).await.unwrap();
    assert_eq!(header(&res, "content-encoding"), None);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"\0asm");

    // A name without a hash is revalidated; a missing file is a 404.
    let res = get("/pkg/snippets/app-0/inline0.js", None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-cache"));
    let res = get("/pkg/segment-export.0000000000000000.js", None)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
