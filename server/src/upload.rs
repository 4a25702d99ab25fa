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
use axum::Json;
use engine::policy;
use engine::users::User;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tower_sessions::Session;

use crate::error::RouteError;

/// The largest upload accepted (the file is spooled to disk, not memory).
pub const MAX_UPLOAD_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The signed-in user, if `policy` allows them the upload.
async fn signed_in(
    state: &AppState,
    session: &Session,
    policy: impl FnOnce(&User) -> engine::Result<()>,
) -> Result<User, RouteError> {
    let user = app::ssr::signed_in_user(&state.db, session)
        .await?
        .ok_or(RouteError::Unauthorized)?;
    policy(&user).map_err(|_| RouteError::Forbidden)?;
    Ok(user)
}

/// Writes the body to an anonymous temporary file and rewinds it.
async fn spool(body: Body) -> Result<BufReader<std::fs::File>, RouteError> {
    let mut out = tokio::fs::File::from_std(tempfile::tempfile()?);
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            RouteError::BadRequest(String::from(
                "The upload was interrupted; nothing was imported. Please try again.",
            ))
        })?;
        size += chunk.len() as u64;
        if size > MAX_UPLOAD_BYTES {
            return Err(RouteError::TooLarge(String::from(
                "The file is larger than 4 GiB; use `server import` on the server instead.",
            )));
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    let mut file = out.into_std().await;
    file.seek(SeekFrom::Start(0))?;
    Ok(BufReader::with_capacity(256 * 1024, file))
}

pub async fn import_profiles(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<engine::profiles::ImportReport>, RouteError> {
    let user = signed_in(&state, &session, policy::upload_profiles).await?;
    let file = spool(body).await?;
    let id_column = q.get("id_column").map_or("id", |c| c.trim());
    let report = engine::profiles::import_csv(&state.db, file, id_column).await?;
    tracing::info!(
        user_id = %user.id,
        rows = report.rows,
        imported = report.imported,
        "profiles imported from the browser"
    );
    Ok(Json(report))
}

pub async fn import_segment(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Json<serde_json::Value>, RouteError> {
    let name = q.get("name").map_or("", String::as_str);
    let source = q.get("file").map_or("", String::as_str);
    // A new static segment is a creation; replacing one's members is a
    // change, allowed only to who may manage every export reading it.
    let user = match engine::segments::by_name(&state.db, name).await? {
        Some(s) => {
            let uses = policy::segment_uses(&state.db, s.id).await?;
            signed_in(&state, &session, |u| policy::change_segment(u, &uses)).await?
        }
        None => signed_in(&state, &session, policy::create_segment).await?,
    };
    let file = spool(body).await?;
    let import =
        engine::segments::import_static_csv(&state.db, Some(&user), name, source, file).await?;
    tracing::info!(
        user_id = %user.id,
        segment_id = %import.segment.id,
        members = import.segment.member_count,
        "static segment imported from the browser"
    );
    Ok(Json(serde_json::json!({
        "id": import.segment.id,
        "name": import.segment.name,
        "ids": import.ids,
        "members": import.segment.member_count,
        "unknown": import.unknown,
        "unknown_ids": import.unknown_sample,
    })))
}
