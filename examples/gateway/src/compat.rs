//! `[compat]`: one API for every provider, `/compat/chat/completions`,
//! `/compat/v1/messages` and `/compat/embeddings` with `model: "provider/model"`.

use serde::Deserialize;
use tower_ai_compat::CompatLayer;

use crate::config::{Config, ConfigError};

/// `[compat]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompatConfig {
    /// Drop request parameters the serving provider has no equivalent for, instead of
    /// answering 400 naming them. Default false.
    pub drop_unsupported: bool,
}

/// The compat layer for the gateway's providers and body limit.
pub(crate) fn layer(config: &Config) -> Result<CompatLayer, ConfigError> {
    Ok(CompatLayer::new()
        .with_providers(config.providers()?)
        .with_drop_unsupported(config.compat.drop_unsupported)
        .with_max_body_bytes(config.server.max_body_bytes))
}
