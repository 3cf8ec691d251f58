use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use tower_ai_core::{InvalidProvider, Providers};
use tower_layer::Layer;

use crate::service::ProviderRoute;

/// Routes `/{provider}/...` to the provider's upstream. See the [crate docs](crate).
///
/// The configuration is shared behind an `Arc`: cloning the layer or the service is cheap.
#[derive(Clone)]
pub struct ProviderRouteLayer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) providers: Providers,
    /// Gateway-held keys, as ready header values (sensitive).
    pub(crate) keys: HashMap<Arc<str>, HeaderValue>,
    pub(crate) account_id: Option<String>,
}

impl fmt::Debug for ProviderRouteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut with_keys: Vec<&str> = self.shared.keys.keys().map(|k| &**k).collect();
        with_keys.sort_unstable();
        f.debug_struct("ProviderRouteLayer")
            .field("providers", &self.shared.providers.iter().count())
            .field("gateway_keys_for", &with_keys)
            .field("account_id", &self.shared.account_id.is_some())
            .finish()
    }
}

impl ProviderRouteLayer {
    /// Routes to `providers`, passing the client's own keys through.
    pub fn new(providers: Providers) -> Self {
        Self {
            shared: Arc::new(Shared {
                providers,
                keys: HashMap::new(),
                account_id: None,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Has the gateway hold `key` for `provider`: the client's credentials are removed
    /// and this key is sent in the provider's own header. Fails for an unknown provider,
    /// a key that cannot be a header value, and a provider whose requests name their
    /// `{resource}` (Azure OpenAI) without an allowlist of resources
    /// ([`Provider::with_allowed_resources`](tower_ai_core::Provider::with_allowed_resources)):
    /// a client could otherwise have the gateway's key sent to a host of its choosing.
    pub fn with_key(mut self, provider: &str, key: &str) -> Result<Self, InvalidProvider> {
        let shared = self.shared_mut();
        let p = shared
            .providers
            .get(provider)
            .ok_or_else(|| InvalidProvider::new(format!("unknown provider `{provider}`")))?;
        if p.resource_segment() && p.allowed_resources().is_none() {
            return Err(InvalidProvider::new(format!(
                "a key for `{provider}` needs the list of resources it may be sent to (resources = [...])"
            )));
        }
        let value = p.auth().header_value(key)?;
        let name = p.name_arc().clone();
        shared.keys.insert(name, value);
        Ok(self)
    }

    /// The Cloudflare account id used for Workers AI when the path does not carry one.
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.shared_mut().account_id = Some(account_id.into());
        self
    }

    /// The providers this layer routes to.
    pub fn providers(&self) -> &Providers {
        &self.shared.providers
    }
}

impl<S> Layer<S> for ProviderRouteLayer {
    type Service = ProviderRoute<S>;

    fn layer(&self, inner: S) -> ProviderRoute<S> {
        ProviderRoute {
            inner,
            shared: self.shared.clone(),
        }
    }
}
