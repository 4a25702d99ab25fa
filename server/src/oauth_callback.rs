//! `GET /oauth/constant-contact/callback`: where Constant Contact sends the
//! admin back. Checks the caller (an active admin, the same session that
//! started the sign-in), hands the answer to `engine::connect`, and sends
//! the browser back to the form or the list. Messages travel in the
//! session, never in the URL.

use std::collections::HashMap;

use app::ssr::{AppState, CONNECTIONS_FLASH_KEY};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use engine::connect::{self, Completed};
use tower_sessions::Session;

pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match handle(&state, &session, &params).await {
        Ok(r) => r,
        Err(e) => {
            if e.is_internal() {
                tracing::error!(error = ?e, "Constant Contact callback failed");
            }
            let flash = format!("Error: {e}");
            let _ = session.insert(CONNECTIONS_FLASH_KEY, flash).await;
            Redirect::to("/admin/connections").into_response()
        }
    }
}

async fn handle(
    state: &AppState,
    session: &Session,
    params: &HashMap<String, String>,
) -> Result<Response, engine::Error> {
    let Some(user) = app::ssr::signed_in_user(&state.db, session).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    if engine::policy::administer(&user).is_err() {
        return Ok((
            StatusCode::FORBIDDEN,
            "Only administrators can authorize connections.",
        )
            .into_response());
    }
    let Some(app) = &state.cc else {
        return Err(engine::Error::Conflict(String::from(
            "Constant Contact is not configured (CC_CLIENT_ID).",
        )));
    };
    match connect::complete(session, &state.db, &state.cipher, app, &user, params).await? {
        Completed::NewConnectionForm => {
            Ok(Redirect::to("/admin/connections/new/constant-contact").into_response())
        }
        Completed::Reauthenticated { name, error } => {
            let flash = match error {
                None => format!("{name} was re-authenticated with Constant Contact."),
                Some(e) => format!("Error: {name} was not re-authenticated. {e}"),
            };
            session
                .insert(CONNECTIONS_FLASH_KEY, flash)
                .await
                .map_err(engine::Error::internal)?;
            Ok(Redirect::to("/admin/connections").into_response())
        }
    }
}
