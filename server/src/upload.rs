//! Uploads from the browser (sent with XMLHttpRequest, for upload
//! progress), for admins and contributors; each answers its report as JSON.
//!
//! - `POST /data/import/profiles?id_column=…`: a profiles CSV.
//! - `POST /data/import/segment?name=…&file=…`: a CSV of profile ids,
//!   which creates or replaces a static segment (`file`, the uploaded
//!   file's name, describes where it came from).
//!
//! The body is streamed to an anonymous temporary file as it arrives and
//! imported from there, so an upload of any size holds only a buffer.

use std::collections::HashMap;
use std::io::{BufReader, Seek, SeekFrom};

use app::ssr::AppState;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::policy;
use engine::users::User;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tower_sessions::Session;

/// The largest upload accepted (the file is spooled to disk, not memory).
pub const MAX_UPLOAD_BYTES: u64 = 4 * 1024 * 1024 * 1024;

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({ "error": text }))).into_response()
}

fn server_error(e: &dyn std::fmt::Debug) -> Response {
    tracing::error!(error = ?e, "upload failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong on the server. Please try again.",
    )
}

/// The signed-in user, if `policy` allows them the upload.
async fn signed_in(
    state: &AppState,
    session: &Session,
    policy: impl FnOnce(&User) -> engine::Result<()>,
) -> Result<User, Response> {
    let user = match app::ssr::signed_in_user(&state.db, session).await {
        Ok(user) => user,
        Err(e) => return Err(server_error(&e)),
    };
    let Some(user) = user else {
        return Err(message(
            StatusCode::UNAUTHORIZED,
            "Please sign in to continue.",
        ));
    };
    if policy(&user).is_err() {
        return Err(message(
            StatusCode::FORBIDDEN,
            "You do not have permission to do this.",
        ));
    }
    Ok(user)
}

/// Writes the body to an anonymous temporary file and rewinds it.
async fn spool(body: Body) -> Result<BufReader<std::fs::File>, Response> {
    let file = tempfile::tempfile().map_err(|e| server_error(&e))?;
    let mut out = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            message(
                StatusCode::BAD_REQUEST,
                "The upload was interrupted; nothing was imported. Please try again.",
            )
        })?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD_BYTES {
            return Err(message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The file is larger than 4 GiB; use `server import` on the server instead.",
            ));
        }
        out.write_all(&chunk).await.map_err(|e| server_error(&e))?;
    }
    out.flush().await.map_err(|e| server_error(&e))?;
    let mut file = out.into_std().await;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| server_error(&e))?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}

/// The uploader, and the body spooled to disk.
async fn accept(
    state: &AppState,
    session: &Session,
    body: Body,
) -> Result<(User, BufReader<std::fs::File>), Response> {
    let user = signed_in(state, session, policy::upload_profiles).await?;
    Ok((user, spool(body).await?))
}

fn engine_error(e: engine::Error) -> Response {
    if e.is_internal() {
        server_error(&e)
    } else {
        message(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string())
    }
}

pub async fn import_profiles(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let (user, file) = match accept(&state, &session, body).await {
        Ok(accepted) => accepted,
        Err(r) => return r,
    };
    let id_column = q.get("id_column").map_or("id", |c| c.trim());
    match engine::profiles::import_csv(&state.db, file, id_column).await {
        Ok(report) => {
            tracing::info!(
                user_id = user.id,
                rows = report.rows,
                imported = report.imported,
                "profiles imported from the browser"
            );
            Json(report).into_response()
        }
        Err(e) => engine_error(e),
    }
}

pub async fn import_segment(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let name = q.get("name").map_or("", String::as_str);
    let source = q.get("file").map_or("", String::as_str);
    // A new static segment is a creation; replacing one's members is a
    // change, allowed only to who may manage every export reading it.
    let existing = match engine::segments::by_name(&state.db, name).await {
        Ok(s) => s,
        Err(e) => return engine_error(e),
    };
    let user = match existing {
        Some(s) => {
            let uses = match policy::segment_uses(&state.db, s.id).await {
                Ok(uses) => uses,
                Err(e) => return engine_error(e),
            };
            signed_in(&state, &session, |u| policy::change_segment(u, &uses)).await
        }
        None => signed_in(&state, &session, policy::create_segment).await,
    };
    let user = match user {
        Ok(user) => user,
        Err(r) => return r,
    };
    let file = match spool(body).await {
        Ok(file) => file,
        Err(r) => return r,
    };
    match engine::segments::import_static_csv(&state.db, Some(&user), name, source, file).await {
        Ok(import) => {
            tracing::info!(
                user_id = user.id,
                segment_id = import.segment.id,
                members = import.segment.member_count,
                "static segment imported from the browser"
            );
            Json(serde_json::json!({
                "id": import.segment.id,
                "name": import.segment.name,
                "ids": import.ids,
                "members": import.segment.member_count,
                "unknown": import.unknown,
                "unknown_ids": import.unknown_sample,
            }))
            .into_response()
        }
        Err(e) => engine_error(e),
    }
}
