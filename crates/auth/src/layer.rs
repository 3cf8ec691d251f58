use std::sync::Arc;

use tower_layer::Layer;

use crate::key::KeyStore;
use crate::service::Auth;

/// Lets in only requests with a gateway token. See the [crate docs](crate).
///
/// The store is shared behind an `Arc`: cloning the layer or the service is cheap.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: KeyStore,
    pub(crate) max_body_bytes: usize,
}

impl AuthLayer {
    /// Lets in the virtual keys of `store`; reads at most 32 MiB of a body when a key's
    /// models must be checked.
    pub fn new(store: KeyStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                max_body_bytes: 32 * 1024 * 1024,
            }),
        }
    }

    /// The largest body read to check a key's models (larger: 413).
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        if let Some(s) = Arc::get_mut(&mut self.shared) {
            s.max_body_bytes = max;
        } else {
            self.shared = Arc::new(Shared {
                store: self.shared.store.clone(),
                max_body_bytes: max,
            });
        }
        self
    }

    /// The store.
    pub fn store(&self) -> &KeyStore {
        &self.shared.store
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}
