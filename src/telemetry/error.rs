//! Why telemetry could not be set up.

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP {signal} exporter: {source}")]
    Exporter { signal: &'static str, source: opentelemetry_otlp::ExporterBuildError },
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0} is not supported; bookingd exports OTLP over gRPC only (port 4317)")]
    Protocol(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}
