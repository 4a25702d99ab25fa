//! The server's one error: what a plain route (uploads, downloads) or the
//! REST API could not do. A plain route answers it as JSON `{"error": "…"}`
//! with a message people can read; the API presents the same error with a
//! stable code (`api::ApiError`). An internal cause is logged with its
//! chain, never shown. (Server functions answer with `app::error::AppError`.)

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("Please sign in to continue.")]
    Unauthorized,
    #[error("You do not have permission to do this.")]
    Forbidden,
    /// What was not found, as a sentence.
    #[error("{0}")]
    NotFound(String),
    /// A request that cannot be read (an interrupted upload, say).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    /// The engine's refusal (input, permission, state) or failure.
    #[error(transparent)]
    Engine(engine::Error),
    #[error("Something went wrong on the server. Please try again.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RouteError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        RouteError::Internal(e.into())
    }

    /// Ours, not the caller's: logged, and answered without its cause.
    pub fn is_internal(&self) -> bool {
        match self {
            RouteError::Internal(_) => true,
            RouteError::Engine(e) => e.is_internal(),
            _ => false,
        }
    }

    /// The status a plain route answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            RouteError::Unauthorized => StatusCode::UNAUTHORIZED,
            RouteError::Forbidden | RouteError::Engine(engine::Error::Forbidden) => {
                StatusCode::FORBIDDEN
            }
            RouteError::NotFound(_) | RouteError::Engine(engine::Error::NotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            RouteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RouteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            e if e.is_internal() => StatusCode::INTERNAL_SERVER_ERROR,
            // Input read but refused (a CSV without its id column, say).
            RouteError::Engine(_) | RouteError::Internal(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// Logs an internal error with its cause.
    pub fn log(&self) {
        if self.is_internal() {
            tracing::error!(error = ?self, "a request failed");
        }
    }
}

impl From<engine::Error> for RouteError {
    fn from(e: engine::Error) -> Self {
        RouteError::Engine(e)
    }
}

impl From<std::io::Error> for RouteError {
    fn from(e: std::io::Error) -> Self {
        RouteError::internal(e)
    }
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        self.log();
        let message = if self.is_internal() {
            String::from("Something went wrong on the server. Please try again.")
        } else {
            self.to_string()
        };
        (self.status(), Json(serde_json::json!({ "error": message }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_and_an_internal_cause_is_not_shown() {
        let e = RouteError::from(engine::Error::internal("disk on fire"));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.to_string().contains("disk"));
        assert!(RouteError::internal(std::io::Error::other("disk")).is_internal());
        let e = RouteError::from(engine::Error::NotFound("The run"));
        assert_eq!(
            (e.status(), e.to_string().as_str()),
            (StatusCode::NOT_FOUND, "The run was not found.")
        );
        let e = RouteError::from(engine::Error::invalid("file", "The file is empty."));
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            RouteError::from(engine::Error::Forbidden).status(),
            StatusCode::FORBIDDEN
        );
    }
}
