//! Before the stream: the export and its connection, the tokens (refreshed
//! once per connection), the count of members and the unsubscribed contacts.
//! Owns the `suppressions` table.

use super::classify::{email_key, Attrs};
use super::members::Members;
use super::queue::next_quota_day;
use crate::connections::{self, Status as ConnectionStatus};
use crate::constant_contact::CcError;
use crate::time::now_ms;
use crate::{connect, exports, users};

use super::*;

impl Job<'_> {
    pub(super) fn client(&self) -> &ApiClient {
        // Set in `prepare` before any use.
        self.client.as_deref().expect("client prepared")
    }

    /// Turns a Constant Contact error into the run's end, and keeps the
    /// connection's status true.
    pub(super) async fn cc_failed(&self, what: &str, e: CcError) -> Stop {
        let name = self.export.connection_name.clone().unwrap_or_default();
        let conn_id = self.export.connection_id.unwrap_or(ConnectionId(0));
        match e {
            CcError::NeedsReauthentication | CcError::Unauthorized => {
                let _ = connections::set_status(
                    &self.ex.db,
                    conn_id,
                    ConnectionStatus::NeedsReauthentication,
                    Some("Constant Contact no longer accepts this connection's sign-in."),
                )
                .await;
                Self::fail(format!(
                    "The connection \"{name}\" needs to be re-authenticated by an administrator ({what})."
                ))
            }
            CcError::QuotaExceeded => Stop::Resume {
                why: format!("The daily Constant Contact API quota is used up ({what})"),
                at: next_quota_day(),
                quota: true,
            },
            other if other.is_retryable() => Stop::Resume {
                why: format!("{what}: {other}"),
                at: self.resume_at(),
                quota: false,
            },
            other => Self::fail(format!("{what}: {other}")),
        }
    }

    pub(super) async fn store_tokens(&self) {
        let (Some(client), Some(id)) = (&self.client, self.export.connection_id) else {
            return;
        };
        let now = client.tokens().await;
        match connections::tokens(&self.ex.db, &self.ex.cipher, id).await {
            Ok(stored) if stored.access_token == now.access_token => {}
            _ => {
                if let Err(e) =
                    connections::store_tokens(&self.ex.db, &self.ex.cipher, None, id, &now).await
                {
                    tracing::error!(error = %e, "could not store refreshed tokens");
                }
            }
        }
    }

    pub(super) async fn count_calls(&mut self) {
        if let Some(client) = &self.client {
            self.counts.api_calls =
                self.api_calls_before + client.requests_sent() + self.planned_calls;
            self.counts.quota_left = client.quota_left().await;
        }
    }

    /// Step 1: the export, its connection and a client with fresh tokens.
    pub(super) async fn prepare(&mut self) -> Step<()> {
        let e = &self.export;
        if e.removed_at.is_some() {
            return Err(Stop::End(
                Status::Cancelled,
                String::from("The export was removed; nothing was sent."),
            ));
        }
        if !e.enabled {
            return Err(Self::fail(format!(
                "The export is disabled: {}",
                e.disabled_reason.as_deref().unwrap_or("")
            )));
        }
        let Some(conn_id) = e.connection_id else {
            return Err(Self::fail("The export's connection was removed."));
        };
        let connection = connections::get(&self.ex.db, conn_id)
            .await?
            .ok_or_else(|| Self::fail("The export's connection was removed."))?;
        if connection.status != ConnectionStatus::Authorized {
            return Err(Self::fail(format!(
                "The connection \"{}\" is not authorized ({}); an administrator must re-authenticate it.",
                connection.display_name,
                connection.status_reason.as_deref().unwrap_or("needs re-authentication")
            )));
        }
        let owner = match e.owner_id {
            Some(id) => users::get_user(&self.ex.db, id).await?,
            None => None,
        };
        match owner {
            Some(o) if o.active && connection.usable_by.allows(o.role) => {}
            Some(o) => {
                return Err(Self::fail(format!(
                    "The export's owner ({}) may no longer use the connection \"{}\"; an administrator can edit the export to take it over.",
                    o.email, connection.display_name
                )))
            }
            None => {
                return Err(Self::fail(
                    "The export has no owner who may use its connection.",
                ))
            }
        }
        let Some(app) = &self.ex.app else {
            return Err(Self::fail(
                "Constant Contact is not configured on this server (CC_CLIENT_ID, CC_CLIENT_SECRET).",
            ));
        };
        let mut client = connect::api_client(&self.ex.db, &self.ex.cipher, app, conn_id)
            .await
            .map_err(|e| Self::fail(e.to_string()))?;
        if let Some(i) = self.ex.settings.api_interval {
            client = client.with_interval(i);
        }
        if let Some(r) = self.ex.settings.retry {
            client = client.with_retry(r);
        }
        // Fresh tokens for the expected length of the run.
        if let Err(e) = client
            .refresh_if_expiring(Duration::from_secs(15 * 60))
            .await
        {
            self.client = Some(Arc::new(client));
            return Err(self.cc_failed("refreshing the access token", e).await);
        }
        self.client = Some(Arc::new(client));
        Ok(())
    }

    /// Step 2: the 1,000,000 limit, before anything is sent.
    pub(super) async fn count(&mut self) -> Step<i64> {
        let ids = &self.export.segment_ids;
        if ids.is_empty() {
            return Err(Self::fail("The export has no segments."));
        }
        let profiles = exports::count_profiles(&self.ex.db, ids).await?;
        let max = self.ex.settings.max_profiles;
        if profiles as u64 <= max {
            return Ok(profiles);
        }
        // Over the limit by profile: count distinct emails before refusing.
        let source = self.export.email_source().unwrap_or("email").to_owned();
        let mut members = Members::new(
            self.ex.db.clone(),
            self.export.id,
            self.run.id,
            ids,
            self.ex.settings.page_size,
        );
        let mut seen = HashSet::new();
        while let Some(member) = members.next().await? {
            let email = Attrs::parse(&member.attrs)
                .get(&source)
                .map(normalize_email)
                .unwrap_or_default();
            if !email.is_empty() {
                seen.insert(email_key(&email));
            }
        }
        let n = seen.len() as u64;
        if n > max {
            return Err(Self::fail(format!(
                "The selected segments contain {} profiles; an export can send at most {}.",
                group(n),
                group(max)
            )));
        }
        Ok(profiles)
    }

    /// Step 6: contacts Constant Contact has as unsubscribed.
    pub(super) async fn sync_suppressions(&mut self) -> Step<HashSet<String>> {
        let conn_id = self.export.connection_id.unwrap_or(ConnectionId(0));
        let mut found = Vec::new();
        let result = self
            .client()
            .for_each_contact("unsubscribed", None, |page| {
                found.extend(
                    page.into_iter()
                        .map(|c| normalize_email(&c.email_address.address)),
                );
            })
            .await;
        if let Err(e) = result {
            return Err(self.cc_failed("reading unsubscribed contacts", e).await);
        }
        let now = now_ms();
        for chunk in found.chunks(500) {
            let sql = format!(
                "INSERT INTO suppressions (connection_id, email, at) VALUES {} ON CONFLICT DO NOTHING",
                self.ex.db.placeholders().rows(chunk.len(), 3)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q.bind(conn_id).bind(e).bind(now);
            }
            q.execute(self.ex.db.pool()).await?;
        }
        let all: Vec<String> =
            sqlx::query_scalar("SELECT email FROM suppressions WHERE connection_id = $1")
                .bind(conn_id)
                .fetch_all(self.ex.db.pool())
                .await?;
        Ok(all.into_iter().collect())
    }
}
