//! What an export may be: its shape (name, list, mapping, segments, limits)
//! and, against the database, a connection its owner may use and a name
//! no other export has. Every problem is reported at once.

use super::*;

/// The Constant Contact fields an export can map to, besides custom fields
/// (`cf:<name>`), with their labels.
pub const CONTACT_FIELDS: &[(&str, &str)] = &[
    ("email", "Email"),
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("job_title", "Job title"),
    ("company_name", "Company name"),
    ("phone", "Phone"),
    ("home_phone", "Home phone"),
    ("work_phone", "Work phone"),
    ("mobile_phone", "Mobile phone"),
    ("other_phone", "Other phone"),
    ("birthday_month", "Birthday month"),
    ("birthday_day", "Birthday day"),
    ("anniversary", "Anniversary"),
    ("street", "Street"),
    ("street2", "Street line 2"),
    ("city", "City"),
    ("state", "State"),
    ("zip", "ZIP / postal code"),
    ("country", "Country"),
    ("home_street", "Home street"),
    ("home_city", "Home city"),
    ("home_state", "Home state"),
    ("home_zip", "Home ZIP"),
    ("home_country", "Home country"),
    ("work_street", "Work street"),
    ("work_city", "Work city"),
    ("work_state", "Work state"),
    ("work_zip", "Work ZIP"),
    ("work_country", "Work country"),
];

/// True when a list id has the shape of a Constant Contact list id.
pub fn is_list_id(text: &str) -> bool {
    uuid::Uuid::parse_str(text.trim()).is_ok_and(|u| u.hyphenated().to_string() == text.trim())
}

/// Checks what does not need the database or Constant Contact.
pub fn validate_shape(input: &ExportInput) -> Result<()> {
    // Every problem at once: the form shows each next to its field.
    let mut problems: Vec<(&'static str, String)> = Vec::new();
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        problems.push((
            "name",
            String::from("Give the export a name of 1 to 100 characters."),
        ));
    }
    if !is_list_id(&input.list_id) {
        problems.push((
            "list_id",
            String::from("Choose a list, or paste a list ID (a UUID such as 1b3c5d7e-0000-4000-8000-123456789abc)."),
        ));
    }
    let mut targets = std::collections::BTreeSet::new();
    let mut mapping = None;
    for m in &input.mapping {
        let problem = if m.source.trim().is_empty() {
            Some(format!(
                "Choose the profile field for {}.",
                target_label(&m.target)
            ))
        } else if max_chars(&m.target).is_none() {
            Some(format!(
                "{} is not a Constant Contact contact field.",
                m.target
            ))
        } else if !targets.insert(m.target.as_str()) {
            Some(format!("{} is mapped twice.", target_label(&m.target)))
        } else {
            None
        };
        // The first problem of the mapping (one message under it).
        mapping = mapping.or(problem);
    }
    if !targets.contains("email") {
        problems.push((
            "email",
            String::from("Choose the profile field that holds the email address."),
        ));
    }
    if mapping.is_none() && targets.contains("birthday_month") != targets.contains("birthday_day") {
        mapping = Some(String::from(
            "Map birthday month and birthday day together.",
        ));
    }
    if let Some(m) = mapping {
        problems.push(("mapping", m));
    }
    if input.segment_ids.is_empty() {
        problems.push(("segments", String::from("Choose at least one segment.")));
    }
    if !(1..=100).contains(&input.removal_limit_pct) {
        problems.push((
            "removal_limit_pct",
            String::from("The removal limit is a percentage from 1 to 100."),
        ));
    }
    Error::from_problems(problems)
}

/// A readable name for a Constant Contact field.
pub fn target_label(target: &str) -> String {
    CONTACT_FIELDS
        .iter()
        .find(|(k, _)| *k == target)
        .map(|(_, l)| (*l).to_owned())
        .or_else(|| {
            target
                .strip_prefix("cf:")
                .map(|n| format!("Custom field {n}"))
        })
        .unwrap_or_else(|| target.to_owned())
}

/// The connection an export may be saved with: it exists and `actor` may
/// use it.
pub async fn usable_connection(
    db: &Db,
    actor: &User,
    connection_id: ConnectionId,
) -> Result<connections::Connection> {
    let connection = connections::get(db, connection_id)
        .await?
        .ok_or_else(|| Error::invalid("connection", "Choose a connection."))?;
    if crate::policy::use_connection(actor, connection.usable_by).is_err() {
        return Err(Error::invalid(
            "connection",
            "You may not use this connection. Choose another, or ask an administrator.",
        ));
    }
    Ok(connection)
}

pub(super) async fn validate(db: &Db, actor: &User, input: &ExportInput) -> Result<()> {
    validate_shape(input)?;
    usable_connection(db, actor, input.connection_id).await?;
    for id in &input.segment_ids {
        if segments::get(db, *id).await?.is_none() {
            return Err(Error::invalid(
                "segments",
                "One of the chosen segments no longer exists.",
            ));
        }
    }
    Ok(())
}

pub(super) fn name_taken(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            Error::invalid("name", "An export with this name already exists.")
        }
        other => Error::from(other),
    }
}
