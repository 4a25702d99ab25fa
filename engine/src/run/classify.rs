//! What becomes of one member: its email checked, its mapped values hashed, and
//! the verdict (skip, unchanged, send) decided without the database.

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};

use super::*;

/// Why a member is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Skip {
    NoEmail,
    InvalidEmail,
    /// Another profile with the same email came first in the stream.
    DuplicateEmail,
    /// Unsubscribed in Constant Contact: never sent again.
    Unsubscribed,
}

impl Skip {
    /// The kind recorded with the contact's error.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Skip::NoEmail => "no_email",
            Skip::InvalidEmail => "invalid_email",
            Skip::DuplicateEmail => "duplicate_email",
            Skip::Unsubscribed => "unsubscribed",
        }
    }

    /// The field at fault (the mapped email's `source`) and the reason shown.
    pub(super) fn explain(self, source: &str) -> (String, String) {
        match self {
            Skip::NoEmail => (source.to_owned(), format!("{source} is empty")),
            Skip::InvalidEmail => (source.to_owned(), String::from("not a valid email address")),
            Skip::DuplicateEmail => (
                source.to_owned(),
                String::from("another profile with this email comes first"),
            ),
            Skip::Unsubscribed => (
                String::from("email"),
                String::from("unsubscribed in Constant Contact; never re-subscribed by an export"),
            ),
        }
    }
}

/// How a contact sent counts: new to the list's ledger, changed since, or
/// the same sent again (a full resend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    New,
    Changed,
    Resent,
}

/// What becomes of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Skip(Skip),
    /// An earlier attempt of this run sent it and Constant Contact took it
    /// (past a checkpoint held behind a failed batch): counted as that
    /// attempt counted it, not sent again.
    AlreadySent(Change),
    /// The ledger's entry matches: nothing to send.
    Unchanged,
    Send(Change),
}

/// What the ledger says of a member's mapped values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ledger {
    /// This export never sent the profile.
    Absent,
    /// Sent with these values, to this list, with this mapping.
    Same,
    /// Sent, but something differs since.
    Different,
}

/// Everything the verdict depends on, found by the stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Facts<'a> {
    /// The mapped email, trimmed.
    pub(super) email: &'a str,
    pub(super) valid: bool,
    pub(super) duplicate: bool,
    pub(super) unsubscribed: bool,
    pub(super) ledger: Ledger,
    /// Whether this run's earlier attempt wrote the ledger entry: 0 no, 1
    /// as a changed contact, 2 as a new one.
    pub(super) by_this_run: i64,
    /// A full resend: unchanged contacts are sent too.
    pub(super) full: bool,
}

/// The member's fate. The email's problems come first, in this order: no
/// email, an invalid one, a duplicate, an unsubscribed one.
pub(super) fn classify(f: &Facts<'_>) -> Verdict {
    if f.email.is_empty() {
        return Verdict::Skip(Skip::NoEmail);
    }
    if !f.valid {
        return Verdict::Skip(Skip::InvalidEmail);
    }
    if f.duplicate {
        return Verdict::Skip(Skip::DuplicateEmail);
    }
    if f.unsubscribed {
        return Verdict::Skip(Skip::Unsubscribed);
    }
    let same = f.ledger == Ledger::Same;
    if f.by_this_run > 0 && same {
        return Verdict::AlreadySent(match (f.by_this_run, f.full) {
            (2, _) => Change::New,
            (_, true) => Change::Resent,
            _ => Change::Changed,
        });
    }
    match (f.ledger, f.full) {
        (Ledger::Same, false) => Verdict::Unchanged,
        (Ledger::Same, true) => Verdict::Send(Change::Resent),
        (Ledger::Absent, _) => Verdict::Send(Change::New),
        (Ledger::Different, _) => Verdict::Send(Change::Changed),
    }
}

/// A plain syntax check: one `@`, a non-empty local part, a dotted domain
/// of letters, digits and hyphens, no spaces.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || local.len() > 64 || domain.len() > 253 || local.contains('@') {
        return false;
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return false;
    }
    let local_ok = local
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii());
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
    local_ok && domain_ok
}

/// The normalized form duplicates are found by.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(super) fn email_key(normalized: &str) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    normalized.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    (normalized, 0x5eed_u32).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// The digest of what is sent for a contact.
pub(super) fn contact_hash(contact: &[(&str, &str)]) -> [u8; 16] {
    let mut h = Sha256::new();
    for (k, v) in contact {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let mut hash = [0; 16];
    hash.copy_from_slice(&h.finalize()[..16]);
    hash
}

/// A profile's attributes, borrowed from the stored JSON when it has no
/// escapes (the common case: no allocation per field), else owned.
pub(super) enum Attrs<'a> {
    Borrowed(HashMap<&'a str, &'a str>),
    Owned(HashMap<String, String>),
}

impl<'a> Attrs<'a> {
    pub(super) fn parse(json: &'a str) -> Self {
        match serde_json::from_str(json) {
            Ok(m) => Attrs::Borrowed(m),
            Err(_) => Attrs::Owned(serde_json::from_str(json).unwrap_or_default()),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&str> {
        match self {
            Attrs::Borrowed(m) => m.get(key).copied(),
            Attrs::Owned(m) => m.get(key).map(String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENDABLE: Facts<'static> = Facts {
        email: "ada@example.com",
        valid: true,
        duplicate: false,
        unsubscribed: false,
        ledger: Ledger::Absent,
        by_this_run: 0,
        full: false,
    };

    #[test]
    fn every_member_gets_one_verdict() {
        use Change::*;
        use Ledger::*;
        let cases: Vec<(&str, Facts<'static>, Verdict)> = vec![
            ("new", SENDABLE, Verdict::Send(New)),
            (
                "changed",
                Facts {
                    ledger: Different,
                    ..SENDABLE
                },
                Verdict::Send(Changed),
            ),
            (
                "unchanged",
                Facts {
                    ledger: Same,
                    ..SENDABLE
                },
                Verdict::Unchanged,
            ),
            (
                "full resend of the same",
                Facts {
                    ledger: Same,
                    full: true,
                    ..SENDABLE
                },
                Verdict::Send(Resent),
            ),
            (
                "full resend of a new one",
                Facts {
                    full: true,
                    ..SENDABLE
                },
                Verdict::Send(New),
            ),
            (
                "full resend of a changed one",
                Facts {
                    ledger: Different,
                    full: true,
                    ..SENDABLE
                },
                Verdict::Send(Changed),
            ),
            (
                "no email",
                Facts {
                    email: "",
                    valid: false,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::NoEmail),
            ),
            (
                "invalid email",
                Facts {
                    valid: false,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::InvalidEmail),
            ),
            (
                "duplicate",
                Facts {
                    duplicate: true,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::DuplicateEmail),
            ),
            (
                "unsubscribed",
                Facts {
                    unsubscribed: true,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::Unsubscribed),
            ),
            // An invalid email is reported as such even if also unsubscribed.
            (
                "invalid before unsubscribed",
                Facts {
                    valid: false,
                    unsubscribed: true,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::InvalidEmail),
            ),
            (
                "duplicate before unsubscribed",
                Facts {
                    duplicate: true,
                    unsubscribed: true,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::DuplicateEmail),
            ),
            // An unsubscribed contact is never sent, even unchanged or in a full resend.
            (
                "unsubscribed, full",
                Facts {
                    unsubscribed: true,
                    ledger: Same,
                    full: true,
                    ..SENDABLE
                },
                Verdict::Skip(Skip::Unsubscribed),
            ),
            // Resumed: an earlier attempt of this run sent it and it was taken.
            (
                "earlier attempt added",
                Facts {
                    ledger: Same,
                    by_this_run: 2,
                    ..SENDABLE
                },
                Verdict::AlreadySent(New),
            ),
            (
                "earlier attempt changed",
                Facts {
                    ledger: Same,
                    by_this_run: 1,
                    ..SENDABLE
                },
                Verdict::AlreadySent(Changed),
            ),
            (
                "earlier attempt resent",
                Facts {
                    ledger: Same,
                    by_this_run: 1,
                    full: true,
                    ..SENDABLE
                },
                Verdict::AlreadySent(Resent),
            ),
            (
                "earlier attempt added, full",
                Facts {
                    ledger: Same,
                    by_this_run: 2,
                    full: true,
                    ..SENDABLE
                },
                Verdict::AlreadySent(New),
            ),
            // Changed again since the earlier attempt sent it: sent again.
            (
                "earlier attempt, changed since",
                Facts {
                    ledger: Different,
                    by_this_run: 1,
                    ..SENDABLE
                },
                Verdict::Send(Changed),
            ),
        ];
        for (name, facts, verdict) in cases {
            assert_eq!(classify(&facts), verdict, "{name}");
        }
    }

    #[test]
    fn skips_explain_themselves() {
        for (skip, kind, field, reason) in [
            (
                Skip::NoEmail,
                "no_email",
                "work_email",
                "work_email is empty",
            ),
            (
                Skip::InvalidEmail,
                "invalid_email",
                "work_email",
                "not a valid email address",
            ),
            (
                Skip::DuplicateEmail,
                "duplicate_email",
                "work_email",
                "another profile with this email comes first",
            ),
            (
                Skip::Unsubscribed,
                "unsubscribed",
                "email",
                "unsubscribed in Constant Contact; never re-subscribed by an export",
            ),
        ] {
            assert_eq!(skip.kind(), kind);
            assert_eq!(
                skip.explain("work_email"),
                (field.to_owned(), reason.to_owned())
            );
        }
    }

    #[test]
    fn email_syntax() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.co",
            "ü@exämple.hu",
        ] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@example",
            "a b@example.com",
            "a@@example.com",
            "a@exa mple.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-x.com",
            "a@example.123",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn attributes_are_borrowed_unless_escaped() {
        let plain = Attrs::parse(r#"{"email":"a@example.com","name":"Zoë"}"#);
        assert!(matches!(plain, Attrs::Borrowed(_)));
        assert_eq!(plain.get("name"), Some("Zoë"));
        let escaped = Attrs::parse(r#"{"name":"Say \"hi\""}"#);
        assert!(matches!(escaped, Attrs::Owned(_)));
        assert_eq!(escaped.get("name"), Some("Say \"hi\""));
        assert_eq!(Attrs::parse("not json").get("name"), None);
    }
}
