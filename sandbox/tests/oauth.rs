//! The sandbox's OAuth 2 side over HTTP: the consent page, codes with
//! PKCE, tokens and their rotation.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;

#[tokio::test]
async fn the_consent_page_refuses_unknown_clients_and_redirect_uris_without_redirecting() {
    let sb = start(Config::default()).await;
    let page = |client: &str, uri: &str| {
        http()
            .get(format!("{}/oauth2/default/v1/authorize", sb.url()))
            .query(&[
                ("client_id", client),
                ("redirect_uri", uri),
                ("response_type", "code"),
                ("scope", "contact_data"),
                ("state", "s"),
            ])
            .send()
    };
    let ok = page(CLIENT, REDIRECT).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok
        .text()
        .await
        .unwrap()
        .contains("Sign in and allow access"));
    let unknown = page("nobody", REDIRECT).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(unknown.headers().get("location").is_none());
    let evil = page(CLIENT, "https://evil.example/cb").await.unwrap();
    assert_eq!(evil.status(), StatusCode::BAD_REQUEST);
    assert!(evil.headers().get("location").is_none());
}

#[tokio::test]
async fn denying_redirects_with_access_denied_and_a_wrong_password_stays_on_the_page() {
    let sb = start(Config::default()).await;
    let (status, q) = authorize(&sb, "contact_data", None, "deny", "demo-password").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");
    let (status, q) = authorize(&sb, "contact_data", None, "allow", "wrong").await;
    assert_eq!(status, StatusCode::OK);
    assert!(q.is_empty());
}

#[tokio::test]
async fn codes_need_the_pkce_verifier_and_work_once() {
    let sb = start(Config::default()).await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let (_, q) = authorize(
        &sb,
        "contact_data offline_access",
        Some(verifier),
        "allow",
        "demo-password",
    )
    .await;
    let code = q["code"].clone();
    let (status, body) = token(
        &sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "another-verifier-entirely-0123456789-0123456789",
            ),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // A failed attempt does not burn a code that was never redeemed...
    let (status, body) = token(
        &sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "contact_data offline_access");
    assert!(body["refresh_token"].is_string());
    // ...but a redeemed one is gone.
    let (status, body) = token(
        &sb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn no_refresh_token_without_offline_access_and_wrong_secret_is_invalid_client() {
    let sb = start(Config::default()).await;
    let (_, q) = authorize(&sb, "contact_data", None, "allow", "demo-password").await;
    let res = http()
        .post(format!("{}/oauth2/default/v1/token", sb.url()))
        .basic_auth(CLIENT, Some("wrong"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Parameters in a form body work as well as in the query string.
    let res = http()
        .post(format!("{}/oauth2/default/v1/token", sb.url()))
        .basic_auth(CLIENT, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn refresh_tokens_rotate_or_stay_as_configured() {
    for rotate in [true, false] {
        let sb = start(Config {
            rotate_refresh_tokens: rotate,
            ..Config::default()
        })
        .await;
        let (_, q) = authorize(
            &sb,
            "contact_data offline_access",
            None,
            "allow",
            "demo-password",
        )
        .await;
        let (_, first) = token(
            &sb,
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await;
        let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
        let (status, second) = token(
            &sb,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
        let (again, body) = token(
            &sb,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        )
        .await;
        if rotate {
            assert_ne!(rt1, rt2);
            assert_eq!(again, StatusCode::BAD_REQUEST);
            assert_eq!(
                body["error_description"],
                "The refresh token is invalid or expired."
            );
        } else {
            assert_eq!(rt1, rt2);
            assert_eq!(again, StatusCode::OK);
        }
    }
}
