//! [`ResolvedRoute`]: where provider routing sent a request.

use std::sync::Arc;

/// Put in request extensions by the provider route layer once it has rewritten the
/// request for its upstream, so layers below it know where the request goes after its
/// URI stopped saying `/{provider}/...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRoute {
    /// The provider's name.
    pub provider: Arc<str>,
    /// The provider-relative path the client asked for, e.g. `/chat/completions`.
    pub path: Arc<str>,
    /// Whether the gateway put its own provider key on the request (the client's
    /// credential, if any, was removed).
    pub gateway_key: bool,
}
