//! Redis killed and restarted in the middle of load, over loopback: a gateway with a
//! Redis rate limit and a Redis cache keeps answering by its configured policy while
//! Redis is gone (fail-open: served; fail-closed: a JSON 503), and both stores recover
//! once Redis is back on the same port, without restarting the gateway.
//!
//! Each test starts its own `redis-server` on an ephemeral port (`.ci/run` installs the
//! binary when it is missing; without it the tests fail, saying so).

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tower_ai_gateway::RunningGateway;
use tower_ai_mock::MockProvider;

struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// A fresh `redis-server` on a free port; `None` when there is none to run.
    async fn start() -> Option<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = Redis { port, child: None };
        r.restart().await.then_some(r)
    }

    /// Starts the server on its port; whether it came up.
    async fn restart(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            return false;
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    /// SIGKILL: no goodbye to its clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"PROMPT"}]}"#;

fn chat(prompt: &str) -> String {
    CHAT.replace("PROMPT", prompt)
}

/// Answers seen by status (and, for errors, type), during one phase.
type Tally = BTreeMap<String, usize>;

/// Sends requests with fresh prompts from 8 clients until `stop`; tallies the answers.
fn load(gw: &RunningGateway, stop: Arc<AtomicBool>, tally: Arc<std::sync::Mutex<Tally>>) {
    let url = format!("{}/openai/chat/completions", gw.url());
    let n = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let (url, stop, tally, n) = (url.clone(), stop.clone(), tally.clone(), n.clone());
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let i = n.fetch_add(1, Ordering::Relaxed);
                let sent = within(10, post_json(&c, &url, &[], &chat(&format!("load {i}")))).await;
                let what = if sent.status.is_success() {
                    sent.status.as_u16().to_string()
                } else {
                    let v = sent.json();
                    format!(
                        "{} {}",
                        sent.status.as_u16(),
                        v["error"]["type"].as_str().unwrap()
                    )
                };
                *tally.lock().unwrap().entry(what).or_insert(0) += 1;
            }
        });
    }
}

async fn phase(gw: &RunningGateway, how_long: Duration) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(std::sync::Mutex::new(Tally::new()));
    load(gw, stop.clone(), tally.clone());
    tokio::time::sleep(how_long).await;
    stop.store(true, Ordering::Relaxed);
    // Let the clients' last requests finish (each is bounded).
    tokio::time::sleep(Duration::from_millis(300)).await;
    tally.lock().unwrap().clone()
}

/// The same request twice: whether the second is a cache hit (both must succeed).
async fn cache_works(gw: &RunningGateway, prompt: &str) -> bool {
    let c = client();
    let url = format!("{}/openai/chat/completions", gw.url());
    let first = post_json(&c, &url, &[], &chat(prompt)).await;
    assert_eq!(first.status, StatusCode::OK);
    // The entry is written after the answer: give it a moment.
    for _ in 0..50 {
        let again = post_json(&c, &url, &[], &chat(prompt)).await;
        assert_eq!(again.status, StatusCode::OK);
        if again.headers["aigw-cache-status"] == "HIT" {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn kill_and_restart(fail_open: bool, per_thread: bool) {
    let mut redis = Redis::start()
        .await
        .expect("redis-server must be on the PATH for the Redis fault tests");
    let mock = MockProvider::start().await.unwrap();
    let prefix = format!(
        "aigw-fault-{}-{fail_open}-{per_thread}:",
        std::process::id()
    );
    let toml = gateway_toml(
        &mock,
        &format!(
            r#"
            [ratelimit]
            store = "redis"
            redis_url = "{url}"
            redis_prefix = "{prefix}rl:"
            fail_open = {fail_open}
            [[ratelimit.limits]]
            name = "rpm"
            requests = 1000000
            [cache]
            enabled = true
            store = "redis"
            redis_url = "{url}"
            redis_prefix = "{prefix}cache:"
            "#,
            url = redis.url()
        ),
    );
    let gw = start_as(&toml, per_thread).await;

    // Up: everything served, the cache answers.
    let up = phase(&gw, Duration::from_millis(700)).await;
    assert!(
        cache_works(&gw, "before").await,
        "the cache did not work to begin with"
    );
    if per_thread {
        // Each store: the connection made at start-up (on the accepting runtime) and one
        // per serving thread, which sends that thread's calls. And this one, looking.
        let mut looking = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut looking)
            .await
            .unwrap();
        assert_eq!(list.lines().count(), 2 * (1 + 2) + 1, "{list}");
    }

    // Killed in the middle of load.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(std::sync::Mutex::new(Tally::new()));
    load(&gw, stop.clone(), during.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let around_kill = during.lock().unwrap().clone();
    // Down: answered by the policy, each within the stores' timeouts.
    let down = phase(&gw, Duration::from_millis(1000)).await;
    let down_requests: usize = down.values().sum();
    let expected = if fail_open {
        "200".to_owned()
    } else {
        "503 rate_limiter_unavailable".to_owned()
    };
    assert_eq!(
        down.keys().collect::<Vec<_>>(),
        vec![&expected],
        "while Redis is down: {down:?}"
    );
    assert!(down_requests > 0);
    if fail_open {
        // Served without a decision (no rate-limit headers) and without the cache: the
        // same request twice reaches the provider twice.
        let c = client();
        let url = format!("{}/openai/chat/completions", gw.url());
        // Requests of the load phases may still land; count only these two.
        let reached = |mock: &MockProvider| {
            mock.recorded()
                .iter()
                .filter(|r| String::from_utf8_lossy(&r.body).contains("while down"))
                .count()
        };
        let before = reached(&mock);
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
                .await
                .is_err(),
            "something still listens on Redis' port"
        );
        for _ in 0..2 {
            let sent = post_json(&c, &url, &[], &chat("while down")).await;
            assert_eq!(sent.status, StatusCode::OK);
            assert!(
                !sent.headers.contains_key("ratelimit"),
                "{:?}",
                sent.headers
            );
            assert_ne!(
                sent.headers["aigw-cache-status"], "HIT",
                "{:?}",
                sent.headers
            );
            // A finished flight serves identical requests until its entry is stored (or
            // the store gave up on it, after its 250 ms timeout): past that.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(reached(&mock), before + 2);
    }

    // Back on the same port: the stores reconnect by themselves.
    assert!(redis.restart().await);
    let restarted_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let recovered_after = loop {
        let c = client();
        let sent = post_json(
            &c,
            &format!("{}/openai/chat/completions", gw.url()),
            &[],
            &chat("probe"),
        )
        .await;
        // The rate limiter decides again (not failing open or closed): it sends its
        // headers only when the store answered.
        if sent.status == StatusCode::OK && sent.headers.contains_key("ratelimit") {
            break restarted_at.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the rate limiter did not recover: {} {:?}",
            sent.status,
            sent.headers
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = phase(&gw, Duration::from_millis(700)).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        vec!["200"],
        "after Redis came back: {after:?}"
    );
    assert!(
        cache_works(&gw, "after").await,
        "the cache did not recover after Redis came back"
    );
    if per_thread {
        // Every thread's own connection is back, not only the probe's: eight clients
        // at once (connections go to the thread with the fewest open) are all decided.
        let clients: Vec<_> = (0..8).map(|_| client()).collect();
        let url = format!("{}/openai/chat/completions", gw.url());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut decided = 0;
            for c in &clients {
                let sent = post_json(c, &url, &[], &chat("every thread")).await;
                assert_eq!(sent.status, StatusCode::OK);
                decided += usize::from(sent.headers.contains_key("ratelimit"));
            }
            if decided == clients.len() {
                break;
            }
            assert!(Instant::now() < deadline, "{decided} of 8 decided");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "redis fault (fail_open = {fail_open}): up {up:?}; around the kill {around_kill:?}; \
         down {down:?}; the rate limiter decided again {:.2}s after the restart \
         ({:.2}s after the kill); after {after:?}",
        recovered_after.as_secs_f64(),
        (restarted_at - killed_at + recovered_after).as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_fail_open_keeps_serving_and_recovers() {
    kill_and_restart(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_with_a_runtime_per_thread_recovers_on_every_thread() {
    kill_and_restart(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_load_fail_closed_refuses_in_json_and_recovers() {
    kill_and_restart(false, false).await;
}
