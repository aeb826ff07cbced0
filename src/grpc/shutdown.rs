//! Ending open streams when the server stops.
//!
//! A graceful HTTP/2 shutdown (GOAWAY) waits for every open stream to end,
//! and a `Health/Watch` or `WatchChecks` stream never ends by itself: one
//! load balancer watching health would keep a stopping process alive until
//! it is killed. `EndStreamsLayer` wraps every response body; once its token
//! is cancelled (after in-flight unary calls had their grace period, see
//! `startup::run_until_stopped`), a body that is still open ends with the
//! trailers of `UNAVAILABLE` / `SHUTTING_DOWN`, so the client knows to
//! reconnect elsewhere rather than seeing a reset connection.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::{Layer, Service};

use crate::grpc::status::shutting_down;

#[derive(Debug, Clone)]
pub struct EndStreamsLayer {
    end: CancellationToken,
}

impl EndStreamsLayer {
    /// Open response bodies end once `end` is cancelled.
    pub fn new(end: CancellationToken) -> Self {
        EndStreamsLayer { end }
    }
}

impl<S> Layer<S> for EndStreamsLayer {
    type Service = EndStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndStreams { inner, end: self.end.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct EndStreams<S> {
    inner: S,
    end: CancellationToken,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for EndStreams<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<Endable<ResBody>>;
    type Error = S::Error;
    type Future = EndableFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        EndableFuture { inner: self.inner.call(request), end: Some(self.end.clone()) }
    }
}

pin_project! {
    pub struct EndableFuture<F> {
        #[pin]
        inner: F,
        end: Option<CancellationToken>,
    }
}

impl<F, ResBody, E> Future for EndableFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<Endable<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let end = this.end.take().expect("EndableFuture polled after completion");
        Poll::Ready(Ok(response.map(|body| Endable {
            inner: body,
            end: Box::pin(end.cancelled_owned()),
            ended: false,
        })))
    }
}

pin_project! {
    /// A response body that ends with `SHUTTING_DOWN` trailers once the
    /// server ends its streams.
    pub struct Endable<B> {
        #[pin]
        inner: B,
        end: Pin<Box<WaitForCancellationFutureOwned>>,
        ended: bool,
    }
}

impl<B> Body for Endable<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        // the body's own frames first: a stream that is finishing anyway
        // (or a unary answer) is never cut short while it has data ready
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if frame.is_none() {
                *this.ended = true;
            }
            return Poll::Ready(frame);
        }
        if this.end.as_mut().poll(cx).is_ready() {
            *this.ended = true;
            let mut trailers = http::HeaderMap::new();
            // a status built by status.rs always encodes; if it did not,
            // ending without trailers still ends the stream
            let _ = shutting_down().add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}
