//! Hostile input: refusals that echo huge caller input still fit in the
//! HTTP/2 headers, property-based requests to every RPC, and malformed
//! gRPC frames. The answer is always a clear status, never a reset or a
//! panic, and a refused request writes nothing.

use std::{
    collections::BTreeMap,
    fmt::Debug,
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use bookingd::proto::v1::{
    CancelBookingRequest, ClampNegativeAvailabilityRequest, ConfirmBookingRequest, CreateBookingRequest,
    DeployFunctionsRequest, GetBookingRequest, GetFlagRequest, ListFlagChangesRequest, ListToursRequest,
    LookupJourneyRequest, PauseBookingsRequest, RepairAvailabilityRequest, ResumeBookingsRequest,
    RollbackFunctionsRequest, RunChecksRequest, SetFlagRequest, WatchChecksRequest,
    admin_service_client::AdminServiceClient, get_booking_request::Key,
    integrity_service_client::IntegrityServiceClient,
};
use proptest::{
    collection::vec,
    option,
    prelude::*,
    sample::select,
    test_runner::{Config, TestCaseError, TestRunner},
};
use sqlx::PgPool;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, booking_request, create_ok, create_tour, error_metadata, reason, write_counts},
    helpers::{TEST_OPERATOR_TOKEN, TestApp, assert_healthy, spawn_app, spawn_app_with},
};

#[tokio::test]
async fn refusals_echoing_thousands_of_characters_arrive_as_statuses_not_resets() {
    // Arrange: each call echoes its input into the message and ErrorInfo
    // (a 5,000-character key was answered with an HTTP/2 PROTOCOL_ERROR)
    let app = spawn_app().await;
    let long_key = "k".repeat(5_000);
    let unicode_key = "é\u{7}🎟".repeat(2_000);
    let unknown_tours: Vec<String> = (0..500).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let unknown_checks: Vec<String> = (0..1_000).map(|n| format!("no_such_check_{n}")).collect();
    let before = write_counts(&app.pool).await;

    // Act
    let get = app.admin().get_flag(GetFlagRequest { key: long_key.clone() }).await.expect_err("unknown flag");
    let set = app
        .admin()
        .set_flag(SetFlagRequest { key: unicode_key, enabled: true, reason: "fuzz".into() })
        .await
        .expect_err("unknown flag");
    let pause = app
        .admin()
        .pause_bookings(PauseBookingsRequest { tour_ids: unknown_tours, reason: "fuzz".into() })
        .await
        .expect_err("unknown tours");
    let checks = app
        .integrity()
        .run_checks(RunChecksRequest { checks: unknown_checks, max_samples: 0 })
        .await
        .expect_err("unknown checks");

    // Assert
    for (status, code, expected) in [
        (&get, Code::NotFound, "FLAG_NOT_FOUND"),
        (&set, Code::NotFound, "FLAG_NOT_FOUND"),
        (&pause, Code::NotFound, "TOUR_NOT_FOUND"),
        (&checks, Code::InvalidArgument, "UNKNOWN_CHECK"),
    ] {
        assert_eq!((status.code(), reason(status).as_str()), (code, expected), "{status:?}");
    }
    let echoed = error_metadata(&get, "key").expect("the key is echoed");
    assert!(echoed.ends_with('…') && long_key.starts_with(echoed.trim_end_matches('…')), "{echoed}");
    assert_eq!(write_counts(&app.pool).await, before, "a refusal wrote nothing");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

// ------------------------------------------------------------ property fuzz

/// Cases per RPC: enough to reach every refusal of each request's fields on
/// most runs, few enough that the whole drill stays well under a minute.
const CASES_PER_RPC: u32 = 24;
/// One call's bound: far above any answer the server gives; a call still
/// unanswered by then is a hang.
const CALL_BOUND: Duration = Duration::from_secs(15);

/// Text as callers send it: empty, plain, any Unicode, control characters,
/// and thousands of characters.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[a-z_]{1,30}",
        any::<String>(),
        "\\PC{1,200}",
        "[\x00-\x1f\x7f]{1,20}",
        ("\\PC{1,4}", 500..4_000usize).prop_map(|(piece, times)| piece.repeat(times)),
    ]
    .boxed()
}

/// Short text, for the elements of repeated fields (the request stays
/// below the server's request size limit).
fn short_text() -> BoxedStrategy<String> {
    prop_oneof![Just(String::new()), "[a-z_]{1,30}", "\\PC{1,40}", "[\x00-\x1f\x7f]{1,5}"].boxed()
}

fn int() -> BoxedStrategy<i32> {
    prop_oneof![Just(i32::MIN), Just(i32::MAX), Just(0), Just(-1), 1..5i32, any::<i32>()].boxed()
}

fn uuid_text() -> BoxedStrategy<String> {
    any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()).boxed()
}

/// An id field: one the server knows, a well-formed unknown one, or text.
fn id_like(known: &[String]) -> BoxedStrategy<String> {
    prop_oneof![select(known.to_vec()), uuid_text(), short_text(), text()].boxed()
}

fn ids(known: &[String]) -> BoxedStrategy<Vec<String>> {
    prop_oneof![
        3 => vec(select(known.to_vec()), 0..3),
        1 => vec(prop_oneof![select(known.to_vec()), uuid_text(), short_text()], 0..24),
    ]
    .boxed()
}

/// A reason: a valid one (so the call gets past it), or text.
fn reason_text() -> BoxedStrategy<String> {
    prop_oneof![3 => Just("fuzz drill".to_owned()), 1 => text()].boxed()
}

fn flag_key() -> BoxedStrategy<String> {
    prop_oneof![Just(bookingd::flags::USE_LEGACY_BOOKING_SERVICE.to_owned()), text()].boxed()
}

fn page_size() -> BoxedStrategy<i32> {
    prop_oneof![3 => 0..60i32, 1 => int()].boxed()
}

fn page_token() -> BoxedStrategy<String> {
    prop_oneof![3 => Just(String::new()), 1 => text()].boxed()
}

fn date_text() -> BoxedStrategy<String> {
    prop_oneof![3 => Just(String::new()), 3 => "20[0-9]{2}-[0-1][0-9]-[0-3][0-9]", 1 => "[0-9-]{1,12}", 1 => text()]
        .boxed()
}

fn check_names() -> BoxedStrategy<Vec<String>> {
    let valid: Vec<String> = bookingd::integrity::checks::names().map(str::to_owned).collect();
    prop_oneof![3 => vec(select(valid.clone()), 0..4), 1 => vec(prop_oneof![select(valid), short_text()], 0..16)]
        .boxed()
}

fn interval() -> BoxedStrategy<Option<prost_types::Duration>> {
    let seconds = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(1), -5..120i64, any::<i64>()];
    let nanos = prop_oneof![Just(i32::MIN), Just(i32::MAX), Just(0), any::<i32>()];
    let usual = (1..5i64).prop_map(|seconds| Some(prost_types::Duration { seconds, nanos: 0 }));
    prop_oneof![
        3 => Just(None),
        3 => usual,
        2 => option::of((seconds, nanos).prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos })),
    ]
    .boxed()
}

/// What an RPC may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Nothing, whatever the answer.
    Never,
    /// Only when it answers OK; a refusal leaves every table as it was.
    OnSuccess,
}

/// Everything a request could write: rows of every table a service writes
/// and the seat and status columns of tours and bookings.
#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Footprint {
    bookings: i64,
    bookings_updated: Option<chrono::DateTime<chrono::Utc>>,
    audit_logs: i64,
    feature_flags: i64,
    feature_flag_changes: i64,
    incident_log: i64,
    tour_pauses: i64,
    open_pauses: i64,
    tours: Option<String>,
}

async fn footprint(pool: &PgPool) -> Footprint {
    sqlx::query_as(
        "select (select count(*) from bookings) as bookings,
                (select max(updated_at) from bookings) as bookings_updated,
                (select count(*) from audit_logs) as audit_logs,
                (select count(*) from feature_flags) as feature_flags,
                (select count(*) from feature_flag_changes) as feature_flag_changes,
                (select count(*) from incident_log) as incident_log,
                (select count(*) from tour_pauses) as tour_pauses,
                (select count(*) from tour_pauses where resumed_at is null) as open_pauses,
                (select string_agg(id || ':' || status || ':' || available_spots, ',' order by id) from tours) as tours",
    )
    .fetch_one(pool)
    .await
    .expect("footprint")
}

/// Answers of one RPC's cases, by code and reason.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    answers: BTreeMap<String, usize>,
}

/// Sends `CASES_PER_RPC` requests drawn from `strategy` through `call`, one
/// at a time, and fails (with the smallest failing request proptest finds)
/// when an answer is INTERNAL/UNKNOWN, a transport error, a refusal without
/// an ErrorInfo reason, missing after `CALL_BOUND`, or when a refusal (or
/// any answer of a read-only RPC) changed the database's [`Footprint`].
async fn fuzz<S, F, Fut, T>(app: &TestApp, rpc: &str, writes: Writes, strategy: S, call: F) -> Tally
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut runner = TestRunner::new(Config {
        cases: CASES_PER_RPC,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    });
    let tally = Mutex::new(Tally::default());
    let runtime = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |request| {
            runtime.block_on(async {
                let before = footprint(&app.pool).await;
                let answer = tokio::time::timeout(CALL_BOUND, call(request)).await;
                let after = footprint(&app.pool).await;
                let refused = match answer {
                    Err(_) => return Err(TestCaseError::fail(format!("no answer within {CALL_BOUND:?}"))),
                    Ok(Ok(_)) => None,
                    Ok(Err(status)) => Some(status),
                };
                let label = match &refused {
                    None => "OK".to_owned(),
                    Some(status) => format!("{:?} {}", status.code(), reason(status)),
                };
                {
                    let mut tally = tally.lock().expect("tally");
                    tally.cases += 1;
                    *tally.answers.entry(label).or_default() += 1;
                }
                if let Some(status) = &refused
                    && (matches!(status.code(), Code::Internal | Code::Unknown) || reason(status).is_empty())
                {
                    return Err(TestCaseError::fail(format!("not a clear refusal: {status:?}")));
                }
                if (refused.is_some() || writes == Writes::Never) && before != after {
                    return Err(TestCaseError::fail(format!(
                        "{} wrote: before {before:?}, after {after:?}",
                        if refused.is_some() { "a refusal" } else { "a read-only call" }
                    )));
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = outcome {
        panic!("{rpc}: {failure}");
    }
    tally.into_inner().expect("tally")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_requests_to_every_rpc_get_a_clear_answer_and_a_refusal_writes_nothing() {
    // Arrange: known ids for the generators to hit (a bookable tour, a
    // template's instance, a booking, a cancelled booking); no sweeper, so
    // the only writes are the requests' own
    let app = spawn_app_with(|s| s.hold_sweep_interval = Duration::from_secs(3600)).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10_000, ..TourSpec::default() }).await;
    let instance = create_tour(&app.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;
    let booked = create_ok(&app, booking_request(tour.tour_id)).await;
    let cancelled = create_ok(&app, booking_request(tour.tour_id)).await;
    app.booking()
        .cancel_booking(CancelBookingRequest { booking_id: cancelled.id.clone(), reason: "arrange".into() })
        .await
        .expect("cancel");
    let tours = [tour.tour_id, instance.tour_id, instance.template_id.expect("template")].map(|id| id.to_string());
    let bookings = [booked.id.clone(), cancelled.id.clone()];
    let references = [booked.booking_reference.clone(), cancelled.booking_reference.clone()];
    let operator = || IntegrityServiceClient::new(app.channel_with(TEST_OPERATOR_TOKEN));
    let admin: AdminServiceClient<_> = app.admin();
    let started = Instant::now();
    let mut tallies = Vec::new();

    // Act + Assert: booking client on BookingService
    let create = (
        prop_oneof![3 => "[a-z0-9-]{1,40}", 1 => text()],
        prop_oneof![3 => Just(tours[0].clone()), 1 => id_like(&tours)],
        (prop_oneof![3 => 1..4i32, 1 => int()], prop_oneof![3 => 0..3i32, 1 => int()]),
        (
            prop_oneof![3 => "[A-Z][a-z]{1,20}", 1 => text()],
            prop_oneof![3 => "[a-z]{1,10}@example\\.com", 1 => text()],
            prop_oneof![3 => Just(String::new()), 1 => text()],
        ),
        prop_oneof![3 => Just(None), 1 => option::of(int())],
        prop_oneof![3 => Just(None), 1 => option::of(id_like(&tours))],
    )
        .prop_map(|(request_id, tour_id, (num_adults, num_children), (name, email, whatsapp), hold, user)| {
            CreateBookingRequest {
                request_id,
                tour_id,
                num_adults,
                num_children,
                customer_name: name,
                customer_email: email,
                customer_whatsapp: whatsapp,
                hold_seconds: hold,
                user_id: user,
            }
        });
    tallies.push((
        "CreateBooking",
        fuzz(&app, "CreateBooking", Writes::OnSuccess, create, |r| {
            let mut client = app.booking();
            async move { client.create_booking(r).await }
        })
        .await,
    ));
    let confirm = id_like(&bookings).prop_map(|booking_id| ConfirmBookingRequest { booking_id });
    tallies.push((
        "ConfirmBooking",
        fuzz(&app, "ConfirmBooking", Writes::OnSuccess, confirm, |r| {
            let mut client = app.booking();
            async move { client.confirm_booking(r).await }
        })
        .await,
    ));
    let cancel = (id_like(&bookings), reason_text())
        .prop_map(|(booking_id, reason)| CancelBookingRequest { booking_id, reason });
    tallies.push((
        "CancelBooking",
        fuzz(&app, "CancelBooking", Writes::OnSuccess, cancel, |r| {
            let mut client = app.booking();
            async move { client.cancel_booking(r).await }
        })
        .await,
    ));
    let get = option::of(prop_oneof![
        id_like(&bookings).prop_map(Key::BookingId),
        prop_oneof![select(references.to_vec()), "BK-[A-Z0-9]{8}", text()].prop_map(Key::BookingReference),
    ])
    .prop_map(|key| GetBookingRequest { key });
    tallies.push((
        "GetBooking",
        fuzz(&app, "GetBooking", Writes::Never, get, |r| {
            let mut client = app.booking();
            async move { client.get_booking(r).await }
        })
        .await,
    ));
    let journey = (
        prop_oneof![3 => Just("ada@example.com".to_owned()), 1 => text()],
        prop_oneof![3 => Just(String::new()), 1 => "\\+1555555[0-9]{4}", 1 => text()],
        page_size(),
        page_token(),
    )
        .prop_map(|(customer_email, customer_whatsapp, page_size, page_token)| LookupJourneyRequest {
            customer_email,
            customer_whatsapp,
            page_size,
            page_token,
        });
    tallies.push((
        "LookupJourney",
        fuzz(&app, "LookupJourney", Writes::Never, journey, |r| {
            let mut client = app.booking();
            async move { client.lookup_journey(r).await }
        })
        .await,
    ));
    let template = prop_oneof![3 => Just(String::new()), 1 => id_like(&tours)];
    let list = (date_text(), date_text(), template, any::<bool>(), page_size(), page_token()).prop_map(
        |(from_date, to_date, template_id, only_available, page_size, page_token)| ListToursRequest {
            from_date,
            to_date,
            template_id,
            only_available,
            page_size,
            page_token,
        },
    );
    tallies.push((
        "ListTours",
        fuzz(&app, "ListTours", Writes::Never, list, |r| {
            let mut client = app.booking();
            async move { client.list_tours(r).await }
        })
        .await,
    ));

    // Act + Assert: the operator on IntegrityService (streams: every
    // result of RunChecks, the first round of WatchChecks)
    let run = (check_names(), int()).prop_map(|(checks, max_samples)| RunChecksRequest { checks, max_samples });
    tallies.push((
        "RunChecks",
        fuzz(&app, "RunChecks", Writes::Never, run, |r| {
            let mut client = operator();
            async move {
                let mut stream = client.run_checks(r).await?.into_inner();
                while stream.message().await?.is_some() {}
                Ok(())
            }
        })
        .await,
    ));
    let watch = (check_names(), int(), interval()).prop_map(|(checks, max_samples, interval)| WatchChecksRequest {
        checks,
        max_samples,
        interval,
    });
    tallies.push((
        "WatchChecks",
        fuzz(&app, "WatchChecks", Writes::Never, watch, |r| {
            let mut client = operator();
            async move { client.watch_checks(r).await?.into_inner().message().await }
        })
        .await,
    ));

    // Act + Assert: the operator on AdminService, the destructive calls last
    tallies.push((
        "GetFlag",
        fuzz(&app, "GetFlag", Writes::Never, flag_key().prop_map(|key| GetFlagRequest { key }), |r| {
            let mut client = admin.clone();
            async move { client.get_flag(r).await }
        })
        .await,
    ));
    let set = (flag_key(), any::<bool>(), reason_text()).prop_map(|(key, enabled, reason)| SetFlagRequest {
        key,
        enabled,
        reason,
    });
    tallies.push((
        "SetFlag",
        fuzz(&app, "SetFlag", Writes::OnSuccess, set, |r| {
            let mut client = admin.clone();
            async move { client.set_flag(r).await }
        })
        .await,
    ));
    let changes = (flag_key(), page_size(), page_token())
        .prop_map(|(key, page_size, page_token)| ListFlagChangesRequest { key, page_size, page_token });
    tallies.push((
        "ListFlagChanges",
        fuzz(&app, "ListFlagChanges", Writes::Never, changes, |r| {
            let mut client = admin.clone();
            async move { client.list_flag_changes(r).await }
        })
        .await,
    ));
    let repair = (any::<bool>(), ids(&tours), reason_text())
        .prop_map(|(apply, tour_ids, reason)| RepairAvailabilityRequest { apply, tour_ids, reason });
    tallies.push((
        "RepairAvailability",
        fuzz(&app, "RepairAvailability", Writes::OnSuccess, repair, |r| {
            let mut client = admin.clone();
            async move { client.repair_availability(r).await }
        })
        .await,
    ));
    let clamp = reason_text().prop_map(|reason| ClampNegativeAvailabilityRequest { reason });
    tallies.push((
        "ClampNegativeAvailability",
        fuzz(&app, "ClampNegativeAvailability", Writes::OnSuccess, clamp, |r| {
            let mut client = admin.clone();
            async move { client.clamp_negative_availability(r).await }
        })
        .await,
    ));
    let pause = (ids(&tours), reason_text()).prop_map(|(tour_ids, reason)| PauseBookingsRequest { tour_ids, reason });
    tallies.push((
        "PauseBookings",
        fuzz(&app, "PauseBookings", Writes::OnSuccess, pause, |r| {
            let mut client = admin.clone();
            async move { client.pause_bookings(r).await }
        })
        .await,
    ));
    let pauses: Vec<String> = sqlx::query_scalar("select distinct pause_id::text from tour_pauses")
        .fetch_all(&app.pool)
        .await
        .expect("pauses");
    let pause_ids = if pauses.is_empty() { vec![Uuid::new_v4().to_string()] } else { pauses };
    let resume = (prop_oneof![Just(String::new()), id_like(&pause_ids)], ids(&tours), reason_text())
        .prop_map(|(pause_id, tour_ids, reason)| ResumeBookingsRequest { pause_id, tour_ids, reason });
    tallies.push((
        "ResumeBookings",
        fuzz(&app, "ResumeBookings", Writes::OnSuccess, resume, |r| {
            let mut client = admin.clone();
            async move { client.resume_bookings(r).await }
        })
        .await,
    ));
    let rollback = reason_text().prop_map(|reason| RollbackFunctionsRequest { reason });
    tallies.push((
        "RollbackFunctions",
        fuzz(&app, "RollbackFunctions", Writes::OnSuccess, rollback, |r| {
            let mut client = admin.clone();
            async move { client.rollback_functions(r).await }
        })
        .await,
    ));
    let deploy = reason_text().prop_map(|reason| DeployFunctionsRequest { reason });
    tallies.push((
        "DeployFunctions",
        fuzz(&app, "DeployFunctions", Writes::OnSuccess, deploy, |r| {
            let mut client = admin.clone();
            async move { client.deploy_functions(r).await }
        })
        .await,
    ));
    let elapsed = started.elapsed();

    // Assert: the server still serves and books, and the data is sound
    let mut admin = app.admin();
    admin.deploy_functions(DeployFunctionsRequest { reason: "after the fuzz".into() }).await.expect("deploy");
    // (refused with a reason when no pause is open)
    let _ =
        admin.resume_bookings(ResumeBookingsRequest { reason: "after the fuzz".into(), ..Default::default() }).await;
    let after = create_tour(&app.pool, TourSpec::default()).await;
    create_ok(&app, booking_request(after.tour_id)).await;
    assert_serving(&app).await;
    for (rpc, tally) in &tallies {
        eprintln!("fuzz {rpc}: {} cases, {:?}", tally.cases, tally.answers);
    }
    let cases: usize = tallies.iter().map(|(_, tally)| tally.cases).sum();
    eprintln!("fuzz: {cases} cases over {} RPCs in {elapsed:?}", tallies.len());
    assert_eq!(tallies.len(), 17, "every RPC of the three services");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

/// The health service answers SERVING.
async fn assert_serving(app: &TestApp) {
    let health = app
        .health()
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(health.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);
}

// ------------------------------------------------------------ malformed frames

/// A request body sent as it is, in one frame.
struct RawBody(Option<prost::bytes::Bytes>);

impl http_body::Body for RawBody {
    type Data = prost::bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|bytes| Ok(http_body::Frame::data(bytes))))
    }
}

/// Posts `body` to SetFlag (a call that writes when it succeeds) with
/// `content_type`; the `grpc-status` the server answers with, from the
/// headers (trailers-only) or the trailers. A transport error or reset fails.
async fn raw_set_flag(app: &TestApp, content_type: &str, body: Vec<u8>) -> String {
    use tower::ServiceExt;
    let request = http::Request::post(format!("{}/booking.v1.AdminService/SetFlag", app.addr))
        .header("content-type", content_type)
        .header("te", "trailers")
        .header("authorization", format!("Bearer {TEST_OPERATOR_TOKEN}"))
        .body(tonic::body::Body::new(RawBody(Some(body.into()))))
        .expect("request");
    let response = tokio::time::timeout(CALL_BOUND, app.channel.clone().oneshot(request))
        .await
        .expect("answered in time")
        .expect("an HTTP/2 response, not a transport error");
    if let Some(status) = response.headers().get("grpc-status") {
        return status.to_str().expect("ascii").to_owned();
    }
    let mut body = response.into_body();
    loop {
        let frame = futures::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx))
            .await
            .expect("the response ends with trailers")
            .expect("no reset mid-response");
        if let Ok(trailers) = frame.into_trailers() {
            return trailers.get("grpc-status").expect("grpc-status trailer").to_str().expect("ascii").to_owned();
        }
    }
}

/// A gRPC frame: compressed flag, length prefix, payload.
fn frame(compressed: u8, length: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![compressed];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

#[tokio::test]
async fn malformed_frames_and_garbage_get_a_status_or_a_closed_connection_and_write_nothing() {
    // Arrange: a valid SetFlag payload (it would write) to wrap in bad frames
    let app = spawn_app().await;
    let valid = prost::Message::encode_to_vec(&SetFlagRequest {
        key: bookingd::flags::USE_LEGACY_BOOKING_SERVICE.into(),
        enabled: true,
        reason: "malformed".into(),
    });
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("invalid protobuf", "application/grpc", frame(0, 6, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff])),
        ("wrong wire type", "application/grpc", frame(0, 2, &[0x08 | 0x02, 0x7f])),
        ("length prefix past the body", "application/grpc", frame(0, 1_000, &valid)),
        ("compressed flag, no grpc-encoding", "application/grpc", frame(1, valid.len() as u32, &valid)),
        ("truncated frame header", "application/grpc", vec![0, 0, 0]),
        ("no message", "application/grpc", Vec::new()),
        ("length prefix of 4 GiB", "application/grpc", frame(0, u32::MAX, &valid)),
        ("wrong content-type", "application/json", b"{\"key\": \"use_legacy_booking_service\"}".to_vec()),
    ];
    let before = footprint(&app.pool).await;

    // Act
    let mut answers = Vec::new();
    for (what, content_type, body) in cases {
        answers.push((what, raw_set_flag(&app, content_type, body).await));
    }
    let mut garbage = tokio::net::TcpStream::connect(app.addr.trim_start_matches("http://")).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut garbage, b"\x16\x03\x01 not http/2 at all\r\n\r\n\x00\xff")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(CALL_BOUND, tokio::io::AsyncReadExt::read_to_end(&mut garbage, &mut rest)).await;

    // Assert: each a gRPC status (which one is tonic's: INTERNAL from its
    // decoder, RESOURCE_EXHAUSTED past the size limit; two messages to a
    // unary call are not here: tonic serves the first), nothing written,
    // the garbage connection closed by the server, and it still books
    for (what, status) in &answers {
        eprintln!("malformed {what}: grpc-status {status}");
        assert_ne!(status, "0", "{what} must not succeed");
    }
    assert!(closed.is_ok(), "the server closes a connection that does not speak HTTP/2");
    assert_eq!(footprint(&app.pool).await, before, "a malformed request wrote");
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    create_ok(&app, booking_request(tour.tour_id)).await;
    assert_serving(&app).await;
    assert_healthy(&app.pool).await;
    app.stop().await;
}
