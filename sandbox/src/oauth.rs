//! OAuth 2 as Constant Contact's authorization server speaks it
//! (reference §1): `/oauth2/default/v1/authorize` (sign-in and consent
//! page), `/token` (code with PKCE, refresh; Basic client auth; parameters
//! in the query string or the form body) and `/revoke`.

// Helpers return ready-made error responses for handlers to pass on;
// their size does not matter at this rate of calls.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::state::{random_token, AuthCode, Shared};

pub const AUTHORIZE_PATH: &str = "/oauth2/default/v1/authorize";
pub const TOKEN_PATH: &str = "/oauth2/default/v1/token";
pub const REVOKE_PATH: &str = "/oauth2/default/v1/revoke";

const CODE_LIFETIME: Duration = Duration::from_secs(5 * 60);
const KNOWN_SCOPES: [&str; 6] = [
    "account_read",
    "account_update",
    "contact_data",
    "campaign_data",
    "offline_access",
    "openid",
];

type Params = HashMap<String, String>;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn refuse(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><title>Error</title><h1>Authorization error</h1><p>{}</p>",
            html_escape(message)
        )),
    )
        .into_response()
}

/// Appends query parameters to a registered redirect URI.
fn redirect_with(uri: &str, params: &[(&str, &str)]) -> Response {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{uri}{sep}{}", ser.finish())).into_response()
}

/// Checks the client and redirect URI. Either failing is answered here,
/// never by redirecting (the redirect target is not trusted yet).
fn check_client(shared: &Shared, p: &Params) -> Result<(), Response> {
    let inner = shared.lock();
    let Some(client) = p.get("client_id").and_then(|id| inner.client(id)) else {
        return Err(refuse("Unknown client_id."));
    };
    let Some(uri) = p.get("redirect_uri") else {
        return Err(refuse("redirect_uri is required."));
    };
    if !client.redirect_uris.iter().any(|r| r == uri) {
        return Err(refuse(
            "The redirect_uri is not registered for this client.",
        ));
    }
    Ok(())
}

fn consent_page(p: &Params, error: Option<&str>) -> Response {
    let hidden: String = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ]
    .iter()
    .filter_map(|k| {
        p.get(*k).map(|v| {
            format!(
                r#"<input type="hidden" name="{k}" value="{}">"#,
                html_escape(v)
            )
        })
    })
    .collect();
    let scopes: String = p
        .get("scope")
        .map(|s| {
            s.split_whitespace()
                .map(|s| format!("<li>{}</li>", html_escape(s)))
                .collect()
        })
        .unwrap_or_default();
    let error = error
        .map(|e| {
            format!(
                r#"<p role="alert" style="color:#b91c1c">{}</p>"#,
                html_escape(e)
            )
        })
        .unwrap_or_default();
    Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Constant Contact (sandbox)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}}label{{display:block;margin-top:.8rem}}input[type=text],input[type=password]{{width:100%;padding:.4rem}}button{{margin-top:1rem;margin-right:.5rem;padding:.4rem 1rem}}</style>
</head><body>
<p><strong>Constant Contact</strong> sandbox</p>
<h1>Sign in and allow access</h1>
<p>The application <code>{client}</code> asks for access to your account:</p>
<ul>{scopes}</ul>
{error}
<form method="post" action="{AUTHORIZE_PATH}">
{hidden}
<label for="username">Username</label><input id="username" name="username" type="text" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form></body></html>"#,
        client = html_escape(p.get("client_id").map(String::as_str).unwrap_or("")),
    ))
    .into_response()
}

/// `GET /authorize`: the sign-in and consent page.
pub async fn authorize_page(State(shared): State<Shared>, Query(p): Query<Params>) -> Response {
    if let Err(r) = check_client(&shared, &p) {
        return r;
    }
    let uri = p.get("redirect_uri").cloned().unwrap_or_default();
    let state = p.get("state").cloned().unwrap_or_default();
    if p.get("response_type").map(String::as_str) != Some("code") {
        return redirect_with(
            &uri,
            &[
                ("error", "unsupported_response_type"),
                ("error_description", "Only response_type=code is supported."),
                ("state", &state),
            ],
        );
    }
    if let Some(bad) = p
        .get("scope")
        .and_then(|s| s.split_whitespace().find(|s| !KNOWN_SCOPES.contains(s)))
    {
        return redirect_with(
            &uri,
            &[
                ("error", "invalid_scope"),
                ("error_description", &format!("Unknown scope {bad}.")),
                ("state", &state),
            ],
        );
    }
    if p.contains_key("code_challenge")
        && p.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return redirect_with(
            &uri,
            &[
                ("error", "invalid_request"),
                ("error_description", "code_challenge_method must be S256."),
                ("state", &state),
            ],
        );
    }
    consent_page(&p, None)
}

/// `POST /authorize`: the consent page's answer.
pub async fn authorize_submit(State(shared): State<Shared>, body: Bytes) -> Response {
    let p: Params = form_urlencoded::parse(&body).into_owned().collect();
    if let Err(r) = check_client(&shared, &p) {
        return r;
    }
    let uri = p.get("redirect_uri").cloned().unwrap_or_default();
    let state = p.get("state").cloned().unwrap_or_default();
    if p.get("decision").map(String::as_str) != Some("allow") {
        return redirect_with(
            &uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user denied access."),
                ("state", &state),
            ],
        );
    }
    let mut inner = shared.lock();
    let username = p.get("username").map(String::as_str).unwrap_or("");
    let password = p.get("password").map(String::as_str).unwrap_or("");
    let Some(account) = inner
        .accounts
        .iter()
        .position(|a| a.username == username && a.password == password)
    else {
        drop(inner);
        return consent_page(&p, Some("The username or password is not correct."));
    };
    let code = random_token("sbx_code_");
    let challenge = p.get("code_challenge").map(|c| {
        (
            p.get("code_challenge_method").cloned().unwrap_or_default(),
            c.clone(),
        )
    });
    inner.codes.insert(
        code.clone(),
        AuthCode {
            client_id: p.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: uri.clone(),
            scopes: p
                .get("scope")
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
            account,
            challenge,
            expires_at: Instant::now() + CODE_LIFETIME,
            used: false,
        },
    );
    drop(inner);
    redirect_with(&uri, &[("code", &code), ("state", &state)])
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Parameters from the query string and the form body together.
fn merged_params(query: Params, headers: &HeaderMap, body: &Bytes) -> Params {
    let mut p = query;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        p.extend(form_urlencoded::parse(body).into_owned());
    }
    p
}

/// The client from HTTP Basic, or from `client_id` (and `client_secret`)
/// parameters. `Ok((id, authenticated_with_secret))`.
fn client_auth(
    shared: &Shared,
    headers: &HeaderMap,
    p: &Params,
) -> Result<(String, bool), Response> {
    let invalid = || {
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed.",
        )
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(|b64| {
            STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
        });
    let (id, secret) = match basic {
        Some(Some(pair)) => {
            let Some((id, secret)) = pair.split_once(':') else {
                return Err(invalid());
            };
            // RFC 6749 §2.3.1: both parts are form-urlencoded.
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(id), Some(decode(secret)))
        }
        Some(None) => return Err(invalid()),
        None => match p.get("client_id") {
            Some(id) => (id.clone(), p.get("client_secret").cloned()),
            None => return Err(invalid()),
        },
    };
    let inner = shared.lock();
    let Some(client) = inner.client(&id) else {
        return Err(invalid());
    };
    match secret {
        Some(s) if s == client.secret => Ok((id, true)),
        Some(_) => Err(invalid()),
        None => Ok((id, false)),
    }
}

/// `POST /token`.
pub async fn token(
    State(shared): State<Shared>,
    Query(query): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = merged_params(query, &headers, &body);
    let (client_id, with_secret) = match client_auth(&shared, &headers, &p) {
        Ok(c) => c,
        Err(r) => return r,
    };
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(&shared, &client_id, with_secret, &p),
        Some("refresh_token") => refresh(&shared, &client_id, &p),
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("The grant type {other} is not supported."),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required.",
        ),
    }
}

fn exchange_code(shared: &Shared, client_id: &str, with_secret: bool, p: &Params) -> Response {
    let invalid = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
    let Some(code) = p.get("code") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code is required.",
        );
    };
    let mut inner = shared.lock();
    let Some(grant) = inner.codes.get_mut(code) else {
        return invalid("The authorization code is invalid or has expired.");
    };
    if grant.used || grant.expires_at <= Instant::now() {
        grant.used = true;
        return invalid("The authorization code is invalid or has expired.");
    }
    if grant.client_id != client_id {
        return invalid("The authorization code was issued to another client.");
    }
    if p.get("redirect_uri") != Some(&grant.redirect_uri) {
        return invalid("The redirect_uri does not match the authorization request.");
    }
    match &grant.challenge {
        Some((_, challenge)) => {
            let Some(verifier) = p.get("code_verifier") else {
                return invalid("PKCE verification failed: code_verifier is missing.");
            };
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if &computed != challenge {
                return invalid("PKCE verification failed.");
            }
        }
        None if !with_secret => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed.",
            );
        }
        None => {}
    }
    grant.used = true;
    let (account, scopes) = (grant.account, grant.scopes.clone());
    let body = inner.issue_tokens(client_id, account, &scopes, None);
    (StatusCode::OK, Json(body)).into_response()
}

fn refresh(shared: &Shared, client_id: &str, p: &Params) -> Response {
    let invalid = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The refresh token is invalid or expired.",
        )
    };
    let Some(rt) = p.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required.",
        );
    };
    let mut inner = shared.lock();
    let rotate = inner.settings.rotate_refresh_tokens;
    let Some(token) = inner.refresh_tokens.get_mut(rt) else {
        return invalid();
    };
    if token.revoked || token.client_id != client_id {
        return invalid();
    }
    let (account, scopes) = (token.account, token.scopes.clone());
    let reuse = if rotate {
        token.revoked = true;
        None
    } else {
        Some(rt.clone())
    };
    let body = inner.issue_tokens(client_id, account, &scopes, reuse);
    (StatusCode::OK, Json(body)).into_response()
}

/// `POST /revoke`: revokes an access or refresh token of the client.
pub async fn revoke(
    State(shared): State<Shared>,
    Query(query): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = merged_params(query, &headers, &body);
    let (client_id, _) = match client_auth(&shared, &headers, &p) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(token) = p.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required.",
        );
    };
    let mut inner = shared.lock();
    if let Some(t) = inner
        .access_tokens
        .get_mut(token)
        .filter(|t| t.client_id == client_id)
    {
        t.revoked = true;
    }
    if let Some(t) = inner
        .refresh_tokens
        .get_mut(token)
        .filter(|t| t.client_id == client_id)
    {
        t.revoked = true;
    }
    // RFC 7009: 200 whether or not the token was known.
    StatusCode::OK.into_response()
}
