//! Configured routes: a name the application calls as its `model`, expanded into steps.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tower_ai_core::{ErrorResponse, ProviderPath};

use crate::keys::KeyRing;
use crate::policy::RetryPolicy;
use crate::step::{Step, valid_provider};

/// One target of a [`Route`]: a provider, the model to ask it for, and what else to
/// change in the request.
#[derive(Clone, Debug)]
pub struct Target {
    pub(crate) provider: Arc<str>,
    pub(crate) model: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) overrides: Map<String, Value>,
    pub(crate) headers: HeaderMap,
    pub(crate) keys: Vec<Box<str>>,
    pub(crate) weight: u32,
    pub(crate) rank: Option<u32>,
}

impl Target {
    /// A target at `provider` (a name in the provider registry).
    pub fn new(provider: impl Into<Arc<str>>) -> Self {
        Self {
            provider: provider.into(),
            model: None,
            endpoint: None,
            overrides: Map::new(),
            headers: HeaderMap::new(),
            keys: Vec::new(),
            weight: 1,
            rank: None,
        }
    }

    /// The model to ask for instead of the route's name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// The path at the provider, when it is not the one the client called
    /// (e.g. `v1/messages` for an Anthropic target of an OpenAI-format route that goes
    /// through a translating layer). Default: the client's path with the provider swapped.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into().trim_start_matches('/').to_owned());
        self
    }

    /// Top-level body fields set on this target's request (`null` removes a field):
    /// e.g. `{"temperature": 0.2, "max_tokens": 512}`.
    pub fn with_overrides(mut self, overrides: Map<String, Value>) -> Self {
        self.overrides = overrides;
        self
    }

    /// A header set on this target's request.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Provider keys for this target: each attempt uses the current one, a 429 rotates
    /// to the next, a 401/402/403 benches a key for the breaker cool-down. Without keys
    /// the request goes with whatever credential provider routing puts on it.
    pub fn with_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<Box<str>>,
    {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Share of traffic among targets of the same rank. Default 1; 0 = only when the
    /// others of its rank failed.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Targets of equal rank are load-balanced by weight; lower ranks are tried first.
    /// Default: the target's position in the route (every target its own rank).
    pub fn with_rank(mut self, rank: u32) -> Self {
        self.rank = Some(rank);
        self
    }
}

/// A named route: targets tried in order (load-balanced within a rank), with an
/// optional retry policy of its own. The application calls it by sending the route's
/// name as `model` on any provider path (or through `/compat/...`).
#[derive(Clone, Debug)]
pub struct Route {
    pub(crate) targets: Vec<Target>,
    pub(crate) rings: Vec<Option<Arc<KeyRing>>>,
    pub(crate) policy: Option<RetryPolicy>,
}

impl Route {
    /// A route over `targets`. Fails when there are none or a provider name is invalid.
    pub fn new(targets: Vec<Target>) -> Result<Self, String> {
        if targets.is_empty() {
            return Err("a route needs at least one target".into());
        }
        if let Some(t) = targets.iter().find(|t| !valid_provider(&t.provider)) {
            return Err(format!("`{}` is not a valid provider name", t.provider));
        }
        Ok(Self {
            rings: Vec::new(),
            targets,
            policy: None,
        })
    }

    /// The route's own retry policy, instead of the layer's.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    pub(crate) fn build_rings(&mut self, cool_down: Duration) {
        self.rings = self
            .targets
            .iter()
            .map(|t| {
                (!t.keys.is_empty()).then(|| Arc::new(KeyRing::new(t.keys.clone(), cool_down)))
            })
            .collect();
    }

    /// The order to try the targets in: by rank, each rank shuffled by weight.
    pub(crate) fn order(&self, rng: &mut fastrand::Rng) -> Vec<usize> {
        let rank = |i: usize| self.targets[i].rank.unwrap_or(i as u32);
        let mut idx: Vec<usize> = (0..self.targets.len()).collect();
        idx.sort_by_key(|&i| rank(i));
        let mut out = Vec::with_capacity(idx.len());
        let mut start = 0;
        while start < idx.len() {
            let r = rank(idx[start]);
            let end = start + idx[start..].iter().take_while(|&&i| rank(i) == r).count();
            let mut group: Vec<usize> = idx[start..end].to_vec();
            // Weighted sampling without replacement; weight-0 targets go last.
            while !group.is_empty() {
                let total: u64 = group
                    .iter()
                    .map(|&i| u64::from(self.targets[i].weight))
                    .sum();
                let pick = if total == 0 {
                    0
                } else {
                    let mut x = rng.u64(0..total);
                    group
                        .iter()
                        .position(|&i| {
                            let w = u64::from(self.targets[i].weight);
                            if x < w {
                                true
                            } else {
                                x -= w;
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                out.push(group.remove(pick));
            }
            start = end;
        }
        out
    }

    /// The steps for a request whose `model` named this route.
    pub(crate) fn expand(
        &self,
        path: &str,
        query: Option<&str>,
        body: &Bytes,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<Step>, ErrorResponse> {
        let inbound = ProviderPath::parse(path)
            .ok_or_else(|| ErrorResponse::bad_request("the path must name a provider"))?;
        let prefix = match (inbound.account, inbound.gateway) {
            (Some(a), Some(g)) => format!("/v1/{a}/{g}"),
            _ => String::new(),
        };
        let compat = inbound.provider == "compat";
        let fields: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| ErrorResponse::bad_request(format!("invalid JSON body: {e}")))?;
        let mut steps = Vec::with_capacity(self.targets.len());
        for i in self.order(rng) {
            let t = &self.targets[i];
            let mut fields = fields.clone();
            if let Some(model) = &t.model {
                let model = if compat {
                    format!("{}/{model}", t.provider)
                } else {
                    model.clone()
                };
                fields.insert("model".into(), Value::String(model));
            }
            for (k, v) in &t.overrides {
                if v.is_null() {
                    fields.remove(k);
                } else {
                    fields.insert(k.clone(), v.clone());
                }
            }
            let mut p = match (&t.endpoint, compat) {
                (Some(e), _) => format!("{prefix}/{}/{e}", t.provider),
                (None, true) => format!("{prefix}/compat{}", inbound.rest),
                (None, false) => format!("{prefix}/{}{}", t.provider, inbound.rest),
            };
            if let Some(q) = query.filter(|_| t.endpoint.is_none()) {
                p.push('?');
                p.push_str(q);
            }
            let body = serde_json::to_vec(&fields).expect("a JSON map serialises");
            steps.push(Step {
                index: i as u32,
                provider: t.provider.clone(),
                path: p,
                headers: t.headers.clone(),
                body: Bytes::from(body),
                keys: self.rings.get(i).cloned().flatten(),
                strip_credentials: compat || &*t.provider != inbound.provider,
            });
        }
        Ok(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_targets_in_rank_order() {
        let route = Route::new(vec![
            Target::new("openai").with_model("gpt-4o-mini"),
            Target::new("groq").with_model("llama").with_overrides(
                serde_json::from_str(r#"{"temperature":0.5,"seed":null}"#).unwrap(),
            ),
        ])
        .unwrap();
        let body = Bytes::from_static(br#"{"model":"fast","seed":1,"messages":[]}"#);
        let mut rng = fastrand::Rng::with_seed(1);
        let steps = route
            .expand("/openai/chat/completions", Some("x=1"), &body, &mut rng)
            .unwrap();
        assert_eq!(steps[0].path, "/openai/chat/completions?x=1");
        assert!(!steps[0].strip_credentials);
        let v: Value = serde_json::from_slice(&steps[0].body).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(steps[1].path, "/groq/chat/completions?x=1");
        assert!(
            steps[1].strip_credentials,
            "the client's OpenAI key never goes to groq"
        );
        let v: Value = serde_json::from_slice(&steps[1].body).unwrap();
        assert_eq!(
            (v["model"].as_str(), v["temperature"].as_f64()),
            (Some("llama"), Some(0.5))
        );
        assert!(v.get("seed").is_none());
        assert_eq!(steps[1].index, 1);
    }

    #[test]
    fn compat_paths_name_provider_and_model() {
        let route = Route::new(vec![
            Target::new("anthropic").with_model("claude-sonnet-4-5"),
            Target::new("openai").with_model("gpt-4o"),
        ])
        .unwrap();
        let body = Bytes::from_static(br#"{"model":"smart"}"#);
        let steps = route
            .expand(
                "/v1/a/g/compat/chat/completions",
                None,
                &body,
                &mut fastrand::Rng::new(),
            )
            .unwrap();
        assert_eq!(steps[0].path, "/v1/a/g/compat/chat/completions");
        let v: Value = serde_json::from_slice(&steps[0].body).unwrap();
        assert_eq!(v["model"], "anthropic/claude-sonnet-4-5");
    }

    #[test]
    fn weights_share_traffic_within_a_rank() {
        let route = Route::new(vec![
            Target::new("a").with_rank(0).with_weight(3),
            Target::new("b").with_rank(0).with_weight(1),
            Target::new("c").with_rank(1),
        ])
        .unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut first_a = 0;
        for _ in 0..4000 {
            let order = route.order(&mut rng);
            assert_eq!(order[2], 2, "the lower rank is always last");
            if order[0] == 0 {
                first_a += 1;
            }
        }
        // 3:1 → 75 % ± a few.
        assert!((2850..3150).contains(&first_a), "{first_a}");
        // Weight 0: only after the others.
        let route = Route::new(vec![
            Target::new("a").with_rank(0).with_weight(0),
            Target::new("b").with_rank(0).with_weight(1),
        ])
        .unwrap();
        for _ in 0..100 {
            assert_eq!(route.order(&mut rng), vec![1, 0]);
        }
    }

    #[test]
    fn rejects_empty_and_bad_routes() {
        assert!(Route::new(vec![]).is_err());
        assert!(Route::new(vec![Target::new("../x")]).is_err());
        let route = Route::new(vec![Target::new("openai")]).unwrap();
        let e = route
            .expand(
                "/openai/chat/completions",
                None,
                &Bytes::from_static(b"[1]"),
                &mut fastrand::Rng::new(),
            )
            .unwrap_err();
        assert_eq!(e.status(), 400);
    }
}
