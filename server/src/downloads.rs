//! `GET /runs/{id}/errors.csv`: a run's per-contact errors as CSV, for
//! anyone signed in (viewers read runs too).

use app::ssr::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

pub async fn run_errors_csv(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Response {
    let user = match app::ssr::signed_in_user(&state.db, &session).await {
        Ok(user) => user,
        Err(e) => {
            tracing::error!(error = %e, "reading the session failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(user) = user else {
        return (StatusCode::UNAUTHORIZED, "Please sign in to continue.").into_response();
    };
    if engine::policy::read(&user).is_err() {
        return (
            StatusCode::FORBIDDEN,
            "You do not have permission to do this.",
        )
            .into_response();
    }
    match engine::runs::get(&state.db, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::NOT_FOUND, "The run was not found.").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading a run failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let mut body = Vec::new();
    if let Err(e) = engine::runs::write_errors_csv(&state.db, id, &mut body).await {
        tracing::error!(error = %e, "writing a run's errors failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    csv_attachment(&format!("run-{id}-errors.csv"), body)
}

/// A CSV file to save as `name`.
pub fn csv_attachment(name: &str, body: Vec<u8>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                String::from("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}
