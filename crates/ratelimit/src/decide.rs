//! One request's decision across every limit, and what it reserved.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use tower_ai_core::{ErrorResponse, LlmRequest, Usage, prompt_size};

use crate::headers::{self, Applied};
use crate::key::{RequestFacts, bucket_key};
use crate::layer::Shared;
use crate::limit::Quantity;
use crate::store::{Ask, Kind, Spec, as_promised};

/// What one limit took for a request (its ask's cost), to settle when its response ends.
#[derive(Clone, Debug)]
pub(crate) struct Reservation {
    pub(crate) ask: Ask,
    pub(crate) quantity: Quantity,
}

/// An admitted request: what it reserved, and the headers its response gets.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) reservations: Vec<Reservation>,
    pub(crate) applied: Vec<Applied>,
}

/// What is computed from the request before asking the store: one ask per limit that
/// applies, and what the answer needs of that limit.
pub(crate) struct Plan {
    pub(crate) shared: Arc<Shared>,
    pub(crate) asks: Vec<Ask>,
    pub(crate) limits: Vec<Asked>,
}

/// What the answer needs of a limit asked.
pub(crate) struct Asked {
    name: Arc<str>,
    quantity: Quantity,
    period: Duration,
}

/// The tokens a request may use: its prompt (about four bytes a token) plus its
/// `max_tokens` (or the default).
pub(crate) fn estimate_tokens(shared: &Shared, llm: Option<&LlmRequest>) -> u64 {
    let Some(llm) = llm else { return 0 };
    let format = shared
        .providers
        .get(&llm.provider)
        .map_or(tower_ai_core::WireFormat::OpenAi, |p| p.format());
    // One pass over the body for both.
    let size = prompt_size(format, llm.operation, &llm.body);
    let prompt = size.text_len.div_ceil(4) as u64;
    let out = size.max_output_tokens.unwrap_or(shared.default_max_tokens);
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
        let (asks, limits) = shared
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
                let ask = Ask {
                    key: bucket_key(l, spec.kind.as_str(), facts),
                    spec,
                    cost: taken,
                };
                let asked = Asked {
                    name: l.name.clone(),
                    quantity: l.quantity,
                    period: l.period,
                };
                (ask, asked)
            })
            .unzip();
        Self {
            shared,
            asks,
            limits,
        }
    }

    /// Asks the store for every limit at once: all are taken, or none and the 429 is the
    /// answer.
    pub(crate) async fn decide(self) -> Result<Admission, Response<Bytes>> {
        let Self {
            shared,
            asks,
            limits,
        } = self;
        if asks.is_empty() {
            return Ok(Admission::default());
        }
        let decisions = shared
            .store
            .acquire_all(&asks)
            .await
            .and_then(|d| as_promised(d, asks.len()));
        let decisions = match decisions {
            Ok(d) => d,
            Err(e) => {
                warn_store(&e);
                if shared.fail_open {
                    return Ok(Admission::default());
                }
                return Err(ErrorResponse::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate_limiter_unavailable",
                    "the rate limiter cannot decide right now; try again",
                )
                .into_response());
            }
        };
        let applied: Vec<Applied> = decisions
            .into_iter()
            .zip(&limits)
            .map(|(decision, l)| Applied {
                name: l.name.clone(),
                unit: l.quantity.unit(),
                period: l.period,
                decision,
            })
            .collect();
        if let Some(by) = applied.last().filter(|a| !a.decision.allowed) {
            return Err(denied(&applied, by));
        }
        let reservations = asks
            .into_iter()
            .zip(limits)
            .map(|(ask, l)| Reservation {
                ask,
                quantity: l.quantity,
            })
            .collect();
        Ok(Admission {
            reservations,
            applied,
        })
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
    r.ask.spec.kind == Kind::Concurrency
}
