//! Observability: what an OTLP collector receives from bookingd (a real
//! receiver, in-process), the trace context it continues and returns, and the
//! personal data it must not carry, in spans or in logs.

use std::time::Duration;

use bookingd::proto::v1::{
    CreateBookingRequest, GetBookingRequest, GetFlagRequest, ListFlagChangesRequest, RollbackFunctionsRequest,
    get_booking_request,
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
    fixtures::{TourSpec, booking_request, create_tour},
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_with, wait_until},
    otlp_collector::{Received, all_text, bool_attribute, int_attribute, string_attribute, telemetry},
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
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let mut reflection = ServerReflectionClient::new(app.channel.clone());

    // Act
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let response = reflection.server_reflection_info(tokio_stream::once(request)).await.expect("reflection");
    let trace_id = hex::decode(trace_id_header(response.metadata())).expect("hex trace id");
    let mut stream = response.into_inner();
    while stream.next().await.transpose().expect("reflection stream").is_some() {}

    // Assert
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
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    // Act
    let status = get_missing_booking(&app, caller.request(get_booking_request())).await;

    // Assert
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(span.name, "booking.v1.BookingService/GetBooking");
    assert_eq!(string_attribute(&span.attributes, "rpc.service"), Some("booking.v1.BookingService"));
    assert_eq!(string_attribute(&span.attributes, "rpc.method"), Some("GetBooking"));
    assert_eq!(int_attribute(&span.attributes, "rpc.grpc.status_code"), Some(status.code() as i64));
    assert_eq!(string_attribute(&span.attributes, "enduser.id"), Some(crate::helpers::TEST_BOOKING_CLIENT));
}

#[tokio::test]
async fn a_refused_call_has_a_server_span_without_an_enduser() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    // Act
    let status =
        app.admin_as(crate::helpers::TEST_BOOKING_TOKEN).get_flag(caller.request(GetFlagRequest::default())).await;

    // Assert
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(status.expect_err("booking client").code(), tonic::Code::PermissionDenied);
    assert_eq!(int_attribute(&span.attributes, "rpc.grpc.status_code"), Some(tonic::Code::PermissionDenied as i64));
    assert_eq!(string_attribute(&span.attributes, "enduser.id"), None);
}

#[tokio::test]
async fn a_callers_traceparent_is_continued_and_its_trace_id_returned() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();
    let mut request = caller.request(get_booking_request());
    request.metadata_mut().insert("tracestate", "rojo=00f067aa0ba902b7".parse().expect("ascii"));

    // Act
    let status = get_missing_booking(&app, request).await;

    // Assert
    assert_eq!(trace_id_header(status.metadata()), caller.trace_id_hex());
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let span = server_spans(&spans)[0];
    assert_eq!(span.parent_span_id, caller.span_id.to_vec(), "the caller's span is the parent");
    assert_eq!(span.trace_state, "rojo=00f067aa0ba902b7");
}

#[tokio::test]
async fn a_refused_admin_call_is_an_error_span_with_grpc_status_16() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    // Act
    let status = app
        .admin_without_token()
        .get_flag(caller.request(GetFlagRequest { key: String::new() }))
        .await
        .expect_err("no token, no admin");

    // Assert
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
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    // Act
    app.health().check(caller.request(HealthCheckRequest { service: String::new() })).await.expect("health");
    // a traced call in the same trace, after it: once its span has arrived,
    // the health check's would have too (spans are exported in end order)
    get_missing_booking(&app, caller.request(get_booking_request())).await;

    // Assert
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let servers: Vec<&str> = server_spans(&spans).iter().map(|span| span.name.as_str()).collect();
    assert_eq!(servers, ["booking.v1.BookingService/GetBooking"], "no health span: {:?}", names(&spans));
}

#[tokio::test]
async fn log_lines_carry_the_trace_and_span_id_of_the_request() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let caller = CallerTrace::new();

    // Act
    let _ = app.admin_without_token().get_flag(caller.request(GetFlagRequest { key: String::new() })).await;

    // Assert
    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let server_span_id = hex::encode(&server_spans(&spans)[0].span_id);
    let refusal = telemetry
        .logs
        .lines()
        .into_iter()
        .find(|line| line["trace_id"] == caller.trace_id_hex() && line["fields"]["message"] == "call refused")
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
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    app.booking()
        .create_booking(caller.request(CreateBookingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            tour_id: tour.tour_id.to_string(),
            num_adults: 2,
            num_children: 0,
            customer_name: "Ana López".to_owned(),
            customer_email: email.clone(),
            customer_whatsapp: phone.clone(),
            hold_seconds: None,
            user_id: None,
        }))
        .await
        .expect("the booking is created");

    let spans = trace_with_server_span(&telemetry.received, &caller.trace_id).await;
    let digits = &phone[1..];
    for span in &spans {
        let text = all_text(span);
        assert!(!text.contains(&email) && !text.contains(digits) && !text.contains("López"), "{text}");
    }
    let logs = telemetry.logs.text();
    assert!(!logs.contains(&email) && !logs.contains(digits) && !logs.contains("López"));
    assert!(spans.iter().any(|span| span.name == "booking.create"), "the booking code ran");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn personal_data_that_slips_into_an_event_is_masked_in_the_log_line_and_the_exported_span() {
    // Arrange
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

    // Act
    {
        let span = tracing::info_span!("test.contact", otel.kind = "server", customer = %email);
        span.set_parent(parent).expect("the OpenTelemetry layer is installed");
        let _entered = span.enter();
        tracing::info!(customer_whatsapp = %phone, "careless log line with {email}");
    }

    // Assert
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
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;

    // Act
    let _ = app.admin_without_token().list_flag_changes(ListFlagChangesRequest::default()).await;

    // Assert
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

/// The spans of `trace` that `parent` is the parent of.
fn children_of<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans.iter().filter(|span| span.parent_span_id == parent.span_id).collect()
}

fn one_child<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    let children: Vec<&Span> = children_of(spans, parent).into_iter().filter(|span| span.name == name).collect();
    assert_eq!(children.len(), 1, "one {name} under {}: {:?}", parent.name, names(spans));
    children[0]
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|span| span.name.as_str()).collect()
}

/// Waits until `booking.create` of the trace has arrived too (it ends before
/// the server span, but may travel in a different export batch).
async fn booking_trace(received: &Received, trace_id: &[u8]) -> Vec<Span> {
    wait_until("the booking spans reach the collector", EXPORT_DEADLINE, || async {
        let spans = received.spans_of_trace(trace_id);
        !server_spans(&spans).is_empty() && spans.iter().any(|span| span.name == "booking.create")
    })
    .await;
    received.spans_of_trace(trace_id)
}

/// A flag evaluation answered from the cache made no query; one that was
/// not made exactly one, `select feature_flags`.
fn assert_flag_evaluation_is_honest_about_the_cache(spans: &[Span], evaluation: &Span) {
    let cached = bool_attribute(&evaluation.attributes, "feature_flag.cached").expect("feature_flag.cached");
    let queries: Vec<&str> = children_of(spans, evaluation)
        .into_iter()
        .filter(|span| span.name == "db.query")
        .filter_map(|span| string_attribute(&span.attributes, "db.operation.name"))
        .collect();
    if cached {
        assert!(queries.is_empty(), "a cached evaluation queried {queries:?}");
    } else {
        assert_eq!(queries, ["select feature_flags"]);
    }
}

#[tokio::test]
async fn a_create_booking_trace_shows_the_code_path_the_flag_and_the_database_call() {
    let telemetry = telemetry();
    // a long cache TTL: the repeated evaluation below must come from the cache
    let app = spawn_app_with(|settings| settings.flag_cache_ttl = Duration::from_secs(60)).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;

    let mut traces = Vec::new();
    for _ in 0..3 {
        let caller = CallerTrace::new();
        app.booking()
            .create_booking(caller.request(booking_request(tour.tour_id)))
            .await
            .expect("the booking is created");
        traces.push(caller);
    }

    for (index, caller) in traces.iter().enumerate() {
        let spans = booking_trace(&telemetry.received, &caller.trace_id).await;
        let server = server_spans(&spans)[0];
        assert_eq!(server.name, "booking.v1.BookingService/CreateBooking");
        assert_eq!(server.parent_span_id, caller.span_id.to_vec());
        assert_eq!(int_attribute(&server.attributes, "rpc.grpc.status_code"), Some(0));

        let create = one_child(&spans, server, "booking.create");
        assert_eq!(string_attribute(&create.attributes, "booking.code_path"), Some("atomic"));
        assert_ne!(create.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));

        let evaluation = one_child(&spans, create, "feature_flag.evaluate");
        let flag = &evaluation.attributes;
        assert_eq!(string_attribute(flag, "feature_flag.key"), Some("use_legacy_booking_service"));
        assert_eq!(string_attribute(flag, "feature_flag.provider_name"), Some("bookingd"));
        assert_eq!(bool_attribute(flag, "feature_flag.result.value"), Some(false));
        assert_eq!(string_attribute(flag, "feature_flag.source"), Some("default"), "no row, no pin");
        assert_flag_evaluation_is_honest_about_the_cache(&spans, evaluation);
        if index == traces.len() - 1 {
            assert_eq!(bool_attribute(flag, "feature_flag.cached"), Some(true), "a repeated evaluation is cached");
        }

        let query = one_child(&spans, create, "db.query");
        assert_eq!(string_attribute(&query.attributes, "db.system"), Some("postgresql"));
        assert_eq!(string_attribute(&query.attributes, "db.operation.name"), Some("create_booking_atomic"));
        assert!(query.start_time_unix_nano >= create.start_time_unix_nano);
        assert!(query.end_time_unix_nano <= create.end_time_unix_nano, "children end within their parent");
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_sold_out_booking_is_an_error_on_the_server_span_and_on_booking_create() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 1, ..TourSpec::default() }).await;
    app.booking().create_booking(booking_request(tour.tour_id)).await.expect("the last seat");
    let caller = CallerTrace::new();

    // Act
    let status =
        app.booking().create_booking(caller.request(booking_request(tour.tour_id))).await.expect_err("sold out");

    // Assert
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(trace_id_header(status.metadata()), caller.trace_id_hex());
    let spans = booking_trace(&telemetry.received, &caller.trace_id).await;
    let server = server_spans(&spans)[0];
    assert_eq!(int_attribute(&server.attributes, "rpc.grpc.status_code"), Some(9));
    assert_eq!(server.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
    let create = one_child(&spans, server, "booking.create");
    assert_eq!(string_attribute(&create.attributes, "error.type"), Some("SOLD_OUT"));
    assert_eq!(string_attribute(&create.attributes, "booking.code_path"), Some("atomic"));
    assert_eq!(create.status.as_ref().map(|s| s.code), Some(StatusCode::Error as i32));
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_pinned_legacy_path_shows_in_the_trace_with_its_environment_flag() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app_with(|settings| settings.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let caller = CallerTrace::new();

    // Act
    app.booking().create_booking(caller.request(booking_request(tour.tour_id))).await.expect("created");

    // Assert
    let spans = booking_trace(&telemetry.received, &caller.trace_id).await;
    let create = one_child(&spans, server_spans(&spans)[0], "booking.create");
    assert_eq!(string_attribute(&create.attributes, "booking.code_path"), Some("legacy"));
    let evaluation = one_child(&spans, create, "feature_flag.evaluate");
    assert_eq!(string_attribute(&evaluation.attributes, "feature_flag.source"), Some("environment"));
    assert_eq!(bool_attribute(&evaluation.attributes, "feature_flag.cached"), Some(true));
    assert_eq!(bool_attribute(&evaluation.attributes, "feature_flag.result.value"), Some(true));
    let operations: Vec<&str> = children_of(&spans, create)
        .into_iter()
        .filter(|span| span.name == "db.query")
        .filter_map(|span| string_attribute(&span.attributes, "db.operation.name"))
        .collect();
    assert!(!operations.is_empty() && !operations.contains(&"create_booking_atomic"), "{operations:?}");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_fallback_to_legacy_after_the_functions_are_dropped_is_a_span_with_its_reason() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    app.admin()
        .rollback_functions(RollbackFunctionsRequest { reason: "telemetry test".into() })
        .await
        .expect("rollback");
    let caller = CallerTrace::new();

    // Act
    app.booking().create_booking(caller.request(booking_request(tour.tour_id))).await.expect("served by legacy");

    // Assert
    let spans = booking_trace(&telemetry.received, &caller.trace_id).await;
    let create = one_child(&spans, server_spans(&spans)[0], "booking.create");
    assert_eq!(string_attribute(&create.attributes, "booking.code_path"), Some("legacy"));
    let fallback = one_child(&spans, create, "booking.fallback");
    let reason = string_attribute(&fallback.attributes, "booking.fallback.reason");
    assert!(matches!(reason, Some("function_missing" | "atomic_unavailable")), "{reason:?}");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn bookings_are_counted_by_code_path_and_outcome() {
    // Arrange
    let telemetry = telemetry();
    let app = spawn_app_with(|settings| settings.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 1, ..TourSpec::default() }).await;

    // Act
    app.booking().create_booking(booking_request(tour.tour_id)).await.expect("the last seat");
    app.booking().create_booking(booking_request(tour.tour_id)).await.expect_err("sold out");

    // Assert
    for outcome in ["created", "sold_out"] {
        wait_until(
            &format!("bookingd.bookings{{legacy, {outcome}}} reaches the collector"),
            EXPORT_DEADLINE,
            || async {
                telemetry.received.metrics_named("bookingd.bookings").iter().any(|metric| {
                    let Some(Data::Sum(sum)) = &metric.data else { return false };
                    sum.is_monotonic
                        && sum.data_points.iter().any(|point| {
                            string_attribute(&point.attributes, "booking.code_path") == Some("legacy")
                                && string_attribute(&point.attributes, "booking.outcome") == Some(outcome)
                        })
                })
            },
        )
        .await;
    }
    assert_healthy(&app.pool).await;
}
