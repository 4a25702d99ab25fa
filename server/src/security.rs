//! What every response and every state-changing request goes through:
//! security headers, the same-origin check for writes, and the per-client
//! rate limit on sign-in and first-run setup.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::set_header::SetResponseHeaderLayer;

/// Paths that take a password (and so cost an Argon2 hash each): limited
/// per client address.
const PASSWORD_PATHS: [&str; 2] = ["/api/sign_in", "/api/create_first_admin"];

/// Adds the response headers every answer carries. Pages set their own
/// Content-Security-Policy (with the response's script nonce); everything
/// else gets one that allows nothing.
pub fn with_headers(router: axum::Router) -> axum::Router {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            no_store_unless_asset as fn(&Response) -> Option<HeaderValue>,
        ))
}

/// `no-store` for everything that may carry data (pages, server-function
/// answers, CSV downloads, redirects); the site's static assets (wasm,
/// script, style, images) are left to be cached.
fn no_store_unless_asset(res: &Response) -> Option<HeaderValue> {
    let kind = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let asset = [
        "application/wasm",
        "text/javascript",
        "application/javascript",
        "text/css",
        "image/",
        "font/",
    ]
    .iter()
    .any(|prefix| kind.starts_with(prefix));
    (!asset).then(|| HeaderValue::from_static("no-store"))
}

/// The origins a browser may send state-changing requests from.
#[derive(Clone, Debug)]
pub struct Origins(Arc<Vec<String>>);

impl Origins {
    /// `public_url`'s origin, or, when unset, the listen address's (and
    /// `localhost` for a loopback address, which a browser may use too).
    pub fn new(public_url: Option<&str>, addr: SocketAddr) -> anyhow::Result<Self> {
        let origins = match public_url {
            Some(url) => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| anyhow::anyhow!("PUBLIC_URL is not a URL ({e}): {url}"))?;
                let origin = parsed.origin();
                if !origin.is_tuple() {
                    anyhow::bail!("PUBLIC_URL must be an http(s) URL: {url}");
                }
                vec![origin.ascii_serialization()]
            }
            None => {
                let port = addr.port();
                let mut v = vec![format!("http://{addr}")];
                if addr.ip().is_loopback() {
                    v.push(format!("http://localhost:{port}"));
                }
                if addr.ip().is_unspecified() {
                    tracing::warn!(
                        "listening on all addresses without PUBLIC_URL: browsers may write only \
                         from http://127.0.0.1:{port} or http://localhost:{port}; set PUBLIC_URL"
                    );
                    v.push(format!("http://127.0.0.1:{port}"));
                    v.push(format!("http://localhost:{port}"));
                }
                v
            }
        };
        Ok(Origins(Arc::new(origins)))
    }

    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }
}

/// The origin (`scheme://host[:port]`) of a `Referer`.
fn referer_origin(referer: &str) -> Option<String> {
    let url = url::Url::parse(referer).ok()?;
    let origin = url.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// Refuses cross-site writes. A request that changes state must name its
/// origin (`Origin`, or failing that `Referer`), and it must be this
/// site's configured public origin: comparing with the request's own
/// `Host` let a DNS-rebinding page through. A request with neither header
/// is refused when a browser sent it (browsers mark every request with
/// `Sec-Fetch-Site`); other clients (the test suites, scripts) carry no
/// ambient credentials an attacker could borrow.
pub async fn same_origin_writes(
    State(origins): State<Origins>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe {
        return next.run(req).await;
    }
    let headers = req.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let claimed = match text(header::ORIGIN) {
        Some(origin) if origin != "null" => Some(origin.to_owned()),
        Some(_) => Some(String::from("null")),
        None => {
            text(header::REFERER).map(|r| referer_origin(r).unwrap_or_else(|| String::from("null")))
        }
    };
    let from_browser = headers.contains_key("sec-fetch-site");
    let allowed = match &claimed {
        Some(origin) => origins.allows(origin),
        None => !from_browser,
    };
    if !allowed {
        tracing::warn!(
            origin = claimed.as_deref().unwrap_or("none"),
            "cross-origin write refused"
        );
        return (StatusCode::FORBIDDEN, "Cross-origin request refused.").into_response();
    }
    next.run(req).await
}

/// Sign-in and first-run attempts per client address: a burst of
/// [`PASSWORD_BURST`], then one a second.
pub const PASSWORD_BURST: u32 = 20;

/// The per-client limiter for [`PASSWORD_PATHS`].
#[derive(Clone)]
pub struct PasswordLimiter(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl Default for PasswordLimiter {
    fn default() -> Self {
        let burst = NonZeroU32::new(PASSWORD_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(NonZeroU32::MIN).allow_burst(burst);
        PasswordLimiter(Arc::new(RateLimiter::keyed(quota)))
    }
}

impl PasswordLimiter {
    /// Forgets clients that are back to a full burst (call now and then).
    pub fn shrink(&self) {
        self.0.retain_recent();
        self.0.shrink_to_fit();
    }
}

/// The client's address as the socket saw it (no forwarding headers are
/// trusted: any client could set them).
pub fn client_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// Answers 429 to a client that sends passwords faster than the limiter
/// allows, before any hashing is done.
pub async fn limit_password_attempts(
    State(limiter): State<PasswordLimiter>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::POST && PASSWORD_PATHS.contains(&req.uri().path()) {
        let ip = client_ip(&req);
        if let Err(not_until) = limiter.0.check_key(&ip) {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1);
            tracing::warn!(%ip, "sign-in attempts rate-limited");
            let error = app::error::AppError::TooManyRequests(format!(
                "Too many sign-in attempts from your address. Wait {wait} seconds and try again."
            ));
            let body = serde_json::to_string(&error).unwrap_or_default();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::RETRY_AFTER, wait.to_string()),
                    (header::CONTENT_TYPE, String::from("application/json")),
                ],
                body,
            )
                .into_response();
        }
    }
    next.run(req).await
}
