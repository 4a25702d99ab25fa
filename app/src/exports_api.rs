//! Data > Exports and runs: server functions. Everyone signed in reads
//! exports and runs; contributors and admins add, edit and run exports on
//! connections they may use; a contributor changes only their own exports,
//! an admin any.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::{
    ConnectionId, ExportDetail, ExportForm, ExportId, ExportsPage, ListOption, RunDetail, RunId,
};

#[cfg(feature = "ssr")]
pub(crate) mod convert {
    use crate::model::{BatchView, ExportRow, RunView, SegmentId, UsableConnection};
    use engine::exports::Export;
    use engine::runs::Run;
    use engine::time::{format_ms, now_ms};
    use engine::users::User;

    pub fn run(r: Run) -> RunView {
        let end = r.finished_at.unwrap_or_else(now_ms);
        RunView {
            id: r.id,
            export_id: r.export_id,
            export_name: r.export_name,
            trigger: r.trigger,
            mode: r.mode,
            status: r.status,
            message: r.message,
            requested_by: r.requested_by,
            cancel_requested: r.cancel_requested,
            attempts: r.attempts,
            queued_at: format_ms(r.queued_at),
            started_at: r.started_at.map(format_ms),
            finished_at: r.finished_at.map(format_ms),
            duration_seconds: r.started_at.map(|s| (end - s).max(0) / 1000),
            phase: r.phase,
            total: r.total,
            counts: r.counts,
        }
    }

    pub fn batch(b: engine::runs::BatchStep) -> BatchView {
        BatchView {
            seq: b.seq,
            kind: b.kind,
            size: b.size,
            state: b.state,
            outcome: b.outcome,
            at: format_ms(b.at),
        }
    }

    /// Whether `user` manages the export ([`engine::policy::manage_export`]).
    pub fn may_change(user: &User, e: &Export) -> bool {
        engine::policy::can_manage_export(user, e.owner_id)
    }

    pub fn row(
        e: Export,
        segments: &[(SegmentId, String)],
        last: Option<Run>,
        user: &User,
    ) -> ExportRow {
        ExportRow {
            can_change: may_change(user, &e),
            id: e.id,
            segments: e
                .segment_ids
                .iter()
                .map(|id| {
                    segments
                        .iter()
                        .find(|(s, _)| s == id)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_else(|| format!("segment {id}"))
                })
                .collect(),
            mapping: e.mapping,
            name: e.name,
            connection: e.connection_name,
            connection_kind: String::from("Constant Contact"),
            list_id: e.list_id,
            list_name: e.list_name,
            on_schedule: e.on_schedule,
            remove_left: e.remove_left,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            owner: e.owner_email,
            last_run: last.map(run),
        }
    }

    pub fn connection(c: engine::connections::Connection) -> UsableConnection {
        UsableConnection {
            id: c.id,
            kind: String::from("Constant Contact"),
            display_name: c.display_name,
        }
    }
}

#[cfg(feature = "ssr")]
async fn segment_names(
    db: &engine::Db,
) -> Result<Vec<(crate::model::SegmentId, String)>, AppError> {
    Ok(engine::segments::list(db, "")
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect())
}

/// A client for a connection the caller may use.
#[cfg(feature = "ssr")]
async fn client_for(
    call: &crate::ssr::Call,
    user: &engine::users::User,
    connection_id: ConnectionId,
) -> Result<engine::constant_contact::ApiClient, AppError> {
    engine::exports::usable_connection(call.db(), user, connection_id).await?;
    let s = call.state();
    let app = s.cc.as_ref().ok_or_else(|| {
        AppError::Refused(String::from(
            "Constant Contact is not configured on this server.",
        ))
    })?;
    Ok(engine::connect::api_client(&s.db, &s.cipher, app, connection_id).await?)
}

#[cfg(feature = "ssr")]
async fn changeable(
    call: &crate::ssr::Call,
    user: &engine::users::User,
    id: ExportId,
) -> Result<engine::exports::Export, AppError> {
    let export = engine::exports::get(call.db(), id)
        .await?
        .filter(|e| e.removed_at.is_none())
        .ok_or_else(|| AppError::Refused(String::from("The export was not found.")))?;
    engine::policy::manage_export(user, export.owner_id)?;
    Ok(export)
}

#[server(endpoint = "list_exports")]
pub async fn list_exports() -> Result<ExportsPage, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::read).await?;
        let db = call.db();
        let segments = segment_names(db).await?;
        let latest = engine::runs::latest(db).await?;
        let exports = engine::exports::list(db)
            .await?
            .into_iter()
            .map(|e| {
                let last = latest.iter().find(|r| r.export_id == e.id).cloned();
                convert::row(e, &segments, last, &user)
            })
            .collect();
        let next_refresh = engine::schedule::get(db)
            .await?
            .schedule
            .plan()
            .ok()
            .and_then(|p| p.next_after(engine::time::now_ms()).map(|t| p.format(t)));
        Ok(ExportsPage {
            exports,
            can_add: user.role >= engine::users::Role::Contributor,
            next_refresh,
        })
    })
    .await
}

#[server(endpoint = "get_export")]
pub async fn get_export(id: ExportId) -> Result<ExportDetail, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::read).await?;
        let db = call.db();
        let export = engine::exports::get(db, id)
            .await?
            .filter(|e| e.removed_at.is_none())
            .ok_or_else(|| AppError::Refused(String::from("The export was not found.")))?;
        let runs = engine::runs::for_export(db, id, 50).await?;
        let segments = segment_names(db).await?;
        Ok(ExportDetail {
            export: convert::row(export, &segments, runs.first().cloned(), &user),
            runs: runs.into_iter().map(convert::run).collect(),
        })
    })
    .await
}

/// What the Add destination (or Edit, with `id`) form starts from.
#[server(endpoint = "get_export_form")]
pub async fn get_export_form(id: Option<ExportId>) -> Result<ExportForm, AppError> {
    use crate::model::{ExportInputView, FieldView, SegmentOption};
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let db = call.db();
        let export = match id {
            Some(id) => {
                let e = changeable(&call, &user, id).await?;
                Some(ExportInputView {
                    name: e.name,
                    connection_id: e.connection_id,
                    list_id: e.list_id,
                    mapping: e.mapping,
                    segment_ids: e.segment_ids,
                    on_schedule: e.on_schedule,
                    remove_left: e.remove_left,
                    removal_limit_pct: e.removal_limit_pct,
                })
            }
            None => None,
        };
        Ok(ExportForm {
            connections: engine::connections::usable_by(db, user.role)
                .await?
                .into_iter()
                .map(convert::connection)
                .collect(),
            fields: engine::profiles::fields(db)
                .await?
                .into_iter()
                .map(|f| FieldView {
                    name: f.name,
                    kind: f.kind,
                    filled: f.filled,
                })
                .collect(),
            profiles: engine::profiles::count(db).await?,
            segments: engine::segments::list(db, "")
                .await?
                .into_iter()
                .map(|s| SegmentOption {
                    id: s.id,
                    name: s.name,
                    members: s.member_count,
                })
                .collect(),
            contact_fields: engine::exports::CONTACT_FIELDS
                .iter()
                .map(|(k, l)| ((*k).to_owned(), (*l).to_owned()))
                .collect(),
            export,
            is_admin: user.role == engine::users::Role::Admin,
            max_profiles: call.state().max_profiles_per_run,
        })
    })
    .await
}

/// The lists of a connection's Constant Contact account.
#[server(endpoint = "connection_lists")]
pub async fn connection_lists(connection_id: ConnectionId) -> Result<Vec<ListOption>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let client = client_for(&call, &user, connection_id).await?;
        let lists = call
            .state()
            .accounts
            .lists(connection_id.get(), client.lists())
            .await
            .map_err(|e| AppError::Refused(e.to_string()))?;
        Ok(lists
            .into_iter()
            .map(|l| ListOption {
                list_id: l.list_id,
                name: l.name,
                members: l.membership_count,
            })
            .collect())
    })
    .await
}

/// The account's custom fields, as `cf:<name>` targets with labels.
#[server(endpoint = "connection_custom_fields")]
pub async fn connection_custom_fields(
    connection_id: ConnectionId,
) -> Result<Vec<(String, String)>, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let client = client_for(&call, &user, connection_id).await?;
        let fields = call
            .state()
            .accounts
            .custom_fields(connection_id.get(), client.custom_fields())
            .await
            .map_err(|e| AppError::Refused(e.to_string()))?;
        Ok(fields
            .into_iter()
            .map(|f| {
                (
                    format!("cf:{}", f.name),
                    format!("Custom field: {}", f.label),
                )
            })
            .collect())
    })
    .await
}

/// "Create a new list" in the connection's account.
#[server(endpoint = "create_connection_list")]
pub async fn create_connection_list(
    connection_id: ConnectionId,
    name: String,
) -> Result<ListOption, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 255 {
            return Err(AppError::field(
                "new_list",
                "Give the new list a name (at most 255 characters).",
            ));
        }
        let client = client_for(&call, &user, connection_id).await?;
        let list = client.create_list(&name, None).await.map_err(|e| match e {
            engine::constant_contact::CcError::Conflict(_) => {
                AppError::field("new_list", "A list with this name already exists.")
            }
            other => AppError::Refused(other.to_string()),
        })?;
        call.state().accounts.forget(connection_id.get());
        Ok(ListOption {
            list_id: list.list_id,
            name: list.name,
            members: Some(0),
        })
    })
    .await
}

/// Profiles in the chosen segments, each counted once (`segment_ids`
/// comma-separated).
#[server(endpoint = "count_export_profiles")]
pub async fn count_export_profiles(segment_ids: String) -> Result<i64, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::create_export).await?;
        let ids = parse_ids(&segment_ids)?;
        Ok(engine::exports::count_profiles(call.db(), &ids).await?)
    })
    .await
}

/// Of the profiles in the chosen segments (`segment_ids` comma-separated),
/// how many have a value in `field` (the one mapped to the email):
/// `(with a value, all)`.
#[server(endpoint = "count_export_filled")]
pub async fn count_export_filled(
    segment_ids: String,
    field: String,
) -> Result<(i64, i64), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        call.allowed(engine::policy::create_export).await?;
        let ids = parse_ids(&segment_ids)?;
        Ok(engine::exports::count_filled(call.db(), &ids, &field).await?)
    })
    .await
}

/// Ids sent comma-separated; one that is not a number is a bad request.
#[cfg(feature = "ssr")]
fn parse_ids(text: &str) -> Result<Vec<crate::model::SegmentId>, AppError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| AppError::BadRequest(format!("\"{s}\" is not a segment id.")))
        })
        .collect()
}

/// Saves a new export (`id` empty) or changes one; `export` is the form as
/// JSON ([`crate::model::ExportInputView`]). Saving never runs it.
#[server(endpoint = "save_export")]
pub async fn save_export(id: Option<ExportId>, export: String) -> Result<ExportId, AppError> {
    use crate::model::ExportInputView;
    use engine::exports::ExportInput;
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let form: ExportInputView = serde_json::from_str(&export)
            .map_err(|_| AppError::Refused(String::from("The form could not be read.")))?;
        if let Some(id) = id {
            changeable(&call, &user, id).await?;
        }
        let mut input = ExportInput {
            name: form.name,
            // None is refused below, with every other problem of the form.
            connection_id: form.connection_id.unwrap_or(ConnectionId(0)),
            list_id: form.list_id.trim().to_lowercase(),
            list_name: String::new(),
            mapping: form.mapping,
            segment_ids: form.segment_ids,
            on_schedule: form.on_schedule,
            remove_left: form.remove_left,
            removal_limit_pct: form.removal_limit_pct,
        };
        let shape = engine::exports::validate_shape(&input);
        if form.connection_id.is_none() {
            let missing = engine::Error::invalid("connection", "Choose a connection.");
            return Err(engine::Error::gather(shape.err().into_iter().chain([missing])).into());
        }
        shape?;
        // The list must be in the connection's account.
        let client = client_for(&call, &user, input.connection_id).await?;
        let list = client.list(&input.list_id).await.map_err(|e| match e {
            engine::constant_contact::CcError::NotFound(_) => AppError::field(
                "list_id",
                "No list with this ID in the connection's Constant Contact account.",
            ),
            other => AppError::Refused(other.to_string()),
        })?;
        input.list_name = list.name;
        let db = call.db();
        let saved = match id {
            Some(id) => engine::exports::update(db, &user, id, &input).await?,
            None => engine::exports::create(db, &user, &input).await?,
        };
        Ok(saved.id)
    })
    .await
}

#[server(endpoint = "remove_export")]
pub async fn remove_export(id: ExportId) -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        changeable(&call, &user, id).await?;
        engine::exports::remove(call.db(), &user, id).await?;
        Ok(())
    })
    .await
}

/// Run now (`mode`: `incremental`, `full` or `dry_run`): returns the run.
#[server(endpoint = "run_export")]
pub async fn run_export(id: ExportId, mode: String) -> Result<RunId, AppError> {
    use engine::runs::{Mode, Trigger};
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        changeable(&call, &user, id).await?;
        // An unknown mode is refused, never taken for an incremental run.
        let mode = Mode::parse(&mode).map_err(|_| {
            AppError::BadRequest(format!(
                "\"{mode}\" is not a run mode (incremental, full or dry_run)."
            ))
        })?;
        let run = engine::runs::trigger(call.db(), id, Trigger::Manual, mode, Some(&user)).await?;
        Ok(run.id)
    })
    .await
}

/// A run with its timeline and a page of its per-contact errors (those
/// whose email, profile, problem or reason contains `errors_filter`).
#[server(endpoint = "get_run")]
pub async fn get_run(
    id: RunId,
    errors_page: i64,
    errors_filter: Option<String>,
) -> Result<RunDetail, AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::read).await?;
        let db = call.db();
        let run = engine::runs::get(db, id)
            .await?
            .ok_or_else(|| AppError::Refused(String::from("The run was not found.")))?;
        let export = engine::exports::get(db, run.export_id).await?;
        let (errors, errors_total) = engine::runs::errors_matching(
            db,
            id,
            errors_filter.as_deref().unwrap_or(""),
            errors_page.max(0) * 50,
            50,
        )
        .await?;
        let batches = engine::runs::batches(db, id).await?;
        Ok(RunDetail {
            can_cancel: run.status.is_active()
                && !run.cancel_requested
                && export.is_some_and(|e| convert::may_change(&user, &e)),
            run: convert::run(run),
            batches: batches.into_iter().map(convert::batch).collect(),
            errors,
            errors_total,
        })
    })
    .await
}

#[server(endpoint = "cancel_run")]
pub async fn cancel_run(id: RunId) -> Result<(), AppError> {
    let call = crate::ssr::call();
    call.run(async {
        let user = call.allowed(engine::policy::create_export).await?;
        let run = engine::runs::get(call.db(), id)
            .await?
            .ok_or_else(|| AppError::Refused(String::from("The run was not found.")))?;
        changeable(&call, &user, run.export_id).await?;
        engine::runs::cancel(call.db(), &user, id).await?;
        Ok(())
    })
    .await
}
