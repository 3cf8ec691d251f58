//! Bodies for unit tests.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

use crate::BoxError;

/// A body that yields the given chunks one frame each, then optionally an error.
pub(crate) struct Chunks {
    chunks: VecDeque<Bytes>,
    error_at_end: bool,
    exact_len: Option<u64>,
}

impl Chunks {
    pub(crate) fn new<I, C>(chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        Self {
            chunks: chunks
                .into_iter()
                .map(|c| Bytes::copy_from_slice(c.as_ref()))
                .collect(),
            error_at_end: false,
            exact_len: None,
        }
    }

    pub(crate) fn then_error(mut self) -> Self {
        self.error_at_end = true;
        self
    }

    /// Reports an exact length, as a body with `content-length` does: `is_end_stream`
    /// turns true right after the last frame.
    pub(crate) fn exact(mut self) -> Self {
        self.exact_len = Some(self.chunks.iter().map(|c| c.len() as u64).sum());
        self
    }
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.chunks.pop_front() {
            Some(c) => Poll::Ready(Some(Ok(Frame::data(c)))),
            None if self.error_at_end => {
                self.error_at_end = false;
                Poll::Ready(Some(Err("connection reset".into())))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.exact_len.is_some() && self.chunks.is_empty() && !self.error_at_end
    }
}
