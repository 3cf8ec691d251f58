//! The meter in the gateway: its recorders and the admin endpoints that read them,
//! `GET /metrics`, `GET /usage` and `GET /logs`.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use tower_ai_core::ErrorResponse;
use tower_ai_meter::{Aggregates, LogQuery, MeterLayer, PrometheusRecorder, SqliteLog};

use crate::config::{Config, ConfigError};

/// Every recorder the gateway meters into.
pub(crate) type Recorders = (Arc<Aggregates>, (PrometheusRecorder, Option<SqliteLog>));

/// The meter layer (when on) and what the admin endpoints read.
#[derive(Clone)]
pub(crate) struct Metering {
    pub(crate) layer: Option<MeterLayer<Recorders>>,
    aggregates: Arc<Aggregates>,
    prometheus: PrometheusRecorder,
    log: Option<SqliteLog>,
    /// Breaker states and fallback counters, appended to `/metrics`.
    pub(crate) fallback: Option<tower_ai_fallback::FallbackHandle>,
}

impl Metering {
    pub(crate) fn new(config: &Config) -> Result<Self, ConfigError> {
        let m = &config.meter;
        let aggregates = Arc::new(Aggregates::new());
        let prometheus = PrometheusRecorder::new();
        let log =
            if m.enabled && !m.log_path.is_empty() {
                Some(SqliteLog::open(&m.log_path).map_err(|e| {
                    ConfigError::new(format!("meter.log_path `{}`: {e}", m.log_path))
                })?)
            } else {
                None
            };
        let layer = m.enabled.then(|| {
            let mut layer =
                MeterLayer::new((aggregates.clone(), (prometheus.clone(), log.clone())));
            layer = layer
                .with_stream_usage_injection(m.inject_stream_usage)
                .with_max_body_bytes(config.server.max_body_bytes);
            if let Some(name) = &m.gateway_name {
                layer = layer.with_gateway_name(name.as_str());
            }
            layer
        });
        if layer.is_some() {
            // The tokenizer (~50 MiB, a few hundred ms to load) only when an estimate is
            // first needed, and then never on a request's time.
            tower_ai_meter::load_tokenizer_in_background();
        }
        let layer = match layer {
            Some(l) => Some(
                l.with_providers(config.providers()?)
                    .with_prices(config.prices()?),
            ),
            None => None,
        };
        Ok(Self {
            layer,
            aggregates,
            prometheus,
            log,
            fallback: None,
        })
    }

    pub(crate) fn admin_routes(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/usage", get(usage))
            .route("/logs", get(logs))
            .with_state(self.clone())
    }
}

async fn metrics(State(m): State<Metering>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        {
            let mut text = m.prometheus.encode();
            if let Some(f) = &m.fallback {
                // Before the exposition's `# EOF`, when it has one.
                let eof = text.rfind("# EOF").unwrap_or(text.len());
                text.insert_str(eof, &f.prometheus());
            }
            text
        },
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageParams {
    /// Unix seconds.
    since: Option<i64>,
}

async fn usage(
    State(m): State<Metering>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return ErrorResponse::bad_request("usage takes `since` (Unix seconds)").into_response();
    };
    match m.log {
        Some(log) => {
            let since_ms = params.since.map(|s| s.saturating_mul(1000));
            blocking(move || log.usage(since_ms)).await
        }
        None if params.since.is_some() => {
            ErrorResponse::bad_request("`since` needs the request log (meter.log_path)")
                .into_response()
        }
        None => {
            let totals = m.aggregates.totals();
            let by_model: Vec<_> = m
                .aggregates
                .by_model()
                .into_iter()
                .map(|(provider, model, t)| {
                    serde_json::json!({
                        "provider": provider, "model": model, "requests": t.requests,
                        "input_tokens": t.input_tokens, "output_tokens": t.output_tokens,
                        "cost_usd": t.cost_usd, "unknown_cost_requests": t.unknown_cost_requests,
                    })
                })
                .collect();
            json(&serde_json::json!({
                "totals": {
                    "requests": totals.requests, "input_tokens": totals.input_tokens,
                    "output_tokens": totals.output_tokens, "cost_usd": totals.cost_usd,
                    "unknown_cost_requests": totals.unknown_cost_requests,
                },
                "by_model": by_model,
            }))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogParams {
    /// Unix seconds.
    since: Option<i64>,
    /// Unix seconds.
    until: Option<i64>,
    provider: Option<String>,
    model: Option<String>,
    status: Option<u16>,
    /// The `next` of the previous page.
    before: Option<i64>,
    limit: Option<u32>,
}

async fn logs(
    State(m): State<Metering>,
    params: Result<Query<LogParams>, QueryRejection>,
) -> Response {
    let Ok(Query(p)) = params else {
        return ErrorResponse::bad_request(
            "logs takes since, until (Unix seconds), provider, model, status, before, limit",
        )
        .into_response();
    };
    let Some(log) = m.log else {
        return ErrorResponse::not_found("the request log is off (meter.log_path)").into_response();
    };
    let q = LogQuery {
        since_ms: p.since.map(|s| s.saturating_mul(1000)),
        until_ms: p.until.map(|s| s.saturating_mul(1000)),
        provider: p.provider,
        model: p.model,
        status: p.status,
        before_id: p.before,
        limit: p.limit,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000) as usize;
    match tokio::task::spawn_blocking(move || log.query(&q)).await {
        Ok(Ok(rows)) => {
            let next = (rows.len() == limit)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            json(&serde_json::json!({ "logs": rows, "next": next }))
        }
        _ => internal("the request log could not be read"),
    }
}

async fn blocking<T, E, F>(f: F) -> Response
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: serde::Serialize + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => json(&v),
        _ => internal("the request log could not be read"),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => (
            [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body,
        )
            .into_response(),
        Err(_) => internal("could not encode the answer"),
    }
}

fn internal(message: &'static str) -> Response {
    ErrorResponse::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message).into_response()
}
