//! `GET /runs/{id}/errors.csv`: a run's per-contact errors as CSV, for
//! anyone signed in (viewers read runs too).

use app::ssr::AppState;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::error::RouteError;

pub async fn run_errors_csv(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<engine::RunId>,
) -> Result<Response, RouteError> {
    let user = app::ssr::signed_in_user(&state.db, &session)
        .await?
        .ok_or(RouteError::Unauthorized)?;
    engine::policy::read(&user)?;
    engine::runs::get(&state.db, id)
        .await?
        .ok_or_else(|| RouteError::NotFound(String::from("The run was not found.")))?;
    let mut body = Vec::new();
    engine::runs::write_errors_csv(&state.db, id, &mut body).await?;
    Ok(csv_attachment(&format!("run-{id}-errors.csv"), body))
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
