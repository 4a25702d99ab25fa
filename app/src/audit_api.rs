//! Admin > Audit log: server function.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::AuditView;

/// The newest 500 entries, newest first. Administrators only.
#[server(endpoint = "audit_log")]
pub async fn audit_log() -> Result<Vec<AuditView>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let entries = engine::audit::recent(call.db(), 500).await?;
        Ok(entries
            .into_iter()
            .map(|e| AuditView {
                at: engine::time::format_ms(e.at),
                actor: e
                    .actor_email
                    .unwrap_or_else(|| String::from("command line")),
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect())
    })
    .await
}
