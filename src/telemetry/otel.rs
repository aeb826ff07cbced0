//! OpenTelemetry providers: OTLP/gRPC exporters (on our tonic), the resource
//! from the standard variables, and a last mask over exported span data.

use std::{borrow::Cow, time::Duration};

use opentelemetry::{KeyValue, StringValue, Value, trace::Status};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{PeriodicReader, SdkMeterProvider},
    resource::{EnvResourceDetector, TelemetryResourceDetector},
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter},
};

use crate::telemetry::{OtlpOptions, TelemetryError, mask::mask_personal_data};

/// `service.name` (unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES set
/// one), `service.version`, the SDK's own attributes, then
/// OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME: later wins.
pub(crate) fn resource() -> Resource {
    let mut builder = Resource::builder_empty()
        .with_service_name("bookingd")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_detectors(&[Box::new(TelemetryResourceDetector), Box::new(EnvResourceDetector::new())]);
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME").ok().filter(|name| !name.trim().is_empty()) {
        builder = builder.with_service_name(name);
    }
    builder.build()
}

pub(crate) fn tracer_provider(
    options: &OtlpOptions,
    endpoint: &str,
    resource: Resource,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter { signal: "traces", source })?;
    let mut batch = BatchConfigBuilder::default();
    if let Some(delay) = options.span_export_delay {
        batch = batch.with_scheduled_delay(delay);
    }
    let processor = BatchSpanProcessor::builder(MaskingExporter(exporter)).with_batch_config(batch.build()).build();
    // The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG
    // (default parentbased_always_on), read by the SDK's default config.
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

pub(crate) fn meter_provider(
    options: &OtlpOptions,
    endpoint: &str,
    resource: Resource,
) -> Result<SdkMeterProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|source| TelemetryError::Exporter { signal: "metrics", source })?;
    let mut reader = PeriodicReader::builder(exporter);
    if let Some(interval) = options.metric_export_interval {
        reader = reader.with_interval(interval);
    }
    Ok(SdkMeterProvider::builder().with_reader(reader.build()).with_resource(resource).build())
}

/// Masks emails and phone numbers in everything a span carries as text, in
/// case one slipped into an attribute or event: the export is the last
/// point where it can be stopped. Runs on the exporter's thread.
#[derive(Debug)]
pub(crate) struct MaskingExporter<E>(pub E);

impl<E: SpanExporter> SpanExporter for MaskingExporter<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            mask_span(span);
        }
        self.0.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

pub(crate) fn mask_span(span: &mut SpanData) {
    if let Cow::Owned(name) = mask_personal_data(&span.name) {
        span.name = name.into();
    }
    mask_attributes(&mut span.attributes);
    for event in span.events.events.iter_mut() {
        if let Cow::Owned(name) = mask_personal_data(&event.name) {
            event.name = name.into();
        }
        mask_attributes(&mut event.attributes);
    }
    if let Status::Error { description } = &span.status
        && let Cow::Owned(masked) = mask_personal_data(description)
    {
        span.status = Status::error(masked);
    }
}

fn mask_attributes(attributes: &mut [KeyValue]) {
    for attribute in attributes {
        if let Some(masked) = mask_value(&attribute.value) {
            attribute.value = masked;
        }
    }
}

fn mask_value(value: &Value) -> Option<Value> {
    match value {
        Value::String(text) => match mask_personal_data(text.as_str()) {
            Cow::Owned(masked) => Some(Value::String(masked.into())),
            Cow::Borrowed(_) => None,
        },
        Value::Array(opentelemetry::Array::String(items)) => {
            let masked: Vec<StringValue> =
                items.iter().map(|item| StringValue::from(mask_personal_data(item.as_str()).into_owned())).collect();
            (masked != *items).then(|| Value::Array(masked.into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_attributes_are_masked_and_others_kept() {
        let mut attributes = vec![
            KeyValue::new("contact", "write to ana@example.com"),
            KeyValue::new("phones", Value::Array(vec![StringValue::from("+34600123456")].into())),
            KeyValue::new("seats", 3),
        ];
        mask_attributes(&mut attributes);
        assert_eq!(attributes[0].value, Value::from("write to [email]"));
        assert_eq!(attributes[1].value, Value::Array(vec![StringValue::from("[phone]")].into()));
        assert_eq!(attributes[2].value, Value::I64(3));
    }
}
