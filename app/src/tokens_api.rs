//! Admin > API tokens: server functions, for administrators only.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{ApiTokenView, CreatedToken};

#[cfg(feature = "ssr")]
fn view(t: engine::api_tokens::Token) -> ApiTokenView {
    use engine::time::format_ms;
    ApiTokenView {
        id: t.id,
        name: t.name,
        role: t.role,
        prefix: t.prefix,
        created_by: t.created_by.unwrap_or_default(),
        created: format_ms(t.created_at),
        last_used: t.last_used_at.map(format_ms),
        revoked: t.revoked_at.map(format_ms),
    }
}

#[server(endpoint = "list_api_tokens")]
pub async fn list_api_tokens() -> Result<Vec<ApiTokenView>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        let tokens = engine::api_tokens::list(call.db(), &actor).await?;
        Ok(tokens.into_iter().map(view).collect())
    })
    .await
}

/// Creates a token; the answer carries its secret, the only time it is
/// ever shown.
#[server(endpoint = "create_api_token")]
pub async fn create_api_token(name: String, role: String) -> Result<CreatedToken, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        let role = engine::users::Role::parse(&role).map_err(engine::Error::from)?;
        let created = engine::api_tokens::create(call.db(), &actor, &name, role).await?;
        Ok(CreatedToken {
            token: view(created.token),
            secret: created.secret,
        })
    })
    .await
}

#[server(endpoint = "revoke_api_token")]
pub async fn revoke_api_token(id: i64) -> Result<ApiTokenView, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let actor = call.allowed(engine::policy::administer).await?;
        Ok(view(
            engine::api_tokens::revoke(call.db(), &actor, id).await?,
        ))
    })
    .await
}
