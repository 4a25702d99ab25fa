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

use app::ssr::{AppState, USER_ID_KEY};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::users::{self, Role, User};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tower_sessions::Session;

/// The largest upload accepted (the file is spooled to disk, not memory).
pub const MAX_UPLOAD_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Unknown ids listed in a static segment's report (all are counted).
const UNKNOWN_SHOWN: usize = 20;

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

/// The signed-in, active admin or contributor.
async fn uploader(state: &AppState, session: &Session) -> Result<User, Response> {
    let user_id: Option<i64> = session.get(USER_ID_KEY).await.ok().flatten();
    let user = match user_id {
        Some(id) => users::get_user(&state.db, id)
            .await
            .ok()
            .flatten()
            .filter(|u| u.active),
        None => None,
    };
    let Some(user) = user else {
        return Err(message(
            StatusCode::UNAUTHORIZED,
            "Please sign in to continue.",
        ));
    };
    if !user.role.allows(Role::Contributor) {
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
    let user = uploader(state, session).await?;
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
    let (user, file) = match accept(&state, &session, body).await {
        Ok(accepted) => accepted,
        Err(r) => return r,
    };
    let name = q.get("name").map_or("", String::as_str);
    let source = q.get("file").map_or("", String::as_str);
    let ids = match engine::segments::read_ids(file) {
        Ok(ids) => ids,
        Err(e) => return engine_error(e),
    };
    let read = ids.len();
    match engine::segments::import_static(&state.db, name, source, ids).await {
        Ok((segment, unknown)) => {
            tracing::info!(
                user_id = user.id,
                segment_id = segment.id,
                members = segment.member_count,
                "static segment imported from the browser"
            );
            Json(serde_json::json!({
                "id": segment.id,
                "name": segment.name,
                "ids": read,
                "members": segment.member_count,
                "unknown": unknown.len(),
                "unknown_ids": unknown.iter().take(UNKNOWN_SHOWN).collect::<Vec<_>>(),
            }))
            .into_response()
        }
        Err(e) => engine_error(e),
    }
}
