//! Static segments: a list of profile ids imported from CSV, streamed and
//! staged, so a million ids never sit in memory; unknown ids are reported.

use super::members::{store_members, NewMembers, WRITE_BATCH};
use super::*;
use crate::db::Backend;

/// Reads a static segment's profile ids from CSV: the first column of each
/// row (quoted or not; UTF-8, with or without a byte order mark). A first
/// row that names the column `id` or `profile_id` is a header and skipped;
/// blank rows are skipped. Holds them all: for small files and tests;
/// [`import_static_csv`] streams.
pub fn read_ids<R: std::io::Read>(input: R) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for_each_id(input, |id| {
        ids.push(id.to_owned());
        true
    })?;
    Ok(ids)
}

/// Calls `each` with every id of the file (see [`read_ids`]) until it
/// answers `false`.
pub(super) fn for_each_id<R: std::io::Read>(
    input: R,
    mut each: impl FnMut(&str) -> bool,
) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(crate::profiles::skip_bom(input)?);
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(Error::invalid(
                    "file",
                    format!("Line {line} could not be read: {e}"),
                ))
            }
        }
        let raw = record.get(0).unwrap_or_default();
        let Ok(id) = std::str::from_utf8(raw) else {
            return Err(Error::invalid(
                "file",
                format!("Line {line} is not valid UTF-8."),
            ));
        };
        let id = id.trim();
        let header = first && ["id", "profile_id"].contains(&id.to_lowercase().as_str());
        first = false;
        if !header && !id.is_empty() && !each(id) {
            break;
        }
    }
    Ok(())
}

/// What importing a static segment did.
#[derive(Debug, Clone)]
pub struct StaticImport {
    pub segment: Segment,
    /// Ids read (repeats included).
    pub ids: u64,
    /// Distinct ids that are no profile.
    pub unknown: u64,
    /// The first few of them, in key order.
    pub unknown_sample: Vec<String>,
}

/// Unknown ids listed in a [`StaticImport`] (all are counted).
pub const UNKNOWN_SHOWN: i64 = 20;

/// Creates (or, for an existing static segment, replaces) a static segment
/// from a CSV of profile ids (see [`read_ids`]), streamed: the file is
/// parsed on a blocking thread and its ids staged in the database in
/// batches, so an upload of any size holds a batch at a time.
pub async fn import_static_csv<R: std::io::Read + Send + 'static>(
    db: &Db,
    actor: Option<&User>,
    name: &str,
    source: &str,
    input: R,
) -> Result<StaticImport> {
    let import = uuid::Uuid::new_v4().to_string();
    let (batches, mut parsed) = tokio::sync::mpsc::channel::<Vec<String>>(2);
    let parser = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        let mut read: u64 = 0;
        let mut open = true;
        for_each_id(input, |id| {
            read += 1;
            batch.push(id.to_owned());
            if batch.len() >= WRITE_BATCH {
                open = batches.blocking_send(std::mem::take(&mut batch)).is_ok();
            }
            open
        })?;
        if open && !batch.is_empty() {
            let _ = batches.blocking_send(batch);
        }
        Ok::<u64, Error>(read)
    });
    let staged = async {
        while let Some(batch) = parsed.recv().await {
            stage(db, &import, &batch).await?;
        }
        drop(parsed);
        parser
            .await
            .map_err(|e| Error::internal(format!("id parser failed: {e}")))?
    }
    .await;
    let result = match staged {
        Ok(read) => import_staged(db, actor, name, source, &import, read).await,
        Err(e) => Err(e),
    };
    unstage(db, &import).await;
    result
}

/// [`import_static_csv`] for ids already in hand (the command line's
/// small lists, tests).
pub async fn import_static(
    db: &Db,
    actor: Option<&User>,
    name: &str,
    source: &str,
    ids: Vec<String>,
) -> Result<StaticImport> {
    let import = uuid::Uuid::new_v4().to_string();
    let read = ids.len() as u64;
    let mut result = Ok(());
    for chunk in ids.chunks(WRITE_BATCH) {
        let chunk: Vec<String> = chunk.iter().map(|i| i.trim().to_owned()).collect();
        result = stage(db, &import, &chunk).await;
        if result.is_err() {
            break;
        }
    }
    let result = match result {
        Ok(()) => import_staged(db, actor, name, source, &import, read).await,
        Err(e) => Err(e),
    };
    unstage(db, &import).await;
    result
}

/// Writes a batch of ids of `import` (repeats and blanks dropped).
pub(super) async fn stage(db: &Db, import: &str, ids: &[String]) -> Result<()> {
    let ids: Vec<&String> = ids.iter().filter(|i| !i.is_empty()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    if db.backend() == Backend::Postgres {
        // One JSON array, one statement text (prepared once): 1,000 bound
        // values per statement cost PostgreSQL more to parse than to run.
        let json = serde_json::to_string(&ids).map_err(Error::internal)?;
        sqlx::query(
            "INSERT INTO segment_import_ids (import_id, profile_id) \
             SELECT $1, jsonb_array_elements_text($2::jsonb) ON CONFLICT DO NOTHING",
        )
        .bind(import)
        .bind(json)
        .execute(db.pool())
        .await?;
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO segment_import_ids (import_id, profile_id) VALUES {} ON CONFLICT DO NOTHING",
        db.placeholders().rows(ids.len(), 2)
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(import).bind(id.as_str());
    }
    q.execute(db.pool()).await?;
    Ok(())
}

/// Drops an import's staged ids (also after a failure; a failure here only
/// leaves rows no one reads).
pub(super) async fn unstage(db: &Db, import: &str) {
    if let Err(e) = sqlx::query("DELETE FROM segment_import_ids WHERE import_id = $1")
        .bind(import)
        .execute(db.pool())
        .await
    {
        tracing::warn!(error = %e, "could not drop a static import's staged ids");
    }
}

pub(super) async fn import_staged(
    db: &Db,
    actor: Option<&User>,
    name: &str,
    source: &str,
    import: &str,
    read: u64,
) -> Result<StaticImport> {
    // Only a file's own name, never a path of the machine it came from.
    let source: String = source
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or("")
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let description = if source.is_empty() {
        String::from("Imported list of profile ids")
    } else {
        format!("Imported from {source}")
    };
    let existing = by_name(db, name).await?;
    let (id, action) = match existing {
        Some(s) if s.kind == Kind::Static => {
            sqlx::query("UPDATE segments SET description = $1 WHERE id = $2")
                .bind(&description)
                .bind(s.id)
                .execute(db.pool())
                .await?;
            (s.id, "segment.replace_members")
        }
        Some(_) => {
            return Err(Error::invalid(
                "name",
                "A rule segment already has this name.",
            ))
        }
        None => (
            insert(db, name, &description, Kind::Static, None).await?,
            "segment.import_static",
        ),
    };
    let unknown: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM segment_import_ids s WHERE s.import_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = s.profile_id)",
    )
    .bind(import)
    .fetch_one(db.pool())
    .await?;
    let unknown_sample: Vec<String> = sqlx::query_scalar(
        "SELECT s.profile_id FROM segment_import_ids s WHERE s.import_id = $1 \
         AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = s.profile_id) \
         ORDER BY s.profile_id LIMIT $2",
    )
    .bind(import)
    .bind(UNKNOWN_SHOWN)
    .fetch_all(db.pool())
    .await?;
    store_members(
        db,
        id,
        NewMembers::Staged {
            import: import.to_owned(),
            after: String::new(),
            done: false,
        },
    )
    .await?;
    let segment = get(db, id).await?.ok_or(Error::NotFound("The segment"))?;
    record_change(
        db,
        actor,
        action,
        &segment,
        &format!(
            "{} ids from {}; {} members, {unknown} unknown",
            read,
            if source.is_empty() {
                "a list"
            } else {
                source.as_str()
            },
            segment.member_count
        ),
    )
    .await?;
    Ok(StaticImport {
        segment,
        ids: read,
        unknown: unknown as u64,
        unknown_sample,
    })
}
