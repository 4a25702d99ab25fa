//! A segment's stored members: evaluated on refresh, stored in key order,
//! and every refresh's entries and departures recorded. Owns the
//! `segment_members` and `segment_changes` tables.

use super::*;
use crate::db::Backend;

/// Rows written per statement when storing members and changes.
pub(super) const WRITE_BATCH: usize = 500;

/// Profiles read per query when evaluating a rule, and members read per
/// query when comparing with the stored ones.
pub(super) const READ_PAGE: i64 = 5_000;

/// The members a refresh stores, produced page by page in key order.
pub(super) enum NewMembers<'a> {
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
pub(super) struct Cursor {
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
pub async fn refresh(db: &Db, id: SegmentId) -> Result<Segment> {
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
pub(super) struct Changes {
    segment: SegmentId,
    refresh_no: i64,
    at: i64,
    entered: Vec<String>,
    left: Vec<String>,
    /// Ids kept before they are written: [`WRITE_BATCH`], or
    /// [`JSON_BATCH`] on PostgreSQL (one statement takes them all).
    batch: usize,
}

/// Ids written per statement on PostgreSQL (as one JSON array).
const JSON_BATCH: usize = 5_000;

impl Changes {
    fn full(&self) -> bool {
        self.entered.len() >= self.batch || self.left.len() >= self.batch
    }

    async fn write(&mut self, db: &Db, tx: &mut sqlx::AnyConnection) -> Result<()> {
        if db.backend() == Backend::Postgres {
            return self.write_as_json(tx).await;
        }
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

    /// [`Self::write`] on PostgreSQL: the ids travel as one JSON array per
    /// statement, unpacked by the server, in statements whose text never
    /// changes (prepared once per connection). A thousand bound values per
    /// statement cost more to parse and plan than to run: a refresh of
    /// 300,000 members took seconds on PostgreSQL where SQLite took
    /// a fraction of one.
    async fn write_as_json(&mut self, tx: &mut sqlx::AnyConnection) -> Result<()> {
        let (id, refresh_no, now) = (self.segment, self.refresh_no, self.at);
        let json = |ids: &[String]| serde_json::to_string(ids).map_err(Error::internal);
        // Each list is written twice (members, then changes): serialised once.
        let (entered, left) = (json(&self.entered)?, json(&self.left)?);
        if !self.left.is_empty() {
            sqlx::query(
                "DELETE FROM segment_members WHERE segment_id = $1 \
                 AND profile_id IN (SELECT jsonb_array_elements_text($2::jsonb))",
            )
            .bind(id)
            .bind(&left)
            .execute(&mut *tx)
            .await?;
        }
        if !self.entered.is_empty() {
            sqlx::query(
                "INSERT INTO segment_members (segment_id, profile_id) \
                 SELECT $1, jsonb_array_elements_text($2::jsonb)",
            )
            .bind(id)
            .bind(&entered)
            .execute(&mut *tx)
            .await?;
        }
        for (change, ids, json) in [
            ("entered", &self.entered, entered),
            ("left", &self.left, left),
        ] {
            if ids.is_empty() {
                continue;
            }
            sqlx::query(
                "INSERT INTO segment_changes (segment_id, refresh_no, change, profile_id, at) \
                 SELECT $1, $2, $3, jsonb_array_elements_text($4::jsonb), $5",
            )
            .bind(id)
            .bind(refresh_no)
            .bind(change)
            .bind(json)
            .bind(now)
            .execute(&mut *tx)
            .await?;
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
pub(super) async fn store_members(db: &Db, id: SegmentId, mut new: NewMembers<'_>) -> Result<()> {
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
        batch: match db.backend() {
            Backend::Postgres => JSON_BATCH,
            Backend::Sqlite => WRITE_BATCH,
        },
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

/// Up to `limit` member ids after `after`, in key order: an export pages
/// through a million members this way without holding them.
pub async fn members_after(db: &Db, id: SegmentId, after: &str, limit: i64) -> Result<Vec<String>> {
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
pub async fn changes(
    db: &Db,
    id: SegmentId,
    refresh_no: i64,
) -> Result<(Vec<String>, Vec<String>)> {
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
