//! What a Constant Contact account holds that the export form shows (its
//! lists and custom fields), kept per connection for a short time.
//!
//! Without it every load of Add destination (a reload, a second tab, a
//! page left open) calls Constant Contact again. With it a connection's
//! lists are fetched at most once per [`AccountCache::TTL`], however many
//! pages ask at once: the first asker fetches, the others wait for its
//! answer. A change made through us (a new list) forgets what was kept.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::constant_contact::api::{ContactList, CustomField};

/// The kept lists and custom fields of every connection.
#[derive(Clone, Default)]
pub struct AccountCache {
    lists: Kept<Vec<ContactList>>,
    custom_fields: Kept<Vec<CustomField>>,
}

impl std::fmt::Debug for AccountCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountCache")
    }
}

impl AccountCache {
    /// How long an answer is used before Constant Contact is asked again.
    pub const TTL: Duration = Duration::from_secs(60);

    /// The connection's lists: kept ones if fresh, else `fetch`'s answer.
    pub async fn lists<E, F>(&self, connection_id: i64, fetch: F) -> Result<Vec<ContactList>, E>
    where
        F: Future<Output = Result<Vec<ContactList>, E>>,
    {
        self.lists.get(connection_id, Self::TTL, fetch).await
    }

    /// The connection's custom fields: kept ones if fresh, else `fetch`'s.
    pub async fn custom_fields<E, F>(
        &self,
        connection_id: i64,
        fetch: F,
    ) -> Result<Vec<CustomField>, E>
    where
        F: Future<Output = Result<Vec<CustomField>, E>>,
    {
        self.custom_fields
            .get(connection_id, Self::TTL, fetch)
            .await
    }

    /// Forgets what is kept for the connection (after we changed its
    /// account, or when it is removed or signed in again).
    pub fn forget(&self, connection_id: i64) {
        self.lists.forget(connection_id);
        self.custom_fields.forget(connection_id);
    }
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<(Instant, T)>>>;

/// Values per connection, each behind its own lock so that one fetch per
/// connection runs at a time while other connections are not held up.
struct Kept<T> {
    slots: Arc<Mutex<HashMap<i64, Slot<T>>>>,
}

impl<T> Clone for Kept<T> {
    fn clone(&self) -> Self {
        Kept {
            slots: Arc::clone(&self.slots),
        }
    }
}

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept {
            slots: Arc::default(),
        }
    }
}

impl<T: Clone> Kept<T> {
    fn slot(&self, id: i64) -> Slot<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slots.entry(id).or_default())
    }

    async fn get<E, F>(&self, id: i64, ttl: Duration, fetch: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let slot = self.slot(id);
        let mut kept = slot.lock().await;
        if let Some((at, value)) = kept.as_ref() {
            if at.elapsed() < ttl {
                return Ok(value.clone());
            }
        }
        // An error is not kept: the next asker tries again.
        let value = fetch.await?;
        *kept = Some((Instant::now(), value.clone()));
        Ok(value)
    }

    fn forget(&self, id: i64) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn fetcher(calls: &AtomicUsize, value: u32) -> Result<u32, ()> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(value)
    }

    #[tokio::test]
    async fn one_fetch_serves_concurrent_and_later_askers() {
        let kept = Kept::<u32>::default();
        let calls = AtomicUsize::new(0);
        let ttl = Duration::from_secs(60);
        let (a, b, c) = tokio::join!(
            kept.get(1, ttl, fetcher(&calls, 7)),
            kept.get(1, ttl, fetcher(&calls, 8)),
            kept.get(1, ttl, fetcher(&calls, 9)),
        );
        assert_eq!((a, b, c), (Ok(7), Ok(7), Ok(7)));
        assert_eq!(kept.get(1, ttl, fetcher(&calls, 10)).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Another connection is fetched on its own.
        assert_eq!(kept.get(2, ttl, fetcher(&calls, 20)).await, Ok(20));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stale_forgotten_and_failed_answers_are_fetched_again() {
        let kept = Kept::<u32>::default();
        let calls = AtomicUsize::new(0);
        assert_eq!(kept.get(1, Duration::ZERO, fetcher(&calls, 1)).await, Ok(1));
        assert_eq!(kept.get(1, Duration::ZERO, fetcher(&calls, 2)).await, Ok(2));
        let ttl = Duration::from_secs(60);
        kept.forget(1);
        assert_eq!(kept.get(1, ttl, fetcher(&calls, 3)).await, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let failed = kept.get(5, ttl, async { Err::<u32, &str>("down") }).await;
        assert_eq!(failed, Err("down"));
        assert_eq!(kept.get(5, ttl, async { Ok::<u32, &str>(4) }).await, Ok(4));
    }
}
