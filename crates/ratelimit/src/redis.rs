//! [`RedisStore`]: buckets in Redis, shared by every gateway replica.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use thread_local::ThreadLocal;

use crate::store::{
    Ask, BoxFuture, Change, Decision, Kind, RateLimitStore, Spec, StoreError, as_promised,
};

/// One script for every algorithm and any number of buckets, mirroring the memory
/// store's arithmetic, run atomically by Redis on the server's clock (so replicas agree
/// on time). Units are microseconds.
///
/// `ARGV[1]` is `acquire` or `adjust`; then four arguments per key: kind, amount, period,
/// and the cost (acquire) or delta (adjust). `acquire` first decides every bucket in turn
/// from its state (a key asked twice sees its earlier ask) without writing, stops at the
/// first denial, and writes every bucket only if all fit. `adjust` applies and writes
/// them all. The answer is five numbers per bucket decided: allowed, limit, remaining,
/// reset, retry-after.
const SCRIPT: &str = r#"
local mode = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function load(key)
  local s = redis.call('HMGET', key, 'a', 'c', 'p')
  return {a = tonumber(s[1]) or 0, count = tonumber(s[2]) or 0, prev = tonumber(s[3]) or 0}
end

-- One ask (or change) on a bucket's state `b`, in the script's memory only.
local function step(b, kind, amount, p, n)
  local allowed, remaining, reset, retry = 1, 0, 0, 0
  if kind == 'conc' then
    if mode == 'acquire' then
      if b.count + n <= amount then b.count = b.count + n else allowed = 0; retry = 1000000 end
    else
      b.count = math.max(0, b.count + n)
    end
    remaining = math.max(0, amount - b.count)
  elseif kind == 'gcra' then
    local ti = p / amount
    local tat = math.max(b.a, now)
    if mode == 'acquire' then
      local new = tat + math.ceil(n * ti)
      if new - now <= p then b.a = new else allowed = 0; retry = new - now - p end
    else
      local shift = math.ceil(math.abs(n) * ti)
      if n >= 0 then b.a = tat + shift else b.a = math.max(now, tat - shift) end
    end
    local level = math.max(b.a, now) - now
    remaining = math.min(amount, math.floor((p - math.min(level, p)) / ti))
    reset = level
  else
    local win = math.floor(now / p)
    if b.a ~= win then
      if b.a + 1 == win then b.prev = b.count else b.prev = 0 end
      b.count = 0
      b.a = win
    end
    local into = now - b.a * p
    local weight = 0
    if kind == 'sw' then weight = (p - into) / p end
    if mode == 'acquire' then
      if b.prev * weight + b.count + n <= amount + 1e-9 then
        b.count = b.count + n
      else
        allowed = 0
        if kind == 'sw' and b.count + n <= amount and b.prev > 0 then
          local keep = math.floor((amount - b.count - n) * p / b.prev)
          retry = math.max(1, (p - keep) - into)
        else
          retry = (b.a + 1) * p - now
        end
      end
    else
      b.count = math.max(0, b.count + n)
    end
    remaining = math.max(0, math.floor(amount - (b.prev * weight + b.count)))
    reset = (b.a + 1) * p - now
  end
  return allowed, remaining, reset, retry
end

-- Writes a bucket's state back, to expire once it holds nothing worth keeping.
local function save(key, b, kind, p)
  if kind == 'conc' then
    if b.count > 0 then
      redis.call('HSET', key, 'c', b.count)
      redis.call('PEXPIRE', key, 3600000)
    else
      redis.call('DEL', key)
    end
  elseif kind == 'gcra' then
    local level = math.max(b.a, now) - now
    redis.call('HSET', key, 'a', b.a)
    redis.call('PEXPIRE', key, math.max(1, math.ceil(level / 1000) + 1000))
  else
    redis.call('HSET', key, 'a', b.a, 'c', b.count, 'p', b.prev)
    redis.call('PEXPIRE', key, math.ceil(2 * p / 1000) + 1000)
  end
end

local buckets, out = {}, {}
for i, key in ipairs(KEYS) do
  local j = 4 * i - 2
  local amount = tonumber(ARGV[j + 1])
  local b = buckets[key] or load(key)
  buckets[key] = b
  local allowed, remaining, reset, retry = step(b, ARGV[j], amount, tonumber(ARGV[j + 2]), tonumber(ARGV[j + 3]))
  for _, v in ipairs({allowed, amount, remaining, reset, retry}) do out[#out + 1] = v end
  if allowed == 0 then return out end
end
for i, key in ipairs(KEYS) do
  local j = 4 * i - 2
  save(key, buckets[key], ARGV[j], tonumber(ARGV[j + 2]))
end
return out
"#;

/// Buckets in Redis: all of a request's limits are decided by one atomic script call
/// (one round trip, whatever the number of limits), all or none, so any number of
/// gateway replicas sharing the server enforce each limit exactly; settling them after
/// the response is one call too. Buckets expire by themselves when idle. Every call is
/// bounded by a short timeout (250 ms by default): a slow or unreachable Redis is an
/// error the layer turns into its fail-open or fail-closed policy, never a hang.
///
/// The script touches every bucket of a request at once, so on Redis Cluster those keys
/// would have to share one hash slot (a `{tag}` in the prefix, putting every bucket on
/// one node); the store is meant for a single server, replicated or not.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    /// The connection `connect` made: calls from a multi-thread runtime share it.
    conn: ConnectionManager,
    /// A connection per single-threaded runtime that calls: its calls are sent and
    /// answered on its own thread (a gateway serving a runtime per thread never hands a
    /// call to another thread). Seeded with `conn` for the thread that connected.
    conns: ThreadLocal<ConnectionManager>,
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

/// The script's mode.
#[derive(Clone, Copy)]
enum Mode {
    Acquire,
    Adjust,
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
            client.get_connection_manager_with_config(config.clone()),
        )
        .await
        .map_err(|_| StoreError("connecting timed out".into()))?
        .map_err(|e| StoreError(format!("cannot connect: {e}")))?;
        let conns = ThreadLocal::new();
        conns.get_or(|| conn.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                config,
                conn,
                conns,
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

    /// The connection to call on: this thread's own on a single-threaded runtime (made on
    /// its first call, connecting in the background), else the shared one. (On a
    /// work-stealing runtime tasks move between threads anyway, and each connection of
    /// its own would need its own failed call to notice that Redis came back.)
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let i = &self.inner;
        if !on_current_thread_runtime() {
            return Ok(i.conn.clone());
        }
        i.conns
            .get_or_try(|| {
                ConnectionManager::new_lazy_with_config(i.client.clone(), i.config.clone())
            })
            .cloned()
            .map_err(|e| StoreError(format!("cannot connect: {e}")))
    }

    /// One script call over `buckets` (key, spec, cost or delta): one round trip.
    async fn run<'k>(
        &self,
        mode: Mode,
        buckets: impl Iterator<Item = (&'k str, Spec, i64)>,
    ) -> Result<Vec<i64>, StoreError> {
        let i = &self.inner;
        let mut conn = self.conn()?;
        let mut inv = i.script.prepare_invoke();
        inv.arg(match mode {
            Mode::Acquire => "acquire",
            Mode::Adjust => "adjust",
        });
        for (key, spec, n) in buckets {
            let period_us = u64::try_from(spec.period.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            inv.key(format!("{}{key}", i.prefix));
            inv.arg(spec.kind.as_str())
                .arg(spec.amount)
                .arg(period_us)
                .arg(n);
        }
        match tokio::time::timeout(i.timeout, inv.invoke_async::<Vec<i64>>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError(e.to_string())),
            Err(_) => Err(StoreError("timed out".into())),
        }
    }

    /// Decides `asks` in one call.
    async fn decide<'k>(
        &self,
        asks: impl ExactSizeIterator<Item = (&'k str, Spec, u64)> + Clone,
    ) -> Result<Vec<Decision>, StoreError> {
        let kinds = asks.clone().map(|(_, spec, _)| spec.kind);
        let asked = asks.len();
        let costs =
            asks.map(|(key, spec, cost)| (key, spec, i64::try_from(cost).unwrap_or(i64::MAX)));
        let v = self.run(Mode::Acquire, costs).await?;
        if !v.len().is_multiple_of(5) || v.len() / 5 > asked {
            return Err(StoreError(format!("unexpected answer {v:?}")));
        }
        let decisions = v.chunks_exact(5).zip(kinds).map(|(d, kind)| Decision {
            allowed: d[0] == 1,
            limit: u64::try_from(d[1]).unwrap_or(0),
            remaining: u64::try_from(d[2]).unwrap_or(0),
            reset: if kind == Kind::Concurrency {
                Duration::ZERO
            } else {
                us(d[3])
            },
            retry_after: us(d[4]),
        });
        as_promised(decisions.collect(), asked)
    }
}

/// Whether this runs on a single-threaded tokio runtime.
fn on_current_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
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
            let mut d = self.decide(std::iter::once((key, spec, cost))).await?;
            Ok(d.remove(0))
        })
    }

    fn adjust<'a>(
        &'a self,
        key: &'a str,
        spec: Spec,
        delta: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.run(Mode::Adjust, std::iter::once((key, spec, delta)))
                .await
                .map(|_| ())
        })
    }

    fn acquire_all<'a>(
        &'a self,
        asks: &'a [Ask],
    ) -> BoxFuture<'a, Result<Vec<Decision>, StoreError>> {
        Box::pin(async move {
            if asks.is_empty() {
                return Ok(Vec::new());
            }
            self.decide(asks.iter().map(|a| (a.key.as_str(), a.spec, a.cost)))
                .await
        })
    }

    fn adjust_all<'a>(&'a self, changes: &'a [Change]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(());
            }
            let changes = changes.iter().map(|c| (c.key.as_str(), c.spec, c.delta));
            self.run(Mode::Adjust, changes).await.map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::take_both;

    fn spec(kind: Kind, amount: u64, period: Duration) -> Spec {
        Spec {
            kind,
            amount,
            period,
        }
    }

    fn prefix(test: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("tower-ai-test:{test}:{}:{nanos}:", std::process::id())
    }

    const SHARED: &str = "redis://127.0.0.1:6379";
    const HOUR: Duration = Duration::from_secs(3600);

    async fn query<T: redis::FromRedisValue>(store: &RedisStore, cmd: &redis::Cmd) -> T {
        let mut conn = store.conn().unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }

    /// A bucket as Redis holds it.
    async fn state(store: &RedisStore, key: &str) -> std::collections::BTreeMap<String, String> {
        let key = format!("{}{key}", store.inner.prefix);
        query(store, redis::cmd("HGETALL").arg(key)).await
    }

    /// Drops every key of the store's prefix.
    async fn clean(store: &RedisStore) {
        let keys: Vec<String> = query(
            store,
            redis::cmd("KEYS").arg(format!("{}*", store.inner.prefix)),
        )
        .await;
        if !keys.is_empty() {
            let () = query(store, redis::cmd("DEL").arg(keys)).await;
        }
    }

    fn ask(key: &str, spec: Spec, cost: u64) -> Ask {
        Ask {
            key: key.to_owned(),
            spec,
            cost,
        }
    }

    /// A `redis-server` of the test's own, on a free port, killed when dropped.
    struct OwnRedis {
        port: u16,
        child: std::process::Child,
    }

    impl OwnRedis {
        async fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server must be installed (.ci/run installs it)");
            let own = Self { port, child };
            for _ in 0..500 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return own;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("redis-server did not come up on port {port}");
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// A plain connection of its own, for looking on.
        async fn conn(&self) -> redis::aio::MultiplexedConnection {
            Client::open(self.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Commands clients sent the server: every command it counted (`INFO commandstats`),
    /// less `INFO` (the looking itself) and those the script runs inside, which Redis
    /// counts too but no client sent.
    async fn commands(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
        const INSIDE: [&str; 6] = ["info", "time", "hmget", "hset", "pexpire", "del"];
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(conn)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(":calls="))
            .filter(|(name, _)| !INSIDE.contains(name))
            .filter_map(|(_, calls)| calls.split(',').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Clients connected to `redis`, the one looking included.
    async fn clients(conn: &mut redis::aio::MultiplexedConnection) -> usize {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(conn)
            .await
            .unwrap();
        list.lines().count()
    }

    #[tokio::test]
    async fn each_single_threaded_runtime_calls_on_a_connection_of_its_own() {
        let redis = OwnRedis::start().await;
        let mut looking = redis.conn().await;
        let store = RedisStore::connect(&redis.url(), "threads:").await.unwrap();
        let s = spec(Kind::FixedWindow, 1000, Duration::from_secs(60));
        assert!(store.acquire("k", s, 1).await.unwrap().allowed);
        // The connection `connect` made serves this thread: the store and the looker.
        assert_eq!(clients(&mut looking).await, 2);
        // A work-stealing runtime's tasks share that connection too (driven by this
        // runtime, which keeps running while it waits).
        let shared = store.clone();
        let other = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let tasks: Vec<_> = (0..10)
                    .map(|_| {
                        let store = shared.clone();
                        tokio::spawn(async move { store.acquire("k", s, 1).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    assert!(t.await.unwrap().allowed);
                }
            });
        });
        tokio::task::spawn_blocking(move || other.join().unwrap())
            .await
            .unwrap();
        assert_eq!(clients(&mut looking).await, 2);
        // Two threads with a runtime each, as the gateway serves: one more each, and
        // every call counts in the same buckets.
        let (release, released) = tokio::sync::watch::channel(false);
        let (done, mut finished) = tokio::sync::mpsc::channel(2);
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (store, done, mut released) = (store.clone(), done.clone(), released.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        for _ in 0..10 {
                            assert!(store.acquire("k", s, 1).await.unwrap().allowed);
                        }
                        // Connected until the count is taken.
                        done.send(()).await.unwrap();
                        released.wait_for(|r| *r).await.unwrap();
                    });
                })
            })
            .collect();
        for _ in 0..2 {
            finished.recv().await.unwrap();
        }
        assert_eq!(clients(&mut looking).await, 4);
        release.send(true).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let d = store.acquire("k", s, 0).await.unwrap();
        assert_eq!(d.remaining, 1000 - 31);
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
            let mut c = a.conn().unwrap();
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
        let mut conn = store.conn().unwrap();
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
    async fn a_request_refused_by_its_second_limit_leaves_the_first_untouched() {
        let store = RedisStore::connect(SHARED, &prefix("untouched"))
            .await
            .unwrap();
        for kind in [
            Kind::FixedWindow,
            Kind::SlidingWindow,
            Kind::Gcra,
            Kind::Concurrency,
        ] {
            let (ten, four) = (spec(kind, 10, HOUR), spec(kind, 4, HOUR));
            assert!(store.acquire("a", ten, 3).await.unwrap().allowed);
            let before = state(&store, "a").await;
            let d = store
                .acquire_all(&[ask("a", ten, 2), ask("b", four, 5), ask("c", ten, 1)])
                .await
                .unwrap();
            assert_eq!(d.len(), 2, "{kind:?}: the decisions stop at the refusal");
            assert!(d[0].allowed && !d[1].allowed, "{kind:?}");
            assert_eq!(
                d[0].remaining, 5,
                "{kind:?}: as the first limit alone answers"
            );
            assert_eq!(state(&store, "a").await, before, "{kind:?}");
            assert!(state(&store, "b").await.is_empty(), "{kind:?}");
            assert!(state(&store, "c").await.is_empty(), "{kind:?}");

            // All fit: every bucket charged.
            let d = store
                .acquire_all(&[ask("a", ten, 2), ask("b", four, 4)])
                .await
                .unwrap();
            assert!(d.len() == 2 && d.iter().all(|d| d.allowed), "{kind:?}");
            assert_eq!(store.acquire("a", ten, 1).await.unwrap().remaining, 4);
            assert!(!store.acquire("b", four, 1).await.unwrap().allowed);
            clean(&store).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn exact_with_several_limits_across_two_stores() {
        // One shared limit of 100 and, per task, a limit of 3 of its own, asked in either
        // order through two stores: exactly 100 get through the shared one, and a task's
        // own bucket holds what the task got through (a refusal charged nothing).
        let p = prefix("exact-several");
        let a = RedisStore::connect(SHARED, &p).await.unwrap();
        let b = RedisStore::connect(SHARED, &p).await.unwrap();
        for kind in [
            Kind::FixedWindow,
            Kind::SlidingWindow,
            Kind::Gcra,
            Kind::Concurrency,
        ] {
            let mut tasks = Vec::new();
            for t in 0..64 {
                let store = if t % 2 == 0 { a.clone() } else { b.clone() };
                tasks.push(tokio::spawn(async move {
                    let shared = ask("shared", spec(kind, 100, HOUR), 1);
                    let own = ask(&format!("own-{t}"), spec(Kind::FixedWindow, 3, HOUR), 1);
                    let admitted = take_both(&store, &shared, &own, t, 16).await;
                    (t, admitted)
                }));
            }
            let mut total = 0;
            for task in tasks {
                let (t, admitted) = task.await.unwrap();
                total += admitted;
                let own = state(&a, &format!("own-{t}")).await;
                let charged = own.get("c").map_or(0, |c| c.parse::<u64>().unwrap());
                assert_eq!(charged, admitted, "{kind:?}: task {t}");
            }
            assert_eq!(total, 100, "{kind:?}");
            if kind != Kind::Gcra {
                assert_eq!(state(&a, "shared").await["c"], "100", "{kind:?}");
            }
            clean(&a).await;
        }
    }

    #[tokio::test]
    async fn settles_several_buckets_in_one_call() {
        let store = RedisStore::connect(SHARED, &prefix("settle"))
            .await
            .unwrap();
        let tokens = spec(Kind::FixedWindow, 100, HOUR);
        let slots = spec(Kind::Concurrency, 1, HOUR);
        let spend = spec(Kind::Gcra, 100, HOUR);
        let d = store
            .acquire_all(&[
                ask("tokens", tokens, 30),
                ask("slots", slots, 1),
                ask("spend", spend, 50),
            ])
            .await
            .unwrap();
        assert!(d.len() == 3 && d.iter().all(|d| d.allowed));
        let change = |key: &str, spec, delta| Change {
            key: key.to_owned(),
            spec,
            delta,
        };
        store
            .adjust_all(&[
                change("tokens", tokens, 80),
                change("slots", slots, -1),
                change("spend", spend, -50),
            ])
            .await
            .unwrap();
        // 110 tokens used in truth: over; the slot is free and its key gone; the spend
        // was given back whole.
        assert!(!store.acquire("tokens", tokens, 1).await.unwrap().allowed);
        assert!(state(&store, "slots").await.is_empty());
        assert!(store.acquire("slots", slots, 1).await.unwrap().allowed);
        assert!(store.acquire("spend", spend, 100).await.unwrap().allowed);
        store.adjust_all(&[]).await.unwrap();
        clean(&store).await;
    }

    #[tokio::test]
    async fn a_redis_that_does_not_answer_is_an_error_not_a_hang() {
        let redis = OwnRedis::start().await;
        let store = RedisStore::connect(&redis.url(), "t:")
            .await
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        let s = spec(Kind::FixedWindow, 10, HOUR);
        let asks = [ask("a", s, 1), ask("b", s, 1)];
        assert_eq!(store.acquire_all(&asks).await.unwrap().len(), 2);
        // The server takes the connection's commands but runs none for 5 s.
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(5000)
            .arg("ALL")
            .query_async(&mut redis.conn().await)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = store.acquire_all(&asks).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        let change = Change {
            key: "a".into(),
            spec: s,
            delta: -1,
        };
        let err = store.adjust_all(&[change]).await.unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn one_round_trip_to_decide_and_one_to_settle_whatever_the_number_of_limits() {
        use bytes::Bytes;
        use http::{Request, Response};
        use http_body_util::{BodyExt, Full};
        use tower::{ServiceBuilder, ServiceExt, service_fn};
        use tower_ai_core::Body;

        use crate::{Algorithm, KeyPart, Limit, Quantity, RateLimitLayer};

        let redis = OwnRedis::start().await;
        let mut looking = redis.conn().await;
        let store = RedisStore::connect(&redis.url(), "t:").await.unwrap();
        let limit = |name, quantity, algorithm| {
            Limit::new(name, vec![KeyPart::ApiKey], quantity, algorithm, HOUR).unwrap()
        };
        let svc = ServiceBuilder::new()
            .layer(RateLimitLayer::new(store).with_limits([
                limit("tpm", Quantity::Tokens(1_000_000), Algorithm::Gcra),
                limit("slots", Quantity::Concurrency(10), Algorithm::Gcra),
                limit("rph", Quantity::Requests(2), Algorithm::FixedWindow),
            ]))
            .service(service_fn(|_req: Request<Body>| async {
                let res = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(
                        br#"{"usage":{"prompt_tokens":12,"completion_tokens":2}}"#,
                    )))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(res)
            }));
        let req = || {
            Request::post("/openai/chat/completions")
                .header("authorization", "Bearer sk-a")
                .body(Body::from(
                    r#"{"model":"gpt-4o-mini","max_tokens":10,"messages":[]}"#,
                ))
                .unwrap()
        };
        // Until the settlement (spawned when the body ends) has run: `n` commands.
        let settled = |looking: &mut redis::aio::MultiplexedConnection, n| {
            let mut looking = looking.clone();
            async move {
                for _ in 0..200 {
                    if commands(&mut looking).await >= n {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                commands(&mut looking).await
            }
        };

        // The first request loads the script (and settles).
        let first = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(first.status(), 200);
        first.into_body().collect().await.unwrap();
        let start = settled(&mut looking, 0).await;

        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(commands(&mut looking).await - start, 1, "one to decide");
        res.into_body().collect().await.unwrap();
        // The token true-up and the slot given back: one call.
        assert_eq!(
            settled(&mut looking, start + 2).await - start,
            2,
            "one to settle"
        );

        // Refused by the last limit: still one, and nothing to settle.
        let refused = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(
            refused.headers()["ratelimit-policy"],
            "\"tpm\";q=1000000;w=3600, \"slots\";q=10;w=3600, \"rph\";q=2;w=3600"
        );
        refused.into_body().collect().await.unwrap();
        assert_eq!(
            settled(&mut looking, start + 3).await - start,
            3,
            "one refusal"
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
