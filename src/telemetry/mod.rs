//! Logs, traces and metrics.
//!
//! - Logs: the `tracing-subscriber` text format (default) or JSON lines, with
//!   `trace_id`/`span_id` on every line inside a request and emails/phone
//!   numbers masked ([`logs`], [`mask`]). `RUST_LOG` filters them (default
//!   `info`).
//! - Traces: with an OTLP endpoint configured, the `tracing` spans `RUST_LOG`
//!   enables (INFO and above by default) go to OpenTelemetry via `tracing-opentelemetry` and are exported
//!   over OTLP/gRPC in batches. One server span per RPC comes from
//!   [`rpc::RpcTraceLayer`]; domains add children with `#[instrument]`.
//! - Metrics: [`metrics`] (the API the domains call), exported over OTLP.
//!
//! Configuration is the standard OpenTelemetry environment:
//!
//! | variable | effect |
//! |---|---|
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | collector for traces and metrics, e.g. `http://localhost:4317` (gRPC) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT` | per-signal endpoint, wins over the above |
//! | `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER` | `none` turns one signal off |
//! | `OTEL_SDK_DISABLED` | `true`: no export at all |
//! | `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES` | resource (default `service.name=bookingd`) |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | sampler (default `parentbased_always_on`) |
//! | `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `..._HEADERS` | batching, interval, timeout, headers |
//!
//! No endpoint: no exporter, no OpenTelemetry layer, no instruments — the
//! cost is the log layer alone. The W3C trace-context propagator is always
//! registered, and the RPC layer still reads `traceparent` so log lines and
//! `x-trace-id` carry the caller's trace id.
//!
//! [`init`] must run inside a Tokio runtime (the gRPC exporter's channel is
//! spawned on it) and its [`TelemetryGuard`] kept until the server has
//! stopped: dropping it flushes what is buffered and shuts the exporters down.

mod error;
pub mod logs;
pub mod mask;
pub mod metrics;
mod otel;
pub mod rpc;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{metrics::SdkMeterProvider, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    fmt::{self, format::JsonFields, writer::BoxMakeWriter},
    layer::Layered,
    prelude::*,
};

type Filtered = Layered<EnvFilter, Registry>;

pub use error::TelemetryError;
pub use rpc::{RpcTraceLayer, TRACE_ID_HEADER};

use crate::config::LogFormat;

/// Where and how to export. [`OtlpOptions::from_env`] reads the standard
/// variables; tests and benchmarks build one directly.
#[derive(Debug, Clone, Default)]
pub struct OtlpOptions {
    /// gRPC endpoint for spans; `None`: no trace export, no OTel layer.
    pub traces_endpoint: Option<String>,
    /// gRPC endpoint for metrics; `None`: no metrics.
    pub metrics_endpoint: Option<String>,
    /// Batch delay of the span processor (default: OTEL_BSP_SCHEDULE_DELAY or 5 s).
    pub span_export_delay: Option<Duration>,
    /// Metric export interval (default: OTEL_METRIC_EXPORT_INTERVAL or 60 s).
    pub metric_export_interval: Option<Duration>,
}

impl OtlpOptions {
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let set = |name: &str| var(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
            return Ok(OtlpOptions::default());
        }
        for name in
            ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"]
        {
            if let Some(protocol) = set(name).filter(|protocol| protocol != "grpc") {
                return Err(TelemetryError::Protocol(protocol));
            }
        }
        let endpoint = |signal: &str| {
            let exporter = set(&format!("OTEL_{signal}_EXPORTER"));
            if exporter.is_some_and(|exporter| exporter.eq_ignore_ascii_case("none")) {
                return None;
            }
            set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        Ok(OtlpOptions {
            traces_endpoint: endpoint("TRACES"),
            metrics_endpoint: endpoint("METRICS"),
            span_export_delay: None,
            metric_export_interval: None,
        })
    }
}

/// Everything [`init_with`] needs.
pub struct TelemetryOptions {
    pub log_format: LogFormat,
    /// Log filter directives; `None`: `RUST_LOG`, else `info`.
    pub log_filter: Option<String>,
    /// Where log lines go; `None`: stdout.
    pub log_writer: Option<BoxMakeWriter>,
    pub otlp: OtlpOptions,
}

/// Keeps the exporters alive; dropping it flushes and shuts them down.
#[must_use = "dropping the guard shuts telemetry export down"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Exports everything buffered now (blocks until the exporters answer).
    pub fn force_flush(&self) {
        if let Some(provider) = &self.tracer_provider {
            let _ = provider.force_flush();
        }
        if let Some(provider) = &self.meter_provider {
            let _ = provider.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("bookingd: flushing spans at shutdown failed: {error}");
        }
        if let Some(provider) = self.meter_provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("bookingd: flushing metrics at shutdown failed: {error}");
        }
    }
}

/// Span of one database call, by the OpenTelemetry database convention
/// (`db.query`, the operation's name, never parameter values). Every domain
/// wraps its queries in it.
pub fn db_span(operation: &'static str) -> tracing::Span {
    tracing::info_span!("db.query", db.system = "postgresql", db.operation.name = operation)
}

/// The server's setup: logs in `log_format` to stdout, export as the
/// `OTEL_*` environment says.
pub fn init(log_format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    init_with(TelemetryOptions { log_format, log_filter: None, log_writer: None, otlp: OtlpOptions::from_env()? })
}

/// Installs the global subscriber, propagator and providers. Once per
/// process: a second call fails with [`TelemetryError::AlreadyInstalled`].
pub fn init_with(options: TelemetryOptions) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let resource = otel::resource();
    let mut guard = TelemetryGuard::default();
    if let Some(endpoint) = &options.otlp.traces_endpoint {
        guard.tracer_provider = Some(otel::tracer_provider(&options.otlp, endpoint, resource.clone())?);
    }
    if let Some(endpoint) = &options.otlp.metrics_endpoint {
        guard.meter_provider = Some(otel::meter_provider(&options.otlp, endpoint, resource)?);
    }

    let filter = match options.log_filter {
        Some(directives) => EnvFilter::new(directives),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let writer = options.log_writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stdout));
    let log_layer: Box<dyn Layer<Filtered> + Send + Sync> = match options.log_format {
        LogFormat::Text => {
            fmt::layer().with_ansi(false).event_format(logs::LineFormat::text()).with_writer(writer).boxed()
        }
        LogFormat::Json => fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(logs::LineFormat::json())
            .with_writer(writer)
            .boxed(),
    };
    let trace_layer = guard.tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("bookingd"))
            // Each of these costs on every poll of an instrumented future
            // (attach/detach a context, two clock reads) or on every span
            // (a thread-name string); the tracing overhead benchmark
            // showed them. Log lines look the OTel context up themselves.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            .with_threads(false)
            // span names and db.operation.name say where a span comes
            // from; four more strings per span buy little
            .with_location(false)
            .with_target(false)
    });
    // One global filter for logs and spans alike. Per-layer filters would let
    // RUST_LOG=warn keep exporting INFO spans, but tracing-subscriber 0.3.23
    // leaks per-layer filter state across callsites (a span right after a
    // fully filtered-out `enabled!` check is created disabled for every
    // layer), which silently lost server spans in our tests.
    tracing_subscriber::registry().with(filter).with(log_layer).with(trace_layer).try_init()?;

    if let Some(provider) = &guard.tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    if let Some(provider) = &guard.meter_provider {
        opentelemetry::global::set_meter_provider(provider.clone());
        metrics::install(&opentelemetry::metrics::MeterProvider::meter(provider, "bookingd"));
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(vars: &[(&str, &str)]) -> Result<OtlpOptions, TelemetryError> {
        OtlpOptions::from_lookup(|name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string()))
    }

    #[test]
    fn no_endpoint_means_no_export() {
        let options = options(&[("OTEL_SERVICE_NAME", "x")]).expect("valid");
        assert!(options.traces_endpoint.is_none() && options.metrics_endpoint.is_none());
    }

    #[test]
    fn signal_endpoints_win_over_the_shared_one_and_none_turns_a_signal_off() {
        let options = options(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ])
        .expect("valid");
        assert_eq!(options.traces_endpoint.as_deref(), Some("http://traces:4317"));
        assert_eq!(options.metrics_endpoint, None);
    }

    #[test]
    fn the_sdk_can_be_disabled_and_http_protocols_are_refused() {
        let disabled =
            options(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "true")]).expect("valid");
        assert!(disabled.traces_endpoint.is_none());
        assert!(matches!(
            options(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]),
            Err(TelemetryError::Protocol(_))
        ));
    }
}
