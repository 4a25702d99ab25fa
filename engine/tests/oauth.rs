//! The OAuth side of the Constant Contact client against the sandbox, over
//! real HTTP: the authorization URL, code exchange, refresh, revocation.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod cc;

use cc::*;

#[tokio::test]
async fn the_authorization_url_asks_for_code_pkce_state_and_our_scopes() {
    let sb = start(fast()).await;
    let request = oauth(&sb).authorization_request();
    let q: HashMap<String, String> =
        form_urlencoded::parse(request.url.split_once('?').unwrap().1.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT);
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["scope"], "contact_data offline_access");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], request.state.expose());
    assert!(!request.url.contains(request.pkce_verifier.expose()));
}

#[tokio::test]
async fn code_exchange_gives_tokens_and_a_replayed_code_needs_reauthentication() {
    let sb = start(fast()).await;
    let oauth = oauth(&sb);
    let request = oauth.authorization_request();
    let back = approve(&request.url, "allow").await;
    let tokens = oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(!tokens.expires_within(Duration::from_secs(3600)));
    assert_eq!(tokens.scopes, ["contact_data", "offline_access"]);
    let replay = oauth
        .exchange_code(&back["code"], &request.pkce_verifier)
        .await;
    assert_eq!(replay, Err(CcError::NeedsReauthentication));
    let wrong_verifier = oauth.authorization_request();
    let back2 = approve(&wrong_verifier.url, "allow").await;
    assert_eq!(
        oauth
            .exchange_code(&back2["code"], &request.pkce_verifier)
            .await,
        Err(CcError::NeedsReauthentication)
    );
}

#[tokio::test]
async fn denial_comes_back_as_access_denied() {
    let sb = start(fast()).await;
    let request = oauth(&sb).authorization_request();
    let back = approve(&request.url, "deny").await;
    assert_eq!(back["error"], "access_denied");
    assert_eq!(back["state"], request.state.expose());
}

#[tokio::test]
async fn refresh_keeps_whatever_refresh_token_comes_back() {
    for rotate in [true, false] {
        let sb = start(Config {
            rotate_refresh_tokens: rotate,
            ..fast()
        })
        .await;
        let first = sign_in(&sb).await;
        let second = oauth(&sb)
            .refresh(first.refresh_token.as_ref().unwrap())
            .await
            .unwrap();
        assert_ne!(first.access_token, second.access_token);
        assert_eq!(first.refresh_token == second.refresh_token, !rotate);
        let again = oauth(&sb)
            .refresh(first.refresh_token.as_ref().unwrap())
            .await;
        if rotate {
            assert_eq!(again, Err(CcError::NeedsReauthentication));
        } else {
            assert!(again.is_ok());
        }
    }
}

#[tokio::test]
async fn a_401_refreshes_once_and_the_new_tokens_are_handed_over() {
    let sb = start(fast()).await;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let api = client(&sb).await.on_refresh(Arc::new(move |_t: &Tokens| {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    let before = api.tokens().await;
    plain_http()
        .post(format!("{}/_sandbox/tokens/expire_access", sb.url()))
        .send()
        .await
        .unwrap();
    assert!(!api.privileges().await.unwrap().is_empty());
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    let after = api.tokens().await;
    assert_ne!(before.access_token, after.access_token);
    assert_ne!(
        before.refresh_token, after.refresh_token,
        "the rotated refresh token must be kept"
    );
}

#[tokio::test]
async fn revoked_tokens_end_in_needs_reauthentication() {
    let sb = start(fast()).await;
    let api = client(&sb).await;
    let tokens = api.tokens().await;
    oauth(&sb)
        .revoke(tokens.refresh_token.as_ref().unwrap(), true)
        .await
        .unwrap();
    oauth(&sb)
        .revoke(&tokens.access_token, false)
        .await
        .unwrap();
    assert_eq!(api.lists().await, Err(CcError::NeedsReauthentication));
    assert!(CcError::NeedsReauthentication
        .to_string()
        .contains("re-authenticated"));
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_before_the_request() {
    let sb = start(Config {
        token_expires_in: 60,
        ..fast()
    })
    .await;
    let api = client(&sb).await;
    let before = api.tokens().await;
    assert!(before.expires_within(Duration::from_secs(120)));
    api.privileges().await.unwrap();
    assert_ne!(api.tokens().await.access_token, before.access_token);
    let log = sandbox_json(&sb, "/_sandbox/requests").await;
    assert!(
        log["requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 200),
        "no 401 was needed: {log}"
    );
}
