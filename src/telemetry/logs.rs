//! Log lines: the standard `tracing-subscriber` text or JSON format, plus the
//! trace and span id of the request, with personal data masked.
//!
//! Ids come from the active OpenTelemetry context when the OTel layer is
//! installed (so a line names the innermost span, as Jaeger shows it), else
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
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let context = span.span_context();
    if context.is_valid() {
        return Some((context.trace_id(), context.span_id()));
    }
    ctx.event_scope()?.find_map(|span| span.extensions().get::<RequestTrace>().map(|ids| (ids.trace_id, ids.span_id)))
}
