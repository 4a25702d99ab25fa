//! Unified customer profiles: a stable id and text attributes, imported
//! from CSV (streamed, bounded memory, an upsert by id), and the field
//! catalogue (each field's inferred type and how many profiles have it).
//!
//! Attributes are one JSON object per profile: the same on both backends,
//! and evaluated in Rust, so a rule gives the same members everywhere.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::Acquire;

use crate::db::{col, Backend, Db, TypedPool};
use crate::error::{Error, Result};
use crate::time::now_ms;

/// Rows the parser hands over at once (one statement on PostgreSQL).
pub const BATCH_ROWS: usize = 5_000;
/// Rows per `INSERT … VALUES` statement on SQLite (3 bound values each).
const SQLITE_ROWS: usize = 500;
/// The most columns a profile file may have.
pub const MAX_COLUMNS: usize = 1_000;
/// The longest line any CSV we read may have (a quoted value may span
/// lines; each line counts on its own).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// At most this many row errors are kept in a report (all are counted).
pub const MAX_REPORTED_ERRORS: usize = 1_000;

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Data rows read (the header not counted).
    pub rows: u64,
    pub imported: u64,
    pub rejected: u64,
    /// The first [`MAX_REPORTED_ERRORS`] rejected rows.
    pub errors: Vec<RowError>,
}

impl ImportReport {
    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError {
                line,
                reason: reason.into(),
            });
        }
    }
}

/// A reader that fails once a line runs past [`MAX_LINE_BYTES`], so a file
/// without line breaks cannot make the CSV reader hold it whole.
pub(crate) struct LineLimit<R> {
    inner: R,
    /// Bytes since the last line break.
    run: usize,
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let read = &buf[..n];
        // Runs between two breaks inside one read are shorter than the
        // buffer; only the runs at its ends can grow past the limit.
        match (
            read.iter().position(|&b| b == b'\n'),
            read.iter().rposition(|&b| b == b'\n'),
        ) {
            (Some(first), Some(last)) => {
                if self.run + first > MAX_LINE_BYTES {
                    return Err(too_long());
                }
                self.run = n - last - 1;
            }
            _ => self.run += n,
        }
        if self.run > MAX_LINE_BYTES {
            return Err(too_long());
        }
        Ok(n)
    }
}

fn too_long() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "a line is longer than {} MiB",
            MAX_LINE_BYTES / (1024 * 1024)
        ),
    )
}

/// Skips a UTF-8 byte order mark, if the input starts with one, and
/// bounds the length of a line.
pub(crate) fn skip_bom<R: Read>(reader: R) -> Result<BufReader<LineLimit<R>>> {
    let reader = LineLimit {
        inner: reader,
        run: 0,
    };
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let start = buffered.fill_buf()?;
    if start.starts_with(&[0xEF, 0xBB, 0xBF]) {
        buffered.consume(3);
    }
    Ok(buffered)
}

/// A batch of parsed rows on its way to the database.
type Batch = Vec<(String, BTreeMap<String, String>)>;

/// Imports profiles from CSV: the header names the fields; `id_column`
/// holds the profile id. Rows are upserted by id (the file's fields replace
/// those values; other fields are kept). A bad row is reported with its
/// line and skipped; each row is all or nothing. The file is parsed on a
/// blocking thread (parsing is CPU work the async workers must not do),
/// a few batches ahead of the writes.
pub async fn import_csv<R: Read + Send + 'static>(
    db: &Db,
    input: R,
    id_column: &str,
) -> Result<ImportReport> {
    let (batches, mut parsed) = tokio::sync::mpsc::channel::<Batch>(2);
    let id_column = id_column.to_owned();
    let parser = tokio::task::spawn_blocking(move || parse_csv(input, &id_column, &batches));
    let mut imported = 0;
    // On PostgreSQL two batches are written at once, on two connections,
    // unless they share a profile (the later row must win, so it waits).
    // Rows are locked in id order in each, so the two never deadlock.
    // SQLite has one writer at a time: a batch waits for the one before.
    let overlap = db.backend() == Backend::Postgres;
    let mut writing: Option<(Vec<String>, tokio::task::JoinHandle<Result<u64>>)> = None;
    while let Some(batch) = parsed.recv().await {
        // The ids matter only when two batches may be written at once.
        let mut ids: Vec<String> = Vec::new();
        if overlap {
            ids.extend(batch.iter().map(|(id, _)| id.clone()));
            ids.sort_unstable();
        }
        let shares = |(before, _): &mut (Vec<String>, _)| {
            !overlap || ids.iter().any(|id| before.binary_search(id).is_ok())
        };
        if let Some((_, handle)) = writing.take_if(shares) {
            imported += joined(handle).await?;
        }
        let next = {
            let db = db.clone();
            tokio::spawn(async move { upsert(&db, batch).await })
        };
        if let Some((_, handle)) = writing.take() {
            match joined(handle).await {
                Ok(n) => imported += n,
                Err(e) => {
                    // On a failed write the receiver is dropped and the
                    // parser stops; the batch after it is not written.
                    next.abort();
                    return Err(e);
                }
            }
        }
        writing = Some((ids, next));
    }
    if let Some((_, handle)) = writing {
        imported += joined(handle).await?;
    }
    let mut report = parser
        .await
        .map_err(|e| Error::internal(format!("CSV parser failed: {e}")))??;
    report.imported = imported;
    refresh_catalogue(db).await?;
    Ok(report)
}

/// The rows a spawned batch wrote.
async fn joined(handle: tokio::task::JoinHandle<Result<u64>>) -> Result<u64> {
    handle
        .await
        .map_err(|e| Error::internal(format!("writing profiles: {e}")))?
}

/// Reads the header and rows, sending batches of good rows; returns the
/// report of rows read and rejected.
fn parse_csv<R: Read>(
    input: R,
    id_column: &str,
    batches: &tokio::sync::mpsc::Sender<Batch>,
) -> Result<ImportReport> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(skip_bom(input)?);
    let mut record = csv::ByteRecord::new();
    let header = match reader.read_byte_record(&mut record) {
        Ok(true) => record.clone(),
        Ok(false) => {
            return Err(Error::invalid(
                "file",
                "The file is empty: the first row must name the fields.",
            ))
        }
        Err(e) => {
            return Err(Error::invalid(
                "file",
                format!("The header row could not be read: {e}"),
            ))
        }
    };
    if header.len() > MAX_COLUMNS {
        return Err(Error::invalid(
            "file",
            format!(
                "The header has {} columns; a profile file may have at most {MAX_COLUMNS}.",
                header.len()
            ),
        ));
    }
    let mut names = Vec::with_capacity(header.len());
    let mut seen = std::collections::HashSet::with_capacity(header.len());
    for (i, raw) in header.iter().enumerate() {
        let Ok(name) = std::str::from_utf8(raw) else {
            return Err(Error::invalid(
                "file",
                format!("Header column {} is not valid UTF-8.", i + 1),
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::invalid(
                "file",
                format!("Header column {} has no name.", i + 1),
            ));
        }
        if !seen.insert(name) {
            return Err(Error::invalid(
                "file",
                format!("The header names the field {name:?} twice."),
            ));
        }
        names.push(name.to_owned());
    }
    drop(seen);
    let Some(id_index) = names.iter().position(|n| n == id_column) else {
        return Err(Error::invalid(
            "id_column",
            format!("The header has no column {id_column:?}."),
        ));
    };

    let mut report = ImportReport::default();
    let mut batch: Batch = Vec::with_capacity(BATCH_ROWS);
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Err(e) => {
                // The reader cannot go on past a broken stream.
                if let csv::ErrorKind::Io(_) = e.kind() {
                    return Err(Error::invalid(
                        "file",
                        format!("Reading the file failed at line {line}: {e}"),
                    ));
                }
                report.rows += 1;
                report.reject(line, format!("unreadable row: {e}"));
                continue;
            }
            Ok(true) => {}
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        report.rows += 1;
        if record.len() == 1 && record.get(0).is_some_and(<[u8]>::is_empty) {
            // A blank line: not a row.
            report.rows -= 1;
            continue;
        }
        if record.len() != names.len() {
            report.reject(
                line,
                format!("expected {} columns, found {}", names.len(), record.len()),
            );
            continue;
        }
        let mut fields = BTreeMap::new();
        let mut bad = None;
        for (name, raw) in names.iter().zip(record.iter()) {
            match std::str::from_utf8(raw) {
                Ok(v) => {
                    fields.insert(name.clone(), v.trim().to_owned());
                }
                Err(_) => {
                    bad = Some(format!("the value of {name} is not valid UTF-8"));
                    break;
                }
            }
        }
        if let Some(reason) = bad {
            report.reject(line, reason);
            continue;
        }
        let id = fields.remove(&names[id_index]).unwrap_or_default();
        if id.is_empty() {
            report.reject(line, format!("the profile id ({id_column}) is empty"));
            continue;
        }
        batch.push((id, fields));
        if batch.len() >= BATCH_ROWS && batches.blocking_send(std::mem::take(&mut batch)).is_err() {
            // The writer failed; it reports why.
            return Ok(report);
        }
    }
    if !batch.is_empty() {
        let _ = batches.blocking_send(batch);
    }
    Ok(report)
}

/// Upserts a batch of profiles (a few thousand at most), merging with
/// stored attributes; returns rows written. Call [`refresh_catalogue`]
/// after the last batch.
pub async fn upsert(db: &Db, batch: Vec<(String, BTreeMap<String, String>)>) -> Result<u64> {
    let rows = batch.len() as u64;
    // The same id twice in a batch: the later row wins, merged over the earlier.
    let mut merged: HashMap<String, BTreeMap<String, String>> = HashMap::with_capacity(batch.len());
    let mut order = Vec::with_capacity(batch.len());
    for (id, fields) in batch {
        match merged.get_mut(&id) {
            Some(existing) => existing.extend(fields),
            None => {
                order.push(id.clone());
                merged.insert(id, fields);
            }
        }
    }
    let now = now_ms();
    let attributes =
        |fields: &BTreeMap<String, String>| serde_json::to_string(fields).map_err(Error::internal);
    // One statement, merged by the database under the row's lock: two
    // imports touching the same profile at once each keep their fields
    // (a read-merge-write in the application loses one of them on
    // PostgreSQL, whose reads do not lock).
    // In id order: concurrent imports then lock rows in the same order,
    // and never deadlock one another.
    order.sort_unstable();
    match db.typed() {
        TypedPool::Postgres(pool) => {
            // Two arrays and one statement text, prepared once: 1,500
            // bound values per statement cost more to parse than to run.
            let attrs = order
                .iter()
                .map(|id| attributes(&merged[id]))
                .collect::<Result<Vec<_>>>()?;
            sqlx::query(
                "INSERT INTO profiles (id, attributes, updated_at) \
                 SELECT id, attributes, $3 FROM UNNEST($1::text[], $2::text[]) AS t(id, attributes) \
                 ON CONFLICT (id) DO UPDATE SET \
                   attributes = (profiles.attributes::jsonb || excluded.attributes::jsonb)::text, \
                   updated_at = excluded.updated_at",
            )
            .bind(&order)
            .bind(&attrs)
            .bind(now)
            .execute(pool)
            .await?;
        }
        TypedPool::Sqlite(_) => {
            for ids in order.chunks(SQLITE_ROWS) {
                let sql = format!(
                    "INSERT INTO profiles (id, attributes, updated_at) VALUES {} \
                     ON CONFLICT (id) DO UPDATE SET \
                       attributes = json_patch(profiles.attributes, excluded.attributes), \
                       updated_at = excluded.updated_at",
                    db.placeholders().rows(ids.len(), 3)
                );
                let mut upsert = sqlx::query(&sql);
                for id in ids {
                    upsert = upsert
                        .bind(id.clone())
                        .bind(attributes(&merged[id])?)
                        .bind(now);
                }
                upsert.execute(db.pool()).await?;
            }
        }
    }
    // Segments' kept fill rates counted the old values.
    sqlx::query("DELETE FROM segment_fill_rates")
        .execute(db.pool())
        .await?;
    Ok(rows)
}

/// A field of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    /// `number`, `date`, `email`, `boolean` or `text`.
    pub kind: String,
    /// Profiles with a non-empty value.
    pub filled: i64,
}

#[derive(Default)]
struct FieldStats {
    filled: i64,
    number: bool,
    date: bool,
    email: bool,
    boolean: bool,
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && v.split('-').all(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// Recomputes the field catalogue from every profile (streamed).
pub async fn refresh_catalogue(db: &Db) -> Result<()> {
    let mut stats: BTreeMap<String, FieldStats> = BTreeMap::new();
    {
        // On the backend's own pool: every profile is read, and a row
        // converted through `Any` costs more than its parse.
        const ALL: &str = "SELECT attributes FROM profiles";
        let mut rows = match db.typed() {
            TypedPool::Sqlite(pool) => sqlx::query_scalar::<_, String>(ALL).fetch(pool),
            TypedPool::Postgres(pool) => sqlx::query_scalar::<_, String>(ALL).fetch(pool),
        };
        while let Some(text) = rows.try_next().await? {
            let attrs: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
            for (name, value) in attrs {
                if value.is_empty() {
                    stats.entry(name).or_insert_with(|| FieldStats {
                        number: true,
                        date: true,
                        email: true,
                        boolean: true,
                        ..Default::default()
                    });
                    continue;
                }
                let s = stats.entry(name).or_insert_with(|| FieldStats {
                    number: true,
                    date: true,
                    email: true,
                    boolean: true,
                    ..Default::default()
                });
                s.filled += 1;
                s.number &= value.parse::<f64>().is_ok();
                s.date &= is_date(&value);
                s.email &= value.contains('@');
                s.boolean &= matches!(
                    value.to_ascii_lowercase().as_str(),
                    "true" | "false" | "yes" | "no"
                );
            }
        }
    }
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    // Upserts, then the fields no profile has any more: concurrent
    // imports each write a whole catalogue without colliding on a name.
    let names: Vec<String> = stats.keys().cloned().collect();
    for (name, s) in stats {
        let kind = if s.filled == 0 {
            "text"
        } else if s.number {
            "number"
        } else if s.date {
            "date"
        } else if s.boolean {
            "boolean"
        } else if s.email {
            "email"
        } else {
            "text"
        };
        sqlx::query(
            "INSERT INTO profile_fields (name, kind, filled) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, filled = excluded.filled",
        )
        .bind(name)
        .bind(kind)
        .bind(s.filled)
        .execute(&mut *tx)
        .await?;
    }
    let stale: Vec<String> = sqlx::query_scalar("SELECT name FROM profile_fields")
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .filter(|n: &String| names.binary_search(n).is_err())
        .collect();
    for name in stale {
        sqlx::query("DELETE FROM profile_fields WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // Every import ends here: the profiles were just written in bulk.
    db.refresh_statistics(&["profiles"]).await;
    Ok(())
}

/// The field catalogue, by name.
pub async fn fields(db: &Db) -> Result<Vec<Field>> {
    let rows = sqlx::query("SELECT name, kind, filled FROM profile_fields ORDER BY name")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Field {
                name: col(r, "name")?,
                kind: col(r, "kind")?,
                filled: col(r, "filled")?,
            })
        })
        .collect()
}

pub async fn count(db: &Db) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM profiles")
        .fetch_one(db.pool())
        .await?)
}

/// One profile's attributes, if it exists.
pub async fn get(db: &Db, id: &str) -> Result<Option<BTreeMap<String, String>>> {
    let text: Option<String> = sqlx::query_scalar("SELECT attributes FROM profiles WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(text.map(|t| serde_json::from_str(&t).unwrap_or_default()))
}
