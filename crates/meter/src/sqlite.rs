//! [`SqliteLog`]: a persistent request log in an embedded SQLite database.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::record::{Record, Recorder};

/// Records waiting to be written before new ones are dropped (and counted).
const QUEUE: usize = 16_384;
/// Records written per transaction at most.
const BATCH: usize = 1024;
/// How long the writer lets records gather after the first of a batch arrives.
const GATHER: Duration = Duration::from_millis(50);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    request_id TEXT,
    started_at_ms INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    ttft_ms REAL,
    gateway TEXT,
    provider TEXT NOT NULL,
    model TEXT,
    operation TEXT NOT NULL,
    stream INTEGER NOT NULL,
    key_id TEXT,
    metadata TEXT,
    status INTEGER,
    outcome TEXT NOT NULL,
    error_origin TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_input_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    usage_source TEXT NOT NULL,
    cost_usd REAL,
    cache_status TEXT,
    fallback_step INTEGER
);
CREATE INDEX IF NOT EXISTS requests_started_at ON requests (started_at_ms);
";

/// One row of the log, as `GET /logs` returns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LogEntry {
    /// Row id: newest first; page with `before`.
    pub id: i64,
    /// The gateway's request id.
    pub request_id: Option<String>,
    /// Unix time in milliseconds.
    pub started_at_ms: i64,
    /// Duration in milliseconds.
    pub duration_ms: f64,
    /// Time to first byte in milliseconds.
    pub ttft_ms: Option<f64>,
    /// Gateway name.
    pub gateway: Option<String>,
    /// Provider.
    pub provider: String,
    /// Model.
    pub model: Option<String>,
    /// Operation (`chat`, `messages`, ...).
    pub operation: String,
    /// Whether it was a stream.
    pub stream: bool,
    /// Hashed key id.
    pub key_id: Option<String>,
    /// Metadata tags.
    pub metadata: serde_json::Value,
    /// Response status.
    pub status: Option<u16>,
    /// `complete`, `cancelled` or `failed`.
    pub outcome: String,
    /// `gateway` or `provider` for errors.
    pub error_origin: Option<String>,
    /// Input tokens.
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Cached input tokens.
    pub cached_input_tokens: Option<u64>,
    /// Cache-write tokens.
    pub cache_write_tokens: Option<u64>,
    /// Reasoning tokens.
    pub reasoning_tokens: Option<u64>,
    /// `reported`, `estimated`, `known` or `unknown`.
    pub usage_source: String,
    /// USD, when known.
    pub cost_usd: Option<f64>,
    /// Cache status.
    pub cache_status: Option<String>,
    /// Fallback step.
    pub fallback_step: Option<u32>,
}

/// Which rows `query` returns: newest first.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only requests started at or after this Unix time (ms).
    pub since_ms: Option<i64>,
    /// Only requests started before this Unix time (ms).
    pub until_ms: Option<i64>,
    /// Only this provider.
    pub provider: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this status.
    pub status: Option<u16>,
    /// Only rows with an id below this (the `next` of the previous page).
    pub before_id: Option<i64>,
    /// At most this many rows (1..=1000; default 50).
    pub limit: Option<u32>,
}

/// Totals of the log, as `GET /usage` returns them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UsageReport {
    /// All requests.
    pub totals: UsageTotals,
    /// By provider and model, most requests first.
    pub by_model: Vec<ModelUsage>,
}

/// Totals of a set of requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UsageTotals {
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// USD of the requests whose cost is known.
    pub cost_usd: f64,
    /// Requests whose cost is unknown.
    pub unknown_cost_requests: u64,
}

/// Totals of one provider and model.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelUsage {
    /// Provider.
    pub provider: String,
    /// Model (empty when the request named none).
    pub model: String,
    /// Requests.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// USD of the requests whose cost is known.
    pub cost_usd: f64,
    /// Requests whose cost is unknown.
    pub unknown_cost_requests: u64,
}

enum Msg {
    Record(Box<Row>),
    Flush(SyncSender<()>),
}

struct Row {
    request_id: Option<String>,
    started_at_ms: i64,
    duration_ms: f64,
    ttft_ms: Option<f64>,
    gateway: Option<String>,
    provider: String,
    model: Option<String>,
    operation: &'static str,
    stream: bool,
    key_id: Option<String>,
    metadata: Option<String>,
    status: Option<u16>,
    outcome: &'static str,
    error_origin: Option<&'static str>,
    usage: Option<tower_ai_core::Usage>,
    usage_source: &'static str,
    cost_usd: Option<f64>,
    cache_status: Option<&'static str>,
    fallback_step: Option<u32>,
}

/// A request log in SQLite. Recording never blocks and never fails a request: records
/// go to a bounded queue that a background thread writes in batches; when the queue is
/// full (a slow or full disk) records are dropped and counted ([`dropped`](Self::dropped)).
///
/// Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<LogInner>,
}

struct LogInner {
    tx: SyncSender<Msg>,
    conn: Arc<Mutex<Connection>>,
    dropped: AtomicU64,
}

impl std::fmt::Debug for SqliteLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLog")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl SqliteLog {
    /// Opens (or creates) the database at `path`; `:memory:` keeps it in memory.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .or_else(|_| conn.execute_batch("PRAGMA synchronous = NORMAL;"))?;
        conn.execute_batch(SCHEMA)?;
        let conn = Arc::new(Mutex::new(conn));
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = conn.clone();
        std::thread::Builder::new()
            .name("aigw-sqlite-log".into())
            .spawn(move || write_loop(&writer, rx))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            inner: Arc::new(LogInner {
                tx,
                conn,
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// Records dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written (blocking; for tests and
    /// shutdown).
    pub fn flush(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.inner.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(30));
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rows matching `q`, newest first (blocking: run it off the async runtime).
    pub fn query(&self, q: &LogQuery) -> Result<Vec<LogEntry>, rusqlite::Error> {
        let limit = q.limit.unwrap_or(50).clamp(1, 1000);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, request_id, started_at_ms, duration_ms, ttft_ms, gateway, provider, model,
                    operation, stream, key_id, metadata, status, outcome, error_origin,
                    input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
                    reasoning_tokens, usage_source, cost_usd, cache_status, fallback_step
             FROM requests
             WHERE (?1 IS NULL OR started_at_ms >= ?1)
               AND (?2 IS NULL OR started_at_ms < ?2)
               AND (?3 IS NULL OR provider = ?3)
               AND (?4 IS NULL OR model = ?4)
               AND (?5 IS NULL OR status = ?5)
               AND (?6 IS NULL OR id < ?6)
             ORDER BY id DESC
             LIMIT ?7",
        )?;
        let rows = stmt.query_map(
            params![
                q.since_ms,
                q.until_ms,
                q.provider,
                q.model,
                q.status,
                q.before_id,
                limit
            ],
            |r| {
                let metadata: Option<String> = r.get(11)?;
                Ok(LogEntry {
                    id: r.get(0)?,
                    request_id: r.get(1)?,
                    started_at_ms: r.get(2)?,
                    duration_ms: r.get(3)?,
                    ttft_ms: r.get(4)?,
                    gateway: r.get(5)?,
                    provider: r.get(6)?,
                    model: r.get(7)?,
                    operation: r.get(8)?,
                    stream: r.get(9)?,
                    key_id: r.get(10)?,
                    metadata: metadata
                        .and_then(|m| serde_json::from_str(&m).ok())
                        .unwrap_or_else(|| serde_json::json!({})),
                    status: r.get(12)?,
                    outcome: r.get(13)?,
                    error_origin: r.get(14)?,
                    input_tokens: opt_u64(r, 15)?,
                    output_tokens: opt_u64(r, 16)?,
                    cached_input_tokens: opt_u64(r, 17)?,
                    cache_write_tokens: opt_u64(r, 18)?,
                    reasoning_tokens: opt_u64(r, 19)?,
                    usage_source: r.get(20)?,
                    cost_usd: r.get(21)?,
                    cache_status: r.get(22)?,
                    fallback_step: r.get(23)?,
                })
            },
        )?;
        rows.collect()
    }

    /// Totals since `since_ms` (Unix ms; all time when `None`), by provider and model
    /// (blocking).
    pub fn usage(&self, since_ms: Option<i64>) -> Result<UsageReport, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT provider, COALESCE(model, ''), COUNT(*),
                    COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),
                    COALESCE(SUM(cost_usd), 0.0), SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)
             FROM requests
             WHERE (?1 IS NULL OR started_at_ms >= ?1)
             GROUP BY provider, COALESCE(model, '')
             ORDER BY COUNT(*) DESC, provider, 2",
        )?;
        let by_model = stmt
            .query_map(params![since_ms], |r| {
                Ok(ModelUsage {
                    provider: r.get(0)?,
                    model: r.get(1)?,
                    requests: u64_at(r, 2)?,
                    input_tokens: u64_at(r, 3)?,
                    output_tokens: u64_at(r, 4)?,
                    cost_usd: r.get(5)?,
                    unknown_cost_requests: u64_at(r, 6)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut totals = UsageTotals::default();
        for m in &by_model {
            totals.requests += m.requests;
            totals.input_tokens += m.input_tokens;
            totals.output_tokens += m.output_tokens;
            totals.cost_usd += m.cost_usd;
            totals.unknown_cost_requests += m.unknown_cost_requests;
        }
        Ok(UsageReport { totals, by_model })
    }
}

impl Recorder for SqliteLog {
    fn record(&self, r: &Record) {
        let row = Row {
            request_id: r.request_id.as_deref().map(str::to_owned),
            started_at_ms: r
                .started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            duration_ms: r.duration.as_secs_f64() * 1e3,
            ttft_ms: r.ttft.map(|t| t.as_secs_f64() * 1e3),
            gateway: r.gateway.as_deref().map(str::to_owned),
            provider: r.provider.to_string(),
            model: r.model.as_deref().map(str::to_owned),
            operation: r.operation.as_str(),
            stream: r.stream,
            key_id: r.key_id.as_deref().map(str::to_owned),
            metadata: (!r.metadata.is_empty()).then(|| {
                let map: serde_json::Map<String, serde_json::Value> = r
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::Value::Object(map).to_string()
            }),
            status: r.status,
            outcome: r.outcome.as_str(),
            error_origin: r.error_origin.map(|o| o.as_str()),
            usage: r.usage,
            usage_source: r.usage_source.as_str(),
            cost_usd: r.cost_usd,
            cache_status: r.cache_status.map(|c| c.as_str()),
            fallback_step: r.fallback_step,
        };
        match self.inner.tx.try_send(Msg::Record(Box::new(row))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n + 1, "request log is behind: records dropped");
                }
            }
        }
    }
}

/// A count as SQLite stores it: an `i64`, so past `i64::MAX` it is `i64::MAX`, never a
/// negative wrapped value.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn opt_u64(r: &rusqlite::Row<'_>, i: usize) -> Result<Option<u64>, rusqlite::Error> {
    Ok(r.get::<_, Option<i64>>(i)?.map(|v| v.max(0) as u64))
}

fn u64_at(r: &rusqlite::Row<'_>, i: usize) -> Result<u64, rusqlite::Error> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

fn write_loop(conn: &Mutex<Connection>, rx: Receiver<Msg>) {
    // A full batch means more are waiting: write on without gathering.
    let mut behind = false;
    while let Ok(first) = rx.recv() {
        if !behind && matches!(first, Msg::Record(_)) {
            // Let records gather: one transaction per interval instead of one per
            // request, and the request path never wakes this thread while it sleeps.
            std::thread::sleep(GATHER);
        }
        let mut batch = Vec::with_capacity(64);
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Record(r) => batch.push(r),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        behind = batch.len() >= BATCH;
        if !batch.is_empty() {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = insert(&mut conn, &batch) {
                tracing::warn!(error = %e, rows = batch.len(), "request log write failed: rows lost");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn insert(conn: &mut Connection, batch: &[Box<Row>]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO requests (request_id, started_at_ms, duration_ms, ttft_ms, gateway,
                provider, model, operation, stream, key_id, metadata, status, outcome,
                error_origin, input_tokens, output_tokens, cached_input_tokens,
                cache_write_tokens, reasoning_tokens, usage_source, cost_usd, cache_status,
                fallback_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
        )?;
        for r in batch {
            let u = r.usage;
            stmt.execute(params![
                r.request_id,
                r.started_at_ms,
                r.duration_ms,
                r.ttft_ms,
                r.gateway,
                r.provider,
                r.model,
                r.operation,
                r.stream,
                r.key_id,
                r.metadata,
                r.status,
                r.outcome,
                r.error_origin,
                u.map(|u| clamp(u.input_tokens)),
                u.map(|u| clamp(u.output_tokens)),
                u.map(|u| clamp(u.cached_input_tokens)),
                u.map(|u| clamp(u.cache_write_tokens)),
                u.map(|u| clamp(u.reasoning_tokens)),
                r.usage_source,
                r.cost_usd,
                r.cache_status,
                r.fallback_step,
            ])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use tower_ai_core::{Operation, Usage};

    use super::*;
    use crate::record::{Outcome, UsageSource};

    fn record(model: &str, at: SystemTime, cost: Option<f64>) -> Record {
        Record {
            request_id: Some(Arc::from("req-1")),
            started_at: at,
            duration: Duration::from_millis(12),
            ttft: None,
            gateway: None,
            provider: Arc::from("openai"),
            model: Some(Arc::from(model)),
            operation: Operation::ChatCompletions,
            stream: true,
            key_id: None,
            metadata: vec![("team".into(), "x".into())],
            status: Some(200),
            outcome: Outcome::Complete,
            error_origin: None,
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: 4,
                ..Usage::default()
            }),
            usage_source: UsageSource::Reported,
            cost_usd: cost,
            cache_status: None,
            fallback_step: None,
        }
    }

    #[test]
    fn writes_queries_and_totals() {
        let log = SqliteLog::open(":memory:").unwrap();
        let old = UNIX_EPOCH + Duration::from_secs(1_000);
        log.record(&record("a", old, Some(1.0)));
        log.record(&record("b", SystemTime::now(), None));
        log.record(&record("a", SystemTime::now(), Some(2.0)));
        log.flush();
        let all = log.query(&LogQuery::default()).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].id > all[1].id);
        assert_eq!(all[0].metadata["team"], "x");
        assert_eq!(all[0].input_tokens, Some(3));
        let a = log
            .query(&LogQuery {
                model: Some("a".into()),
                limit: Some(1),
                ..LogQuery::default()
            })
            .unwrap();
        assert_eq!(a.len(), 1);
        let page = log
            .query(&LogQuery {
                model: Some("a".into()),
                before_id: Some(a[0].id),
                ..LogQuery::default()
            })
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].started_at_ms, 1_000_000);

        let usage = log.usage(None).unwrap();
        assert_eq!(usage.totals.requests, 3);
        assert_eq!(usage.totals.unknown_cost_requests, 1);
        assert!((usage.totals.cost_usd - 3.0).abs() < 1e-9);
        let recent = log.usage(Some(2_000_000)).unwrap();
        assert_eq!(recent.totals.requests, 2);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn huge_token_counts_are_clamped_not_wrapped() {
        let log = SqliteLog::open(":memory:").unwrap();
        let mut r = record("a", SystemTime::now(), None);
        r.usage = Some(Usage {
            input_tokens: u64::MAX,
            output_tokens: i64::MAX as u64 + 1,
            reasoning_tokens: 7,
            ..Usage::default()
        });
        log.record(&r);
        log.flush();
        let row = &log.query(&LogQuery::default()).unwrap()[0];
        assert_eq!(row.input_tokens, Some(i64::MAX as u64));
        assert_eq!(row.output_tokens, Some(i64::MAX as u64));
        assert_eq!(row.reasoning_tokens, Some(7));
        assert_eq!(
            log.usage(None).unwrap().totals.input_tokens,
            i64::MAX as u64
        );
    }

    #[test]
    fn a_stuck_writer_never_blocks_recording() {
        let log = SqliteLog::open(":memory:").unwrap();
        // Hold the database as a stuck disk would: the writer cannot write.
        let stuck = log.conn();
        let n = QUEUE + BATCH + 100;
        let started = std::time::Instant::now();
        for _ in 0..n {
            log.record(&record("a", SystemTime::now(), None));
        }
        // Every call returned at once; what did not fit was dropped and counted.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(log.dropped() >= 100, "{}", log.dropped());
        drop(stuck);
        log.flush();
        let written = log.usage(None).unwrap().totals.requests;
        assert_eq!(written + log.dropped(), n as u64);
    }
}
