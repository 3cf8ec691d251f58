//! The JSON error every tower-ai layer and the gateway answer with.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

/// An error the gateway itself produces, answered as
/// `{"error":{"type":"...","message":"..."}}` with its status.
///
/// The `type` strings follow OpenAI's where one fits (`invalid_request_error`,
/// `rate_limit_exceeded`), so SDKs recognise them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    status: StatusCode,
    kind: &'static str,
    message: Cow<'static, str>,
}

impl ErrorResponse {
    /// An error with any status, type and message.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    /// 400 `invalid_request_error`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a path that names no known provider.
    pub fn unknown_provider(name: &str) -> Self {
        Self::bad_request(format!(
            "unknown provider `{}`",
            name.chars().take(64).collect::<String>()
        ))
    }

    /// 404 for a path the gateway does not serve.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message)
    }

    /// 401 `authentication_error`.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    /// 413 `request_too_large`.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 502 `upstream_error`: the provider could not be reached or failed.
    pub fn bad_gateway(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", message)
    }

    /// 504 `upstream_timeout`.
    pub fn gateway_timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` field.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The `message` field.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body.
    pub fn to_json(&self) -> Bytes {
        let v = serde_json::json!({ "error": { "type": self.kind, "message": self.message } });
        Bytes::from(serde_json::to_vec(&v).expect("a JSON value serialises"))
    }

    /// The whole response, with any body type that can be made from `Bytes`.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut res = Response::new(B::from(self.to_json()));
        *res.status_mut() = self.status;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res.extensions_mut().insert(crate::GatewayGenerated);
        res
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ErrorResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let r: Response<Bytes> = ErrorResponse::unknown_provider("no\"pe").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert!(r.extensions().get::<crate::GatewayGenerated>().is_some());
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["message"], "unknown provider `no\"pe`");
    }
}
