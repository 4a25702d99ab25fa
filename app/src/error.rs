//! The error every server function returns. It crosses the wire as JSON,
//! so every variant carries only text that is safe to show a user.

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in to continue.")]
    Unauthenticated,
    #[error("You do not have permission to do this.")]
    Forbidden,
    /// A problem with one form field, shown next to it.
    #[error("{message}")]
    Field { field: String, message: String },
    /// Problems with several fields at once, each shown next to its field
    /// and all in the form's summary.
    #[error("{}", .0.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" "))]
    Fields(Vec<(String, String)>),
    /// A refusal the user can act on (a conflict, a lockout, not found).
    #[error("{0}")]
    Refused(String),
    /// The request could not be read (a missing or malformed argument).
    #[error("The request was not understood: {0}")]
    BadRequest(String),
    /// Too many attempts from this client; wait and try again.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("Something went wrong on the server. Please try again; if it keeps happening, tell your administrator.")]
    Internal,
    /// The request itself failed (network, encoding).
    #[error("The request failed: {0}")]
    Transport(String),
}

impl AppError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        AppError::Field {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The field problems found, as one error: [`AppError::Field`] for one,
    /// [`AppError::Fields`] for several. (Never called with none.)
    pub fn from_problems(mut problems: Vec<(String, String)>) -> Self {
        if problems.len() == 1 {
            let (field, message) = problems.remove(0);
            AppError::Field { field, message }
        } else {
            AppError::Fields(problems)
        }
    }

    /// The message for `field`, if this error is about it.
    pub fn for_field(&self, name: &str) -> Option<String> {
        match self {
            AppError::Field { field, message } if field == name => Some(message.clone()),
            AppError::Fields(all) => all.iter().find(|(f, _)| f == name).map(|(_, m)| m.clone()),
            _ => None,
        }
    }

    /// Every `(field, message)` this error is about (none for an error
    /// that belongs to no field).
    pub fn field_problems(&self) -> Vec<(String, String)> {
        match self {
            AppError::Field { field, message } => vec![(field.clone(), message.clone())],
            AppError::Fields(all) => all.clone(),
            _ => Vec::new(),
        }
    }

    /// The HTTP status a server function answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden => 403,
            AppError::BadRequest(_) => 400,
            AppError::Field { .. } | AppError::Fields(_) => 422,
            AppError::TooManyRequests(_) => 429,
            AppError::Refused(_) => 409,
            AppError::Internal | AppError::Transport(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server, these are the caller's arguments failing to
        // parse: a 400 with the reason, not a 500. (In the browser they
        // would be the answer failing to parse: a transport error.)
        #[cfg(feature = "ssr")]
        if let ServerFnErrorErr::Args(m)
        | ServerFnErrorErr::MissingArg(m)
        | ServerFnErrorErr::Deserialization(m) = &value
        {
            let error = AppError::BadRequest(m.chars().take(200).collect());
            if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(http::StatusCode::BAD_REQUEST);
            }
            return error;
        }
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<engine::Error> for AppError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        match e {
            E::Invalid { field, message } => AppError::Field {
                field: field.to_owned(),
                message,
            },
            E::InvalidFields(all) => {
                AppError::Fields(all.into_iter().map(|(f, m)| (f.to_owned(), m)).collect())
            }
            E::NotFound(_) => AppError::Refused(e.to_string()),
            E::Forbidden => AppError::Forbidden,
            E::InvalidCredentials
            | E::Deactivated
            | E::LockedOut { .. }
            | E::AlreadySetUp
            | E::Conflict(_) => AppError::Refused(e.to_string()),
            E::Database(_) | E::Migrate(_) | E::Internal(_) => {
                // The cause goes to the log, never to the browser.
                tracing::error!(error = ?e, "internal error in a server function");
                AppError::Internal
            }
        }
    }
}
