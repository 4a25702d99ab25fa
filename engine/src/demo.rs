//! Demo data: realistic profiles (names, emails — some invalid or
//! duplicated on purpose —, country, lifetime value, signup date) and a few
//! segments of different sizes. Deterministic for a given seed.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::db::Db;
use crate::error::Result;
use crate::profiles;
use crate::segments::{self, Condition, Match, Op, Rule};

const FIRST: [&str; 24] = [
    "Anna",
    "Bence",
    "Csilla",
    "Dániel",
    "Emma",
    "Ferenc",
    "Gabriella",
    "Hanna",
    "István",
    "Júlia",
    "Kata",
    "László",
    "Olivia",
    "Liam",
    "Noah",
    "Ava",
    "Lukas",
    "Mia",
    "Sophie",
    "Jonas",
    "Chloé",
    "Hugo",
    "Amelia",
    "Oliver",
];
const LAST: [&str; 20] = [
    "Nagy",
    "Kovács",
    "Tóth",
    "Szabó",
    "Horváth",
    "Varga",
    "Smith",
    "Johnson",
    "Brown",
    "Müller",
    "Schmidt",
    "Schneider",
    "Martin",
    "Bernard",
    "Dubois",
    "Wilson",
    "Taylor",
    "Fischer",
    "Weber",
    "Kiss",
];
const COUNTRIES: [(&str, u32); 7] = [
    ("HU", 30),
    ("US", 25),
    ("DE", 15),
    ("GB", 10),
    ("AT", 8),
    ("FR", 7),
    ("CA", 5),
];
const DOMAINS: [&str; 5] = [
    "example.com",
    "example.org",
    "mail.example.net",
    "example.hu",
    "example.de",
];

fn pick_country(rng: &mut StdRng) -> &'static str {
    let total: u32 = COUNTRIES.iter().map(|(_, w)| w).sum();
    let mut roll = rng.gen_range(0..total);
    for (c, w) in COUNTRIES {
        if roll < w {
            return c;
        }
        roll -= w;
    }
    "HU"
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'á' => 'a',
            'é' => 'e',
            'í' => 'i',
            'ó' | 'ö' | 'ő' => 'o',
            'ú' | 'ü' | 'ű' => 'u',
            c => c,
        })
        .collect::<String>()
        .to_lowercase()
}

/// The profile with number `n` for this seed.
pub fn profile(rng: &mut StdRng, n: u64) -> (String, BTreeMap<String, String>) {
    let first = FIRST[rng.gen_range(0..FIRST.len())];
    let last = LAST[rng.gen_range(0..LAST.len())];
    let domain = DOMAINS[rng.gen_range(0..DOMAINS.len())];
    let roll = rng.gen_range(0..100);
    let email = match roll {
        // No email at all.
        0..=1 => String::new(),
        // Invalid on purpose.
        2..=3 => format!("{}.{}.at.{domain}", ascii(first), ascii(last)),
        // Shared with someone else (a household address): duplicates.
        4..=6 => format!("family{}@{domain}", n % 97),
        _ => format!("{}.{}{}@{domain}", ascii(first), ascii(last), n),
    };
    let mut attrs = BTreeMap::new();
    attrs.insert("email".to_owned(), email);
    attrs.insert("first_name".to_owned(), first.to_owned());
    attrs.insert("last_name".to_owned(), last.to_owned());
    attrs.insert("country".to_owned(), pick_country(rng).to_owned());
    let value: f64 = (rng.gen_range(0.0f64..1.0).powi(3) * 5_000.0 * 100.0).round() / 100.0;
    attrs.insert("lifetime_value".to_owned(), format!("{value:.2}"));
    let day = rng.gen_range(0..(7 * 365));
    let date = time::Date::from_calendar_date(2019, time::Month::January, 1)
        .map(|d| d + time::Duration::days(day));
    attrs.insert(
        "signup_date".to_owned(),
        date.map(|d| d.to_string()).unwrap_or_default(),
    );
    (format!("P{n:07}"), attrs)
}

/// The demo segments.
pub fn demo_rules() -> Vec<(&'static str, &'static str, Rule)> {
    let c = |field: &str, op, value: &str| Condition {
        field: field.into(),
        op,
        value: value.into(),
    };
    vec![
        (
            "Everyone with an email",
            "Every profile that has an email address.",
            Rule {
                matching: Match::All,
                conditions: vec![c("email", Op::IsSet, "")],
            },
        ),
        (
            "Hungarian customers",
            "Customers in Hungary.",
            Rule {
                matching: Match::All,
                conditions: vec![c("country", Op::Eq, "HU")],
            },
        ),
        (
            "High value",
            "Lifetime value over 1,000.",
            Rule {
                matching: Match::All,
                conditions: vec![c("lifetime_value", Op::Gt, "1000")],
            },
        ),
        (
            "Recent sign-ups",
            "Signed up since 2025.",
            Rule {
                matching: Match::All,
                conditions: vec![c("signup_date", Op::After, "2025-01-01")],
            },
        ),
        (
            "DACH region",
            "Germany or Austria.",
            Rule {
                matching: Match::Any,
                conditions: vec![c("country", Op::Eq, "DE"), c("country", Op::Eq, "AT")],
            },
        ),
    ]
}

/// Generates `count` profiles (ids `P0000000`…) and the demo segments
/// (created, or refreshed if they exist). Same seed, same data.
pub async fn generate(db: &Db, count: u64, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batch = Vec::with_capacity(profiles::BATCH_ROWS);
    for n in 0..count {
        batch.push(profile(&mut rng, n));
        if batch.len() == profiles::BATCH_ROWS {
            profiles::upsert(db, std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        profiles::upsert(db, batch).await?;
    }
    profiles::refresh_catalogue(db).await?;
    for (name, description, rule) in demo_rules() {
        match segments::by_name(db, name).await? {
            Some(s) => {
                segments::refresh(db, s.id).await?;
            }
            None => {
                segments::create_rule(db, None, name, description, &rule).await?;
            }
        }
    }
    Ok(())
}
