//! `[cache]`: the response cache in the gateway, and `DELETE /cache`.

use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tower_ai_cache::{CacheHandle, CacheKey, CacheLayer, CacheScope, RedisStore};
use tower_ai_core::ErrorResponse;

use crate::config::ConfigError;

/// `[cache]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Cache responses at all. Default false.
    pub enabled: bool,
    /// Default time to live, seconds (`aigw-cache-ttl` overrides per request). Default 300.
    pub ttl: u64,
    /// Memory store bound, bytes. Default 256 MiB.
    pub max_bytes: u64,
    /// `credential` (default: one tenant never gets another's answers) or `shared`.
    pub scope: String,
    /// `memory` (default) or `redis` (replicas share one cache).
    pub store: String,
    /// The Redis server, for `store = "redis"`.
    pub redis_url: String,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Requests with a higher `temperature` (no temperature counts as 1.0) bypass the
    /// cache; unset: every request may be cached.
    pub max_temperature: Option<f64>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ttl: 300,
            max_bytes: 256 * 1024 * 1024,
            scope: "credential".to_owned(),
            store: "memory".to_owned(),
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_prefix: "aigw:cache:".to_owned(),
            max_temperature: None,
        }
    }
}

impl CacheConfig {
    /// Checks what can be checked without connecting.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !matches!(self.scope.as_str(), "credential" | "shared") {
            return Err(ConfigError::new(format!(
                "cache.scope must be `credential` or `shared`, not `{}`",
                self.scope
            )));
        }
        if !matches!(self.store.as_str(), "memory" | "redis") {
            return Err(ConfigError::new(format!(
                "cache.store must be `memory` or `redis`, not `{}`",
                self.store
            )));
        }
        if self.ttl == 0 || Duration::from_secs(self.ttl) > CacheLayer::MAX_TTL {
            return Err(ConfigError::new(
                "cache.ttl must be between 1 second and a year",
            ));
        }
        if self
            .max_temperature
            .is_some_and(|t| !(t.is_finite() && t >= 0.0))
        {
            return Err(ConfigError::new(
                "cache.max_temperature must be a number >= 0",
            ));
        }
        Ok(())
    }

    /// The layer (when enabled); connects to Redis now for `store = "redis"`.
    pub async fn layer(&self) -> Result<Option<CacheLayer>, ConfigError> {
        self.check()?;
        if !self.enabled {
            return Ok(None);
        }
        let layer = if self.store == "redis" {
            let store = RedisStore::connect(&self.redis_url, self.redis_prefix.clone())
                .await
                .map_err(|e| ConfigError::new(format!("cache.redis_url: {e}")))?;
            CacheLayer::new(store)
        } else {
            CacheLayer::memory(self.max_bytes)
        };
        let scope = if self.scope == "shared" {
            CacheScope::Shared
        } else {
            CacheScope::PerCredential
        };
        Ok(Some(
            layer
                .with_ttl(Duration::from_secs(self.ttl))
                .with_scope(scope)
                .with_max_temperature(self.max_temperature),
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeParams {
    /// A cache key, in hex (responses carry it in their extensions; logs show it).
    key: Option<String>,
    /// A custom key (`aigw-cache-key`), in the caller's scope.
    custom: Option<String>,
}

/// `DELETE /cache` (everything), `?key=HEX` (one entry), `?custom=NAME` (a custom key).
pub(crate) fn routes(handle: Option<CacheHandle>) -> Router {
    Router::new()
        .route("/cache", delete(purge))
        .with_state(handle)
}

async fn purge(
    State(handle): State<Option<CacheHandle>>,
    headers: HeaderMap,
    params: Result<Query<PurgeParams>, QueryRejection>,
) -> Response {
    let Some(handle) = handle else {
        return ErrorResponse::not_found("the cache is off (cache.enabled)").into_response();
    };
    let Ok(Query(p)) = params else {
        return ErrorResponse::bad_request("DELETE /cache takes `key` (hex) or `custom`")
            .into_response();
    };
    let purged = match (p.key, p.custom) {
        (None, None) => {
            handle.purge_all().await;
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"purged":"all"}"#,
            )
                .into_response();
        }
        (Some(hex), None) => match CacheKey::from_hex(&hex) {
            Some(key) => handle.purge(&key).await,
            None => {
                return ErrorResponse::bad_request("`key` must be 64 hex digits").into_response();
            }
        },
        (None, Some(custom)) => handle.purge_custom(&headers, &custom).await,
        (Some(_), Some(_)) => {
            return ErrorResponse::bad_request("give `key` or `custom`, not both").into_response();
        }
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        format!(r#"{{"purged":{purged}}}"#),
    )
        .into_response()
}
