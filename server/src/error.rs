//! The error of the plain routes (uploads and downloads): a status and a
//! message people can read, answered as JSON `{"error": "…"}`. An internal
//! cause is logged with its chain, never shown. (Server functions answer
//! with `app::error::AppError`, the REST API with its own coded errors.)

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("Please sign in to continue.")]
    Unauthorized,
    #[error("You do not have permission to do this.")]
    Forbidden,
    #[error("{0} was not found.")]
    NotFound(&'static str),
    /// A request that cannot be read (an interrupted upload, say).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    /// Input read but refused (a CSV without its id column, say).
    #[error("{0}")]
    Unprocessable(String),
    #[error("Something went wrong on the server. Please try again.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RouteError {
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        RouteError::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            RouteError::Unauthorized => StatusCode::UNAUTHORIZED,
            RouteError::Forbidden => StatusCode::FORBIDDEN,
            RouteError::NotFound(_) => StatusCode::NOT_FOUND,
            RouteError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RouteError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RouteError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RouteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<engine::Error> for RouteError {
    fn from(e: engine::Error) -> Self {
        match e {
            engine::Error::Forbidden => RouteError::Forbidden,
            engine::Error::NotFound(what) => RouteError::NotFound(what),
            e if e.is_internal() => RouteError::internal(e),
            e => RouteError::Unprocessable(e.to_string()),
        }
    }
}

impl From<std::io::Error> for RouteError {
    fn from(e: std::io::Error) -> Self {
        RouteError::internal(e)
    }
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        if let RouteError::Internal(cause) = &self {
            tracing::error!(error = %cause, source = ?std::error::Error::source(&**cause), "a request failed");
        }
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        (self.status(), body).into_response()
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
