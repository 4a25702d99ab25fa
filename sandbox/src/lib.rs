//! A Constant Contact v3 emulator: OAuth 2 (authorization code with PKCE,
//! refresh, revoke) and the API subset Segment Export uses, in memory,
//! with Constant Contact's limits, rate limits and injectable faults.
//!
//! Written from `shared/constant-contact/api-reference.md` and the
//! official `swagger.yaml`, independently of the engine's client, so that
//! their agreement in tests is evidence rather than an echo.

pub mod api;
pub mod config;
pub mod inspect;
pub mod oauth;
pub mod state;

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{middleware, Router};

pub use config::Config;
pub use state::Shared;

/// The sandbox as an axum router.
pub fn router(shared: Shared) -> Router {
    let v3 = Router::new()
        .route("/contact_lists", get(api::get_lists).post(api::create_list))
        .route("/contact_lists/{list_id}", get(api::get_list))
        .route("/contact_custom_fields", get(api::get_custom_fields))
        .route("/account/user/privileges", get(api::get_privileges))
        .route(
            "/activities/contacts_json_import",
            post(api::import_contacts),
        )
        .route(
            "/activities/remove_list_memberships",
            post(api::remove_memberships),
        )
        .route("/activities", get(api::get_activities))
        .route("/activities/{activity_id}", get(api::get_activity))
        .route("/contacts", get(api::get_contacts))
        .route_layer(middleware::from_fn_with_state(shared.clone(), api::gate));
    let inspect = Router::new()
        .route("/lists", get(inspect::lists))
        .route("/lists/{list_id}/members", get(inspect::members))
        .route("/contacts", get(inspect::contact))
        .route("/contacts/unsubscribe", post(inspect::unsubscribe))
        .route("/custom_fields", post(inspect::create_custom_field))
        .route("/activities", get(inspect::activities))
        .route("/requests", get(inspect::requests))
        .route("/import_stats", get(inspect::import_stats))
        .route("/reset", post(inspect::reset))
        .route("/faults", get(inspect::get_faults).put(inspect::put_faults))
        .route(
            "/settings",
            get(inspect::get_settings).put(inspect::put_settings),
        )
        .route("/tokens/revoke_all", post(inspect::revoke_all))
        .route("/tokens/expire_access", post(inspect::expire_access));
    Router::new()
        .route(
            oauth::AUTHORIZE_PATH,
            get(oauth::authorize_page).post(oauth::authorize_submit),
        )
        .route(oauth::TOKEN_PATH, post(oauth::token))
        .route(oauth::REVOKE_PATH, post(oauth::revoke))
        .nest("/v3", v3)
        .nest("/_sandbox", inspect)
        .with_state(shared)
}

/// A sandbox serving in the background (for tests and `xtask`).
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Shared,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts the sandbox on `addr` (port 0 picks a free port).
pub async fn spawn(config: Config, addr: SocketAddr) -> std::io::Result<Running> {
    let shared = Shared::new(&config);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = router(shared.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "sandbox stopped");
        }
    });
    Ok(Running { addr, shared })
}
