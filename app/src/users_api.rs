//! Admin > Users: server functions. Every one is for administrators only.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{Overview, UserId, UserView};

#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserView>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let users = engine::users::list_users(call.db()).await?;
        Ok(users.into_iter().map(Into::into).collect())
    })
    .await
}

#[server(endpoint = "create_user")]
pub async fn create_user(
    email: String,
    role: String,
    password: String,
) -> Result<UserView, AppError> {
    use engine::password::Password;
    use engine::users::{self, Email, Role};
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        // Every problem at once, each shown next to its field.
        let parsed = (
            Email::parse(&email),
            Role::parse(&role).map_err(engine::Error::from),
            Password::parse(&password),
        );
        let (email, role, password) = match parsed {
            (Ok(email), Ok(role), Ok(password)) => (email, role, password),
            (email, role, password) => {
                return Err(engine::Error::gather(
                    [email.err(), role.err(), password.err()]
                        .into_iter()
                        .flatten(),
                )
                .into())
            }
        };
        let user = users::create_user(call.db(), Some(&actor), &email, role, &password).await?;
        Ok(user.into())
    })
    .await
}

#[server(endpoint = "set_user_role")]
pub async fn set_user_role(user_id: UserId, role: String) -> Result<UserView, AppError> {
    use engine::users::{self, Role};
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        let role = Role::parse(&role).map_err(engine::Error::from)?;
        Ok(users::set_role(call.db(), &actor, user_id, role)
            .await?
            .into())
    })
    .await
}

#[server(endpoint = "set_user_active")]
pub async fn set_user_active(user_id: UserId, active: bool) -> Result<UserView, AppError> {
    use engine::users;
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        Ok(users::set_active(call.db(), &actor, user_id, active)
            .await?
            .into())
    })
    .await
}

/// Facts for the overview page; any signed-in user.
#[server(endpoint = "get_overview")]
pub async fn get_overview() -> Result<Overview, AppError> {
    use engine::users::Role;
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::read).await?;
        let db = call.db();
        let users = engine::users::list_users(db).await?;
        let count = |r: Role| users.iter().filter(|u| u.active && u.role == r).count() as i64;
        Ok(Overview {
            database: db.backend().name().to_owned(),
            admins: count(Role::Admin),
            contributors: count(Role::Contributor),
            viewers: count(Role::Viewer),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
    })
    .await
}
