//! The process-wide concurrency limit (`BOOKINGD_CONCURRENCY_LIMIT`) as a
//! tower layer on the server builder: a call that finds every permit taken is
//! answered at once with RESOURCE_EXHAUSTED `OVERLOADED` and a retry hint,
//! never queued. Queueing under overload only turns a burst into deadline
//! failures for everyone; a fast refusal lets the caller back off or try
//! another replica while the admitted calls finish in time.
//!
//! - One semaphore for the whole process, not one per connection: a single
//!   client with many streams and many clients with one each meet the same
//!   bound.
//! - A permit is held until the inner service's response future resolves:
//!   for a unary call that is when its handler has answered; a streaming
//!   call holds it only until its stream starts, so open streams (WatchChecks,
//!   reflection) never use up the limit.
//! - `grpc.health.v1.Health` is exempt: a probe must answer (SERVING) while
//!   the server sheds, or the load balancer would take a busy but healthy
//!   replica out and push its load onto the others.
//!
//! [`LoadShed`] is also the handle shutdown uses to wait until the admitted
//! calls have finished ([`LoadShed::drained`]).
//!
//! [`MessageLimitLayer`] gives a request over `BOOKINGD_MAX_REQUEST_BYTES`
//! the code the gRPC spec names for it, RESOURCE_EXHAUSTED (tonic's codec
//! answers OUT_OF_RANGE), with ErrorInfo `MESSAGE_TOO_LARGE`.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::{grpc::status, telemetry::metrics};

/// Calls under this prefix are never shed.
const EXEMPT_PREFIX: &str = "/grpc.health.v1.Health/";

/// The concurrency limit shared by every connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LoadShed {
    permits: Arc<Semaphore>,
    limit: u32,
}

impl LoadShed {
    pub fn new(limit: usize) -> Self {
        // acquire_many (drained) counts in u32
        let limit = u32::try_from(limit.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        LoadShed { permits: Arc::new(Semaphore::new(limit as usize)), limit }
    }

    /// The layer for `Server::builder().layer(…)`.
    pub fn layer(&self) -> LoadShedLayer {
        LoadShedLayer { shed: self.clone() }
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Calls admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.limit() - self.permits.available_permits()
    }

    /// Resolves once every admitted call has been answered. While it waits,
    /// each permit freed goes to it (the semaphore is fair), so calls that
    /// arrive meanwhile are shed: meant for shutdown, once the server has
    /// stopped taking new work.
    pub async fn drained(&self) {
        // the semaphore is never closed, so this only fails if it were
        if let Ok(all) = self.permits.acquire_many(self.limit).await {
            drop(all);
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadShedLayer {
    shed: LoadShed,
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService { inner, shed: self.shed.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct LoadShedService<S> {
    inner: S,
    shed: LoadShed,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for LoadShedService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<http::Response<Body>, S::Error>>, Admitted<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let permit = if request.uri().path().starts_with(EXEMPT_PREFIX) {
            None
        } else {
            match self.shed.permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    metrics::load_shed("concurrency_limit");
                    // debug, not warn: under overload a line per refusal would
                    // add to the load; the metric counts them
                    tracing::debug!(path = request.uri().path(), limit = self.shed.limit, "call shed");
                    let refusal = status::overloaded(self.shed.limit());
                    return futures::future::Either::Left(std::future::ready(Ok(refusal.into_http())));
                }
            }
        };
        futures::future::Either::Right(Admitted { inner: self.inner.call(request), permit })
    }
}

/// tonic's message for a request over `max_decoding_message_size`
/// (`tonic::codec::decode`); pinned by the drill that sends one.
const DECODE_TOO_LARGE: &str = "Error, decoded message length too large";

/// Answers a request refused by tonic for its size with
/// [`status::message_too_large`]; goes inside the trace layer so spans and
/// metrics see the code the caller gets.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimitLayer {
    max_request_bytes: usize,
}

impl MessageLimitLayer {
    pub fn new(max_request_bytes: usize) -> Self {
        MessageLimitLayer { max_request_bytes }
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimitService { inner, max_request_bytes: self.max_request_bytes }
    }
}

#[derive(Debug, Clone)]
pub struct MessageLimitService<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for MessageLimitService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = SizeChecked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        SizeChecked { inner: self.inner.call(request), max_request_bytes: self.max_request_bytes }
    }
}

pin_project! {
    /// The inner response future, its size refusal recoded.
    pub struct SizeChecked<F> {
        #[pin]
        inner: F,
        max_request_bytes: usize,
    }
}

impl<F, E> Future for SizeChecked<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        // a refusal before the handler ran is a trailers-only response whose
        // status tonic keeps in the extensions
        let too_large = response
            .extensions()
            .get::<tonic::Status>()
            .is_some_and(|s| s.code() == tonic::Code::OutOfRange && s.message().starts_with(DECODE_TOO_LARGE));
        if too_large {
            return Poll::Ready(Ok(status::message_too_large(*this.max_request_bytes).into_http()));
        }
        Poll::Ready(Ok(response))
    }
}

pin_project! {
    /// The inner response future, holding its call's permit until it resolves
    /// (or is dropped: a deadline or a cancelled call frees it too).
    pub struct Admitted<F> {
        #[pin]
        inner: F,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F: Future> Future for Admitted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        this.permit.take();
        Poll::Ready(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drained_waits_for_the_last_admitted_call() {
        let shed = LoadShed::new(2);
        let held = shed.permits.clone().try_acquire_owned().expect("a permit");
        assert_eq!(shed.in_flight(), 1);

        let waiting = tokio::spawn({
            let shed = shed.clone();
            async move { shed.drained().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a call is still in flight");
        drop(held);

        waiting.await.expect("drained");
        assert_eq!(shed.in_flight(), 0, "draining gives the permits back");
    }
}
