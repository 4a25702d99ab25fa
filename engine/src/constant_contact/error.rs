//! Constant Contact errors, parsed from either body form and classified
//! as retryable or fatal (reference §3).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CcError {
    /// 429 `throttled`: more than 4 requests a second. Retryable.
    #[error("Constant Contact is throttling requests (too many per second).")]
    Throttled,
    /// 429 `quota_exceeded`: the daily quota is spent until midnight UTC.
    #[error("The daily Constant Contact API quota is used up; it resets at midnight UTC.")]
    QuotaExceeded,
    /// 401 after a refresh was already tried.
    #[error("Constant Contact did not accept the access token.")]
    Unauthorized,
    /// The refresh token is invalid, expired or revoked: only a new sign-in helps.
    #[error("The connection to Constant Contact needs to be re-authenticated.")]
    NeedsReauthentication,
    #[error("Constant Contact refused access: {0}")]
    Forbidden(String),
    #[error("Not found in Constant Contact: {0}")]
    NotFound(String),
    #[error("Conflict in Constant Contact: {0}")]
    Conflict(String),
    /// 400/415 and other refusals of the request itself.
    #[error("Constant Contact rejected the request: {0}")]
    Rejected(String),
    /// 5xx. Retryable.
    #[error("Constant Contact had a server error ({status}): {message}")]
    Server { status: u16, message: String },
    /// Timeouts, resets, refused connections. Retryable.
    #[error("Could not reach Constant Contact: {0}")]
    Network(String),
    /// The authorization server refused a code or parameters.
    #[error("Constant Contact sign-in failed: {0}")]
    OAuth(String),
    /// A response we could not understand.
    #[error("Unexpected response from Constant Contact: {0}")]
    Protocol(String),
    /// Our side failed keeping the tokens (the database); the cause is in
    /// the log.
    #[error("The connection's tokens could not be read or stored here.")]
    TokenStorage,
}

impl CcError {
    /// A request that got no answer. The message says what kind of failure
    /// it was and nothing more: reqwest's own text names the URL (our
    /// sandbox's or a proxy's address), which users must not see. The
    /// whole error goes to the log.
    pub(crate) fn network(e: &reqwest::Error) -> Self {
        tracing::warn!(error = %e, "request to Constant Contact failed");
        CcError::Network(String::from(if e.is_timeout() {
            "the request timed out"
        } else if e.is_connect() {
            "no connection could be made"
        } else if e.is_body() || e.is_decode() {
            "the answer was cut off"
        } else {
            "the connection failed"
        }))
    }

    /// True for errors worth retrying with backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CcError::Throttled | CcError::Server { .. } | CcError::Network(_)
        )
    }

    /// Classifies a non-success API response from its status and body.
    pub fn from_response(status: u16, body: &str) -> Self {
        let (key, message) = parse_body(status, body);
        match status {
            401 => CcError::Unauthorized,
            429 if key.as_deref() == Some("quota_exceeded") => CcError::QuotaExceeded,
            429 => CcError::Throttled,
            403 => CcError::Forbidden(message),
            404 => CcError::NotFound(message),
            409 => CcError::Conflict(message),
            500..=599 => CcError::Server { status, message },
            _ => CcError::Rejected(message),
        }
    }
}

#[derive(Deserialize)]
struct ErrorItem {
    error_key: Option<String>,
    error_message: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    Many(Vec<ErrorItem>),
    One(ErrorItem),
}

/// The first error key and every message, from the array form
/// (`[{"error_key", "error_message"}]`) or the single-object form. A body
/// in neither form (an HTML error page, another JSON shape, nothing) is
/// told by its status and a short excerpt, never as "no details".
pub fn parse_body(status: u16, body: &str) -> (Option<String>, String) {
    let items = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody::Many(v)) => v,
        Ok(ErrorBody::One(e)) => vec![e],
        Err(_) => Vec::new(),
    };
    let key = items.iter().find_map(|i| i.error_key.clone());
    let message = items
        .iter()
        .filter_map(|i| i.error_message.clone().or_else(|| i.error_key.clone()))
        .collect::<Vec<_>>()
        .join("; ");
    if message.is_empty() {
        return (key, excerpt(status, body));
    }
    (key, message)
}

/// "HTTP 502: <first 200 characters, whitespace collapsed>".
fn excerpt(status: u16, body: &str) -> String {
    let text: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        format!("HTTP {status} with an empty body")
    } else {
        format!("HTTP {status}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_body_forms_are_read() {
        let array = r#"[{"error_key":"contacts.api.not_found","error_message":"contact_id is in an invalid format."}]"#;
        assert_eq!(
            CcError::from_response(404, array),
            CcError::NotFound("contact_id is in an invalid format.".into())
        );
        let object = r#"{"error_key":"quota_exceeded","error_message":"Limit Exceeded"}"#;
        assert_eq!(CcError::from_response(429, object), CcError::QuotaExceeded);
        let throttled = r#"{"error_key":"throttled","error_message":"Too Many Requests"}"#;
        assert_eq!(CcError::from_response(429, throttled), CcError::Throttled);
        assert_eq!(
            CcError::from_response(502, "<html>bad gateway</html>"),
            CcError::Server {
                status: 502,
                message: "HTTP 502: <html>bad gateway</html>".into()
            }
        );
    }

    #[test]
    fn a_body_in_neither_form_is_told_by_its_status_and_an_excerpt() {
        assert_eq!(
            CcError::from_response(400, r#"{"message": "bad\n   input"}"#),
            CcError::Rejected(r#"HTTP 400: {"message": "bad\n input"}"#.into())
        );
        assert_eq!(
            CcError::from_response(400, "[]"),
            CcError::Rejected("HTTP 400: []".into())
        );
        assert_eq!(
            CcError::from_response(500, "  "),
            CcError::Server {
                status: 500,
                message: "HTTP 500 with an empty body".into()
            }
        );
        let long = "x".repeat(5_000);
        let CcError::Rejected(m) = CcError::from_response(422, &long) else {
            panic!("not rejected")
        };
        assert!(m.len() < 220, "{m}");
    }

    #[test]
    fn retryable_and_fatal_are_told_apart() {
        assert!(CcError::Throttled.is_retryable());
        assert!(CcError::from_response(503, "").is_retryable());
        assert!(CcError::Network("reset".into()).is_retryable());
        for fatal in [400, 403, 404, 409, 415] {
            assert!(
                !CcError::from_response(fatal, "[]").is_retryable(),
                "{fatal}"
            );
        }
        assert!(!CcError::QuotaExceeded.is_retryable());
        assert!(!CcError::NeedsReauthentication.is_retryable());
    }
}
