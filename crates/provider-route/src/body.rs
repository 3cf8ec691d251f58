//! The response body of [`ProviderRoute`](crate::ProviderRoute).

/// Response body of [`ProviderRoute`](crate::ProviderRoute): the inner service's body
/// untouched, or the JSON error the layer answered with itself (see
/// [`LayerBody`](tower_ai_core::LayerBody)).
pub type ResponseBody<B> = tower_ai_core::LayerBody<B>;
