//! The response body of [`Auth`](crate::Auth).

/// Response body of [`Auth`](crate::Auth): the inner service's body untouched, or the
/// JSON refusal the layer answered with itself (see
/// [`LayerBody`](tower_ai_core::LayerBody)).
pub type ResponseBody<B> = tower_ai_core::LayerBody<B>;
