//! Log lines: the standard `tracing-subscriber` text or JSON format, plus the
//! trace and span id of the request, with personal data masked.
//!
//! Ids come from the innermost span's OpenTelemetry context when the OTel
//! layer is installed (so a line names the span Jaeger shows it under), else
//! from the ids the RPC layer gave the request's server span.

use std::fmt::{self, Write as _};

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{Format, Full, Json, Writer},
    },
    registry::LookupSpan,
};

use crate::telemetry::{mask::mask_personal_data, rpc::RequestTrace};

/// Wraps a standard event format: formats into a buffer, appends the trace
/// ids, masks personal data, then writes the line.
pub struct LineFormat<F> {
    inner: F,
    json: bool,
}

impl LineFormat<Format<Full>> {
    pub fn text() -> Self {
        LineFormat { inner: Format::default().with_ansi(false), json: false }
    }
}

impl LineFormat<Format<Json>> {
    pub fn json() -> Self {
        LineFormat { inner: Format::default().json().with_current_span(true).with_span_list(true), json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for LineFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n').len();
        line.truncate(body);
        if let Some((trace_id, span_id)) = trace_ids(ctx) {
            if self.json {
                if line.ends_with('}') {
                    line.pop();
                    write!(line, r#","trace_id":"{trace_id}","span_id":"{span_id}"}}"#)?;
                }
            } else {
                write!(line, " trace_id={trace_id} span_id={span_id}")?;
            }
        }
        writer.write_str(&mask_personal_data(&line))?;
        writer.write_char('\n')
    }
}

fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, SpanId)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let scope = ctx.event_scope()?;
    // only log lines pay for this lookup, not every span entry (the OTel
    // layer runs without context activation, see `init_with`)
    let dispatch = tracing::dispatcher::get_default(|dispatch| dispatch.clone());
    let mut request = None;
    for span in scope {
        if let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch) {
            let otel_span = cx.span();
            let context = otel_span.span_context();
            if context.is_valid() {
                return Some((context.trace_id(), context.span_id()));
            }
        }
        if let Some(ids) = span.extensions().get::<RequestTrace>() {
            request = Some((ids.trace_id, ids.span_id));
            break;
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanId, TraceId};
    use tracing_subscriber::{fmt, fmt::format::JsonFields, prelude::*};

    use super::*;
    use crate::telemetry::rpc::remember_request_trace;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Capture {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("capture").clone()).expect("utf-8 log")
        }
    }

    const IDS: RequestTrace =
        RequestTrace { trace_id: TraceId::from_bytes([0x4b; 16]), span_id: SpanId::from_bytes([0x0f; 8]) };

    fn log_inside_a_request() {
        let span = tracing::info_span!("grpc.server", rpc.method = "CreateBooking");
        remember_request_trace(&span, IDS);
        let _entered = span.enter();
        tracing::info!(contact = "ana@example.com", "hold placed for +34 600 123 456");
    }

    #[test]
    fn text_lines_end_with_the_request_ids_and_mask_personal_data() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry()
            .with(fmt::layer().with_ansi(false).event_format(LineFormat::text()).with_writer(move || writer.clone()));

        tracing::subscriber::with_default(subscriber, log_inside_a_request);

        let line = capture.text();
        assert!(line.contains(r#"grpc.server{rpc.method="CreateBooking"}"#), "{line}");
        assert!(line.contains("hold placed for [phone] contact=\"[email]\""), "{line}");
        assert!(line.ends_with(" trace_id=4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b span_id=0f0f0f0f0f0f0f0f\n"), "{line}");
    }

    #[test]
    fn json_lines_carry_the_request_ids_as_fields() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(LineFormat::json())
                .with_writer(move || writer.clone()),
        );

        tracing::subscriber::with_default(subscriber, log_inside_a_request);

        let line: serde_json::Value = serde_json::from_str(&capture.text()).expect("one JSON line");
        assert_eq!(line["trace_id"], "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b");
        assert_eq!(line["span_id"], "0f0f0f0f0f0f0f0f");
        assert_eq!(line["fields"]["message"], "hold placed for [phone]");
        assert_eq!(line["fields"]["contact"], "[email]");
        assert_eq!(line["span"]["rpc.method"], "CreateBooking");
    }

    #[test]
    fn lines_outside_a_request_carry_no_ids() {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::registry()
            .with(fmt::layer().with_ansi(false).event_format(LineFormat::text()).with_writer(move || writer.clone()));

        tracing::subscriber::with_default(subscriber, || tracing::info!("bookingd serving"));

        assert!(!capture.text().contains("trace_id="));
    }
}
