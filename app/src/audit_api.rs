//! Admin > Audit log: server function.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::AuditView;

/// The newest 500 entries that match, newest first: `who` and `what` are
/// parts of the actor's email and of the action, object or details;
/// `from` and `to` are days (`YYYY-MM-DD`, UTC), both included.
/// Administrators only.
#[server(endpoint = "audit_log")]
pub async fn audit_log(
    who: Option<String>,
    what: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> Result<Vec<AuditView>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::administer).await?;
        let day = |field: &'static str, text: Option<String>| -> Result<Option<i64>, AppError> {
            match text.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(t) => engine::time::parse_date_ms(t).map(Some).ok_or_else(|| {
                    engine::Error::invalid(field, "Enter a date as YYYY-MM-DD.").into()
                }),
            }
        };
        let filter = engine::audit::Filter {
            who: who.unwrap_or_default(),
            what: what.unwrap_or_default(),
            since: day("from", from)?,
            until: day("to", to)?.map(|d| d + 86_400_000),
        };
        let entries = engine::audit::search(call.db(), &filter, 500).await?;
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
