//! The Constant Contact v3 client: OAuth 2 (code flow with PKCE, refresh,
//! revoke, through the `oauth2` crate), the API calls the product makes,
//! the import batch builder, request pacing and error classification.
//!
//! Written from `shared/constant-contact/api-reference.md` and the
//! official spec, independently of the `sandbox` crate.

pub mod api;
pub mod batch;
pub mod error;
mod model;
pub mod oauth;
pub mod pacer;

pub use api::{ApiClient, RetryPolicy, TokenKeeper, MIN_INTERVAL};
pub use batch::{Batch, BatchBuilder, ImportContact, Rejection};
pub use error::CcError;
pub use oauth::{AuthRequest, OAuthClient, Tokens};
pub use pacer::Pacer;

/// A secret string (token, client secret) that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; only for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where Constant Contact lives. The defaults are the real service; the
/// sandbox's are set by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize_url: String,
    pub token_url: String,
    pub revoke_url: String,
    /// The API base including `/v3`.
    pub api_base: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            authorize_url: "https://authz.constantcontact.com/oauth2/default/v1/authorize".into(),
            token_url: "https://authz.constantcontact.com/oauth2/default/v1/token".into(),
            revoke_url: "https://authz.constantcontact.com/oauth2/default/v1/revoke".into(),
            api_base: "https://api.cc.email/v3".into(),
        }
    }
}

impl Endpoints {
    /// The endpoints of a sandbox (or any emulator) at `base`, e.g.
    /// `http://127.0.0.1:3030`.
    pub fn at(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Endpoints {
            authorize_url: format!("{base}/oauth2/default/v1/authorize"),
            token_url: format!("{base}/oauth2/default/v1/token"),
            revoke_url: format!("{base}/oauth2/default/v1/revoke"),
            api_base: format!("{base}/v3"),
        }
    }

    /// The scheme and host of the API, to which `_links` hrefs (which
    /// start with `/v3`) are relative.
    pub fn api_origin(&self) -> &str {
        self.api_base.strip_suffix("/v3").unwrap_or(&self.api_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Secret::new("sbx_at_very_secret");
        assert!(!format!("{s:?}").contains("very_secret"));
    }

    #[test]
    fn the_default_endpoints_are_constant_contacts() {
        let e = Endpoints::default();
        assert_eq!(e.api_origin(), "https://api.cc.email");
        assert_eq!(
            Endpoints::at("http://127.0.0.1:1/").token_url,
            "http://127.0.0.1:1/oauth2/default/v1/token"
        );
    }
}
