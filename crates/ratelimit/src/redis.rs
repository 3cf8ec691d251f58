//! [`RedisStore`]: buckets in Redis, shared by every gateway replica.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};

use crate::store::{BoxFuture, Decision, Kind, RateLimitStore, Spec, StoreError};

/// One script for every algorithm, mirroring the memory store's arithmetic, run
/// atomically by Redis on the server's clock (so replicas agree on time). Units are
/// microseconds. `mode` is `acquire` or `adjust`.
const SCRIPT: &str = r#"
local key = KEYS[1]
local kind, amount, p, n, mode = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local s = redis.call('HMGET', key, 'a', 'c', 'p')
local a, count, prev = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0
local allowed, remaining, reset, retry = 1, 0, 0, 0

if kind == 'conc' then
  if mode == 'acquire' then
    if count + n <= amount then count = count + n else allowed = 0; retry = 1000000 end
  else
    count = math.max(0, count + n)
  end
  remaining = math.max(0, amount - count)
  if count > 0 then
    redis.call('HSET', key, 'c', count)
    redis.call('PEXPIRE', key, 3600000)
  else
    redis.call('DEL', key)
  end
elseif kind == 'gcra' then
  local ti = p / amount
  local tat = math.max(a, now)
  if mode == 'acquire' then
    local new = tat + math.ceil(n * ti)
    if new - now <= p then a = new else allowed = 0; retry = new - now - p end
  else
    local shift = math.ceil(math.abs(n) * ti)
    if n >= 0 then a = tat + shift else a = math.max(now, tat - shift) end
  end
  local level = math.max(a, now) - now
  remaining = math.min(amount, math.floor((p - math.min(level, p)) / ti))
  reset = level
  redis.call('HSET', key, 'a', a)
  redis.call('PEXPIRE', key, math.max(1, math.ceil(level / 1000) + 1000))
else
  local win = math.floor(now / p)
  if a ~= win then
    if a + 1 == win then prev = count else prev = 0 end
    count = 0
    a = win
  end
  local into = now - a * p
  local weight = 0
  if kind == 'sw' then weight = (p - into) / p end
  if mode == 'acquire' then
    if prev * weight + count + n <= amount + 1e-9 then
      count = count + n
    else
      allowed = 0
      if kind == 'sw' and count + n <= amount and prev > 0 then
        local keep = math.floor((amount - count - n) * p / prev)
        retry = math.max(1, (p - keep) - into)
      else
        retry = (a + 1) * p - now
      end
    end
  else
    count = math.max(0, count + n)
  end
  remaining = math.max(0, math.floor(amount - (prev * weight + count)))
  reset = (a + 1) * p - now
  redis.call('HSET', key, 'a', a, 'c', count, 'p', prev)
  redis.call('PEXPIRE', key, math.ceil(2 * p / 1000) + 1000)
end
return {allowed, amount, remaining, reset, retry}
"#;

/// Buckets in Redis: each decision is one atomic script call (one round trip), so any
/// number of gateway replicas sharing the server enforce one limit exactly. Buckets
/// expire by themselves when idle. Every call is bounded by a short timeout (250 ms by
/// default): a slow or unreachable Redis is an error the layer turns into its fail-open
/// or fail-closed policy, never a hang.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`), keys prefixed with `prefix`.
    /// Fails when the server cannot be reached now: a limit is never quietly off.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let timeout = Duration::from_millis(250);
        let client = Client::open(url).map_err(|e| StoreError(format!("bad url: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| StoreError("connecting timed out".into()))?
        .map_err(|e| StoreError(format!("cannot connect: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                prefix: prefix.to_owned(),
                timeout,
                script: Script::new(SCRIPT),
            }),
        })
    }

    /// Bounds every call by `timeout` instead of 250 ms.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.timeout = timeout;
        }
        self
    }

    async fn run(&self, key: &str, spec: Spec, n: i64, mode: &str) -> Result<Vec<i64>, StoreError> {
        let i = &self.inner;
        let mut conn = i.conn.clone();
        let period_us = u64::try_from(spec.period.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut inv = i.script.key(format!("{}{key}", i.prefix));
        inv.arg(spec.kind.as_str())
            .arg(spec.amount)
            .arg(period_us)
            .arg(n)
            .arg(mode);
        match tokio::time::timeout(i.timeout, inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(v)) if v.len() == 5 => Ok(v),
            Ok(Ok(v)) => Err(StoreError(format!("unexpected answer {v:?}"))),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError("timed out".into())),
        }
    }
}

fn us(v: i64) -> Duration {
    Duration::from_micros(u64::try_from(v).unwrap_or(0))
}

impl RateLimitStore for RedisStore {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        cost: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move {
            let n = i64::try_from(cost).unwrap_or(i64::MAX);
            let v = self.run(key, spec, n, "acquire").await?;
            Ok(Decision {
                allowed: v[0] == 1,
                limit: u64::try_from(v[1]).unwrap_or(0),
                remaining: u64::try_from(v[2]).unwrap_or(0),
                reset: if spec.kind == Kind::Concurrency {
                    Duration::ZERO
                } else {
                    us(v[3])
                },
                retry_after: us(v[4]),
            })
        })
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.run(key, spec, delta, "adjust").await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: Kind, amount: u64, period: Duration) -> Spec {
        Spec {
            kind,
            amount,
            period,
        }
    }

    fn prefix(test: &str) -> String {
        format!("tower-ai-test:{test}:{}:", std::process::id())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exact_under_concurrency_across_two_stores() {
        let p = prefix("exact");
        let a = RedisStore::connect("redis://127.0.0.1:6379", &p)
            .await
            .unwrap();
        let b = RedisStore::connect("redis://127.0.0.1:6379", &p)
            .await
            .unwrap();
        for kind in [
            Kind::FixedWindow,
            Kind::SlidingWindow,
            Kind::Gcra,
            Kind::Concurrency,
        ] {
            let s = spec(kind, 100, Duration::from_secs(60));
            let mut tasks = Vec::new();
            for t in 0..64 {
                let store = if t % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    let mut n = 0;
                    for _ in 0..16 {
                        if store.acquire("k", s, 1).await.unwrap().allowed {
                            n += 1;
                        }
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            assert_eq!(total, 100, "{kind:?}");
            // Clean up for the next kind (same key, other kind prefix below).
            let mut c = a.inner.conn.clone();
            let _: () = redis::cmd("DEL")
                .arg(format!("{p}k"))
                .query_async(&mut c)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn adjust_trues_up_and_releases() {
        let p = prefix("adjust");
        let store = RedisStore::connect("redis://127.0.0.1:6379", &p)
            .await
            .unwrap();
        let s = spec(Kind::FixedWindow, 100, Duration::from_secs(60));
        assert!(store.acquire("t", s, 30).await.unwrap().allowed);
        store.adjust("t", s, 80).await.unwrap();
        let d = store.acquire("t", s, 1).await.unwrap();
        assert!(!d.allowed);
        assert!(d.retry_after > Duration::ZERO);
        store.adjust("t", s, -20).await.unwrap();
        assert!(store.acquire("t", s, 5).await.unwrap().allowed);

        let c = spec(Kind::Concurrency, 1, Duration::from_secs(1));
        assert!(store.acquire("c", c, 1).await.unwrap().allowed);
        assert!(!store.acquire("c", c, 1).await.unwrap().allowed);
        store.adjust("c", c, -1).await.unwrap();
        assert!(store.acquire("c", c, 1).await.unwrap().allowed);
        store.adjust("c", c, -1).await.unwrap();
        let mut conn = store.inner.conn.clone();
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{p}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(format!("{p}t"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            left,
            vec![format!("{p}t")],
            "released slots leave nothing behind"
        );
    }

    #[tokio::test]
    async fn unreachable_is_an_error_not_a_hang() {
        let err = RedisStore::connect("redis://127.0.0.1:1", "x:")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rate-limit store"), "{err}");
    }
}
