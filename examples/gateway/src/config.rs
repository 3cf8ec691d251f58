//! The gateway's TOML configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use tower_ai_core::{AuthStyle, InvalidProvider, PriceTable, Provider, Providers, WireFormat};
use tower_ai_provider_route::ProviderRouteLayer;

/// The whole configuration. Every field has a default, so an empty file (or none) is a
/// working gateway on in-memory defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8787`.
    pub listen: SocketAddr,
    /// Server limits.
    pub server: ServerConfig,
    /// The upstream client.
    pub upstream: UpstreamConfig,
    /// Per-provider settings, by provider name: overrides of the built-in providers and
    /// custom OpenAI-compatible ones.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Logging.
    pub log: LogConfig,
    /// Metering: usage, cost, the request log and `/metrics`.
    pub meter: MeterConfig,
    /// Rate limits: requests, tokens, spend and concurrency per key.
    pub ratelimit: crate::ratelimit::RateLimitConfig,
    /// The response cache.
    pub cache: crate::cache::CacheConfig,
    /// Retries, circuit breakers and configured routes (the universal endpoint is
    /// always on).
    pub fallback: crate::fallback::FallbackConfig,
    /// Gateway tokens, virtual keys and the admin token.
    pub auth: crate::auth::AuthConfig,
    /// The `/compat` endpoints.
    pub compat: crate::compat::CompatConfig,
    /// Prices that override or extend the shipped table: `[prices.PROVIDER."MODEL"]`
    /// with `input`, `output`, `cached_input`, `cache_write` (USD per million tokens).
    pub prices: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            server: ServerConfig::default(),
            upstream: UpstreamConfig::default(),
            providers: BTreeMap::new(),
            log: LogConfig::default(),
            meter: MeterConfig::default(),
            ratelimit: crate::ratelimit::RateLimitConfig::default(),
            cache: crate::cache::CacheConfig::default(),
            fallback: crate::fallback::FallbackConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            compat: crate::compat::CompatConfig::default(),
            prices: toml::Table::new(),
        }
    }
}

/// `[meter]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeterConfig {
    /// Meter requests at all. Default true.
    pub enabled: bool,
    /// The gateway's name on every record.
    pub gateway_name: Option<String>,
    /// Ask OpenAI-format streams for usage when the client did not (the extra chunk is
    /// removed before the client sees it). Default true.
    pub inject_stream_usage: bool,
    /// The SQLite request log behind `GET /logs` and `GET /usage`: a file path,
    /// `":memory:"`, or `""` for none. Default `tower-ai.db` in the working directory.
    pub log_path: String,
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            gateway_name: None,
            inject_stream_usage: true,
            log_path: "tower-ai.db".to_owned(),
        }
    }
}

/// `[server]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes; larger ones get 413. Default 32 MiB.
    pub max_body_bytes: usize,
    /// Largest total size of a request's headers, in bytes (`name: value\r\n` each);
    /// larger ones get a JSON 431. Default 64 KiB. (hyper refuses heads over about
    /// 400 KiB or with over 100 headers by itself, with a bare 431.)
    pub max_header_bytes: usize,
    /// On SIGINT/SIGTERM, how long in-flight requests and streams may take to finish
    /// before the gateway exits anyway. Default 30.
    pub shutdown_timeout_secs: u64,
    /// Threads serving requests (the `gateway` binary), each with its own single-threaded
    /// runtime and upstream connection pool; connections are spread across them. 0 (the
    /// default): one per CPU.
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            shutdown_timeout_secs: 30,
            threads: 0,
        }
    }
}

/// `[upstream]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Connect timeout (TCP and TLS), ms; failing it is a 502. Default 10000.
    pub connect_timeout_ms: u64,
    /// How long a provider may take to send the response head, ms; failing it is a 504.
    /// A stream's body is not bounded by it. Default 600000 (reasoning models are slow).
    pub timeout_ms: u64,
    /// How long idle upstream connections are kept, s. Default 90.
    pub pool_idle_timeout_secs: u64,
    /// Idle upstream connections kept per host. Default 256.
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 10_000,
            timeout_ms: 600_000,
            pool_idle_timeout_secs: 90,
            pool_max_idle_per_host: 256,
        }
    }
}

/// `[providers.NAME]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Overrides the base URL (required for a custom provider).
    pub base_url: Option<String>,
    /// A key the gateway holds for this provider: sent instead of whatever credential
    /// the client sent. Prefer `api_key_env`.
    pub api_key: Option<Secret>,
    /// The environment variable holding the gateway's key for this provider.
    pub api_key_env: Option<String>,
    /// Wire format of a custom provider: `openai` (default), `anthropic`, `gemini`,
    /// `workers-ai`.
    pub format: Option<String>,
    /// Auth style of a custom provider: `bearer` (default), `x-api-key`, `api-key`,
    /// `x-goog-api-key`.
    pub auth: Option<String>,
    /// Workers AI only: the Cloudflare account id, when the path does not carry one.
    pub account_id: Option<String>,
    /// Azure OpenAI (a provider whose first path segment names the resource): the
    /// resources requests may name. Required when the gateway holds the key, so that a
    /// client cannot have it sent to a resource of its choosing.
    pub resources: Option<Vec<String>>,
    /// Extra headers sent upstream when the client did not send them.
    pub headers: BTreeMap<String, String>,
}

/// `[log]`
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `tower_ai=debug,info`. `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
        }
    }
}

/// A secret from the configuration: never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration that cannot be used, with what is wrong.
#[derive(Debug)]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl From<InvalidProvider> for ConfigError {
    fn from(e: InvalidProvider) -> Self {
        Self(e.to_string())
    }
}

/// A TOML error without the source line `toml` quotes with it: that line can hold a
/// secret (`apikey = "sk-..."`, a typo'd key the schema refuses). The message and where.
fn toml_error(e: &toml::de::Error, text: &str) -> ConfigError {
    // serde quotes a value of the wrong type in the message too (`invalid type: string
    // "sk-..."`): what is between double quotes goes.
    let mut message = String::with_capacity(e.message().len());
    for (i, part) in e.message().trim_end().split('"').enumerate() {
        if i % 2 == 0 {
            message.push_str(part);
        } else {
            message.push_str("\"…\"");
        }
    }
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            ConfigError(format!("line {line}, column {column}: {message}"))
        }
        None => ConfigError(message),
    }
}

impl Config {
    /// Parses a TOML document. Errors say what and where, never quoting the text (it
    /// may hold keys).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| toml_error(&e, text))?;
        // Fail now, not on the first request.
        config.route_layer()?;
        config.prices()?;
        config.ratelimit.parsed_limits()?;
        config.cache.check()?;
        config.auth.store(&config.providers()?)?;
        let mut names = std::collections::HashSet::new();
        for l in config
            .ratelimit
            .parsed_limits()?
            .iter()
            .chain(&config.auth.limits()?)
        {
            if !names.insert(l.name().to_owned()) {
                return Err(ConfigError(format!(
                    "the limit `{}` is named twice (a key's own limits are named KEY-LIMIT)",
                    l.name()
                )));
            }
        }
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// The upstream timeouts as durations.
    pub fn upstream_timeouts(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(self.upstream.connect_timeout_ms),
            Duration::from_millis(self.upstream.timeout_ms),
        )
    }

    /// The provider registry: the built-in providers with the configured overrides, plus
    /// the custom ones.
    pub fn providers(&self) -> Result<Providers, ConfigError> {
        let mut providers = Providers::builtin();
        for (name, pc) in &self.providers {
            let mut p = match providers.get(name) {
                Some(p) => p.clone(),
                None => {
                    let url = pc.base_url.as_deref().ok_or_else(|| {
                        ConfigError(format!(
                            "providers.{name}: a custom provider needs a base_url"
                        ))
                    })?;
                    Provider::openai_compatible(name, url)?
                }
            };
            if let Some(url) = &pc.base_url {
                p = p.with_base_url(url)?;
            }
            if pc.format.is_some() || pc.auth.is_some() {
                let format = match &pc.format {
                    Some(f) => WireFormat::from_name(f).ok_or_else(|| {
                        ConfigError(format!("providers.{name}.format: unknown format `{f}`"))
                    })?,
                    None => p.format(),
                };
                let auth = match &pc.auth {
                    Some(a) => AuthStyle::from_name(a).ok_or_else(|| {
                        ConfigError(format!("providers.{name}.auth: unknown auth style `{a}`"))
                    })?,
                    None => p.auth(),
                };
                let mut q = Provider::new(name, &p.base_url().to_string(), auth, format)?
                    .with_resource_segment(p.resource_segment());
                for (h, v) in p.default_headers() {
                    q = q.with_default_header(h.clone(), v.clone());
                }
                p = q;
            }
            if let Some(resources) = &pc.resources {
                if !p.resource_segment() {
                    return Err(ConfigError(format!(
                        "providers.{name}.resources: only for a provider whose paths name a resource (azure-openai)"
                    )));
                }
                p = p
                    .with_allowed_resources(resources)
                    .map_err(|e| ConfigError(format!("providers.{name}.resources: {e}")))?;
            }
            if let Some(account) = &pc.account_id {
                if name != "workers-ai" {
                    return Err(ConfigError(format!(
                        "providers.{name}.account_id: only [providers.workers-ai] takes an account id"
                    )));
                }
                if account.is_empty()
                    || !account
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(ConfigError(format!(
                        "providers.{name}.account_id: must be letters, digits, `-` or `_`"
                    )));
                }
            }
            for (h, v) in &pc.headers {
                let h = HeaderName::try_from(h.as_str()).map_err(|_| {
                    ConfigError(format!("providers.{name}.headers: bad name `{h}`"))
                })?;
                let v = HeaderValue::try_from(v.as_str())
                    .map_err(|_| ConfigError(format!("providers.{name}.headers.{h}: bad value")))?;
                p = p.with_default_header(h, v);
            }
            providers.insert(p);
        }
        Ok(providers)
    }

    /// The shipped price table with the configured prices merged in.
    pub fn prices(&self) -> Result<PriceTable, ConfigError> {
        let mut prices = PriceTable::builtin();
        if !self.prices.is_empty() {
            let text =
                toml::to_string(&self.prices).map_err(|e| ConfigError(format!("prices: {e}")))?;
            let extra =
                PriceTable::from_toml(&text).map_err(|e| ConfigError(format!("prices: {e}")))?;
            prices.merge(&extra);
        }
        Ok(prices)
    }

    /// The provider route layer this configuration describes: providers, the keys the
    /// gateway holds, the Workers AI account.
    pub fn route_layer(&self) -> Result<ProviderRouteLayer, ConfigError> {
        let mut layer = ProviderRouteLayer::new(self.providers()?);
        for (name, pc) in &self.providers {
            let key = match (&pc.api_key, &pc.api_key_env) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError(format!(
                        "providers.{name}: set api_key or api_key_env, not both"
                    )));
                }
                (Some(k), None) => Some(k.expose().to_owned()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                    ConfigError(format!(
                        "providers.{name}.api_key_env: environment variable {var} is not set"
                    ))
                })?),
                (None, None) => None,
            };
            if let Some(key) = key {
                layer = layer
                    .with_key(name, &key)
                    .map_err(|e| ConfigError(format!("providers.{name}.api_key: {e}")))?;
            }
            // `providers()` checked it is only in [providers.workers-ai].
            if let Some(account) = &pc.account_id {
                layer = layer.with_account_id(account.clone());
            }
        }
        Ok(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 8787)));
        assert_eq!(c.server.max_body_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn full_example() {
        let c = Config::from_toml(
            r#"
            listen = "0.0.0.0:9000"
            [server]
            max_body_bytes = 1024
            [upstream]
            timeout_ms = 5000
            [providers.openai]
            base_url = "http://127.0.0.1:9001/v1"
            api_key = "sk-from-config"
            [providers.local]
            base_url = "http://127.0.0.1:8080/v1"
            [providers.claude-proxy]
            base_url = "http://127.0.0.1:8081"
            format = "anthropic"
            auth = "x-api-key"
            headers = { "anthropic-beta" = "tools-2024" }
            "#,
        )
        .unwrap();
        let p = c.providers().unwrap();
        assert_eq!(
            p.get("openai").unwrap().base_url().to_string(),
            "http://127.0.0.1:9001/v1"
        );
        assert_eq!(p.get("local").unwrap().format(), WireFormat::OpenAi);
        let cp = p.get("claude-proxy").unwrap();
        assert_eq!(cp.auth(), AuthStyle::XApiKey);
        assert_eq!(cp.format(), WireFormat::Anthropic);
        assert_eq!(cp.default_headers().len(), 1);
        assert!(!format!("{c:?}").contains("sk-from-config"));
    }

    #[test]
    fn syntax_errors_never_quote_the_text() {
        for (toml, want) in [
            // A typo'd key: refused by the schema, with its secret on the line.
            (
                "[providers.openai]\napikey = \"sk-live-SECRET\"\n",
                "line 2, column 1: unknown field `apikey`",
            ),
            // Not TOML at all: an unquoted secret.
            (
                "[providers.openai]\napi_key = sk-live-SECRET\n",
                "line 2, column 11",
            ),
            // A secret where another type belongs: serde quotes the value.
            (
                "[providers.openai]\nheaders = \"sk-live-SECRET\"\n",
                "line 2, column 11: invalid type",
            ),
        ] {
            let err = Config::from_toml(toml).unwrap_err().to_string();
            assert!(!err.contains("SECRET"), "{err}");
            assert!(!err.contains("sk-live"), "{err}");
            assert!(err.contains(want), "{toml}: {err}");
        }
    }

    #[test]
    fn azure_resources_and_the_workers_ai_account() {
        let c = Config::from_toml(
            "[providers.azure-openai]\napi_key = \"az-key\"\nresources = [\"myres\", \"other\"]\n[providers.workers-ai]\naccount_id = \"acc_1-2\"",
        )
        .unwrap();
        let p = c.providers().unwrap();
        let azure = p.get("azure-openai").unwrap();
        assert!(azure.allows_resource("myres") && !azure.allows_resource("evil"));
        // With a custom auth the provider is rebuilt: the allowlist stays.
        let c = Config::from_toml(
            "[providers.azure-openai]\nauth = \"bearer\"\nresources = [\"myres\"]",
        )
        .unwrap();
        assert!(
            !c.providers()
                .unwrap()
                .get("azure-openai")
                .unwrap()
                .allows_resource("evil")
        );
    }

    #[test]
    fn errors_are_clear() {
        for (toml, want) in [
            ("[providers.custom]\n", "needs a base_url"),
            (
                "[providers.openai]\nbase_url = \"ftp://x\"",
                "must start with http",
            ),
            (
                "[providers.x]\nbase_url = \"http://a\"\nformat = \"soap\"",
                "unknown format",
            ),
            (
                "[providers.openai]\napi_key_env = \"TOWER_AI_SURELY_UNSET\"",
                "is not set",
            ),
            (
                "[providers.openai]\napi_key = \"a\"\napi_key_env = \"B\"",
                "not both",
            ),
            ("bogus = 1", "unknown field"),
            (
                "[providers.azure-openai]\napi_key = \"az-key\"",
                "resources",
            ),
            (
                "[providers.openai]\nresources = [\"r\"]",
                "only for a provider whose paths name a resource",
            ),
            (
                "[providers.azure-openai]\nresources = [\"evil.com:80\"]",
                "resource name",
            ),
            (
                "[providers.openai]\naccount_id = \"acc\"",
                "only [providers.workers-ai]",
            ),
            (
                "[providers.workers-ai]\naccount_id = \"acc/../x\"",
                "must be letters, digits",
            ),
            ("[server]\nmax_body_bytes = \"lots\"", "line 2"),
        ] {
            let err = Config::from_toml(toml).unwrap_err().to_string();
            assert!(err.contains(want), "{toml}: {err}");
        }
    }
}
