//! What goes wrong in translation, and provider errors in the client's dialect.

use std::fmt;

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

use tower_ai_core::WireFormat;

use crate::{Dialect, anthropic, gemini, openai};

/// A request that cannot be translated: answered `400 invalid_request_error` in the
/// client's dialect, naming the parameter when there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranslateError {
    param: Option<String>,
    message: String,
}

impl TranslateError {
    /// A parameter the target provider has no equivalent for.
    pub fn unsupported(param: impl Into<String>, target: &str) -> Self {
        let param = param.into();
        Self {
            message: format!(
                "parameter `{param}` has no equivalent at {target}; remove it, or set `drop_unsupported` to have the gateway drop it"
            ),
            param: Some(param),
        }
    }

    /// A value that is not valid.
    pub fn invalid(param: impl Into<String>, message: impl fmt::Display) -> Self {
        let param = param.into();
        Self {
            message: format!("`{param}`: {message}"),
            param: Some(param),
        }
    }

    /// Any other reason.
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            param: None,
            message: message.into(),
        }
    }

    /// The parameter at fault, if any.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

/// The error `type` a status has in OpenAI's dialect.
fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        408 | 504 => "timeout_error",
        413 => "request_too_large",
        429 => "rate_limit_exceeded",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The error `type` a status has in Anthropic's dialect.
fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An error body in `dialect`'s shape: OpenAI's `{"error":{"message","type","param",
/// "code"}}` or Anthropic's `{"type":"error","error":{"type","message"}}`.
pub fn error_body(
    dialect: Dialect,
    status: StatusCode,
    kind: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Bytes {
    let v = match dialect {
        Dialect::OpenAi => json!({"error": {
            "message": message,
            "type": kind.unwrap_or(openai_type(status)),
            "param": param,
            "code": null,
        }}),
        Dialect::Anthropic => json!({"type": "error", "error": {
            "type": kind.unwrap_or(anthropic_type(status)),
            "message": message,
        }}),
    };
    Bytes::from(serde_json::to_vec(&v).expect("a JSON value serialises"))
}

/// A provider's error body (in the provider's `from` format) in the client's dialect,
/// with the same status. The provider's message is kept; its `type` is kept when the
/// dialects share it, else derived from the status. A body that is not a recognisable
/// error keeps the status with a generic message.
pub fn translate_error(from: WireFormat, to: Dialect, status: StatusCode, body: &[u8]) -> Bytes {
    let parsed = match from {
        WireFormat::Gemini => serde_json::from_slice::<gemini::ErrorBody>(body)
            .ok()
            .map(|e| (None, e.error.message)),
        WireFormat::Anthropic => serde_json::from_slice::<anthropic::ErrorBody>(body)
            .ok()
            .map(|e| (Some(e.error.kind), e.error.message)),
        _ => serde_json::from_slice::<openai::ErrorBody>(body)
            .ok()
            .map(|e| (e.error.kind, e.error.message)),
    };
    let (kind, message): (Option<String>, String) =
        parsed.unwrap_or_else(|| (None, fallback_message(status, body)));
    // A type is only kept when the target dialect knows it.
    let kind = kind.filter(|k| match to {
        Dialect::OpenAi => k == openai_type(status) || k == "invalid_request_error",
        Dialect::Anthropic => k == anthropic_type(status) || k == "invalid_request_error",
    });
    error_body(to, status, kind.as_deref(), &message, None)
}

fn fallback_message(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
    let text = text.trim();
    if text.is_empty() {
        format!("the provider answered {}", status.as_u16())
    } else {
        format!("the provider answered {}: {text}", status.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_to_openai_error() {
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
        let out = translate_error(
            WireFormat::Anthropic,
            Dialect::OpenAi,
            StatusCode::TOO_MANY_REQUESTS,
            body,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["message"], "slow down");
        assert_eq!(v["error"]["type"], "rate_limit_exceeded");
    }

    #[test]
    fn gemini_and_openai_to_anthropic_error() {
        let body = br#"{"error":{"code":400,"message":"bad arg","status":"INVALID_ARGUMENT"}}"#;
        let out = translate_error(
            WireFormat::Gemini,
            Dialect::Anthropic,
            StatusCode::BAD_REQUEST,
            body,
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "bad arg");
        let out = translate_error(
            WireFormat::OpenAi,
            Dialect::Anthropic,
            StatusCode::SERVICE_UNAVAILABLE,
            b"upstream down",
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(
            v["error"]["message"],
            "the provider answered 503: upstream down"
        );
    }
}
