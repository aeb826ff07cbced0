//! Reads each call's deadline — the client's `grpc-timeout` header, capped by
//! the server's request timeout — and serves the call inside
//! `db::deadline::scope`, so the transactions it begins are cancelled by the
//! database before the deadline fires (see `db::deadline`). The timeout
//! itself (dropping the future, answering DEADLINE_EXCEEDED) stays tonic's.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

use crate::db::deadline::{self, Deadline};

const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    request_timeout: Duration,
    session_statement_timeout: Duration,
}

impl DeadlineLayer {
    /// `session_statement_timeout`: the `statement_timeout` pooled sessions
    /// start with; only a deadline nearer than that needs one of its own.
    pub fn new(request_timeout: Duration, session_statement_timeout: Duration) -> Self {
        DeadlineLayer { request_timeout, session_statement_timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner, layer: *self }
    }
}

#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    layer: DeadlineLayer,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for DeadlineService<S>
where
    S: Service<http::Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<Deadline, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let timeout = match request.headers().get(GRPC_TIMEOUT_HEADER).and_then(|v| v.to_str().ok()) {
            Some(header) => parse_grpc_timeout(header)
                .map_or(self.layer.request_timeout, |client| client.min(self.layer.request_timeout)),
            None => self.layer.request_timeout,
        };
        let deadline =
            Deadline { at: Instant::now() + timeout, session_statement_timeout: self.layer.session_statement_timeout };
        deadline::scope(deadline, self.inner.call(request))
    }
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n), per the
/// gRPC over HTTP/2 spec. None for anything else (tonic ignores it then too).
fn parse_grpc_timeout(header: &str) -> Option<Duration> {
    let unit = header.chars().last()?;
    let digits = &header[..header.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(value * 3600),
        'M' => Duration::from_secs(value * 60),
        'S' => Duration::from_secs(value),
        'm' => Duration::from_millis(value),
        'u' => Duration::from_micros(value),
        'n' => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("250000u"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for bad in ["", "m", "500", "123456789m", "5x", "-5m", "5 m", "5é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
