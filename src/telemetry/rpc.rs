//! One server span per RPC, as a tower layer on the tonic server builder
//! (`Server::builder().layer(RpcTraceLayer::new())`).
//!
//! The span follows the OpenTelemetry RPC conventions: named
//! `<package.Service>/<Method>`, kind server, `rpc.system = "grpc"`,
//! `rpc.service`, `rpc.method`, `rpc.grpc.status_code`; any code but OK also
//! sets the span status to ERROR (stricter than the conventions, which leave
//! client-caused codes unset on server spans: operators asked to see refusals
//! in red). The caller's W3C `traceparent`/`tracestate` become the parent, and
//! the trace id goes back in the `x-trace-id` response header.
//!
//! The span lives until the response body ends, so a streaming RPC's span
//! covers the whole stream, and the status comes from wherever gRPC put it:
//! the headers of a trailers-only (error) response, or the trailers.
//!
//! `grpc.health.v1.Health` is not traced by default: load balancers probe it
//! every few seconds (thousands of one-span traces a day that say nothing) and
//! `Watch` streams stay open for hours, which would show as hour-long spans
//! and skew the latency histogram.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use opentelemetry::{
    propagation::{Extractor, TextMapPropagator},
    trace::{SpanId, TraceContextExt, TraceId},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;

use crate::telemetry::metrics;

/// Response header carrying the request's trace id (32 lowercase hex digits).
pub const TRACE_ID_HEADER: &str = "x-trace-id";

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// The ids of a request's server span, kept in its span extensions so log
/// lines can name them even when no OpenTelemetry layer is installed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTrace {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// Stores `ids` with `span` for the log formatter.
pub(crate) fn remember_request_trace(span: &Span, ids: RequestTrace) {
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
            && data.extensions().get::<RequestTrace>().is_none()
        {
            data.extensions_mut().insert(ids);
        }
    });
}

#[derive(Debug, Clone, Default)]
pub struct RpcTraceLayer {
    trace_health_checks: bool,
}

impl RpcTraceLayer {
    pub fn new() -> Self {
        RpcTraceLayer::default()
    }

    /// Also trace `grpc.health.v1.Health` calls (off by default, see the module docs).
    pub fn trace_health_checks(mut self, trace: bool) -> Self {
        self.trace_health_checks = trace;
        self
    }
}

impl<S> Layer<S> for RpcTraceLayer {
    type Service = RpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTraceService { inner, trace_health_checks: self.trace_health_checks }
    }
}

#[derive(Debug, Clone)]
pub struct RpcTraceService<S> {
    inner: S,
    trace_health_checks: bool,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcTraceService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        if !self.trace_health_checks && path.starts_with(HEALTH_PREFIX) {
            return TracedFuture { inner: self.inner.call(request), call: None };
        }
        let call = RpcCall::start(path, request.headers());
        let inner = {
            let _entered = call.span.enter();
            self.inner.call(request)
        };
        TracedFuture { inner, call: Some(call) }
    }
}

/// One RPC in flight: its span, and what the latency metric needs at the end.
struct RpcCall {
    span: Span,
    start: Instant,
    /// `package.Service/Method`, split at `slash`
    name: String,
    slash: usize,
    trace_id: TraceId,
    finished: bool,
}

impl RpcCall {
    fn start(path: &str, headers: &http::HeaderMap) -> RpcCall {
        let name = path.strip_prefix('/').unwrap_or(path).to_owned();
        let slash = name.find('/').unwrap_or(name.len());
        let (service, method) = (&name[..slash], name.get(slash + 1..).unwrap_or(""));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = name.as_str(),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
            // the principal's name, recorded by the access layer (grpc::auth)
            enduser.id = Empty,
        );

        let parent = TraceContextPropagator::new()
            .extract_with_context(&opentelemetry::Context::new(), &HeaderExtractor(headers));
        // Fails only without an OpenTelemetry layer; the ids below still hold.
        let _ = span.set_parent(parent.clone());
        let started = span.context();
        let own = started.span().span_context().clone();
        let ids = if own.is_valid() {
            RequestTrace { trace_id: own.trace_id(), span_id: own.span_id() }
        } else {
            let remote = parent.span().span_context().clone();
            let trace_id =
                if remote.is_valid() { remote.trace_id() } else { TraceId::from_bytes(rand::random::<[u8; 16]>()) };
            RequestTrace { trace_id, span_id: SpanId::from_bytes(rand::random::<[u8; 8]>()) }
        };
        remember_request_trace(&span, ids);

        RpcCall { span, start: Instant::now(), name, slash, trace_id: ids.trace_id, finished: false }
    }

    fn finish(&mut self, code: i32) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.span.record("rpc.grpc.status_code", i64::from(code));
        if code != 0 {
            self.span.record("otel.status_code", "ERROR");
            self.span.record("otel.status_description", grpc_code_name(code));
        }
        let service = &self.name[..self.slash];
        let method = self.name.get(self.slash + 1..).unwrap_or("");
        let elapsed = self.start.elapsed();
        metrics::rpc_server_duration(service, method, code, elapsed);
        tracing::debug!(parent: &self.span, code = grpc_code_name(code), elapsed_ms = elapsed.as_secs_f64() * 1e3, "rpc finished");
    }
}

impl Drop for RpcCall {
    fn drop(&mut self) {
        // Dropped before a status was seen: the caller went away or a server
        // timeout cut the request short.
        self.finish(1);
    }
}

pin_project! {
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        call: Option<RpcCall>,
    }
}

impl<F, B, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            match this.inner.poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(polled) => polled,
            }
        };
        let mut call = this.call.take();
        match polled {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                if let Some(call) = call.as_mut() {
                    if let Ok(value) = http::HeaderValue::from_str(&call.trace_id.to_string()) {
                        parts.headers.insert(TRACE_ID_HEADER, value);
                    }
                    // trailers-only response: the status is already here
                    if let Some(code) = grpc_status(&parts.headers) {
                        call.finish(code);
                    }
                }
                Poll::Ready(Ok(http::Response::from_parts(parts, TracedBody { inner: body, call })))
            }
            Err(error) => {
                if let Some(mut call) = call {
                    call.finish(2);
                }
                Poll::Ready(Err(error))
            }
        }
    }
}

pin_project! {
    /// The response body, holding the RPC's span open until it ends.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        call: Option<RpcCall>,
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = {
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            this.inner.poll_frame(cx)
        };
        if let (Poll::Ready(frame), Some(call)) = (&polled, this.call.as_mut()) {
            match frame {
                Some(Ok(frame)) => {
                    if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                        call.finish(code);
                    }
                }
                // a body that fails or ends without a status: UNKNOWN
                Some(Err(_)) | None => call.finish(2),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

fn grpc_code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// Reads W3C trace context from request headers (gRPC metadata).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_read_from_grpc_status() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(grpc_status(&headers), Some(16));
        assert_eq!(grpc_code_name(16), "UNAUTHENTICATED");
    }
}
