//! `[auth]`: gateway tokens, virtual keys and the admin token, from configuration to an
//! `AuthLayer`, the admin guard, and `gateway keys create`.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;
use tower_ai_auth::{AuthLayer, KeyStore, Token, TokenHash, VirtualKey, find_token};
use tower_ai_core::{ErrorResponse, ProviderKeys, Providers};
use tower_ai_ratelimit::Limit;

use crate::config::{ConfigError, Secret};
use crate::ratelimit::LimitConfig;

/// `[auth]`. Off by default: the gateway then lets everyone in, as before.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a gateway token on every proxied request. Default false.
    pub enabled: bool,
    /// SHA-256 hashes (64 hex digits) of the tokens that open `/usage`, `/logs`,
    /// `DELETE /cache` (and `/metrics`, `/healthz` when they are not public). None: the
    /// admin endpoints are closed.
    pub admin_token_hashes: Vec<String>,
    /// `/metrics` without the admin token. Default false.
    pub public_metrics: bool,
    /// `/healthz` without the admin token. Default true (load balancers probe it).
    pub public_healthz: bool,
    /// The virtual keys.
    pub keys: Vec<KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            admin_token_hashes: Vec::new(),
            public_metrics: false,
            public_healthz: true,
            keys: Vec::new(),
        }
    }
}

/// `[[auth.keys]]`: one virtual key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Its name: letters, digits, `-`, `_`.
    pub name: String,
    /// The SHA-256 of its token, 64 hex digits (`gateway keys create` prints it). Never
    /// the token.
    pub token_hash: String,
    /// Only these providers. Default: any.
    pub providers: Option<Vec<String>>,
    /// Only these models (exact, or a prefix ending in `*`). Default: any.
    pub models: Option<Vec<String>>,
    /// Tags recorded with every request of this key (`/logs`' metadata).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Provider keys the gateway sends for this key, by provider: the name of the
    /// environment variable that holds each.
    #[serde(default)]
    pub provider_key_env: BTreeMap<String, String>,
    /// The same, the keys themselves in the file. Prefer `provider_key_env`.
    #[serde(default)]
    pub provider_keys: BTreeMap<String, Secret>,
    /// Limits and budgets of this key alone, as `[[ratelimit.limits]]` (a `cost_usd`
    /// limit is a budget).
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl AuthConfig {
    /// The key store, when auth is on. Reads the provider keys from the environment.
    pub fn store(&self, providers: &Providers) -> Result<Option<KeyStore>, ConfigError> {
        if !self.enabled {
            if !self.keys.is_empty() || !self.admin_token_hashes.is_empty() {
                // Never a gateway its operator believes closed while it is open.
                return Err(ConfigError::new(
                    "auth: keys or admin tokens are set but auth.enabled is false, which would let everyone in; set enabled = true",
                ));
            }
            return Ok(None);
        }
        let mut store = KeyStore::new();
        for (i, h) in self.admin_token_hashes.iter().enumerate() {
            let hash = TokenHash::from_hex(h)
                .map_err(|e| ConfigError::new(format!("auth.admin_token_hashes[{i}]: {e}")))?;
            store = store
                .with_admin(hash)
                .map_err(|e| ConfigError::new(format!("auth: {e}")))?;
        }
        for k in &self.keys {
            store = store
                .with_key(k.virtual_key(providers)?)
                .map_err(|e| ConfigError::new(format!("auth.keys: {e}")))?;
        }
        Ok(Some(store))
    }

    /// Every key's own limits, for the rate limiter: each counts only its key's
    /// requests and is named `{key}-{limit}`.
    pub fn limits(&self) -> Result<Vec<Limit>, ConfigError> {
        let mut out = Vec::new();
        if !self.enabled {
            return Ok(out);
        }
        for k in &self.keys {
            let hash = hash_of(k)?;
            for l in &k.limits {
                let mut l = l.clone();
                l.name = format!("{}-{}", k.name, l.name);
                out.push(l.limit()?.for_caller(hash.key_id()));
            }
        }
        Ok(out)
    }
}

fn hash_of(k: &KeyConfig) -> Result<TokenHash, ConfigError> {
    TokenHash::from_hex(&k.token_hash)
        .map_err(|e| ConfigError::new(format!("auth.keys `{}`.token_hash: {e}", k.name)))
}

impl KeyConfig {
    fn virtual_key(&self, providers: &Providers) -> Result<VirtualKey, ConfigError> {
        let name = &self.name;
        if !valid_name(name) {
            return Err(ConfigError::new(format!(
                "auth.keys `{name}`: a name is letters, digits, `-` or `_`"
            )));
        }
        let mut key = VirtualKey::new(name.as_str(), hash_of(self)?);
        if let Some(ps) = &self.providers {
            for p in ps {
                if providers.get(p).is_none() {
                    return Err(ConfigError::new(format!(
                        "auth.keys `{name}`.providers: unknown provider `{p}`"
                    )));
                }
            }
            key = key.with_providers(ps.iter().map(String::as_str));
        }
        if let Some(ms) = &self.models {
            key = key.with_models(ms);
        }
        if self.tags.len() > 8 {
            return Err(ConfigError::new(format!(
                "auth.keys `{name}`.tags: at most 8"
            )));
        }
        key = key.with_tags(
            std::iter::once(("virtual_key".to_owned(), name.clone()))
                .chain(self.tags.iter().map(|(k, v)| (k.clone(), v.clone()))),
        );
        let mut keys = ProviderKeys::new();
        let from_env = self.provider_key_env.iter().map(|(provider, var)| {
            let secret = std::env::var(var).map_err(|_| {
                ConfigError::new(format!(
                    "auth.keys `{name}`.provider_key_env.{provider}: environment variable {var} is not set"
                ))
            });
            (provider, secret)
        });
        let inline = self
            .provider_keys
            .iter()
            .map(|(provider, secret)| (provider, Ok(secret.expose().to_owned())));
        for (provider, secret) in from_env.chain(inline) {
            if self.provider_key_env.contains_key(provider)
                && self.provider_keys.contains_key(provider)
            {
                return Err(ConfigError::new(format!(
                    "auth.keys `{name}`: a key for `{provider}` in provider_keys and provider_key_env"
                )));
            }
            let p = providers.get(provider).ok_or_else(|| {
                ConfigError::new(format!(
                    "auth.keys `{name}`: a provider key for unknown provider `{provider}`"
                ))
            })?;
            let secret = secret?;
            keys = keys.with_key(p, &secret).map_err(|e| {
                ConfigError::new(format!(
                    "auth.keys `{name}`: provider key for `{provider}`: {e}"
                ))
            })?;
        }
        Ok(key.with_provider_keys(keys))
    }
}

/// The auth layer for the proxy, when auth is on.
pub(crate) fn layer(store: &Option<KeyStore>, max_body_bytes: usize) -> Option<AuthLayer> {
    store
        .clone()
        .map(|s| AuthLayer::new(s).with_max_body_bytes(max_body_bytes))
}

#[derive(Clone)]
struct Guard {
    store: KeyStore,
    public_metrics: bool,
    public_healthz: bool,
}

/// Puts the admin endpoints of `admin` behind the admin token, when auth is on.
pub(crate) fn guard_admin(admin: Router, config: &AuthConfig, store: &Option<KeyStore>) -> Router {
    let Some(store) = store else { return admin };
    let guard = Guard {
        store: store.clone(),
        public_metrics: config.public_metrics,
        public_healthz: config.public_healthz,
    };
    admin.route_layer(middleware::from_fn_with_state(guard, admin_only))
}

async fn admin_only(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let public = match req.uri().path() {
        "/healthz" => g.public_healthz,
        "/metrics" => g.public_metrics,
        _ => false,
    };
    if public {
        return next.run(req).await;
    }
    match find_token(req.headers()) {
        Some((token, _)) if g.store.is_admin(token) => next.run(req).await,
        found => {
            let e = if found.is_some() {
                ErrorResponse::unauthorized("this endpoint needs the admin token")
            } else {
                ErrorResponse::unauthorized(
                    "this endpoint needs the admin token: send `aigw-authorization: Bearer <token>`",
                )
            };
            let mut res = e.into_response::<axum::body::Body>();
            res.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"aigw-admin\""),
            );
            res.into_response()
        }
    }
}

/// A new token for `gateway keys create --name NAME`: the text to print, once. It holds
/// the token and the TOML to paste into the configuration (with the hash only).
pub fn create_key(name: &str, admin: bool) -> Result<String, ConfigError> {
    if !valid_name(name) {
        return Err(ConfigError::new(
            "a key name is letters, digits, `-` or `_` (at most 64)",
        ));
    }
    let token = Token::generate()
        .map_err(|e| ConfigError::new(format!("no randomness from the system: {e}")))?;
    let hash = token.hash().to_hex();
    let toml = if admin {
        format!("[auth]\nenabled = true\nadmin_token_hashes = [\"{hash}\"]  # {name}\n")
    } else {
        format!(
            "[[auth.keys]]\nname = \"{name}\"\ntoken_hash = \"{hash}\"\n# providers = [\"openai\"]\n# models = [\"gpt-4o-mini\"]\n# tags = {{ team = \"{name}\" }}\n# provider_key_env = {{ openai = \"OPENAI_API_KEY_{upper}\" }}\n",
            upper = name.to_uppercase().replace('-', "_")
        )
    };
    Ok(format!(
        "token: {token}\n\nThe token is shown this once; the gateway keeps only its hash.\nAdd to the configuration:\n\n{toml}",
        token = token.expose()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<AuthConfig, ConfigError> {
        toml::from_str(toml).map_err(|e| ConfigError::new(e.message().to_owned()))
    }

    #[test]
    fn keys_from_toml() {
        let hash = TokenHash::of("tok").to_hex();
        let c = parse(&format!(
            r#"
            enabled = true
            admin_token_hashes = ["{admin}"]
            [[keys]]
            name = "search"
            token_hash = "{hash}"
            providers = ["openai"]
            models = ["gpt-4o*"]
            tags = {{ team = "search" }}
            [[keys.limits]]
            name = "rpm"
            requests = 2
            [[keys.limits]]
            name = "budget"
            cost_usd = 5.0
            period = "30d"
            "#,
            admin = TokenHash::of("adm").to_hex()
        ))
        .unwrap();
        let store = c.store(&Providers::builtin()).unwrap().unwrap();
        let k = store.authenticate("tok").unwrap();
        assert_eq!(k.name(), "search");
        assert!(k.allows_provider("openai") && !k.allows_provider("anthropic"));
        assert!(store.is_admin("adm") && !store.is_admin("tok"));
        let limits = c.limits().unwrap();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[0].name(), "search-rpm");
        assert_eq!(
            limits[1].caller(),
            Some(tower_ai_core::key_id("tok").as_str())
        );
        // Keys with auth off: an error, not an open gateway its operator thinks closed.
        let off = AuthConfig {
            enabled: false,
            ..c
        };
        let err = off.store(&Providers::builtin()).unwrap_err().to_string();
        assert!(err.contains("enabled = true"), "{err}");
        assert!(
            AuthConfig::default()
                .store(&Providers::builtin())
                .unwrap()
                .is_none()
        );
        assert!(AuthConfig::default().limits().unwrap().is_empty());
    }

    #[test]
    fn errors_are_clear() {
        let hash = TokenHash::of("tok").to_hex();
        for (toml, want) in [
            (
                "enabled = true\nadmin_token_hashes = [\"abc\"]".to_owned(),
                "64 hex digits",
            ),
            (
                "enabled = true\n[[keys]]\nname = \"a\"\ntoken_hash = \"sk-not-a-hash\"".to_owned(),
                "64 hex digits",
            ),
            (
                format!("enabled = true\n[[keys]]\nname = \"a b\"\ntoken_hash = \"{hash}\""),
                "letters, digits",
            ),
            (
                format!(
                    "enabled = true\n[[keys]]\nname = \"a\"\ntoken_hash = \"{hash}\"\n[[keys]]\nname = \"b\"\ntoken_hash = \"{hash}\""
                ),
                "token hash of another key",
            ),
            (
                format!(
                    "enabled = true\n[[keys]]\nname = \"a\"\ntoken_hash = \"{hash}\"\nproviders = [\"nope\"]"
                ),
                "unknown provider",
            ),
            (
                format!(
                    "enabled = true\n[[keys]]\nname = \"a\"\ntoken_hash = \"{hash}\"\nprovider_key_env = {{ openai = \"TOWER_AI_SURELY_UNSET\" }}"
                ),
                "is not set",
            ),
        ] {
            let err = parse(&toml)
                .unwrap()
                .store(&Providers::builtin())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{toml}: {err}");
        }
    }

    #[test]
    fn create_prints_the_token_once_and_only_its_hash_for_the_config() {
        let out = create_key("search-team", false).unwrap();
        let token = out
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .unwrap()
            .to_owned();
        assert!(token.starts_with("aigw_"));
        assert_eq!(out.matches(&token).count(), 1);
        let snippet = &out[out.find("[[auth.keys]]").unwrap()..];
        let c: AuthConfig = parse(&format!(
            "enabled = true\n{}",
            snippet.replace("[[auth.keys]]", "[[keys]]")
        ))
        .unwrap();
        let store = c.store(&Providers::builtin()).unwrap().unwrap();
        assert_eq!(store.authenticate(&token).unwrap().name(), "search-team");
        assert!(create_key("bad name", false).is_err());
        let admin = create_key("ops", true).unwrap();
        assert!(admin.contains("admin_token_hashes"));
    }
}
