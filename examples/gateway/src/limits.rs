//! The request-head limit: headers over `server.max_header_bytes` get a JSON 431.
//!
//! hyper has its own, larger, hard limits on a request head (its read buffer, about
//! 400 KiB, and 100 headers); a head over those is refused by hyper itself with a bare
//! 431 before any of the gateway's code runs, and no hyper setting changes that answer.
//! This limit sits below hyper's, so that every head a client can reasonably send over
//! the limit gets the gateway's JSON error instead.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::StatusCode;
use tower_ai_core::ErrorResponse;

/// The size of a request's headers as sent on HTTP/1.1: `name: value\r\n` each.
fn header_bytes(req: &Request) -> usize {
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Refuses a request whose headers are over `limit` bytes with a JSON 431.
pub(crate) async fn check_headers(limit: usize, req: Request, next: Next) -> Response {
    if header_bytes(&req) > limit {
        return ErrorResponse::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_header_fields_too_large",
            format!("request headers are larger than the limit of {limit} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}
