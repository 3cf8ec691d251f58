//! [`Record`]: what the meter knows of one finished request, and the [`Recorder`]s it
//! goes to.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
pub use tower_ai_core::UsageSource;
use tower_ai_core::{CacheStatus, Operation, Usage};

/// One finished request, as the meter saw it. Handed to every [`Recorder`] exactly once.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The gateway's request id (`aigw-request-id`), when there was one.
    pub request_id: Option<Arc<str>>,
    /// When the request reached the meter.
    pub started_at: SystemTime,
    /// From the request reaching the meter to the end of the response body.
    pub duration: Duration,
    /// From the request reaching the meter to the first byte of the response body.
    pub ttft: Option<Duration>,
    /// The gateway's name, if configured.
    pub gateway: Option<Arc<str>>,
    /// The provider.
    pub provider: Arc<str>,
    /// The model, as the client asked for it.
    pub model: Option<Arc<str>>,
    /// What the request asked for.
    pub operation: Operation,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// A hashed id of the caller's credential (see `tower_ai_core::key_id`); never the
    /// credential itself.
    pub key_id: Option<Arc<str>>,
    /// Tags from the `aigw-metadata` request header (a JSON object of scalars).
    pub metadata: Vec<(String, String)>,
    /// The response status; `None` when no response came (the upstream failed).
    pub status: Option<u16>,
    /// How the response ended.
    pub outcome: Outcome,
    /// Who produced the error, for a failed request.
    pub error_origin: Option<ErrorOrigin>,
    /// The tokens, when known.
    pub usage: Option<Usage>,
    /// Where the figures in `usage` come from.
    pub usage_source: UsageSource,
    /// USD, when the usage and the model's price are known. Never a silent zero.
    pub cost_usd: Option<f64>,
    /// How the cache answered, if a cache layer saw the request.
    pub cache_status: Option<CacheStatus>,
    /// Which fallback step served, if a fallback layer saw the request.
    pub fallback_step: Option<u32>,
}

impl Record {
    /// Output tokens per second of generation (after the first byte), when known.
    pub fn time_per_output_token(&self) -> Option<Duration> {
        let usage = self.usage?;
        let ttft = self.ttft?;
        if usage.output_tokens == 0 || self.duration <= ttft {
            return None;
        }
        Some((self.duration - ttft) / u32::try_from(usage.output_tokens).ok()?)
    }

    /// Whether the request failed, by the gateway's or the provider's doing.
    pub fn is_error(&self) -> bool {
        self.error_origin.is_some()
    }
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The whole response reached the client (for a stream: its terminal event too).
    Complete,
    /// The client hung up before the end.
    Cancelled,
    /// The response broke off: the upstream failed mid-body, a stream ended without its
    /// terminal event, or no response came at all.
    Failed,
}

impl Outcome {
    /// `complete`, `cancelled` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// Who failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorOrigin {
    /// The gateway answered with an error of its own (bad request, limit, ...).
    Gateway,
    /// The provider answered with an error status, could not be reached, or broke off.
    Provider,
}

impl ErrorOrigin {
    /// `gateway` or `provider`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Provider => "provider",
        }
    }
}

/// Receives one [`Record`] per finished request.
///
/// Called on the request path (when the response body ends or is dropped): it must not
/// block. Recorders that write somewhere slow hand the record to a background task.
pub trait Recorder: Send + Sync + 'static {
    /// Takes one finished request.
    fn record(&self, record: &Record);
}

/// Records nothing.
impl Recorder for () {
    fn record(&self, _: &Record) {}
}

/// A closure is a recorder.
impl<F> Recorder for F
where
    F: Fn(&Record) + Send + Sync + 'static,
{
    fn record(&self, record: &Record) {
        self(record)
    }
}

impl<R: Recorder + ?Sized> Recorder for Arc<R> {
    fn record(&self, record: &Record) {
        (**self).record(record)
    }
}

impl<R: Recorder> Recorder for Option<R> {
    fn record(&self, record: &Record) {
        if let Some(r) = self {
            r.record(record)
        }
    }
}

/// Two recorders both get every record: nest pairs for more.
impl<A: Recorder, B: Recorder> Recorder for (A, B) {
    fn record(&self, record: &Record) {
        self.0.record(record);
        self.1.record(record);
    }
}

impl<A: Recorder, B: Recorder, C: Recorder> Recorder for (A, B, C) {
    fn record(&self, record: &Record) {
        self.0.record(record);
        self.1.record(record);
        self.2.record(record);
    }
}
