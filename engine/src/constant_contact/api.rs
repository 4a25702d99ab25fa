//! The v3 API calls the product makes, with pacing (at most 4 requests a
//! second per application, see [`super::pacer`]), a daily request count, retries with
//! exponential backoff and jitter for retryable errors, and one token
//! refresh on a 401.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::{header, Method};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub use super::model::{
    Activity, ActivityStatus, Contact, ContactList, CustomField, EmailAddress, Privilege,
};

use super::batch::Batch;
use super::model::{ActivitiesPage, ContactsPage, FieldsPage, Links, ListsPage};
use super::pacer::Pacer;
use super::{CcError, Endpoints, OAuthClient, Tokens};

/// Constant Contact allows 4 requests a second; spacing them a little
/// wider keeps network jitter from bunching five into one second.
pub const MIN_INTERVAL: Duration = Duration::from_millis(260);
/// Requests allowed per UTC day.
pub const DAILY_QUOTA: u64 = 10_000;
/// The most pages a listing of contacts follows (at 500 a page, 5 million
/// contacts), and of lists or custom fields (an account has at most 1,000
/// lists and 100 custom fields).
pub const MAX_CONTACT_PAGES: usize = 10_000;
pub const MAX_SMALL_PAGES: usize = 100;

/// Tokens expiring within this margin are refreshed before a request.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(120);
/// `remove_list_memberships` takes at most this many contact ids.
pub const MAX_REMOVE_IDS: usize = 500;

/// How retryable errors are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter for the given (1-based) attempt.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let cap = exp.min(self.max_delay);
        let millis = cap.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(millis / 2..=millis.max(1)))
    }
}

/// Called with the new tokens after every refresh, so the caller can
/// store them (rotating refresh tokens are single-use).
pub type OnRefresh = Arc<dyn Fn(&Tokens) + Send + Sync>;

/// Where an application's requests are counted beyond one client (the
/// database): every process's requests count against one daily quota.
#[async_trait::async_trait]
pub trait UsageBook: Send + Sync {
    /// Counts one request sent now; with `exhausted`, records instead
    /// Constant Contact's answer that the day's quota is used up.
    async fn count(&self, exhausted: bool);
    /// Requests left today, as counted (`None` when it cannot be read).
    async fn left_today(&self) -> Option<u64>;
    /// Counts a 429 answer (throttled, or the quota spent), for metrics.
    async fn throttled(&self) {}
}

/// Where a token set lives beyond one client (a connection's row). Every
/// client of a connection refreshes through it, so that a token set is
/// refreshed once however many clients find it expired: a rotating refresh
/// token is single-use, and a second refresh with it would be refused as
/// if the connection had lost its authorization.
#[async_trait::async_trait]
pub trait TokenKeeper: Send + Sync {
    /// The tokens to use instead of `stale` (expiring, or refused): the
    /// kept ones if another client refreshed them meanwhile, or else the
    /// result of refreshing the kept refresh token with `oauth`, kept
    /// before they are returned.
    async fn refresh(&self, stale: &Tokens, oauth: &OAuthClient) -> Result<Tokens, CcError>;
}

/// An API client for one connection (one token set).
pub struct ApiClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    oauth: Option<OAuthClient>,
    tokens: Mutex<Tokens>,
    on_refresh: Option<OnRefresh>,
    keeper: Option<Arc<dyn TokenKeeper>>,
    usage: Option<Arc<dyn UsageBook>>,
    retry: RetryPolicy,
    pacer: Arc<Pacer>,
    /// The application whose pacer this client shares, if any.
    application: Option<String>,
    /// Requests this client sent (its application's may be more).
    sent: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("api_base", &self.endpoints.api_base)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client using `tokens`; with `oauth`, a 401 triggers one refresh.
    pub fn new(
        endpoints: Endpoints,
        tokens: Tokens,
        oauth: Option<OAuthClient>,
    ) -> Result<Self, CcError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| CcError::network(&e))?;
        Ok(ApiClient {
            http,
            endpoints,
            oauth,
            tokens: Mutex::new(tokens),
            on_refresh: None,
            keeper: None,
            usage: None,
            retry: RetryPolicy::default(),
            pacer: Pacer::new(MIN_INTERVAL),
            application: None,
            sent: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn on_refresh(mut self, f: OnRefresh) -> Self {
        self.on_refresh = Some(f);
        self
    }

    /// Counts requests in `usage` (see [`UsageBook`]).
    pub fn with_usage(mut self, usage: Arc<dyn UsageBook>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Refreshes through `keeper` (see [`TokenKeeper`]).
    pub fn with_keeper(mut self, keeper: Arc<dyn TokenKeeper>) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// Spacing between requests (default [`MIN_INTERVAL`]).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.pacer = match &self.application {
            Some(app) => Pacer::shared(app, interval),
            None => Pacer::new(interval),
        };
        self
    }

    /// Shares pacing and the daily count with every client of the same
    /// Constant Contact application (API key) in this process.
    pub fn for_application(mut self, app: &str) -> Self {
        self.pacer = Pacer::shared(app, self.pacer.interval());
        self.application = Some(app.to_owned());
        self
    }

    /// The tokens in use now (after any refresh).
    pub async fn tokens(&self) -> Tokens {
        self.tokens.lock().await.clone()
    }

    /// Requests sent today (UTC) by this client's application (or by
    /// this client, when it paces alone), to plan against the daily quota.
    pub fn requests_today(&self) -> u64 {
        self.pacer.requests_today()
    }

    /// Requests this client has sent (a run's own API calls).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests left of the daily quota: as its usage book counts them
    /// (every process, and Constant Contact's word), or as far as this
    /// process knows.
    pub async fn quota_left(&self) -> u64 {
        if let Some(left) = match &self.usage {
            Some(u) => u.left_today().await,
            None => None,
        } {
            return left;
        }
        DAILY_QUOTA.saturating_sub(self.requests_today())
    }

    /// Refreshes the tokens now when they expire within `within` (a run
    /// expected to take that long starts with fresh tokens).
    pub async fn refresh_if_expiring(&self, within: Duration) -> Result<bool, CcError> {
        let expiring = {
            let t = self.tokens.lock().await;
            t.refresh_token.is_some() && t.expires_within(within)
        };
        if expiring && self.oauth.is_some() {
            self.refresh().await?;
        }
        Ok(expiring)
    }

    /// Refreshes the tokens (once per 401).
    async fn refresh(&self) -> Result<(), CcError> {
        let Some(oauth) = &self.oauth else {
            return Err(CcError::Unauthorized);
        };
        let mut tokens = self.tokens.lock().await;
        let fresh = match &self.keeper {
            Some(keeper) => keeper.refresh(&tokens, oauth).await?,
            None => {
                let Some(rt) = tokens.refresh_token.clone() else {
                    return Err(CcError::NeedsReauthentication);
                };
                oauth.refresh(&rt).await?
            }
        };
        *tokens = fresh.clone();
        drop(tokens);
        if let Some(f) = &self.on_refresh {
            f(&fresh);
        }
        Ok(())
    }

    /// Sends a request with pacing, retries and the 401 refresh; returns
    /// the body of a success.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Vec<u8>, CcError> {
        let mut attempt = 0;
        // A token about to expire is refreshed first rather than spent on a 401.
        let expiring = {
            let t = self.tokens.lock().await;
            t.refresh_token.is_some() && t.expires_within(REFRESH_MARGIN)
        };
        let mut refreshed = false;
        if expiring && self.oauth.is_some() {
            self.refresh().await?;
            refreshed = true;
        }
        loop {
            attempt += 1;
            self.pacer.wait().await;
            self.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(u) = &self.usage {
                // Counted beside the request, not before it: a database
                // write waiting for its lock must not hold the request up
                // (nor let a later one overtake it).
                let u = u.clone();
                tokio::spawn(async move { u.count(false).await });
            }
            let token = self.tokens.lock().await.access_token.clone();
            let mut req = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .header(header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(b.to_vec());
            }
            let err = match req.send().await {
                Err(e) => CcError::network(&e),
                Ok(res) => {
                    let status = res.status().as_u16();
                    match res.bytes().await {
                        Err(e) => CcError::network(&e),
                        Ok(bytes) if (200..300).contains(&status) => return Ok(bytes.to_vec()),
                        Ok(bytes) => {
                            CcError::from_response(status, &String::from_utf8_lossy(&bytes))
                        }
                    }
                }
            };
            if matches!(err, CcError::QuotaExceeded | CcError::Throttled) {
                if let Some(u) = &self.usage {
                    if err == CcError::QuotaExceeded {
                        u.count(true).await;
                    }
                    let u = u.clone();
                    tokio::spawn(async move { u.throttled().await });
                }
            }
            if err == CcError::Unauthorized && !refreshed {
                refreshed = true;
                attempt -= 1;
                self.refresh().await?;
                continue;
            }
            if err.is_retryable() && attempt < self.retry.max_attempts {
                let delay = self.retry.delay(attempt);
                tracing::debug!(attempt, ?delay, error = %err, "retrying Constant Contact request");
                tokio::time::sleep(delay).await;
                continue;
            }
            return Err(err);
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, CcError> {
        let body = self.send(Method::GET, url, None).await?;
        serde_json::from_slice(&body).map_err(|e| CcError::Protocol(format!("{url}: {e}")))
    }

    async fn post_json<T: DeserializeOwned>(&self, url: &str, body: &[u8]) -> Result<T, CcError> {
        let body = self.send(Method::POST, url, Some(body)).await?;
        serde_json::from_slice(&body).map_err(|e| CcError::Protocol(format!("{url}: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoints.api_base)
    }

    /// The next page of `collection` (e.g. `/contact_lists`), from a
    /// page's `_links.next`. A link must stay in the same collection (a
    /// relative `/v3/<collection>?…`): anything else is an unexpected
    /// answer, not a page to follow. `pages` counts the pages read so far;
    /// past `max_pages` the listing stops with an error rather than follow
    /// links forever.
    fn next_url(
        &self,
        links: Option<Links>,
        collection: &str,
        pages: &mut usize,
    ) -> Result<Option<String>, CcError> {
        let Some(next) = links.and_then(|l| l.next) else {
            return Ok(None);
        };
        *pages += 1;
        let max_pages = if collection == "/contacts" {
            MAX_CONTACT_PAGES
        } else {
            MAX_SMALL_PAGES
        };
        if *pages >= max_pages {
            return Err(CcError::Protocol(format!(
                "{collection} has more than {max_pages} pages; stopped following them"
            )));
        }
        let path = next.href.split('?').next().unwrap_or("");
        if path != format!("/v3{collection}") {
            return Err(CcError::Protocol(format!(
                "the next page of {collection} points elsewhere ({})",
                next.href.chars().take(100).collect::<String>()
            )));
        }
        Ok(Some(format!(
            "{}{}",
            self.endpoints.api_origin(),
            next.href
        )))
    }

    /// `GET /account/user/privileges`: works with any valid token, so it
    /// is the connection probe.
    pub async fn privileges(&self) -> Result<Vec<Privilege>, CcError> {
        self.get_json(&self.url("/account/user/privileges")).await
    }

    /// Every contact list with its member count, following `_links.next`.
    pub async fn lists(&self) -> Result<Vec<ContactList>, CcError> {
        let mut out = Vec::new();
        let mut next = Some(self.url("/contact_lists?limit=500&include_membership_count=all"));
        let mut pages = 0;
        while let Some(url) = next {
            let page: ListsPage = self.get_json(&url).await?;
            out.extend(page.lists);
            next = self.next_url(page.links, "/contact_lists", &mut pages)?;
        }
        Ok(out)
    }

    /// One list; [`CcError::NotFound`] for an unknown id.
    pub async fn list(&self, list_id: &str) -> Result<ContactList, CcError> {
        if uuid::Uuid::parse_str(list_id).is_err() {
            return Err(CcError::NotFound(format!("{list_id} is not a list id")));
        }
        self.get_json(&self.url(&format!(
            "/contact_lists/{list_id}?include_membership_count=all"
        )))
        .await
    }

    /// Creates a list; [`CcError::Conflict`] when the name is taken.
    pub async fn create_list(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<ContactList, CcError> {
        let mut body = json!({ "name": name, "favorite": false });
        if let Some(d) = description {
            body["description"] = json!(d);
        }
        self.post_json(&self.url("/contact_lists"), body.to_string().as_bytes())
            .await
    }

    /// The account's custom fields (all pages).
    pub async fn custom_fields(&self) -> Result<Vec<CustomField>, CcError> {
        let mut out = Vec::new();
        let mut next = Some(self.url("/contact_custom_fields?limit=100"));
        let mut pages = 0;
        while let Some(url) = next {
            let page: FieldsPage = self.get_json(&url).await?;
            out.extend(page.custom_fields);
            next = self.next_url(page.links, "/contact_custom_fields", &mut pages)?;
        }
        Ok(out)
    }

    /// Submits one import batch.
    pub async fn import(&self, batch: &Batch) -> Result<Activity, CcError> {
        self.post_json(&self.url("/activities/contacts_json_import"), &batch.body)
            .await
    }

    pub async fn activity(&self, activity_id: &str) -> Result<Activity, CcError> {
        self.get_json(&self.url(&format!("/activities/{activity_id}")))
            .await
    }

    /// The account's most recent activities (`limit`, 1 to 500), newest
    /// first: one request tells how several imports are doing.
    pub async fn recent_activities(&self, limit: u32) -> Result<Vec<Activity>, CcError> {
        let page: ActivitiesPage = self
            .get_json(&self.url(&format!("/activities?limit={}", limit.clamp(1, 500))))
            .await?;
        Ok(page.activities)
    }

    /// Polls an activity every `every` until it finishes or `timeout` passes.
    pub async fn wait_for(
        &self,
        activity_id: &str,
        every: Duration,
        timeout: Duration,
    ) -> Result<Activity, CcError> {
        let deadline = Instant::now() + timeout;
        loop {
            let activity = self.activity(activity_id).await?;
            if activity.is_finished() {
                return Ok(activity);
            }
            if Instant::now() >= deadline {
                return Err(CcError::Protocol(format!(
                    "activity {activity_id} did not finish in {timeout:?} ({}% done)",
                    activity.percent_done
                )));
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Removes contacts (at most 500 ids) from lists (1 to 50).
    pub async fn remove_list_memberships(
        &self,
        contact_ids: &[String],
        list_ids: &[String],
    ) -> Result<Activity, CcError> {
        if contact_ids.is_empty() || contact_ids.len() > MAX_REMOVE_IDS {
            return Err(CcError::Rejected(format!(
                "between 1 and {MAX_REMOVE_IDS} contact ids per removal"
            )));
        }
        if list_ids.is_empty() || list_ids.len() > 50 {
            return Err(CcError::Rejected(String::from(
                "between 1 and 50 lists per removal",
            )));
        }
        let body = json!({ "source": { "contact_ids": contact_ids }, "list_ids": list_ids });
        self.post_json(
            &self.url("/activities/remove_list_memberships"),
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Looks a contact up by email, whatever its status (to read opt-outs).
    pub async fn find_contact(&self, email: &str) -> Result<Option<Contact>, CcError> {
        let mut url = reqwest::Url::parse(&self.url("/contacts"))
            .map_err(|e| CcError::Protocol(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("email", email)
            .append_pair("status", "all")
            .append_pair("include", "list_memberships");
        let page: ContactsPage = self.get_json(url.as_str()).await?;
        Ok(page.contacts.into_iter().next())
    }

    /// Every contact with `status` (`all`, `active`, `unsubscribed`, …),
    /// optionally only members of one list, page by page (500 a page):
    /// `each` sees every page, so a big list is never held at once.
    pub async fn for_each_contact(
        &self,
        status: &str,
        list_id: Option<&str>,
        mut each: impl FnMut(Vec<Contact>),
    ) -> Result<(), CcError> {
        let mut url = reqwest::Url::parse(&self.url("/contacts"))
            .map_err(|e| CcError::Protocol(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("status", status)
            .append_pair("limit", "500");
        if let Some(l) = list_id {
            url.query_pairs_mut().append_pair("lists", l);
        }
        let mut next = Some(url.to_string());
        let mut pages = 0;
        while let Some(url) = next {
            let page: ContactsPage = self.get_json(&url).await?;
            next = self.next_url(page.links, "/contacts", &mut pages)?;
            each(page.contacts);
        }
        Ok(())
    }
}
