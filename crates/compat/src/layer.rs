use std::sync::Arc;

use tower_ai_core::Providers;
use tower_layer::Layer;

use crate::Compat;
use crate::request::Options;

/// The default cap on a buffered request body: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub(crate) struct Shared {
    pub(crate) providers: Providers,
    pub(crate) options: Options,
    pub(crate) max_body_bytes: usize,
}

/// Serves `/compat/...`: one API for every provider. See the [crate docs](crate).
#[derive(Clone)]
pub struct CompatLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CompatLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompatLayer")
            .field("options", &self.shared.options)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Default for CompatLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompatLayer {
    /// A layer over the [built-in providers](Providers::builtin), refusing untranslatable
    /// parameters, buffering request bodies up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                providers: Providers::builtin(),
                options: Options::default(),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        let s = &*self.shared;
        let mut shared = Shared {
            providers: s.providers.clone(),
            options: s.options,
            max_body_bytes: s.max_body_bytes,
        };
        f(&mut shared);
        self.shared = Arc::new(shared);
        self
    }

    /// The providers `model: "provider/model"` may name, and their wire formats.
    pub fn with_providers(self, providers: Providers) -> Self {
        self.edit(|s| s.providers = providers)
    }

    /// Drop parameters the target has no equivalent for, instead of answering 400.
    pub fn with_drop_unsupported(self, drop: bool) -> Self {
        self.edit(|s| s.options.drop_unsupported = drop)
    }

    /// The largest request body read; a larger one is answered 413.
    pub fn with_max_body_bytes(self, limit: usize) -> Self {
        self.edit(|s| s.max_body_bytes = limit)
    }
}

impl<S> Layer<S> for CompatLayer {
    type Service = Compat<S>;

    fn layer(&self, inner: S) -> Compat<S> {
        Compat {
            inner,
            shared: self.shared.clone(),
        }
    }
}
