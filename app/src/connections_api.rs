//! Admin > Connections: server functions. Only administrators create,
//! edit, authorize, test or remove connections; contributors may list the
//! connections shared with them.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{
    ConnectionDraft, ConnectionId, ConnectionView, ConnectionsPage, UsableConnection,
};

#[cfg(feature = "ssr")]
fn cc(call: &crate::ssr::Call) -> Result<&engine::connect::CcApp, AppError> {
    call.state().cc.as_ref().ok_or_else(|| {
        AppError::Refused(String::from(
            "Constant Contact is not configured on this server (set CC_CLIENT_ID and CC_CLIENT_SECRET).",
        ))
    })
}

#[server(endpoint = "list_connections")]
pub async fn list_connections() -> Result<ConnectionsPage, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let mut connections: Vec<ConnectionView> = engine::connections::list(call.db())
            .await?
            .into_iter()
            .map(Into::into)
            .collect();
        for c in &mut connections {
            c.exports = engine::exports::names_using(call.db(), c.id).await?;
        }
        let notice: Option<String> = call
            .session()?
            .remove(crate::ssr::CONNECTIONS_FLASH_KEY)
            .await
            .ok()
            .flatten();
        Ok(ConnectionsPage {
            configured: call.state().cc.is_some(),
            connections,
            notice,
        })
    })
    .await
}

/// The connections the caller may use for exports (name and type only).
#[server(endpoint = "usable_connections")]
pub async fn usable_connections() -> Result<Vec<UsableConnection>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let list = engine::connections::usable_by(call.db(), user.role).await?;
        Ok(list
            .into_iter()
            .map(|c| UsableConnection {
                id: c.id,
                kind: String::from("Constant Contact"),
                display_name: c.display_name,
            })
            .collect())
    })
    .await
}

/// The Add connection form as the session remembers it.
#[server(endpoint = "get_connection_draft")]
pub async fn get_connection_draft() -> Result<ConnectionDraft, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let draft = engine::connect::draft(call.session()?).await?;
        Ok(match draft {
            Some(d) => ConnectionDraft {
                configured: call.state().cc.is_some(),
                display_name: d.display_name,
                usable_by: d.usable_by.as_str().to_owned(),
                agreed: true,
                authorized: d.authorized,
                export_user: d.export_user_email,
                error: d.error,
            },
            None => ConnectionDraft {
                configured: call.state().cc.is_some(),
                display_name: String::new(),
                usable_by: String::from("admins"),
                agreed: false,
                authorized: false,
                export_user: None,
                error: None,
            },
        })
    })
    .await
}

/// "Authenticate with Constant Contact": returns where to send the browser.
#[server(endpoint = "start_connect")]
pub async fn start_connect(
    display_name: String,
    usable_by: String,
    agree: Option<String>,
) -> Result<String, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let app = cc(&call)?;
        let agreed = agree.as_deref() == Some("on") || agree.as_deref() == Some("true");
        let s = call.state();
        Ok(engine::connect::begin_new(
            call.session()?,
            &s.db,
            &s.cipher,
            app,
            &display_name,
            &usable_by,
            agreed,
        )
        .await?)
    })
    .await
}

#[server(endpoint = "add_export_user")]
pub async fn add_export_user() -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let me = call.allowed(engine::policy::administer).await?;
        Ok(engine::connect::add_export_user(call.session()?, &me).await?)
    })
    .await
}

#[server(endpoint = "save_connection")]
pub async fn save_connection(
    display_name: String,
    usable_by: String,
) -> Result<ConnectionView, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let me = call.allowed(engine::policy::administer).await?;
        let s = call.state();
        let c = engine::connect::save(
            call.session()?,
            &s.db,
            &s.cipher,
            &me,
            &display_name,
            &usable_by,
        )
        .await?;
        Ok(c.into())
    })
    .await
}

#[server(endpoint = "cancel_connection")]
pub async fn cancel_connection() -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        Ok(engine::connect::discard(call.session()?).await?)
    })
    .await
}

#[server(endpoint = "update_connection")]
pub async fn update_connection(
    id: ConnectionId,
    display_name: String,
    usable_by: String,
) -> Result<ConnectionView, AppError> {
    use engine::connections::{self, DisplayName, UsableBy};
    let call = crate::ssr::call();
    call.run(async {
        let me = call.allowed(engine::policy::administer).await?;
        let name = DisplayName::parse(&display_name)?;
        let usable_by = UsableBy::parse(&usable_by)?;
        Ok(connections::update(call.db(), &me, id, &name, usable_by)
            .await?
            .into())
    })
    .await
}

/// "Re-authenticate": returns where to send the browser.
#[server(endpoint = "reauthenticate_connection")]
pub async fn reauthenticate_connection(id: ConnectionId) -> Result<String, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let app = cc(&call)?;
        let s = call.state();
        Ok(engine::connect::begin_reauth(call.session()?, &s.db, &s.cipher, app, id).await?)
    })
    .await
}

/// "Test connection": the account's list count, or what went wrong.
#[server(endpoint = "test_connection")]
pub async fn test_connection(id: ConnectionId) -> Result<String, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let app = cc(&call)?;
        let s = call.state();
        match engine::connect::test(&s.db, &s.cipher, app, id).await? {
            Ok(1) => Ok(String::from("Connected. The account has 1 list.")),
            Ok(n) => Ok(format!("Connected. The account has {n} lists.")),
            Err(problem) => Err(AppError::Refused(format!("The test failed: {problem}"))),
        }
    })
    .await
}

/// "Remove": revokes the tokens at Constant Contact (best effort) and
/// deletes the connection here.
#[server(endpoint = "remove_connection")]
pub async fn remove_connection(id: ConnectionId) -> Result<String, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let me = call.allowed(engine::policy::administer).await?;
        let s = call.state();
        let removal = engine::connect::remove(&s.db, &s.cipher, s.cc.as_ref(), &me, id).await?;
        Ok(match removal.revoke_problem {
            None => format!(
                "{} was removed and its access at Constant Contact revoked.",
                removal.name
            ),
            Some(p) => format!(
                "{} was removed. Revoking its access at Constant Contact did not succeed: {p}",
                removal.name
            ),
        })
    })
    .await
}
