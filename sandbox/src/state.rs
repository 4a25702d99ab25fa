//! The sandbox's memory: OAuth clients, accounts with their lists,
//! contacts, custom fields and activities, tokens, rate counters, faults
//! and a request log. One mutex guards it; no lock is held across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;

/// ISO-8601 (RFC 3339) for now.
pub fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Unix milliseconds, now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 for Unix milliseconds.
pub fn iso_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Days since the Unix epoch, UTC (the daily quota resets at midnight UTC).
pub fn utc_day() -> i64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400)
}

pub fn random_token(prefix: &str) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect();
    format!("{prefix}{body}")
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Implicit,
    Explicit,
    Unsubscribed,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: Uuid,
    pub email: String,
    /// Every other imported field (`first_name`, `cf:color`, …).
    pub fields: Vec<(String, String)>,
    pub lists: Vec<Uuid>,
    pub permission: Permission,
    pub opt_out_source: Option<&'static str>,
    /// Unix milliseconds (kept as numbers: a million contacts' worth of
    /// timestamp strings is a lot of memory).
    pub created_at: i64,
    pub updated_at: i64,
    /// How many import rows named this contact (the witness of
    /// "each contact sent exactly once").
    pub imports: u32,
}

impl Contact {
    pub fn set(&mut self, key: &str, value: String) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_owned(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct List {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub favorite: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone)]
pub struct CustomField {
    pub id: Uuid,
    pub label: String,
    pub name: String,
    pub kind: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityState {
    Initialized,
    Processing,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Import,
    RemoveMemberships,
}

#[derive(Debug, Clone)]
pub struct Activity {
    pub id: Uuid,
    pub kind: ActivityKind,
    pub state: ActivityState,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub percent_done: u32,
    pub errors: Vec<String>,
    pub items_total: u64,
    pub items_completed: u64,
    pub person_count: u64,
    pub error_count: u64,
    pub correctable_count: u64,
    pub cannot_add_to_list_count: u64,
    pub list_count: u64,
}

#[derive(Debug, Default)]
pub struct AccountData {
    pub lists: Vec<List>,
    pub custom_fields: Vec<CustomField>,
    pub contacts: Vec<Contact>,
    pub by_email: HashMap<String, usize>,
    pub by_id: HashMap<Uuid, usize>,
    pub activities: HashMap<Uuid, Activity>,
    pub activity_order: Vec<Uuid>,
}

impl AccountData {
    pub fn list(&self, id: Uuid) -> Option<&List> {
        self.lists.iter().find(|l| l.id == id)
    }

    /// The index of the contact with this (normalised) email, created
    /// with implicit permission if there is none.
    pub fn contact_index(&mut self, email: &str, now: i64) -> usize {
        if let Some(&i) = self.by_email.get(email) {
            return i;
        }
        let contact = Contact {
            id: Uuid::new_v4(),
            email: email.to_owned(),
            fields: Vec::new(),
            lists: Vec::new(),
            permission: Permission::Implicit,
            opt_out_source: None,
            created_at: now,
            updated_at: now,
            imports: 0,
        };
        let i = self.contacts.len();
        self.by_id.insert(contact.id, i);
        self.by_email.insert(email.to_owned(), i);
        self.contacts.push(contact);
        i
    }

    pub fn membership_count(&self, list: Uuid, active_only: bool) -> usize {
        self.contacts
            .iter()
            .filter(|c| {
                c.lists.contains(&list)
                    && (!active_only || c.permission != Permission::Unsubscribed)
            })
            .count()
    }

    pub fn add_activity(&mut self, kind: ActivityKind, items: u64, lists: u64) -> Uuid {
        let id = Uuid::new_v4();
        let now = now_iso();
        self.activities.insert(
            id,
            Activity {
                id,
                kind,
                state: ActivityState::Initialized,
                created_at: now.clone(),
                updated_at: now,
                started_at: None,
                completed_at: None,
                percent_done: 0,
                errors: Vec::new(),
                items_total: items,
                items_completed: 0,
                person_count: 0,
                error_count: 0,
                correctable_count: 0,
                cannot_add_to_list_count: 0,
                list_count: lists,
            },
        );
        self.activity_order.push(id);
        id
    }
}

#[derive(Debug)]
pub struct Account {
    pub username: String,
    pub password: String,
    pub data: AccountData,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub account: usize,
    /// `(method, challenge)` when the request used PKCE.
    pub challenge: Option<(String, String)>,
    pub expires_at: Instant,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub client_id: String,
    pub account: usize,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub client_id: String,
    pub account: usize,
    pub scopes: Vec<String>,
    pub revoked: bool,
}

#[derive(Debug, Default)]
pub struct RateState {
    pub window: VecDeque<Instant>,
    pub day: i64,
    pub day_count: u32,
}

/// Faults injected into API (and token) requests; changeable at run time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Faults {
    #[serde(default)]
    pub p429: f64,
    #[serde(default)]
    pub p500: f64,
    #[serde(default)]
    pub p503: f64,
    #[serde(default)]
    pub drop: f64,
    #[serde(default)]
    pub latency_ms: u64,
    /// The next this many contact imports are held without an answer and
    /// never processed, as if lost on the way (counts down).
    #[serde(default)]
    pub stall_imports: u32,
    /// Accept this many more contact imports, then answer every later one
    /// with a 500 (counts down; `null`: no such fault).
    #[serde(default)]
    pub fail_imports_after: Option<u32>,
}

/// One request as the sandbox saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub client_id: Option<String>,
    /// The JSON body of a request, when it had one of at most
    /// [`LOGGED_BODY_MAX`] bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// Request bodies up to this size are kept in the log.
pub const LOGGED_BODY_MAX: usize = 64 * 1024;

/// Settings that can change at run time.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    pub rotate_refresh_tokens: bool,
    pub token_expires_in: u64,
    pub rate_per_second: u32,
    pub daily_quota: u32,
    pub processing_delay_ms: u64,
}

#[derive(Debug)]
pub struct Inner {
    pub clients: Vec<Client>,
    pub accounts: Vec<Account>,
    pub codes: HashMap<String, AuthCode>,
    pub access_tokens: HashMap<String, AccessToken>,
    pub refresh_tokens: HashMap<String, RefreshToken>,
    pub rates: HashMap<String, RateState>,
    pub faults: Faults,
    pub settings: Settings,
    pub log: VecDeque<LogEntry>,
}

pub const LOG_CAPACITY: usize = 100_000;

impl Inner {
    fn new(config: &Config) -> Self {
        Inner {
            clients: config
                .clients
                .iter()
                .map(|c| Client {
                    id: c.id.clone(),
                    secret: c.secret.clone(),
                    redirect_uris: c.redirect_uris.clone(),
                })
                .collect(),
            accounts: config
                .accounts
                .iter()
                .map(|a| Account {
                    username: a.username.clone(),
                    password: a.password.clone(),
                    data: AccountData::default(),
                })
                .collect(),
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            rates: HashMap::new(),
            faults: Faults {
                p429: config.fault_429,
                p500: config.fault_500,
                p503: config.fault_503,
                drop: config.fault_drop,
                latency_ms: config.latency_ms,
                stall_imports: 0,
                fail_imports_after: None,
            },
            settings: Settings {
                rotate_refresh_tokens: config.rotate_refresh_tokens,
                token_expires_in: config.token_expires_in,
                rate_per_second: config.rate_per_second,
                daily_quota: config.daily_quota,
                processing_delay_ms: config.processing_delay_ms,
            },
            log: VecDeque::new(),
        }
    }

    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// Counts a request against the client's per-second and daily limits;
    /// `Err(key)` names the limit that was hit.
    pub fn rate(&mut self, client_id: &str) -> Result<(), &'static str> {
        let per_second = self.settings.rate_per_second as usize;
        let quota = self.settings.daily_quota;
        let state = self.rates.entry(client_id.to_owned()).or_default();
        let today = utc_day();
        if state.day != today {
            state.day = today;
            state.day_count = 0;
        }
        if state.day_count >= quota {
            return Err("quota_exceeded");
        }
        let now = Instant::now();
        while state
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            state.window.pop_front();
        }
        if per_second > 0 && state.window.len() >= per_second {
            return Err("throttled");
        }
        state.window.push_back(now);
        state.day_count += 1;
        Ok(())
    }

    /// Issues an access token (and a refresh token when `offline_access`
    /// was granted, or `reuse_refresh` when refreshing a long-lived one).
    pub fn issue_tokens(
        &mut self,
        client_id: &str,
        account: usize,
        scopes: &[String],
        reuse_refresh: Option<String>,
    ) -> serde_json::Value {
        let access = random_token("sbx_at_");
        let expires_in = self.settings.token_expires_in;
        self.access_tokens.insert(
            access.clone(),
            AccessToken {
                client_id: client_id.to_owned(),
                account,
                scopes: scopes.to_vec(),
                expires_at: Instant::now() + Duration::from_secs(expires_in),
                revoked: false,
            },
        );
        let mut body = serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "access_token": access,
            "scope": scopes.join(" "),
        });
        if scopes.iter().any(|s| s == "offline_access") {
            let refresh = reuse_refresh.unwrap_or_else(|| {
                let rt = random_token("sbx_rt_");
                self.refresh_tokens.insert(
                    rt.clone(),
                    RefreshToken {
                        client_id: client_id.to_owned(),
                        account,
                        scopes: scopes.to_vec(),
                        revoked: false,
                    },
                );
                rt
            });
            body["refresh_token"] = serde_json::Value::String(refresh);
        }
        body
    }

    pub fn record(&mut self, entry: LogEntry) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// Forgets all data, tokens, counters and the log; keeps clients,
    /// accounts and settings.
    pub fn reset(&mut self) {
        for account in &mut self.accounts {
            account.data = AccountData::default();
        }
        self.codes.clear();
        self.access_tokens.clear();
        self.refresh_tokens.clear();
        self.rates.clear();
        self.log.clear();
        self.faults = Faults::default();
    }
}

/// The shared sandbox state.
#[derive(Clone, Debug)]
pub struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    pub fn new(config: &Config) -> Self {
        Shared(Arc::new(Mutex::new(Inner::new(config))))
    }

    /// Locks the state. A panic while locked would poison it; the sandbox
    /// carries on with the data as it is.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
