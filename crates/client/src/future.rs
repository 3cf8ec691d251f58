use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_ai_core::BoxError;

use crate::error::{ConnectError, TimeoutError};

pin_project! {
    /// Response future of [`Client`](crate::Client).
    pub struct ResponseFuture {
        #[pin]
        inner: hyper_util::client::legacy::ResponseFuture,
        #[pin]
        sleep: Option<Sleep>,
    }
}

impl ResponseFuture {
    pub(crate) fn new(
        inner: hyper_util::client::legacy::ResponseFuture,
        sleep: Option<Sleep>,
    ) -> Self {
        Self { inner, sleep }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.inner.poll(cx) {
            return Poll::Ready(res.map_err(|e| {
                if e.is_connect() {
                    ConnectError::new(e.into()).into()
                } else {
                    e.into()
                }
            }));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
            return Poll::Ready(Err(TimeoutError::new().into()));
        }
        Poll::Pending
    }
}
