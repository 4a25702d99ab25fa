//! Rules: conditions on profile fields, joined by AND or OR, evaluated in
//! Rust against each profile's attributes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::*;

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

/// The most conditions a rule may have.
pub const MAX_CONDITIONS: usize = 50;

/// The longest field name a condition may name.
pub const MAX_FIELD_CHARS: usize = 200;

/// The longest value a condition may compare with.
pub const MAX_VALUE_CHARS: usize = 1_000;

/// A rule: conditions joined by AND or OR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(rename = "match")]
    pub matching: Match,
    pub conditions: Vec<Condition>,
}

pub(super) fn compare(a: &str, b: &str) -> std::cmp::Ordering {
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
