//! Segments: named member sets of profiles, either *static* (an imported
//! list of profile ids) or *rule* (conditions on profile fields, evaluated
//! in Rust on refresh). Members are stored, so an export reads a
//! consistent snapshot in key order; every refresh records who entered and
//! who left.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Acquire;

use crate::db::{col, Db};
use crate::error::{Error, Result};
use crate::time::now_ms;
use crate::users::User;

/// Rows written per statement when storing members and changes.
const WRITE_BATCH: usize = 500;

/// A comparison in a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
    StartsWith,
    EndsWith,
    Before,
    After,
    IsSet,
    IsNotSet,
}

/// `field op value`, e.g. `country eq "HU"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    #[serde(default)]
    pub value: String,
}

/// How conditions combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// AND
    All,
    /// OR
    Any,
}

/// A rule: conditions joined by AND or OR.
/// The most conditions a rule may have.
pub const MAX_CONDITIONS: usize = 50;
/// The longest field name a condition may name.
pub const MAX_FIELD_CHARS: usize = 200;
/// The longest value a condition may compare with.
pub const MAX_VALUE_CHARS: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(rename = "match")]
    pub matching: Match,
    pub conditions: Vec<Condition>,
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.trim().to_lowercase().cmp(&b.trim().to_lowercase()),
    }
}

impl Condition {
    /// True when the profile's attributes meet the condition. A missing or
    /// empty field meets only `is_not_set` (and `ne`).
    pub fn matches(&self, attrs: &BTreeMap<String, String>) -> bool {
        use std::cmp::Ordering::*;
        let value = attrs
            .get(&self.field)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        let Some(v) = value else {
            return matches!(self.op, Op::IsNotSet | Op::Ne);
        };
        let lower = v.to_lowercase();
        let target = self.value.trim().to_lowercase();
        match self.op {
            Op::IsSet => true,
            Op::IsNotSet => false,
            Op::Eq => compare(v, &self.value) == Equal,
            Op::Ne => compare(v, &self.value) != Equal,
            Op::Gt => compare(v, &self.value) == Greater,
            Op::Ge => compare(v, &self.value) != Less,
            Op::Lt => compare(v, &self.value) == Less,
            Op::Le => compare(v, &self.value) != Greater,
            Op::Contains => lower.contains(&target),
            Op::StartsWith => lower.starts_with(&target),
            Op::EndsWith => lower.ends_with(&target),
            // ISO dates (YYYY-MM-DD…) order as text.
            Op::Before => v < self.value.trim(),
            Op::After => v > self.value.trim(),
        }
    }
}

impl Rule {
    pub fn matches(&self, attrs: &BTreeMap<String, String>) -> bool {
        match self.matching {
            Match::All => self.conditions.iter().all(|c| c.matches(attrs)),
            Match::Any => self.conditions.iter().any(|c| c.matches(attrs)),
        }
    }

    /// Checks the rule can be evaluated and is of a bounded size (every
    /// profile is tested against every condition); errors name the
    /// condition.
    pub fn validate(&self) -> Result<()> {
        if self.conditions.is_empty() {
            return Err(Error::invalid("rule", "Add at least one condition."));
        }
        if self.conditions.len() > MAX_CONDITIONS {
            return Err(Error::invalid(
                "rule",
                format!(
                    "A rule can have at most {MAX_CONDITIONS} conditions; this one has {}.",
                    self.conditions.len()
                ),
            ));
        }
        for (i, c) in self.conditions.iter().enumerate() {
            if c.field.chars().count() > MAX_FIELD_CHARS
                || c.value.chars().count() > MAX_VALUE_CHARS
            {
                return Err(Error::invalid(
                    "rule",
                    format!(
                        "Condition {} is too long (a field name has at most {MAX_FIELD_CHARS} \
                         characters, a value at most {MAX_VALUE_CHARS}).",
                        i + 1
                    ),
                ));
            }
            if c.field.trim().is_empty() {
                return Err(Error::invalid(
                    "rule",
                    format!("Condition {} has no field.", i + 1),
                ));
            }
            let needs_value = !matches!(c.op, Op::IsSet | Op::IsNotSet);
            if needs_value && c.value.trim().is_empty() {
                return Err(Error::invalid(
                    "rule",
                    format!("Condition {} needs a value.", i + 1),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Static,
    Rule,
}

/// A segment as the product shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub rule: Option<Rule>,
    pub member_count: i64,
    pub refreshed_at: Option<i64>,
    /// How many refreshes have run (the changes of each are kept).
    pub refresh_no: i64,
}

fn from_row(row: &AnyRow) -> Result<Segment> {
    let kind: String = col(row, "kind")?;
    let rule: Option<String> = col(row, "rule")?;
    Ok(Segment {
        id: col(row, "id")?,
        name: col(row, "name")?,
        description: col(row, "description")?,
        kind: if kind == "rule" {
            Kind::Rule
        } else {
            Kind::Static
        },
        rule: rule.and_then(|r| serde_json::from_str(&r).ok()),
        member_count: col(row, "member_count")?,
        refreshed_at: col(row, "refreshed_at")?,
        refresh_no: col(row, "refresh_no")?,
    })
}

const COLUMNS: &str = "id, name, description, kind, rule, member_count, refreshed_at, refresh_no";

fn parse_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid(
            "name",
            "A segment name has 1 to 100 characters.",
        ));
    }
    Ok(name.to_owned())
}

/// A rule segment's name and rule (as parsed by the caller), with every
/// problem of both reported at once.
pub fn check(name: &str, rule: Result<Rule>) -> Result<(String, Rule)> {
    let mut problems = Vec::new();
    let name = match parse_name(name) {
        Ok(name) => Some(name),
        Err(e) => {
            problems.extend(e.into_problems()?);
            None
        }
    };
    let rule = match rule.and_then(|r| r.validate().map(|()| r)) {
        Ok(rule) => Some(rule),
        Err(e) => {
            problems.extend(e.into_problems()?);
            None
        }
    };
    Error::from_problems(problems)?;
    match (name, rule) {
        (Some(name), Some(rule)) => Ok((name, rule)),
        _ => Err(Error::Internal(String::from("a problem went unreported"))),
    }
}

fn name_taken(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::invalid("name", "A segment with this name already exists.")
        }
        other => Error::from(other),
    }
}

async fn insert(
    db: &Db,
    name: &str,
    description: &str,
    kind: Kind,
    rule: Option<&Rule>,
) -> Result<i64> {
    let name = parse_name(name)?;
    let now = now_ms();
    let rule = rule
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::Internal(e.to_string()))?;
    sqlx::query_scalar(
        "INSERT INTO segments (name, name_key, description, kind, rule, member_count, refresh_no, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6) RETURNING id",
    )
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(description.trim())
    .bind(if kind == Kind::Rule { "rule" } else { "static" })
    .bind(rule)
    .bind(now)
    .fetch_one(db.pool())
    .await
    .map_err(name_taken)
}

/// Creates a rule segment and evaluates it.
/// `actor` is who asked (`None`: the command line, demo data); the
/// creation is audited.
pub async fn create_rule(
    db: &Db,
    actor: Option<&User>,
    name: &str,
    description: &str,
    rule: &Rule,
) -> Result<Segment> {
    rule.validate()?;
    let id = insert(db, name, description, Kind::Rule, Some(rule)).await?;
    let segment = refresh(db, id).await?;
    let detail = serde_json::to_string(rule).unwrap_or_default();
    record_change(db, actor, "segment.create", &segment, &detail).await?;
    Ok(segment)
}

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
fn for_each_id<R: std::io::Read>(input: R, mut each: impl FnMut(&str) -> bool) -> Result<()> {
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
            .map_err(|e| Error::Internal(format!("id parser failed: {e}")))?
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
async fn stage(db: &Db, import: &str, ids: &[String]) -> Result<()> {
    let ids: Vec<&String> = ids.iter().filter(|i| !i.is_empty()).collect();
    if ids.is_empty() {
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
async fn unstage(db: &Db, import: &str) {
    if let Err(e) = sqlx::query("DELETE FROM segment_import_ids WHERE import_id = $1")
        .bind(import)
        .execute(db.pool())
        .await
    {
        tracing::warn!(error = %e, "could not drop a static import's staged ids");
    }
}

async fn import_staged(
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

/// Records a change to a segment in the audit log.
async fn record_change(
    db: &Db,
    actor: Option<&User>,
    action: &str,
    segment: &Segment,
    detail: &str,
) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    crate::audit::record(&mut conn, actor, action, &segment.name, detail).await
}

/// Profiles read per query when evaluating a rule, and members read per
/// query when comparing with the stored ones.
const READ_PAGE: i64 = 5_000;

/// The members a refresh stores, produced page by page in key order.
enum NewMembers<'a> {
    /// The profiles a rule selects, read in pages after `after`.
    Rule {
        rule: &'a Rule,
        after: String,
        done: bool,
    },
    /// An import's staged ids that are profiles, read in pages after
    /// `after`.
    Staged {
        import: String,
        after: String,
        done: bool,
    },
}

impl NewMembers<'_> {
    /// The next non-empty page, or `None` at the end.
    async fn next_page(&mut self, db: &Db) -> Result<Option<Vec<String>>> {
        match self {
            NewMembers::Staged {
                import,
                after,
                done,
            } => {
                if *done {
                    return Ok(None);
                }
                let page: Vec<String> = sqlx::query_scalar(
                    "SELECT s.profile_id FROM segment_import_ids s \
                     JOIN profiles p ON p.id = s.profile_id \
                     WHERE s.import_id = $1 AND s.profile_id > $2 \
                     ORDER BY s.profile_id LIMIT $3",
                )
                .bind(import.as_str())
                .bind(after.as_str())
                .bind(READ_PAGE)
                .fetch_all(db.pool())
                .await?;
                *done = (page.len() as i64) < READ_PAGE;
                if let Some(last) = page.last() {
                    after.clone_from(last);
                }
                Ok(Some(page).filter(|p| !p.is_empty()))
            }
            NewMembers::Rule { rule, after, done } => {
                while !*done {
                    let rows = sqlx::query(
                        "SELECT id, attributes FROM profiles WHERE id > $1 ORDER BY id LIMIT $2",
                    )
                    .bind(after.as_str())
                    .bind(READ_PAGE)
                    .fetch_all(db.pool())
                    .await?;
                    *done = (rows.len() as i64) < READ_PAGE;
                    let mut page = Vec::new();
                    for row in &rows {
                        let id: String = col(row, "id")?;
                        let text: String = col(row, "attributes")?;
                        let attrs: BTreeMap<String, String> =
                            serde_json::from_str(&text).unwrap_or_default();
                        if rule.matches(&attrs) {
                            page.push(id.clone());
                        }
                        *after = id;
                    }
                    if !page.is_empty() {
                        return Ok(Some(page));
                    }
                }
                Ok(None)
            }
        }
    }
}

/// One side of the comparison: a page and a position in it.
#[derive(Default)]
struct Cursor {
    page: std::collections::VecDeque<String>,
    done: bool,
}

impl Cursor {
    fn fill(&mut self, page: Option<Vec<String>>) {
        match page {
            Some(p) if !p.is_empty() => self.page.extend(p),
            _ => self.done = true,
        }
    }

    fn wants_page(&self) -> bool {
        self.page.is_empty() && !self.done
    }
}

/// The profile ids a rule selects now, in key order (nothing stored).
/// It holds them all: for tests and small sets; [`count_matching`] counts.
pub async fn evaluate(db: &Db, rule: &Rule) -> Result<Vec<String>> {
    let mut members = NewMembers::Rule {
        rule,
        after: String::new(),
        done: false,
    };
    let mut out = Vec::new();
    while let Some(page) = members.next_page(db).await? {
        out.extend(page);
    }
    Ok(out)
}

/// How many profiles a rule selects now (streamed; nothing stored).
pub async fn count_matching(db: &Db, rule: &Rule) -> Result<i64> {
    let mut members = NewMembers::Rule {
        rule,
        after: String::new(),
        done: false,
    };
    let mut n = 0;
    while let Some(page) = members.next_page(db).await? {
        n += page.len() as i64;
    }
    Ok(n)
}

/// Re-evaluates a rule segment (a static one keeps its list) and records
/// who entered and who left.
pub async fn refresh(db: &Db, id: i64) -> Result<Segment> {
    let segment = get(db, id).await?.ok_or(Error::NotFound("The segment"))?;
    if let (Kind::Rule, Some(rule)) = (segment.kind, &segment.rule) {
        let members = NewMembers::Rule {
            rule,
            after: String::new(),
            done: false,
        };
        store_members(db, id, members).await?;
    }
    get(db, id).await?.ok_or(Error::NotFound("The segment"))
}

/// What a refresh changed, written in batches inside its transaction.
struct Changes {
    segment: i64,
    refresh_no: i64,
    at: i64,
    entered: Vec<String>,
    left: Vec<String>,
}

impl Changes {
    fn full(&self) -> bool {
        self.entered.len() >= WRITE_BATCH || self.left.len() >= WRITE_BATCH
    }

    async fn write(&mut self, db: &Db, tx: &mut sqlx::AnyConnection) -> Result<()> {
        let (id, refresh_no, now) = (self.segment, self.refresh_no, self.at);
        for chunk in self.left.chunks(WRITE_BATCH) {
            let mut p = db.placeholders();
            let sql = format!(
                "DELETE FROM segment_members WHERE segment_id = {} AND profile_id IN ({})",
                p.one(),
                p.list(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(id);
            for m in chunk {
                q = q.bind(m);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in self.entered.chunks(WRITE_BATCH) {
            let sql = format!(
                "INSERT INTO segment_members (segment_id, profile_id) VALUES {}",
                db.placeholders().rows(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for m in chunk {
                q = q.bind(id).bind(m);
            }
            q.execute(&mut *tx).await?;
        }
        for (change, ids) in [("entered", &self.entered), ("left", &self.left)] {
            for chunk in ids.chunks(WRITE_BATCH) {
                let sql = format!(
                    "INSERT INTO segment_changes (segment_id, refresh_no, change, profile_id, at) VALUES {}",
                    db.placeholders().rows(chunk.len(), 5)
                );
                let mut q = sqlx::query(&sql);
                for m in chunk {
                    q = q.bind(id).bind(refresh_no).bind(change).bind(m).bind(now);
                }
                q.execute(&mut *tx).await?;
            }
        }
        self.entered.clear();
        self.left.clear();
        Ok(())
    }
}

/// Replaces the stored members with `new` and writes the difference as
/// this refresh's changes, in one transaction. Both sides are read page by
/// page in key order and merged, so memory stays bounded at any size; the
/// stored members are read outside the transaction, which sees them as
/// they were until it commits.
async fn store_members(db: &Db, id: i64, mut new: NewMembers<'_>) -> Result<()> {
    let mut conn = db.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    // A write first: SQLite takes its write lock here (waiting for it),
    // and PostgreSQL locks the segment's row against a concurrent refresh.
    let refresh_no: i64 = sqlx::query_scalar(
        "UPDATE segments SET refresh_no = refresh_no + 1 WHERE id = $1 RETURNING refresh_no",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let mut changes = Changes {
        segment: id,
        refresh_no,
        at: now_ms(),
        entered: Vec::new(),
        left: Vec::new(),
    };
    let (mut fresh, mut old) = (Cursor::default(), Cursor::default());
    let mut old_after = String::new();
    let mut count: i64 = 0;
    let mut changed = 0;
    loop {
        if fresh.wants_page() {
            fresh.fill(new.next_page(db).await?);
        }
        if old.wants_page() {
            let page = members_after(db, id, &old_after, READ_PAGE).await?;
            if let Some(last) = page.last() {
                old_after.clone_from(last);
            }
            old.fill(Some(page));
        }
        match (fresh.page.front(), old.page.front()) {
            (None, None) => break,
            (Some(a), Some(b)) if a == b => {
                count += 1;
                fresh.page.pop_front();
                old.page.pop_front();
            }
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                count += 1;
                changes.entered.extend(fresh.page.pop_front());
            }
            _ => changes.left.extend(old.page.pop_front()),
        }
        if changes.full() {
            changed += changes.entered.len() + changes.left.len();
            changes.write(db, &mut tx).await?;
        }
    }
    changed += changes.entered.len() + changes.left.len();
    changes.write(db, &mut tx).await?;
    sqlx::query(
        "UPDATE segments SET member_count = $1, refreshed_at = $2, updated_at = $2 WHERE id = $3",
    )
    .bind(count)
    .bind(changes.at)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if changed >= crate::db::BULK_ROWS {
        db.refresh_statistics(&["segment_members", "segment_changes"])
            .await;
    }
    Ok(())
}

pub async fn get(db: &Db, id: i64) -> Result<Option<Segment>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM segments WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_name(db: &Db, name: &str) -> Result<Option<Segment>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE name_key = $1"
    ))
    .bind(name.trim().to_lowercase())
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Segments whose name contains `search` (all when empty), by name.
pub async fn list(db: &Db, search: &str) -> Result<Vec<Segment>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM segments WHERE name_key LIKE $1 ORDER BY name_key"
    ))
    .bind(format!(
        "%{}%",
        search.trim().to_lowercase().replace(['%', '_'], "")
    ))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Up to `limit` member ids after `after`, in key order: an export pages
/// through a million members this way without holding them.
pub async fn members_after(db: &Db, id: i64, after: &str, limit: i64) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT profile_id FROM segment_members WHERE segment_id = $1 AND profile_id > $2 ORDER BY profile_id LIMIT $3",
    )
    .bind(id)
    .bind(after)
    .bind(limit)
    .fetch_all(db.pool())
    .await?)
}

/// Who entered and who left in refresh `refresh_no`: `(entered, left)`.
pub async fn changes(db: &Db, id: i64, refresh_no: i64) -> Result<(Vec<String>, Vec<String>)> {
    let rows = sqlx::query("SELECT change, profile_id FROM segment_changes WHERE segment_id = $1 AND refresh_no = $2 ORDER BY profile_id")
        .bind(id)
        .bind(refresh_no)
        .fetch_all(db.pool())
        .await?;
    let (mut entered, mut left) = (Vec::new(), Vec::new());
    for r in rows {
        let change: String = col(&r, "change")?;
        let pid: String = col(&r, "profile_id")?;
        if change == "entered" {
            entered.push(pid);
        } else {
            left.push(pid);
        }
    }
    Ok((entered, left))
}

/// Changes a rule segment's name, description and rule, and re-evaluates it.
pub async fn update_rule(
    db: &Db,
    actor: Option<&User>,
    id: i64,
    name: &str,
    description: &str,
    rule: &Rule,
) -> Result<Segment> {
    rule.validate()?;
    let segment = get(db, id).await?.ok_or(Error::NotFound("The segment"))?;
    if segment.kind != Kind::Rule {
        return Err(Error::invalid(
            "rule",
            "A static segment has no rule; import its list again instead.",
        ));
    }
    let name = parse_name(name)?;
    let rule_json = serde_json::to_string(rule).map_err(|e| Error::Internal(e.to_string()))?;
    sqlx::query("UPDATE segments SET name = $1, name_key = $2, description = $3, rule = $4, updated_at = $5 WHERE id = $6")
        .bind(&name)
        .bind(name.to_lowercase())
        .bind(description.trim())
        .bind(rule_json)
        .bind(now_ms())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(name_taken)?;
    let updated = refresh(db, id).await?;
    let detail = if segment.name == updated.name {
        serde_json::to_string(rule).unwrap_or_default()
    } else {
        format!(
            "renamed from {:?}; {}",
            segment.name,
            serde_json::to_string(rule).unwrap_or_default()
        )
    };
    record_change(db, actor, "segment.update", &updated, &detail).await?;
    Ok(updated)
}

/// A refresh someone asked for, audited.
pub async fn refresh_by(db: &Db, actor: &User, id: i64) -> Result<Segment> {
    let segment = refresh(db, id).await?;
    let detail = format!("{} members", segment.member_count);
    record_change(db, Some(actor), "segment.refresh", &segment, &detail).await?;
    Ok(segment)
}

/// The first `limit` members with their attributes, in key order.
pub async fn preview(
    db: &Db,
    id: i64,
    limit: i64,
) -> Result<Vec<(String, BTreeMap<String, String>)>> {
    let rows = sqlx::query(
        "SELECT m.profile_id, p.attributes FROM segment_members m JOIN profiles p ON p.id = m.profile_id \
         WHERE m.segment_id = $1 ORDER BY m.profile_id LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let text: String = col(r, "attributes")?;
            Ok((
                col(r, "profile_id")?,
                serde_json::from_str(&text).unwrap_or_default(),
            ))
        })
        .collect()
}

/// For each field, how many members have a non-empty value (streamed).
pub async fn fill_rates(db: &Db, id: i64) -> Result<BTreeMap<String, i64>> {
    let mut counts = BTreeMap::new();
    let mut rows = sqlx::query(
        "SELECT p.attributes FROM segment_members m JOIN profiles p ON p.id = m.profile_id WHERE m.segment_id = $1",
    )
    .bind(id)
    .fetch(db.pool());
    while let Some(row) = rows.try_next().await? {
        let text: String = col(&row, "attributes")?;
        let attrs: BTreeMap<String, String> = serde_json::from_str(&text).unwrap_or_default();
        for (k, v) in attrs {
            let n = counts.entry(k).or_insert(0);
            if !v.trim().is_empty() {
                *n += 1;
            }
        }
    }
    Ok(counts)
}
