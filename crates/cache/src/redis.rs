//! [`RedisStore`]: entries in Redis, shared by every gateway replica that uses the same
//! prefix.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use thread_local::ThreadLocal;

use crate::key::CacheKey;
use crate::store::{CacheStore, Entry, Lookup, StoreFuture};

/// A [`CacheStore`] in Redis (feature `redis`), so several gateway replicas share one
/// cache.
///
/// - Keys are `{prefix}{64 hex digits}`; values a small binary header (the expiry, then
///   [`Entry::encode`]) followed by the body as it is.
/// - TTLs are Redis' own (`SET ... PX`). To tell `EXPIRED` from `MISS`, an entry is kept
///   past its TTL for a grace period as long as the TTL, at most five minutes: read in
///   that window it is a [`Lookup::Expired`]; after it, Redis has dropped it (a miss).
/// - [`clear`](CacheStore::clear) removes this prefix's keys only (`SCAN` + `UNLINK`).
/// - Redis unreachable or slow (past the operation timeout, 250 ms by default) is a miss
///   (and a put not done), with a warning at most every 10 seconds: never a failed
///   request nor a hang.
///
/// [`connect`](Self::connect) fails when Redis cannot be reached at start-up (a
/// configuration error is an error); [`lazy`](Self::lazy) connects on first use.
/// Each single-threaded runtime that uses the store gets a connection of its own (made on
/// its first use, connecting in the background): a gateway serving a runtime per thread
/// never hands a lookup to another thread. Cloning shares the connections.
#[derive(Clone)]
pub struct RedisStore {
    conns: Arc<Conns>,
    prefix: Arc<str>,
    timeout: Duration,
    warned: Arc<Warned>,
}

/// Why a [`RedisStore`] could not be made.
#[derive(Debug)]
pub struct RedisStoreError(redis::RedisError);

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis cache store: {}", self.0)
    }
}

impl std::error::Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The store's connections: the first one, and one per single-threaded runtime that
/// calls (with what it takes to make it).
struct Conns {
    shared: ConnectionManager,
    client: redis::Client,
    config: ConnectionManagerConfig,
    local: ThreadLocal<ConnectionManager>,
}

impl Conns {
    /// The connection to call on: this thread's own on a single-threaded runtime (made on
    /// first use), else the shared one (on a work-stealing runtime tasks move between
    /// threads anyway, and each connection of its own would need its own failed call to
    /// notice that Redis came back). Must be called within a tokio runtime.
    fn get(&self) -> redis::RedisResult<ConnectionManager> {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !current_thread {
            return Ok(self.shared.clone());
        }
        self.local
            .get_or_try(|| {
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            })
            .cloned()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const MAX_GRACE: Duration = Duration::from_secs(300);
const WARN_EVERY: Duration = Duration::from_secs(10);

struct Warned {
    start: Instant,
    /// Milliseconds since `start` of the last warning, plus one (0: never).
    last: AtomicU64,
}

impl Warned {
    fn warn(&self, op: &str, why: &dyn fmt::Display) {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64)
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(op, error = %why, "redis cache store unavailable: treating as a miss");
        }
    }
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100))
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`), failing if Redis cannot be reached
    /// now. Keys are prefixed with `prefix` (e.g. `aigw:cache:`).
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, RedisStoreError> {
        let client = redis::Client::open(url).map_err(RedisStoreError)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            client
                .clone()
                .get_connection_manager_with_config(manager_config(DEFAULT_TIMEOUT)),
        )
        .await
        .map_err(|_| {
            RedisStoreError(redis::RedisError::from((
                redis::ErrorKind::Io,
                "timed out connecting",
            )))
        })?
        .map_err(RedisStoreError)?;
        Ok(Self::with_conn(client, conn, prefix.into()))
    }

    /// A store that connects on first use (and reconnects after): only a malformed `url`
    /// fails here. Until Redis answers, every lookup is a miss.
    ///
    /// Must be called within a tokio runtime.
    pub fn lazy(url: &str, prefix: impl Into<String>) -> Result<Self, RedisStoreError> {
        let client = redis::Client::open(url).map_err(RedisStoreError)?;
        let conn = ConnectionManager::new_lazy_with_config(
            client.clone(),
            manager_config(DEFAULT_TIMEOUT),
        )
        .map_err(RedisStoreError)?;
        Ok(Self::with_conn(client, conn, prefix.into()))
    }

    /// A store whose connection for this thread is `conn`.
    fn with_conn(client: redis::Client, conn: ConnectionManager, prefix: String) -> Self {
        let local = ThreadLocal::new();
        local.get_or(|| conn.clone());
        Self {
            conns: Arc::new(Conns {
                shared: conn,
                client,
                config: manager_config(DEFAULT_TIMEOUT),
                local,
            }),
            prefix: Arc::from(prefix),
            timeout: DEFAULT_TIMEOUT,
            warned: Arc::new(Warned {
                start: Instant::now(),
                last: AtomicU64::new(0),
            }),
        }
    }

    /// How long one operation may take before it counts as a miss (default 250 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a cache key.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 64);
        k.push_str(&self.prefix);
        k.push_str(&key.to_hex());
        k
    }

    async fn run<T: redis::FromRedisValue>(
        conns: &Conns,
        timeout: Duration,
        warned: &Warned,
        op: &str,
        cmd: redis::Cmd,
    ) -> Option<T> {
        let mut conn = match conns.get() {
            Ok(conn) => conn,
            Err(e) => {
                warned.warn(op, &e);
                return None;
            }
        };
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                warned.warn(op, &e);
                None
            }
            Err(_) => {
                warned.warn(op, &"timed out");
                None
            }
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl CacheStore for RedisStore {
    fn get(&self, key: &CacheKey) -> StoreFuture<Lookup> {
        let (conns, timeout, warned) = (self.conns.clone(), self.timeout, self.warned.clone());
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        Box::pin(async move {
            let Some(Some(value)) =
                Self::run::<Option<Vec<u8>>>(&conns, timeout, &warned, "get", cmd).await
            else {
                return Lookup::Miss;
            };
            let mut value = Bytes::from(value);
            if value.len() < 8 {
                return Lookup::Miss;
            }
            let expires = value.get_u64();
            if now_ms() >= expires {
                return Lookup::Expired;
            }
            match Entry::decode(value) {
                Some(entry) => Lookup::Hit(Arc::new(entry)),
                None => Lookup::Miss,
            }
        })
    }

    fn put(&self, key: &CacheKey, entry: Entry, ttl: Duration) -> StoreFuture<()> {
        let (conns, timeout, warned) = (self.conns.clone(), self.timeout, self.warned.clone());
        let ttl = ttl.max(Duration::from_millis(1));
        let grace = ttl.min(MAX_GRACE);
        let mut value = Vec::with_capacity(8 + entry.size());
        value.put_u64(now_ms().saturating_add(ttl.as_millis() as u64));
        value.extend_from_slice(&entry.encode());
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(value)
            .arg("PX")
            .arg((ttl + grace).as_millis() as u64);
        Box::pin(async move {
            Self::run::<()>(&conns, timeout, &warned, "put", cmd).await;
        })
    }

    fn delete(&self, key: &CacheKey) -> StoreFuture<bool> {
        let (conns, timeout, warned) = (self.conns.clone(), self.timeout, self.warned.clone());
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(self.redis_key(key));
        Box::pin(async move {
            Self::run::<u64>(&conns, timeout, &warned, "delete", cmd)
                .await
                .is_some_and(|n| n > 0)
        })
    }

    fn clear(&self) -> StoreFuture<()> {
        let (conns, warned) = (self.conns.clone(), self.warned.clone());
        // An admin operation: each step may take longer than a lookup.
        let timeout = self.timeout.max(Duration::from_secs(5));
        let pattern = format!("{}*", glob_escape(&self.prefix));
        Box::pin(async move {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let Some((next, keys)) =
                    Self::run::<(u64, Vec<Vec<u8>>)>(&conns, timeout, &warned, "clear", scan).await
                else {
                    return;
                };
                if !keys.is_empty() {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(keys);
                    Self::run::<u64>(&conns, timeout, &warned, "clear", unlink).await;
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        })
    }
}

/// Escapes Redis glob characters so a prefix matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, StatusCode};

    use super::*;

    const URL: &str = "redis://127.0.0.1:6379/";

    fn entry() -> Entry {
        Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"ok\":true}"),
            usage: None,
            stored_at: SystemTime::now(),
            sse: false,
        }
    }

    fn prefix(test: &str) -> String {
        format!("tower-ai-test:{test}:{}:{}:", std::process::id(), now_ms())
    }

    #[tokio::test]
    async fn put_get_ttl_delete_clear() {
        let p = prefix("unit");
        let store = RedisStore::connect(URL, p.clone()).await.unwrap();
        let k = CacheKey::from_bytes([1; 32]);
        assert!(matches!(store.get(&k).await, Lookup::Miss));
        store.put(&k, entry(), Duration::from_secs(30)).await;
        match store.get(&k).await {
            Lookup::Hit(e) => assert_eq!(e.body, entry().body),
            other => panic!("{other:?}"),
        }
        // Redis holds it for the TTL plus the grace period.
        let mut conn = store.conns.get().unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(store.redis_key(&k))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((59_000..=60_000).contains(&pttl), "{pttl}");
        assert!(store.delete(&k).await);
        assert!(!store.delete(&k).await);

        // Past its TTL, within the grace: expired.
        store.put(&k, entry(), Duration::from_millis(200)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(matches!(store.get(&k).await, Lookup::Expired));

        // clear() removes this prefix only.
        let other = RedisStore::connect(URL, prefix("other")).await.unwrap();
        other.put(&k, entry(), Duration::from_secs(30)).await;
        for i in 0..50u8 {
            store
                .put(
                    &CacheKey::from_bytes([i; 32]),
                    entry(),
                    Duration::from_secs(30),
                )
                .await;
        }
        store.clear().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", glob_escape(&p)))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        assert!(matches!(other.get(&k).await, Lookup::Hit(_)));
        other.clear().await;
    }

    #[tokio::test]
    async fn unreachable_is_a_miss_not_a_hang() {
        assert!(
            RedisStore::connect("redis://127.0.0.1:1/", "x:")
                .await
                .is_err()
        );
        let store = RedisStore::lazy("redis://127.0.0.1:1/", "x:").unwrap();
        let k = CacheKey::from_bytes([2; 32]);
        let start = Instant::now();
        assert!(matches!(store.get(&k).await, Lookup::Miss));
        store.put(&k, entry(), Duration::from_secs(1)).await;
        assert!(!store.delete(&k).await);
        store.clear().await;
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "{:?}",
            start.elapsed()
        );
        assert!(RedisStore::lazy("not a url", "x:").is_err());
    }
}
