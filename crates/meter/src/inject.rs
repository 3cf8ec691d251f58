//! Asking an OpenAI-format stream for its usage when the client did not, and giving the
//! client back exactly the stream it asked for.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use memchr::memmem;
use pin_project_lite::pin_project;
use serde::Deserialize;

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    stream_options: Option<serde_json::Value>,
}

/// The request body with `stream_options.include_usage: true`, or `None` when the client
/// already asked for usage (or the body is not a JSON object).
///
/// Without `stream_options` the field is spliced in after the opening brace: the client's
/// bytes are otherwise kept as they were. With `stream_options` but no usage, that object
/// is rewritten (the rare path).
pub(crate) fn include_usage(body: &[u8]) -> Option<Bytes> {
    let peek: Peek = serde_json::from_slice(body).ok()?;
    match peek.stream_options {
        None | Some(serde_json::Value::Null) => {
            let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
            if body.get(start) != Some(&b'{') {
                return None;
            }
            let rest = &body[start + 1..];
            let empty = rest.iter().all(|b| b.is_ascii_whitespace() || *b == b'}');
            let field: &[u8] = br#""stream_options":{"include_usage":true}"#;
            let mut out = Vec::with_capacity(body.len() + field.len() + 1);
            out.extend_from_slice(&body[..=start]);
            out.extend_from_slice(field);
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(rest);
            Some(Bytes::from(out))
        }
        Some(serde_json::Value::Object(o)) => {
            if o.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
                return None;
            }
            let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
            v.get_mut("stream_options")?
                .as_object_mut()?
                .insert("include_usage".into(), serde_json::Value::Bool(true));
            serde_json::to_vec(&v).ok().map(Bytes::from)
        }
        Some(_) => None,
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
        // Other options kept.
        let b = include_usage(br#"{"stream_options":{"include_obfuscation":false}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["include_obfuscation"], false);
        assert!(include_usage(b"not json").is_none());
        assert!(include_usage(b"[1]").is_none());
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
