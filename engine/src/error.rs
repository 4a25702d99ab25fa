//! The engine's one error type. Every variant's `Display` is safe to show a
//! user; internal causes are logged where they are converted, never shown.

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that failed validation; `field` names the form field it
    /// belongs to so the UI can show the message next to it.
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Several fields failed validation at once: each `(field, message)`
    /// is shown next to its field, all together.
    #[error("{}", .0.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join(" "))]
    InvalidFields(Vec<(&'static str, String)>),
    /// One message for an unknown email and a wrong password.
    #[error("The email or password is not correct.")]
    InvalidCredentials,
    #[error("This account has been deactivated. Ask an administrator to reactivate it.")]
    Deactivated,
    #[error("Too many failed sign-in attempts. Try again in {minutes} minute(s).")]
    LockedOut { minutes: i64 },
    #[error("The first administrator has already been created.")]
    AlreadySetUp,
    /// The caller's role or ownership does not allow the action (see
    /// [`crate::policy`]).
    #[error("You do not have permission to do this.")]
    Forbidden,
    #[error("{0} was not found.")]
    NotFound(&'static str),
    /// A request that conflicts with the current state (for example,
    /// removing the last administrator). The message says why.
    #[error("{0}")]
    Conflict(String),
    #[error("A database error occurred.")]
    Database(#[from] sqlx::Error),
    #[error("The database could not be migrated.")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Our fault (a bug, the disk, a broken secret): the user reads only
    /// that it happened; the cause goes to the log with its chain.
    #[error("An internal error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }

    /// The problems found, as one error: `Ok` when there are none, the
    /// single [`Error::Invalid`] for one, [`Error::InvalidFields`] for more.
    pub fn from_problems(mut problems: Vec<(&'static str, String)>) -> Result<()> {
        match problems.len() {
            0 => Ok(()),
            1 => {
                let (field, message) = problems.remove(0);
                Err(Error::Invalid { field, message })
            }
            _ => Err(Error::InvalidFields(problems)),
        }
    }

    /// Several checks' errors as one, so a form hears of every problem at
    /// once: the first error about no field (a database failure, say) as it
    /// is, otherwise every field problem, in order.
    pub fn gather(errors: impl IntoIterator<Item = Error>) -> Error {
        let mut problems = Vec::new();
        for e in errors {
            match e {
                Error::Invalid { field, message } => problems.push((field, message)),
                Error::InvalidFields(all) => problems.extend(all),
                other => return other,
            }
        }
        match Error::from_problems(problems) {
            Err(e) => e,
            Ok(()) => Error::internal(String::from("no error to gather")),
        }
    }

    /// An internal error with its cause (an error, or a description).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(cause.into())
    }

    /// True when the cause is ours (database, I/O), not the user's input.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Database(_) | Error::Migrate(_) | Error::Internal(_)
        )
    }
}

/// A shared type's text that names none of its values: invalid input on
/// the field it names.
impl From<types::ParseError> for Error {
    fn from(e: types::ParseError) -> Self {
        Error::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(e)
    }
}
