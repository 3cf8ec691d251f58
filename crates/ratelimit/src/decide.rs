//! One request's decision across every limit, and what it reserved.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde::Deserialize;
use tower_ai_core::{ErrorResponse, LlmRequest, Usage, prompt_text};

use crate::headers::{self, Applied};
use crate::key::{RequestFacts, bucket_key};
use crate::layer::Shared;
use crate::limit::Quantity;
use crate::store::{Kind, Spec};

/// What one limit took for a request, to settle when its response ends.
#[derive(Clone, Debug)]
pub(crate) struct Reservation {
    pub(crate) key: String,
    pub(crate) spec: Spec,
    pub(crate) quantity: Quantity,
    /// What was taken, in the store's units.
    pub(crate) taken: u64,
}

/// An admitted request: what it reserved, and the headers its response gets.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) applied: Vec<Applied>,
}

/// What is computed from the request before asking the store.
pub(crate) struct Plan {
    pub(crate) shared: Arc<Shared>,
    pub(crate) steps: Vec<(Reservation, Arc<str>, std::time::Duration)>,
}

#[derive(Deserialize, Default)]
struct MaxTokens {
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    max_output_tokens: Option<u64>,
}

/// The tokens a request may use: its prompt (about four bytes a token) plus its
/// `max_tokens` (or the default).
pub(crate) fn estimate_tokens(shared: &Shared, llm: Option<&LlmRequest>) -> u64 {
    let Some(llm) = llm else { return 0 };
    let format = shared
        .providers
        .get(&llm.provider)
        .map_or(tower_ai_core::WireFormat::OpenAi, |p| p.format());
    let prompt = prompt_text(format, llm.operation, &llm.body)
        .len()
        .div_ceil(4) as u64;
    let m: MaxTokens = serde_json::from_slice(&llm.body).unwrap_or_default();
    let out = m
        .max_tokens
        .or(m.max_completion_tokens)
        .or(m.max_output_tokens)
        .unwrap_or(shared.default_max_tokens);
    prompt.saturating_add(out)
}

/// The spend of `usage` in micro-USD, from the price function or the price table; 0 when
/// the model has no price (spend limits do not count what cannot be priced).
pub(crate) fn micro_usd(shared: &Shared, llm: Option<&LlmRequest>, usage: &Usage) -> u64 {
    let Some(llm) = llm else { return 0 };
    let usd = match &shared.price_fn {
        Some(f) => f(llm, usage),
        None => llm
            .model
            .as_ref()
            .and_then(|model| shared.prices.cost(&llm.provider, model, usage)),
    };
    usd.filter(|c| c.is_finite())
        .map_or(0, |c| (c * 1e6).ceil().max(0.0) as u64)
}

impl Plan {
    pub(crate) fn new(shared: Arc<Shared>, facts: &RequestFacts<'_>) -> Self {
        let tokens = if shared
            .limits
            .iter()
            .any(|l| matches!(l.quantity, Quantity::Tokens(_) | Quantity::CostUsd(_)))
        {
            estimate_tokens(&shared, facts.llm)
        } else {
            0
        };
        let steps = shared
            .limits
            .iter()
            .filter(|l| match &l.caller {
                None => true,
                Some(only) => facts.caller.is_some_and(|c| c.0 == *only),
            })
            .map(|l| {
                let spec = Spec::of(l);
                let taken = match l.quantity {
                    Quantity::Requests(_) | Quantity::Concurrency(_) => 1,
                    Quantity::Tokens(_) => tokens,
                    Quantity::CostUsd(_) => {
                        // Reserve as if every estimated token were output (the dearer kind).
                        let usage = Usage {
                            output_tokens: tokens,
                            ..Usage::default()
                        };
                        micro_usd(&shared, facts.llm, &usage)
                    }
                };
                let reservation = Reservation {
                    key: bucket_key(l, spec.kind.as_str(), facts),
                    spec,
                    quantity: l.quantity,
                    taken,
                };
                (reservation, l.name.clone(), l.period)
            })
            .collect();
        Self { shared, steps }
    }

    /// Asks the store for each limit in turn. Denied: everything taken so far is given
    /// back and the 429 is the answer.
    pub(crate) async fn decide(self) -> Result<Admission, Response<Bytes>> {
        let store = &self.shared.store;
        let mut admission = Admission::default();
        for (r, name, period) in self.steps {
            match store.acquire(&r.key, r.spec, r.taken).await {
                Ok(d) => {
                    let applied = Applied {
                        name,
                        unit: r.quantity.unit(),
                        period,
                        decision: d,
                    };
                    if !d.allowed {
                        for done in &admission.reservations {
                            let _ = store
                                .adjust(&done.key, done.spec, -(done.taken as i64))
                                .await;
                        }
                        admission.applied.push(applied.clone());
                        return Err(denied(&admission.applied, &applied));
                    }
                    admission.applied.push(applied);
                    admission.reservations.push(r);
                }
                Err(e) => {
                    warn_store(&e);
                    if !self.shared.fail_open {
                        for done in &admission.reservations {
                            let _ = store
                                .adjust(&done.key, done.spec, -(done.taken as i64))
                                .await;
                        }
                        return Err(ErrorResponse::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "rate_limiter_unavailable",
                            "the rate limiter cannot decide right now; try again",
                        )
                        .into_response());
                    }
                }
            }
        }
        Ok(admission)
    }
}

fn denied(applied: &[Applied], by: &Applied) -> Response<Bytes> {
    let what = match by.unit {
        "requests" => "requests",
        "tokens" => "tokens",
        "cost" => "spend",
        _ => "concurrent requests",
    };
    let secs = by.decision.retry_after.as_secs_f64().max(0.001);
    let mut res: Response<Bytes> = ErrorResponse::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        format!(
            "Rate limit `{}` reached ({what}: {} per {}s). Try again in {secs:.3}s.",
            by.name,
            by.decision.limit,
            by.period.as_secs_f64()
        ),
    )
    .into_response();
    let mut h = HeaderMap::new();
    headers::write(&mut h, applied, Some(by));
    res.headers_mut().extend(h);
    res
}

fn warn_store(e: &crate::StoreError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    if n.is_power_of_two() || n == 0 {
        tracing::warn!(error = %e, failures = n + 1, "rate-limit store failed");
    }
}

/// Whether a spec counts concurrency (released when the response ends).
pub(crate) fn is_concurrency(r: &Reservation) -> bool {
    r.spec.kind == Kind::Concurrency
}
