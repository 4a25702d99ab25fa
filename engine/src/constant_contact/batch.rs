//! Packs contacts into JSON import bodies within Constant Contact's limits
//! (reference §2.4): at most 40,000 contacts and under 4 MB per body,
//! measured on the encoded JSON. Field limits are applied per contact; a
//! contact that breaks one is reported, never sent.

use serde_json::Value;

/// At most this many contacts per import.
pub const MAX_CONTACTS: usize = 40_000;
/// Bodies stay under this many bytes (4 MB read as 4,000,000, which is
/// under 4 MiB too; data past the limit would be dropped silently).
pub const MAX_BYTES: usize = 4_000_000;
/// At most this many custom fields per contact.
pub const MAX_CUSTOM_FIELDS: usize = 25;

/// One contact for `contacts_json_import`: field name → value, with
/// `email` required and `cf:<name>` for custom fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportContact {
    fields: Vec<(String, String)>,
}

impl ImportContact {
    pub fn new(email: impl Into<String>) -> Self {
        ImportContact {
            fields: vec![(String::from("email"), email.into())],
        }
    }

    /// Sets a field (replacing an earlier value of the same field).
    pub fn set(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        let field = field.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(k, _)| *k == field) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((field, value)),
        }
        self
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
    }

    pub fn email(&self) -> &str {
        self.get("email").unwrap_or("")
    }
}

/// The longest value Constant Contact accepts for a field, in characters;
/// `None` for a field the bulk import does not know.
pub fn max_chars(field: &str) -> Option<usize> {
    const FIFTY: [&str; 10] = [
        "email",
        "first_name",
        "last_name",
        "job_title",
        "company_name",
        "phone",
        "home_phone",
        "work_phone",
        "mobile_phone",
        "other_phone",
    ];
    const ADDRESS_50: [&str; 4] = ["city", "state", "zip", "country"];
    if FIFTY.contains(&field) {
        return Some(50);
    }
    if field.starts_with("cf:") && field.len() > 3 {
        return Some(255);
    }
    let base = ["home_", "work_", "other_"]
        .iter()
        .find_map(|p| field.strip_prefix(p))
        .unwrap_or(field);
    match base {
        "street" | "street2" => Some(255),
        b if ADDRESS_50.contains(&b) => Some(50),
        "anniversary" => Some(10),
        "sms_number" | "sms_consent_date" if base == field => Some(16),
        "birthday_month" | "birthday_day" if base == field => Some(2),
        _ => None,
    }
}

/// The key a field is sent under. Constant Contact's spec documents the
/// home address's country as `"home country"`, with a space, unlike every
/// other address field (`home_city`, `work_country`, …); we send what it
/// documents. Elsewhere (mappings, limits) the field is `home_country`.
pub fn wire_key(field: &str) -> &str {
    match field {
        "home_country" => "home country",
        other => other,
    }
}

/// Why a contact was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The caller's key for the contact (a profile id).
    pub key: String,
    pub field: String,
    pub reason: String,
}

/// One import body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The complete JSON body.
    pub body: Vec<u8>,
    /// The caller's keys of the contacts in it, in order.
    pub keys: Vec<String>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Builds batches as contacts stream in.
#[derive(Debug)]
pub struct BatchBuilder {
    max_contacts: usize,
    max_bytes: usize,
    suffix: Vec<u8>,
    body: Vec<u8>,
    keys: Vec<String>,
}

const PREFIX: &[u8] = b"{\"import_data\":[";

impl BatchBuilder {
    /// Batches for the given lists, with Constant Contact's limits.
    pub fn new(list_ids: &[String]) -> Self {
        Self::with_limits(list_ids, MAX_CONTACTS, MAX_BYTES)
    }

    /// Batches with smaller limits (for tests and cautious callers).
    pub fn with_limits(list_ids: &[String], max_contacts: usize, max_bytes: usize) -> Self {
        let lists = serde_json::to_vec(list_ids).unwrap_or_else(|_| b"[]".to_vec());
        let mut suffix = b"],\"list_ids\":".to_vec();
        suffix.extend_from_slice(&lists);
        suffix.push(b'}');
        BatchBuilder {
            max_contacts: max_contacts.min(MAX_CONTACTS),
            max_bytes: max_bytes.min(MAX_BYTES),
            suffix,
            body: PREFIX.to_vec(),
            keys: Vec::new(),
        }
    }

    /// Checks a contact against the field limits.
    pub fn validate(key: &str, contact: &ImportContact) -> Result<(), Rejection> {
        let reject = |field: &str, reason: String| Rejection {
            key: key.to_owned(),
            field: field.to_owned(),
            reason,
        };
        if contact.email().trim().is_empty() {
            return Err(reject("email", String::from("has no email address")));
        }
        let mut custom = 0;
        for (field, value) in &contact.fields {
            let Some(max) = max_chars(field) else {
                return Err(reject(
                    field,
                    format!("{field} is not a Constant Contact import field"),
                ));
            };
            let n = value.chars().count();
            if n > max {
                return Err(reject(
                    field,
                    format!(
                        "{field} is {n} characters long; Constant Contact accepts at most {max}"
                    ),
                ));
            }
            if field.starts_with("birthday_") {
                let limit = if field == "birthday_month" { 12 } else { 31 };
                if !value.parse::<u8>().is_ok_and(|v| (1..=limit).contains(&v)) {
                    return Err(reject(
                        field,
                        format!("{field} must be a number from 1 to {limit}"),
                    ));
                }
            }
            custom += usize::from(field.starts_with("cf:"));
        }
        if custom > MAX_CUSTOM_FIELDS {
            return Err(reject("custom fields", format!("has {custom} custom fields; Constant Contact accepts at most {MAX_CUSTOM_FIELDS}")));
        }
        let has_month = contact.get("birthday_month").is_some();
        if has_month != contact.get("birthday_day").is_some() {
            return Err(reject(
                "birthday",
                String::from("birthday_month and birthday_day must be given together"),
            ));
        }
        Ok(())
    }

    fn encode(contact: &ImportContact) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        for (k, v) in &contact.fields {
            let value = match k.as_str() {
                "birthday_month" | "birthday_day" => v
                    .parse::<u8>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(v.clone())),
                _ => Value::from(v.clone()),
            };
            map.insert(wire_key(k).to_owned(), value);
        }
        serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
    }

    /// Adds a contact. Returns the batch it completed, if adding it would
    /// have overflowed one (the contact then starts the next batch), or the
    /// reason the contact cannot be sent.
    pub fn push(
        &mut self,
        key: impl Into<String>,
        contact: &ImportContact,
    ) -> Result<Option<Batch>, Rejection> {
        let key = key.into();
        Self::validate(&key, contact)?;
        let encoded = Self::encode(contact);
        let alone = PREFIX.len() + encoded.len() + self.suffix.len();
        if alone >= self.max_bytes {
            return Err(Rejection {
                key,
                field: String::from("contact"),
                reason: format!(
                    "is {} bytes of JSON; an import must stay under {} bytes",
                    encoded.len(),
                    self.max_bytes
                ),
            });
        }
        let comma = usize::from(!self.keys.is_empty());
        let fits = self.keys.len() < self.max_contacts
            && self.body.len() + comma + encoded.len() + self.suffix.len() < self.max_bytes;
        let done = if fits { None } else { self.take() };
        if !self.keys.is_empty() {
            self.body.push(b',');
        }
        self.body.extend_from_slice(&encoded);
        self.keys.push(key);
        Ok(done)
    }

    fn take(&mut self) -> Option<Batch> {
        if self.keys.is_empty() {
            return None;
        }
        let mut body = std::mem::replace(&mut self.body, PREFIX.to_vec());
        body.extend_from_slice(&self.suffix);
        Some(Batch {
            body,
            keys: std::mem::take(&mut self.keys),
        })
    }

    /// The last, partly filled batch.
    pub fn finish(mut self) -> Option<Batch> {
        self.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_limits_are_reported_per_contact() {
        let long = ImportContact::new("a@example.com").set("first_name", "x".repeat(51));
        let r = BatchBuilder::validate("p1", &long).unwrap_err();
        assert_eq!((r.key.as_str(), r.field.as_str()), ("p1", "first_name"));
        assert!(r.reason.contains("at most 50"));
        assert!(BatchBuilder::validate("p2", &ImportContact::new("")).is_err());
        assert!(BatchBuilder::validate(
            "p3",
            &ImportContact::new("a@example.com").set("favourite", "x")
        )
        .is_err());
        assert!(BatchBuilder::validate(
            "p4",
            &ImportContact::new("a@example.com")
                .set("birthday_month", "13")
                .set("birthday_day", "1")
        )
        .is_err());
        assert!(BatchBuilder::validate(
            "p5",
            &ImportContact::new("a@example.com")
                .set("home_city", "Pécs")
                .set("cf:color", "blue")
        )
        .is_ok());
    }

    #[test]
    fn a_batch_body_is_the_json_constant_contact_expects() {
        let mut b = BatchBuilder::new(&["l1".into()]);
        assert!(b
            .push(
                "1",
                &ImportContact::new("a@example.com")
                    .set("birthday_month", "3")
                    .set("birthday_day", "9")
            )
            .unwrap()
            .is_none());
        let batch = b.finish().unwrap();
        let v: Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "import_data": [{ "email": "a@example.com", "birthday_month": 3, "birthday_day": 9 }], "list_ids": ["l1"] })
        );
    }
}
