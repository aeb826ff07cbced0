//! A real OTLP/gRPC receiver for the tests (the published OpenTelemetry
//! protos, served by tonic), and the process-wide telemetry it receives.
//!
//! The tracing subscriber and the OpenTelemetry providers are global, so they
//! are installed once per test process, on a runtime of their own that
//! outlives every test; tests tell their data apart by trace id.

use std::{
    io,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use bookingd::{
    config::LogFormat,
    telemetry::{self, OtlpOptions, TelemetryGuard, TelemetryOptions},
};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::Metric,
    trace::v1::Span,
};
use tokio_stream::wrappers::TcpListenerStream;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// A received span with its resource's attributes.
type ResourceSpan = (Vec<KeyValue>, Span);

/// What the collector has received so far.
#[derive(Clone, Default)]
pub struct Received {
    /// Every span with its resource's attributes.
    spans: Arc<Mutex<Vec<ResourceSpan>>>,
    metrics: Arc<Mutex<Vec<Metric>>>,
}

impl Received {
    pub fn spans_of_trace(&self, trace_id: &[u8]) -> Vec<Span> {
        let spans = self.spans.lock().expect("spans lock");
        spans.iter().filter(|(_, span)| span.trace_id == trace_id).map(|(_, span)| span.clone()).collect()
    }

    pub fn resource_of_trace(&self, trace_id: &[u8]) -> Option<Vec<KeyValue>> {
        let spans = self.spans.lock().expect("spans lock");
        spans.iter().find(|(_, span)| span.trace_id == trace_id).map(|(resource, _)| resource.clone())
    }

    pub fn metrics_named(&self, name: &str) -> Vec<Metric> {
        self.metrics.lock().expect("metrics lock").iter().filter(|m| m.name == name).cloned().collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans lock");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| r.attributes).unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                spans.extend(scope_spans.spans.into_iter().map(|span| (resource.clone(), span)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().expect("metrics lock");
        for resource_metrics in request.into_inner().resource_metrics {
            for scope_metrics in resource_metrics.scope_metrics {
                metrics.extend(scope_metrics.metrics);
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Log lines written by the global subscriber (JSON lines).
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }

    /// The captured lines parsed as JSON objects.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct Telemetry {
    pub received: Received,
    pub logs: CapturedLogs,
    _guard: TelemetryGuard,
}

/// Installs the process's telemetry (once): JSON logs into [`CapturedLogs`],
/// spans and metrics to an in-process OTLP collector, exported every 50 ms
/// (spans) and 200 ms (metrics).
pub fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("otlp-collector".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("collector runtime");
                runtime.block_on(async move {
                    let received = Received::default();
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
                    let endpoint = format!("http://{}", listener.local_addr().expect("collector address"));
                    tokio::spawn(
                        tonic::transport::Server::builder()
                            .add_service(TraceServiceServer::new(received.clone()))
                            .add_service(MetricsServiceServer::new(received.clone()))
                            .serve_with_incoming(TcpListenerStream::new(listener)),
                    );
                    // inside this runtime: the exporters' channels live here
                    let logs = CapturedLogs::default();
                    let writer = logs.clone();
                    let guard = telemetry::init_with(TelemetryOptions {
                        log_format: LogFormat::Json,
                        log_filter: Some("info,bookingd=debug".to_owned()),
                        log_writer: Some(BoxMakeWriter::new(move || writer.clone())),
                        otlp: OtlpOptions {
                            traces_endpoint: Some(endpoint.clone()),
                            metrics_endpoint: Some(endpoint),
                            span_export_delay: Some(Duration::from_millis(50)),
                            metric_export_interval: Some(Duration::from_millis(200)),
                        },
                    })
                    .expect("telemetry installs once per test process");
                    let _ = sender.send(Telemetry { received, logs, _guard: guard });
                    std::future::pending::<()>().await;
                });
            })
            .expect("spawn the collector thread");
        receiver.recv().expect("collector started")
    })
}

pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

pub fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attribute(attributes, key) {
        Some(any_value::Value::StringValue(value)) => Some(value),
        _ => None,
    }
}

pub fn int_attribute(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key) {
        Some(any_value::Value::IntValue(value)) => Some(*value),
        _ => None,
    }
}

pub fn bool_attribute(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attribute(attributes, key) {
        Some(any_value::Value::BoolValue(value)) => Some(*value),
        _ => None,
    }
}

/// Every string anywhere in a span: name, attributes, events, status.
pub fn all_text(span: &Span) -> String {
    fn push(out: &mut String, value: &Option<AnyValue>) {
        if let Some(AnyValue { value: Some(value) }) = value {
            out.push_str(&format!("{value:?} "));
        }
    }
    let mut out = format!("{} ", span.name);
    for kv in &span.attributes {
        out.push_str(&kv.key);
        push(&mut out, &kv.value);
    }
    for event in &span.events {
        out.push_str(&event.name);
        for kv in &event.attributes {
            push(&mut out, &kv.value);
        }
    }
    if let Some(status) = &span.status {
        out.push_str(&status.message);
    }
    out
}
