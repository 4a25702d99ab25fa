//! `POST /data/import/profiles?id_column=…`: a CSV file as the request
//! body (the browser sends it with XMLHttpRequest, for upload progress).
//! Admins and contributors only; the answer is the import report as JSON.

use std::collections::HashMap;

use app::ssr::{AppState, USER_ID_KEY};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::users::{self, Role};
use tower_sessions::Session;

/// Larger files go through `server import profiles`, which streams.
pub const MAX_UPLOAD_BYTES: usize = 256 * 1024 * 1024;

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({ "error": text }))).into_response()
}

pub async fn import_profiles(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let user_id: Option<i64> = session.get(USER_ID_KEY).await.ok().flatten();
    let user = match user_id {
        Some(id) => users::get_user(&state.db, id)
            .await
            .ok()
            .flatten()
            .filter(|u| u.active),
        None => None,
    };
    let Some(user) = user else {
        return message(StatusCode::UNAUTHORIZED, "Please sign in to continue.");
    };
    if !user.role.allows(Role::Contributor) {
        return message(
            StatusCode::FORBIDDEN,
            "You do not have permission to do this.",
        );
    }
    let id_column = q
        .get("id_column")
        .map(String::as_str)
        .unwrap_or("id")
        .trim()
        .to_owned();
    match engine::profiles::import_csv(&state.db, body.as_ref(), &id_column).await {
        Ok(report) => {
            tracing::info!(
                user_id = user.id,
                rows = report.rows,
                imported = report.imported,
                "profiles imported from the browser"
            );
            Json(report).into_response()
        }
        Err(e) if e.is_internal() => {
            tracing::error!(error = ?e, "profile upload failed");
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on the server. Please try again.",
            )
        }
        Err(e) => message(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
    }
}
