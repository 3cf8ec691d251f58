//! Asking an OpenAI-format stream for its usage when the client did not, and giving the
//! client back exactly the stream it asked for.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use memchr::memmem;
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The top-level `stream_options` of a request body, as it is written.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default, deserialize_with = "raw")]
    stream_options: Option<&'a RawValue>,
}

/// The `include_usage` of a `stream_options` object, as it is written.
#[derive(Deserialize)]
struct Options<'a> {
    #[serde(borrow, default, deserialize_with = "raw")]
    include_usage: Option<&'a RawValue>,
}

/// A present field as written, `null` included (a plain `Option` would make `null` absent).
fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset(whole: &[u8], part: &str) -> usize {
    let at = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    debug_assert!(at + part.len() <= whole.len(), "a slice of the body");
    at
}

/// `body` with `with` in place of `body[at..at + len]`.
fn splice(body: &[u8], at: usize, len: usize, with: &[&[u8]]) -> Bytes {
    let extra: usize = with.iter().map(|w| w.len()).sum();
    let mut out = Vec::with_capacity(body.len() - len + extra);
    out.extend_from_slice(&body[..at]);
    for w in with {
        out.extend_from_slice(w);
    }
    out.extend_from_slice(&body[at + len..]);
    Bytes::from(out)
}

/// The request body with `stream_options.include_usage: true`, or `None` when the client
/// already asked for usage (or the body is not a JSON object, or its `stream_options` is
/// neither an object nor `null`).
///
/// Every byte of the client's body is kept but the few this adds or replaces:
/// - no `stream_options`: `"stream_options":{"include_usage":true}` after the opening brace;
/// - `"stream_options":null`: the `null` becomes `{"include_usage":true}`;
/// - a `stream_options` object without `include_usage`: `"include_usage":true` after its
///   opening brace;
/// - `"include_usage":false` (or any value but `true`): that value becomes `true`.
pub(crate) fn include_usage(body: &[u8]) -> Option<Bytes> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    let peek: Peek<'_> = serde_json::from_slice(body).ok()?;
    const OPTIONS: &[u8] = br#"{"include_usage":true}"#;
    let Some(options) = peek.stream_options else {
        let rest = &body[start + 1..];
        let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
        let comma: &[u8] = if empty { b"" } else { b"," };
        return Some(splice(
            body,
            start + 1,
            0,
            &[br#""stream_options":"#, OPTIONS, comma],
        ));
    };
    let text = options.get().trim();
    let at = offset(body, text);
    if text == "null" {
        return Some(splice(body, at, text.len(), &[OPTIONS]));
    }
    if !text.starts_with('{') {
        return None;
    }
    // Duplicate keys, or anything odd: leave the body alone (the usage is estimated).
    let inner: Options<'_> = serde_json::from_str(text).ok()?;
    match inner.include_usage {
        Some(v) if v.get().trim() == "true" => None,
        Some(v) => {
            let v = v.get().trim();
            Some(splice(body, offset(body, v), v.len(), &[b"true"]))
        }
        None => {
            let members = text[1..text.len() - 1].trim();
            let comma: &[u8] = if members.is_empty() { b"" } else { b"," };
            Some(splice(
                body,
                at + 1,
                0,
                &[br#""include_usage":true"#, comma],
            ))
        }
    }
}

pin_project! {
    /// Removes what `include_usage` added to an OpenAI chat stream: the usage-only chunk
    /// (`"choices":[]` with a usage object) and the `"usage":null` member of every other
    /// chunk. Events pass on as soon as they are complete; a frame holding whole events
    /// (the usual case) goes out at once.
    pub(crate) struct StripUsage<B> {
        #[pin]
        inner: B,
        carry: BytesMut,
        done: bool,
    }
}

impl<B> StripUsage<B> {
    pub(crate) fn new(inner: B) -> Self {
        Self {
            inner,
            carry: BytesMut::new(),
            done: false,
        }
    }
}

/// The end of the first complete event in `buf` (after its blank line).
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = memmem::find(buf, b"\n\n").map(|i| i + 2);
    let crlf = memmem::find(buf, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn rewrite_event(event: &[u8], out: &mut Vec<u8>) {
    if memmem::find(event, b"\"choices\":[]").is_some()
        && memmem::find(event, b"\"usage\":{").is_some()
    {
        return;
    }
    let mut rest = event;
    while let Some(i) = memmem::find(rest, b"\"usage\":null") {
        let end = i + b"\"usage\":null".len();
        if i > 0 && rest[i - 1] == b',' {
            out.extend_from_slice(&rest[..i - 1]);
            rest = &rest[end..];
        } else if rest.get(end) == Some(&b',') {
            out.extend_from_slice(&rest[..i]);
            rest = &rest[end + 1..];
        } else {
            out.extend_from_slice(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out.extend_from_slice(rest);
}

impl<B> http_body::Body for StripUsage<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(d) => d,
                        Err(frame) => return Poll::Ready(Some(Ok(frame))),
                    };
                    this.carry.extend_from_slice(&data);
                    let mut out = Vec::with_capacity(this.carry.len());
                    while let Some(end) = event_end(this.carry) {
                        let event = this.carry.split_to(end);
                        rewrite_event(&event, &mut out);
                    }
                    if this.inner.is_end_stream() {
                        out.extend_from_slice(&this.carry.split());
                        *this.done = true;
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    *this.done = true;
                    if this.carry.is_empty() {
                        return Poll::Ready(None);
                    }
                    let rest = this.carry.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.carry.is_empty() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // The length changes: only a lower bound of zero is true.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_include_usage() {
        let b = include_usage(br#"{"model":"m","stream":true}"#).unwrap();
        assert_eq!(
            &b[..],
            br#"{"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let b = include_usage(b"  {}").unwrap();
        assert_eq!(&b[..], br#"  {"stream_options":{"include_usage":true}}"#);
        // Already asked for: untouched.
        assert!(include_usage(br#"{"stream_options":{"include_usage":true}}"#).is_none());
        assert!(include_usage(br#"{"stream_options": { "include_usage" : true } }"#).is_none());
        assert!(include_usage(b"not json").is_none());
        assert!(include_usage(b"[1]").is_none());
        assert!(include_usage(br#"[{"stream_options":null}]"#).is_none());
        // Not an object: left to the provider to refuse.
        assert!(include_usage(br#"{"stream_options":true}"#).is_none());
    }

    #[test]
    fn a_null_stream_options_is_replaced_in_place() {
        let body = br#"{"model":"m","stream_options":null,"stream":true}"#;
        let b = include_usage(body).unwrap();
        assert_eq!(
            &b[..],
            br#"{"model":"m","stream_options":{"include_usage":true},"stream":true}"#
        );
        // One `stream_options`, not two: a strict parser sees no duplicate key.
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Strict {
            stream_options: serde_json::Value,
        }
        serde_json::from_slice::<Strict>(&b).expect("no duplicate key");
        let b = include_usage(b"{\"stream_options\" :  null }").unwrap();
        assert_eq!(&b[..], b"{\"stream_options\" :  {\"include_usage\":true} }");
    }

    #[test]
    fn an_options_object_keeps_every_other_byte() {
        // Key order, spacing and number spelling all as the client wrote them.
        let body = br#"{"z":1.0e2, "stream_options": {"include_obfuscation":false}, "a":[ 1 ]}"#;
        let b = include_usage(body).unwrap();
        assert_eq!(
            &b[..],
            &br#"{"z":1.0e2, "stream_options": {"include_usage":true,"include_obfuscation":false}, "a":[ 1 ]}"#[..]
        );
        let b = include_usage(br#"{"stream_options":{ },"model":"m"}"#).unwrap();
        assert_eq!(
            &b[..],
            br#"{"stream_options":{"include_usage":true },"model":"m"}"#
        );
    }

    #[test]
    fn include_usage_false_is_replaced_in_place() {
        let body = br#"{"b":2,"stream_options":{"x":1,"include_usage": false,"y":2},"a":1}"#;
        let b = include_usage(body).unwrap();
        assert_eq!(
            &b[..],
            br#"{"b":2,"stream_options":{"x":1,"include_usage": true,"y":2},"a":1}"#
        );
        let b = include_usage(br#"{"stream_options":{"include_usage":null}}"#).unwrap();
        assert_eq!(&b[..], br#"{"stream_options":{"include_usage":true}}"#);
        // A nested `include_usage` elsewhere is not the one that counts.
        let b = include_usage(br#"{"meta":{"include_usage":false},"stream_options":{}}"#).unwrap();
        assert_eq!(
            &b[..],
            br#"{"meta":{"include_usage":false},"stream_options":{"include_usage":true}}"#
        );
    }

    #[test]
    fn rewrites_events() {
        let mut out = Vec::new();
        rewrite_event(
            b"data: {\"choices\":[{\"delta\":{}}],\"id\":\"x\",\"usage\":null}\n\n",
            &mut out,
        );
        assert_eq!(
            out,
            b"data: {\"choices\":[{\"delta\":{}}],\"id\":\"x\"}\n\n"
        );
        out.clear();
        rewrite_event(b"data: {\"usage\":null,\"id\":\"x\"}\n\n", &mut out);
        assert_eq!(out, b"data: {\"id\":\"x\"}\n\n");
        out.clear();
        rewrite_event(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
            &mut out,
        );
        assert!(out.is_empty());
        out.clear();
        rewrite_event(b"data: [DONE]\n\n", &mut out);
        assert_eq!(out, b"data: [DONE]\n\n");
    }
}
