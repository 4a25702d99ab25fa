//! Server-side helpers for server functions: the shared state, the caller,
//! and the one-line role check.

use engine::users::{self, Role, User};
use engine::Db;
use leptos::prelude::*;
use leptos_axum::ResponseOptions;
use tower_sessions::Session;

use crate::error::AppError;

/// The session key holding the signed-in user's id.
pub const USER_ID_KEY: &str = "user_id";

/// What every server function can reach, provided by the server.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
}

pub fn state() -> AppState {
    expect_context::<AppState>()
}

pub async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|e| {
        tracing::error!(error = %e, "session layer missing");
        AppError::Internal
    })
}

/// The signed-in user, if any. A deactivated user counts as signed out.
pub async fn current_user() -> Result<Option<User>, AppError> {
    let session = session().await?;
    let id: Option<i64> = session.get(USER_ID_KEY).await.map_err(|e| {
        tracing::error!(error = %e, "session store failed");
        AppError::Internal
    })?;
    let Some(id) = id else { return Ok(None) };
    let user = users::get_user(&state().db, id).await?;
    Ok(user.filter(|u| u.active))
}

/// The caller, if their role allows `min`; 401 or 403 otherwise.
pub async fn require(min: Role) -> Result<User, AppError> {
    let user = current_user().await?.ok_or(AppError::Unauthenticated)?;
    if user.role.allows(min) {
        Ok(user)
    } else {
        Err(AppError::Forbidden)
    }
}

/// Runs a server function body and answers errors with their HTTP status.
pub async fn run<T>(body: impl std::future::Future<Output = Result<T, AppError>>) -> Result<T, AppError> {
    let result = body.await;
    if let Err(e) = &result {
        if let Some(res) = use_context::<ResponseOptions>() {
            if let Ok(status) = http::StatusCode::from_u16(e.status()) {
                res.set_status(status);
            }
        }
    }
    result
}
