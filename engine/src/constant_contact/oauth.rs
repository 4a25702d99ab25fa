//! OAuth 2 with Constant Contact through the `oauth2` crate: the
//! authorization URL (code flow, PKCE S256, `state`), code exchange and
//! refresh with HTTP Basic client authentication, and revocation (RFC 7009,
//! sent by hand: `oauth2` refuses a revocation URL that is not HTTPS,
//! which rules out the local sandbox). The HTTP client for tokens follows
//! no redirects.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};

use super::{CcError, Endpoints, Secret};

/// Scopes the product asks for: contacts and lists, and a refresh token.
pub const SCOPES: [&str; 2] = ["contact_data", "offline_access"];

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// A token set as Constant Contact issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: Secret,
    /// Rotating or long-lived: whatever came back is what to keep.
    pub refresh_token: Option<Secret>,
    /// Unix milliseconds when the access token expires (from `expires_in`).
    pub expires_at: i64,
    pub scopes: Vec<String>,
}

impl Tokens {
    /// True when the access token expires within `margin`.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at <= crate::time::now_ms() + margin.as_millis() as i64
    }
}

/// What to keep server-side while the user is at Constant Contact.
#[derive(Debug)]
pub struct AuthRequest {
    /// Where to send the browser.
    pub url: String,
    /// The `state` to bind to the session and compare on return.
    pub state: Secret,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: Secret,
}

/// The OAuth side of one registered Constant Contact application.
#[derive(Clone)]
pub struct OAuthClient {
    client: Client,
    http: reqwest::Client,
    client_id: String,
    client_secret: Secret,
    revoke_url: String,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", self.client.client_id())
            .finish_non_exhaustive()
    }
}

fn config_error(what: &str, e: impl std::fmt::Display) -> CcError {
    CcError::OAuth(format!("invalid {what}: {e}"))
}

impl OAuthClient {
    pub fn new(
        endpoints: &Endpoints,
        client_id: &str,
        client_secret: &Secret,
        redirect_uri: &str,
    ) -> Result<Self, CcError> {
        let client = BasicClient::new(ClientId::new(client_id.to_owned()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_owned()))
            .set_auth_uri(
                AuthUrl::new(endpoints.authorize_url.clone())
                    .map_err(|e| config_error("authorize URL", e))?,
            )
            .set_token_uri(
                TokenUrl::new(endpoints.token_url.clone())
                    .map_err(|e| config_error("token URL", e))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned())
                    .map_err(|e| config_error("redirect URI", e))?,
            );
        let http = reqwest::Client::builder()
            // A token endpoint that redirects must not take our secret along.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CcError::network(&e))?;
        Ok(OAuthClient {
            client,
            http,
            client_id: client_id.to_owned(),
            client_secret: client_secret.clone(),
            revoke_url: endpoints.revoke_url.clone(),
        })
    }

    /// The authorization URL for the code flow with PKCE (S256) and a
    /// fresh `state`.
    pub fn authorization_request(&self) -> AuthRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        AuthRequest {
            url: url.to_string(),
            state: Secret::new(state.secret().clone()),
            pkce_verifier: Secret::new(verifier.secret().clone()),
        }
    }

    /// Exchanges an authorization code (with its PKCE verifier) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
    ) -> Result<Tokens, CcError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(tokens_from(&response, None))
    }

    /// Refreshes. A rotating refresh token comes back new; a long-lived one
    /// may come back the same or not at all, in which case the old one is
    /// kept.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens, CcError> {
        let rt = RefreshToken::new(refresh_token.expose().to_owned());
        let response = self
            .client
            .exchange_refresh_token(&rt)
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(tokens_from(&response, Some(refresh_token)))
    }

    /// Revokes a token at Constant Contact (best effort by the caller):
    /// `POST token=…&token_type_hint=…` with HTTP Basic client
    /// authentication, both parts form-encoded as RFC 6749 §2.3.1 says.
    pub async fn revoke(&self, token: &Secret, is_refresh: bool) -> Result<(), CcError> {
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let hint = if is_refresh {
            "refresh_token"
        } else {
            "access_token"
        };
        let res = self
            .http
            .post(&self.revoke_url)
            .basic_auth(
                encode(&self.client_id),
                Some(encode(self.client_secret.expose())),
            )
            .form(&[("token", token.expose()), ("token_type_hint", hint)])
            .send()
            .await
            .map_err(|e| CcError::network(&e))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let body = res.text().await.unwrap_or_default();
        Err(CcError::OAuth(format!(
            "revocation refused ({status}): {}",
            body.chars().take(200).collect::<String>()
        )))
    }
}

fn tokens_from(r: &oauth2::basic::BasicTokenResponse, previous_refresh: Option<&Secret>) -> Tokens {
    // Constant Contact documents 24 h; trust `expires_in`, and assume an
    // hour if it is missing.
    let lifetime = r.expires_in().unwrap_or(Duration::from_secs(3600));
    Tokens {
        access_token: Secret::new(r.access_token().secret().clone()),
        refresh_token: r
            .refresh_token()
            .map(|t| Secret::new(t.secret().clone()))
            .or_else(|| previous_refresh.cloned()),
        expires_at: crate::time::now_ms() + lifetime.as_millis() as i64,
        scopes: r
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> CcError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            BasicErrorResponseType::InvalidGrant => CcError::NeedsReauthentication,
            other => CcError::OAuth(match r.error_description() {
                Some(d) => format!("{} ({d})", other.as_ref()),
                None => other.as_ref().to_owned(),
            }),
        },
        RequestTokenError::Request(e) => {
            tracing::warn!(error = %e, "token request to Constant Contact failed");
            CcError::Network(String::from("the connection failed"))
        }
        RequestTokenError::Parse(e, _) => CcError::Protocol(format!("token response: {e}")),
        RequestTokenError::Other(e) => CcError::OAuth(e),
    }
}
