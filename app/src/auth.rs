//! Signing in and out, and creating the first administrator.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::SessionInfo;

/// Who the caller is. Anyone may ask.
#[server(endpoint = "get_session")]
pub async fn get_session() -> Result<SessionInfo, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let setup_needed = engine::users::needs_setup(call.db()).await?;
        let user = call.current_user().await?.map(Into::into);
        Ok(SessionInfo { setup_needed, user })
    })
    .await
}

/// Creates the first administrator and signs them in. Refused once any
/// administrator exists.
#[server(endpoint = "create_first_admin")]
pub async fn create_first_admin(
    email: String,
    password: String,
    confirm_password: String,
) -> Result<(), AppError> {
    use engine::password::Password;
    use engine::users::{self, Email};
    let call = crate::ssr::call();
    call.run(async {
        // Every problem at once, each shown next to its field.
        let mut problems = Vec::new();
        let mut note = |e: engine::Error| problems.extend(AppError::from(e).field_problems());
        let email = Email::parse(&email).map_err(&mut note).ok();
        let password = Password::parse(&password).map_err(&mut note).ok();
        if password
            .as_ref()
            .is_some_and(|p| password_mismatch(p, &confirm_password))
        {
            problems.push((
                String::from("confirm_password"),
                String::from("The passwords do not match."),
            ));
        }
        let (Some(email), Some(password), true) = (email, password, problems.is_empty()) else {
            return Err(AppError::from_problems(problems));
        };
        let user = users::create_first_admin(call.db(), &email, &password).await?;
        call.start_session(user.id).await?;
        tracing::info!(user_id = %user.id, "first administrator created");
        Ok(())
    })
    .await
}

#[cfg(feature = "ssr")]
fn password_mismatch(password: &engine::password::Password, confirm: &str) -> bool {
    // Compare through a fresh parse so the secret never leaves its type.
    !engine::password::Password::unchecked(confirm).matches(password)
}

/// Signs in with email and password. The session id is cycled so a
/// session fixed before sign-in is worthless after it.
#[server(endpoint = "sign_in")]
pub async fn sign_in(email: String, password: String) -> Result<(), AppError> {
    use engine::password::Password;
    let call = crate::ssr::call();
    call.run(async {
        let mut problems = Vec::new();
        if email.trim().is_empty() {
            problems.push((
                String::from("email"),
                String::from("Enter your email address."),
            ));
        }
        if password.is_empty() {
            problems.push((
                String::from("password"),
                String::from("Enter your password."),
            ));
        }
        if !problems.is_empty() {
            return Err(AppError::from_problems(problems));
        }
        let user = engine::users::authenticate(
            call.db(),
            &email,
            &Password::unchecked(&password),
            &call.client(),
        )
        .await
        .inspect_err(|e| tracing::info!(reason = %e, "sign-in refused"))?;
        call.start_session(user.id).await?;
        tracing::info!(user_id = %user.id, "signed in");
        Ok(())
    })
    .await
}

/// Ends the session: its record is deleted and the cookie cleared.
#[server(endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.session()?.flush().await.map_err(|e| {
            tracing::error!(error = %e, "could not end session");
            AppError::Internal
        })?;
        Ok(())
    })
    .await
}

/// The session, and the actions that change it, for every page.
#[derive(Clone, Copy)]
pub struct Auth {
    pub info: Resource<Result<SessionInfo, AppError>>,
    pub sign_in: ServerAction<SignIn>,
    pub sign_out: ServerAction<SignOut>,
    pub setup: ServerAction<CreateFirstAdmin>,
}

impl Auth {
    pub fn provide() -> Self {
        let sign_in = ServerAction::<SignIn>::new();
        let sign_out = ServerAction::<SignOut>::new();
        let setup = ServerAction::<CreateFirstAdmin>::new();
        let info = Resource::new(
            move || {
                (
                    sign_in.version().get(),
                    sign_out.version().get(),
                    setup.version().get(),
                )
            },
            |_| get_session(),
        );
        let auth = Auth {
            info,
            sign_in,
            sign_out,
            setup,
        };
        provide_context(auth);
        auth
    }
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}
