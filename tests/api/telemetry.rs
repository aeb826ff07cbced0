//! Observability: what an OTLP collector receives from bookingd (a real
//! receiver, in-process), the trace context it continues and returns, and the
//! personal data it must not carry, in spans or in logs.

use std::time::Duration;

use bookingd::proto::v1::{
    CreateBookingRequest, GetBookingRequest, GetFlagRequest, ListFlagChangesRequest, get_booking_request,
};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_proto::tonic::{
    metrics::v1::metric::Data,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    helpers::{TestApp, spawn_app, wait_until},
    otlp_collector::{Received, all_text, int_attribute, string_attribute, telemetry},
};

const EXPORT_DEADLINE: Duration = Duration::from_secs(10);

/// A caller's trace context: random ids, sampled.
struct CallerTrace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
}

impl CallerTrace {
    fn new() -> Self {
        CallerTrace { trace_id: rand::random(), span_id: rand::random() }
    }

    fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex::encode(self.trace_id), hex::encode(self.span_id))
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("traceparent", self.traceparent().parse().expect("ascii"));
        request
    }
}

fn trace_id_header(metadata: &MetadataMap) -> String {
    metadata.get("x-trace-id").expect("x-trace-id in the response metadata").to_str().expect("ascii").to_owned()
}

fn server_spans(spans: &[Span]) -> Vec<&Span> {
    spans.iter().filter(|span| span.kind == SpanKind::Server as i32).collect()
}

/// Waits until the collector holds a server span of `trace_id`, then returns
/// every span of that trace received so far.
async fn trace_with_server_span(received: &Received, trace_id: &[u8]) -> Vec<Span> {
    wait_until("the server span reaches the collector", EXPORT_DEADLINE, || async {
        !server_spans(&received.spans_of_trace(trace_id)).is_empty()
    })
    .await;
    received.spans_of_trace(trace_id)
}

async fn get_missing_booking(app: &TestApp, request: tonic::Request<GetBookingRequest>) -> tonic::Status {
    app.booking().get_booking(request).await.expect_err("no booking has this id")
}

fn get_booking_request() -> GetBookingRequest {
    GetBookingRequest { key: Some(get_booking_request::Key::BookingId(uuid::Uuid::new_v4().to_string())) }
}

#[tokio::test]
async fn every_rpc_gets_one_server_span_with_the_rpc_attributes_and_its_status_code() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel.clone());

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = reflection.server_reflection_info(tokio_stream::once(request)).await.expect("reflection");
    let trace_id = hex::decode(trace_id_header(response.metadata())).expect("hex trace id");
    let mut stream = response.into_inner();
    while stream.next().await.transpose().expect("reflection stream").is_some() {}

    let spans = trace_with_server_span(&telemetry.received, &trace_id).await;
    let server = server_spans(&spans);
    assert_eq!(server.len(), 1, "one server span per RPC: {server:?}");
    let span = server[0];
    assert_eq!(span.name, "grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    assert_eq!(string_attribute(&span.attributes, "rpc.system"), Some("grpc"));
    assert_eq!(string_attribute(&span.attributes, "rpc.service"), Some("grpc.reflection.v1.ServerReflection"));
    assert_eq!(string_attribute(&span.attributes, "rpc.method"), Some("ServerReflectionInfo"));
    assert_eq!(int_attribute(&span.attributes, "rpc.grpc.status_code"), Some(0));
    assert_ne!(span.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
    assert!(span.parent_span_id.is_empty(), "a call without traceparent starts a trace");
    let resource = telemetry.received.resource_of_trace(&trace_id).expect("resource");
    assert_eq!(string_attribute(&resource, "service.name"), Some("bookingd"));
}

#[tokio::test]
async fn a_unary_rpc_span_records_the_status_code_the_caller_received() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    let status = get_missing_booking(&app, caller.request(get_booking_request())).await;

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(span.name, "booking.v1.BookingService/GetBooking");
    assert_eq!(string_attribute(&span.attributes, "rpc.service"), Some("booking.v1.BookingService"));
    assert_eq!(string_attribute(&span.attributes, "rpc.method"), Some("GetBooking"));
    assert_eq!(int_attribute(&span.attributes, "rpc.grpc.status_code"), Some(status.code() as i64));
}

#[tokio::test]
async fn a_callers_traceparent_is_continued_and_its_trace_id_returned() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();
    let mut request = caller.request(get_booking_request());
    request.metadata_mut().insert("tracestate", "rojo=00f067aa0ba902b7".parse().expect("ascii"));

    let status = get_missing_booking(&app, request).await;

    assert_eq!(trace_id_header(status.metadata()), caller.trace_id_hex());
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(span.parent_span_id, caller.span_id.to_vec(), "the caller's span is the parent");
    assert_eq!(span.trace_state, "rojo=00f067aa0ba902b7");
}

#[tokio::test]
async fn a_refused_admin_call_is_an_error_span_with_grpc_status_16() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    let status = app
        .admin_without_token()
        .get_flag(caller.request(GetFlagRequest { key: String::new() }))
        .await
        .expect_err("no token, no admin");

    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(trace_id_header(status.metadata()), caller.trace_id_hex());
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(span.name, "booking.v1.AdminService/GetFlag");
    assert_eq!(int_attribute(&span.attributes, "rpc.grpc.status_code"), Some(16));
    assert_eq!(span.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
}

#[tokio::test]
async fn health_checks_make_no_spans() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    app.health().check(caller.request(HealthCheckRequest { service: String::new() })).await.expect("health");
    // a traced call in the same trace, after it: once its span has arrived,
    // the health check's would have too (spans are exported in end order)
    get_missing_booking(&app, caller.request(get_booking_request())).await;

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["booking.v1.BookingService/GetBooking"], "no health span");
}

#[tokio::test]
async fn log_lines_carry_the_trace_and_span_id_of_the_request() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    let _ = app.admin_without_token().get_flag(caller.request(GetFlagRequest { key: String::new() })).await;

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let server_span_id = hex::encode(&server_spans(&spans)[0].span_id);
    let refusal = telemetry
        .logs
        .lines()
        .into_iter()
        .find(|line| line["trace_id"] == caller.trace_id_hex() && line["fields"]["message"] == "admin call refused")
        .expect("the refusal is logged with the request's trace id");
    assert_eq!(refusal["span_id"], server_span_id.as_str());
}

#[tokio::test]
async fn personal_data_in_a_request_reaches_neither_spans_nor_logs() {
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();
    let email = format!("ana.{}@example.com", uuid::Uuid::new_v4().simple());
    let phone = format!("+3460{:07}", rand::random_range(0..10_000_000));
    let tour_id: uuid::Uuid = sqlx::query_scalar("select id from tours limit 1")
        .fetch_optional(&app.pool)
        .await
        .expect("tours")
        .unwrap_or_else(uuid::Uuid::new_v4);

    let _ = app
        .booking()
        .create_booking(caller.request(CreateBookingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            tour_id: tour_id.to_string(),
            num_adults: 2,
            num_children: 0,
            customer_name: "Ana López".to_owned(),
            customer_email: email.clone(),
            customer_whatsapp: phone.clone(),
            hold_seconds: None,
            user_id: None,
        }))
        .await;

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let digits = &phone[1..];
    for span in &spans {
        let text = all_text(span);
        assert!(!text.contains(&email) && !text.contains(digits) && !text.contains("López"), "{text}");
    }
    let logs = telemetry.logs.text();
    assert!(!logs.contains(&email) && !logs.contains(digits) && !logs.contains("López"));
    crate::helpers::assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn personal_data_that_slips_into_an_event_is_masked_in_the_log_line_and_the_exported_span() {
    let telemetry = telemetry();
    let caller = CallerTrace::new();
    let email = format!("ana.{}@example.com", uuid::Uuid::new_v4().simple());
    let phone = format!("+3460{:07}", rand::random_range(0..10_000_000));
    let parent = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(caller.trace_id),
        SpanId::from_bytes(caller.span_id),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    ));

    {
        let span = tracing::info_span!("test.contact", otel.kind = "server", customer = %email);
        span.set_parent(parent).expect("the OpenTelemetry layer is installed");
        let _entered = span.enter();
        tracing::info!(customer_whatsapp = %phone, "careless log line with {email}");
    }

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let text = all_text(&spans[0]);
    assert!(text.contains("[email]") && text.contains("[phone]"), "masked values are exported: {text}");
    assert!(!text.contains(&email) && !text.contains(&phone), "{text}");
    let line = telemetry
        .logs
        .lines()
        .into_iter()
        .find(|line| line["trace_id"] == caller.trace_id_hex())
        .expect("the event is logged with its trace id");
    let line = line.to_string();
    assert!(line.contains("careless log line with [email]") && line.contains("[phone]"), "{line}");
    assert!(!line.contains(&email) && !line.contains(&phone), "{line}");
}

#[tokio::test]
async fn rpc_latency_is_exported_as_a_histogram_by_service_method_and_status() {
    let telemetry = telemetry();
    let app = spawn_app().await;

    let _ = app.admin_without_token().list_flag_changes(ListFlagChangesRequest::default()).await;

    wait_until("rpc.server.duration for ListFlagChanges reaches the collector", EXPORT_DEADLINE, || async {
        telemetry.received.metrics_named("rpc.server.duration").iter().any(|metric| {
            assert_eq!(metric.unit, "ms");
            let Some(Data::Histogram(histogram)) = &metric.data else { return false };
            histogram.data_points.iter().any(|point| {
                string_attribute(&point.attributes, "rpc.service") == Some("booking.v1.AdminService")
                    && string_attribute(&point.attributes, "rpc.method") == Some("ListFlagChanges")
                    && int_attribute(&point.attributes, "rpc.grpc.status_code") == Some(16)
                    && point.count >= 1
            })
        })
    })
    .await;
}
