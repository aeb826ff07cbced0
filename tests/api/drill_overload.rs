//! Overload drills: more calls than the concurrency limit, a flash sale on
//! one tour with a small pool, and messages over the size limits. The test
//! makes calls stick by holding a tour's row lock in a transaction of its
//! own; clients then retry with the same `request_id` until answered, and no
//! booking may be lost or doubled.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bookingd::proto::v1::{CreateBookingRequest, ListToursRequest, booking_service_client::BookingServiceClient};
use futures::future::join_all;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use sqlx::PgPool;
use tonic::{Code, Status, transport::Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, available_spots, booking_request, create_ok, create_tour, lock_tour, reason, write_counts},
    helpers::{
        Authed, BearerToken, TEST_BOOKING_TOKEN, TestApp, assert_healthy, spawn_app, spawn_app_with, wait_until,
    },
    otlp_collector::{string_attribute, telemetry},
};

/// Database timeouts long enough that a call stuck on the test's row lock
/// stays stuck for the whole arrangement (below the 10 s request timeout).
fn patient_database(settings: &mut bookingd::config::Settings) {
    settings.db_statement_timeout = Duration::from_secs(9);
    settings.db_lock_timeout = Duration::from_secs(9);
}

/// `count` booking clients, each on its own HTTP/2 connection.
async fn clients(app: &TestApp, count: usize) -> Vec<BookingServiceClient<Authed>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(app.addr.clone()).expect("endpoint").connect().await.expect("connect");
        clients.push(BookingServiceClient::new(tonic::service::interceptor::InterceptedService::new(
            channel,
            BearerToken::new(TEST_BOOKING_TOKEN),
        )));
    }
    clients
}

/// One call and how long its answer took.
struct Answer {
    request: CreateBookingRequest,
    elapsed: Duration,
    result: Result<(), Status>,
}

async fn call(mut client: BookingServiceClient<Authed>, request: CreateBookingRequest) -> Answer {
    let started = Instant::now();
    let result = client.create_booking(request.clone()).await.map(drop);
    Answer { request, elapsed: started.elapsed(), result }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50 and p99 of `durations`.
fn p50_p99(mut durations: Vec<Duration>) -> (Duration, Duration) {
    durations.sort();
    (percentile(&durations, 50.0), percentile(&durations, 99.0))
}

/// A refusal a client retries: shed, busy, or a transient database answer.
fn is_retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::ResourceExhausted | Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::Cancelled
    )
}

fn retry_delay(status: &Status) -> Duration {
    status.get_error_details().retry_info().and_then(|retry| retry.retry_delay).unwrap_or(Duration::from_millis(100))
}

/// Sends each request again (the same `request_id`) until it is answered
/// with a booking, waiting the server's retry hint plus a little jitter, as
/// a client would. Panics on an answer no retry could change.
async fn retry_until_booked(app: &TestApp, requests: Vec<CreateBookingRequest>, deadline: Duration) -> usize {
    let connections = clients(app, 8).await;
    let until = Instant::now() + deadline;
    let attempts = requests.into_iter().enumerate().map(|(index, request)| {
        let mut client = connections[index % connections.len()].clone();
        async move {
            let mut tries = 0;
            loop {
                tries += 1;
                match client.create_booking(request.clone()).await {
                    Ok(_) => return tries,
                    Err(status) => {
                        assert!(is_retryable(&status), "a retry must not fail for good: {status:?}");
                        assert!(Instant::now() < until, "still not booked after {deadline:?}: {status:?}");
                        let jitter = Duration::from_millis(rand::random_range(0..100));
                        tokio::time::sleep(retry_delay(&status) + jitter).await;
                    }
                }
            }
        }
    });
    join_all(attempts).await.into_iter().sum()
}

/// Every request id sent for `tour_id` has exactly one booking, and the
/// tour's seats went down by that many.
async fn assert_booked_once_each(pool: &PgPool, tour_id: Uuid, capacity: i32, request_ids: &[String]) {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "select request_id, count(*) from bookings where tour_id = $1 group by request_id order by request_id",
    )
    .bind(tour_id)
    .fetch_all(pool)
    .await
    .expect("bookings by request id");
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    let doubled: Vec<_> = stored.iter().filter(|(_, count)| **count > 1).collect();
    assert!(doubled.is_empty(), "doubled bookings: {doubled:?}");
    let lost: Vec<_> = request_ids.iter().filter(|id| !stored.contains_key(*id)).collect();
    assert!(lost.is_empty(), "lost bookings: {lost:?}");
    assert_eq!(stored.len(), request_ids.len(), "no booking nobody asked for");
    assert_eq!(available_spots(pool, tour_id).await, capacity - request_ids.len() as i32);
}

async fn serving(app: &TestApp) -> ServingStatus {
    app.health()
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers")
        .into_inner()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_beyond_the_concurrency_limit_are_refused_at_once_and_nothing_is_lost_on_retry() {
    const LIMIT: usize = 4;
    const EXCESS: usize = 200;
    const CAPACITY: i32 = 1000;

    // Arrange: a limit of 4, and 4 calls stuck on a tour whose row the test holds
    let app = spawn_app_with(|s| {
        s.concurrency_limit = LIMIT;
        patient_database(s);
    })
    .await;
    let hot = create_tour(&app.pool, TourSpec { capacity: CAPACITY, ..TourSpec::default() }).await.tour_id;
    let other = create_tour(&app.pool, TourSpec { capacity: CAPACITY, ..TourSpec::default() }).await.tour_id;
    let lock = lock_tour(&app.pool, hot).await;
    let stuck_requests: Vec<_> = (0..LIMIT).map(|_| booking_request(hot)).collect();
    let stuck = tokio::spawn({
        let client = app.booking();
        let requests = stuck_requests.clone();
        async move { join_all(requests.into_iter().map(|request| call(client.clone(), request))).await }
    });
    wait_until("the stuck calls to hold every permit", Duration::from_secs(10), || async {
        app.load_shed.in_flight() == LIMIT
    })
    .await;

    // Act: 200 calls at once on another tour, and health probes meanwhile
    let connections = clients(&app, 8).await;
    let excess_requests: Vec<_> = (0..EXCESS).map(|_| booking_request(other)).collect();
    let burst = join_all(
        excess_requests
            .iter()
            .enumerate()
            .map(|(index, request)| call(connections[index % connections.len()].clone(), request.clone())),
    );
    let probes = async {
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(serving(&app).await);
        }
        statuses
    };
    let (answers, probed) = tokio::join!(burst, probes);

    // Assert: every one refused at once as OVERLOADED with a retry hint; health SERVING
    assert_eq!(app.load_shed.in_flight(), LIMIT, "the stuck calls were still in flight throughout");
    for answer in &answers {
        let status = answer.result.as_ref().expect_err("refused while the limit is taken");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason(status), "OVERLOADED");
        assert!(status.get_error_details().retry_info().and_then(|r| r.retry_delay).is_some(), "{status:?}");
    }
    assert!(probed.iter().all(|status| *status == ServingStatus::Serving), "health while shedding: {probed:?}");
    let (p50, p99) = p50_p99(answers.iter().map(|answer| answer.elapsed).collect());
    println!("overload: {EXCESS} calls over a limit of {LIMIT}: all refused OVERLOADED, p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_secs(1), "refusals must not queue: p99 {p99:?}");

    // Act: the lock goes, the stuck calls finish, the refused retry until booked
    lock.rollback().await.expect("release the tour row");
    for answer in stuck.await.expect("stuck calls") {
        answer.result.unwrap_or_else(|status| panic!("a stuck call failed: {status:?}"));
    }
    let started = Instant::now();
    let tries = retry_until_booked(&app, excess_requests.clone(), Duration::from_secs(60)).await;
    println!("overload: {EXCESS} retried to completion in {:?} ({tries} calls)", started.elapsed());

    // Assert: exactly one booking per request id, health still SERVING
    let ids = |requests: &[CreateBookingRequest]| requests.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>();
    assert_booked_once_each(&app.pool, hot, CAPACITY, &ids(&stuck_requests)).await;
    assert_booked_once_each(&app.pool, other, CAPACITY, &ids(&excess_requests)).await;
    assert_eq!(serving(&app).await, ServingStatus::Serving);
    assert_eq!(app.load_shed.in_flight(), 0);
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flash_sale_on_one_tour_leaves_the_pool_to_the_other_tours() {
    const HOT_CALLERS: usize = 150;
    const MAX_WAITING: usize = 16;
    const OTHER_TOURS: usize = 4;
    const OTHER_BOOKINGS: usize = 60;
    const CAPACITY: i32 = 500;

    // Arrange: a pool of 8 (2 turns in the database per tour), one booking
    // call per booking, and the hot tour's row held by the test
    let app = spawn_app_with(|s| {
        s.db_max_connections = 8;
        s.batch_bookings = false;
        s.tour_max_waiting = MAX_WAITING;
        patient_database(s);
    })
    .await;
    let in_database = 2;
    let hot = create_tour(&app.pool, TourSpec { capacity: CAPACITY, ..TourSpec::default() }).await.tour_id;
    let mut others = Vec::new();
    for _ in 0..OTHER_TOURS {
        others.push(create_tour(&app.pool, TourSpec { capacity: CAPACITY, ..TourSpec::default() }).await.tour_id);
    }
    let lock = lock_tour(&app.pool, hot).await;

    // Act: the sale starts; the excess answers while the rest wait on the lock
    let hot_requests: Vec<_> = (0..HOT_CALLERS).map(|_| booking_request(hot)).collect();
    let connections = clients(&app, 10).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let sale = tokio::spawn(join_all(hot_requests.iter().enumerate().map(|(index, request)| {
        let (client, answered) = (connections[index % connections.len()].clone(), answered.clone());
        let request = request.clone();
        async move {
            let answer = call(client, request).await;
            answered.fetch_add(1, Ordering::SeqCst);
            answer
        }
    })));
    wait_until("the hot tour to fill its gate and refuse the rest", Duration::from_secs(10), || async {
        answered.load(Ordering::SeqCst) == HOT_CALLERS - in_database - MAX_WAITING
            && app.load_shed.in_flight() == in_database + MAX_WAITING
    })
    .await;

    // Act: bookings on the other tours while the hot one is saturated
    let started = Instant::now();
    let mut other_requests = Vec::new();
    let mut other_latencies = Vec::new();
    for round in 0..OTHER_BOOKINGS / OTHER_TOURS {
        let requests: Vec<_> = others.iter().map(|tour| booking_request(*tour)).collect();
        let answers =
            join_all(requests.iter().enumerate().map(|(i, r)| call(connections[(round + i) % 10].clone(), r.clone())))
                .await;
        for answer in answers {
            answer.result.unwrap_or_else(|status| panic!("a booking on another tour failed: {status:?}"));
            other_latencies.push(answer.elapsed);
            other_requests.push(answer.request);
        }
    }
    let (other_p50, other_p99) = p50_p99(other_latencies);
    println!(
        "flash sale: {OTHER_BOOKINGS} bookings on {OTHER_TOURS} other tours while the hot one was saturated, \
         p50 {other_p50:?}, p99 {other_p99:?} (all in {:?})",
        started.elapsed()
    );
    assert_eq!(
        app.load_shed.in_flight(),
        in_database + MAX_WAITING,
        "the hot tour was saturated throughout: its callers were still waiting"
    );
    assert!(other_p99 < Duration::from_secs(2), "other tours must not starve: p99 {other_p99:?}");

    // Assert: the hot tour's excess was refused at once as TOUR_BUSY
    lock.rollback().await.expect("release the hot tour");
    let answers = sale.await.expect("the sale");
    let busy: Vec<&Answer> = answers
        .iter()
        .filter(|a| matches!(&a.result, Err(s) if s.code() == Code::ResourceExhausted && reason(s) == "TOUR_BUSY"))
        .collect();
    assert_eq!(busy.len(), HOT_CALLERS - in_database - MAX_WAITING, "the excess of the hot tour");
    for answer in &busy {
        let status = answer.result.as_ref().expect_err("refused");
        assert!(status.get_error_details().retry_info().and_then(|r| r.retry_delay).is_some(), "{status:?}");
    }
    let (busy_p50, busy_p99) = p50_p99(busy.iter().map(|a| a.elapsed).collect());
    println!(
        "flash sale: {} of {HOT_CALLERS} hot callers refused TOUR_BUSY, p50 {busy_p50:?}, p99 {busy_p99:?}",
        busy.len()
    );
    let unexpected: Vec<&Status> =
        answers.iter().filter_map(|a| a.result.as_ref().err()).filter(|s| !is_retryable(s)).collect();
    assert!(unexpected.is_empty(), "answers no retry would change: {unexpected:?}");

    // Act: the refused and the timed-out retry with their request ids
    let unanswered: Vec<_> = answers.iter().filter(|a| a.result.is_err()).map(|a| a.request.clone()).collect();
    let retried = unanswered.len();
    let tries = retry_until_booked(&app, unanswered, Duration::from_secs(60)).await;
    println!("flash sale: {retried} hot callers retried to completion ({tries} calls)");

    // Assert: exactly the bookings asked for, on every tour
    let ids = |requests: &[CreateBookingRequest]| requests.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>();
    assert_booked_once_each(&app.pool, hot, CAPACITY, &ids(&hot_requests)).await;
    for tour in &others {
        let mine: Vec<_> = other_requests.iter().filter(|r| r.tour_id == tour.to_string()).cloned().collect();
        assert_booked_once_each(&app.pool, *tour, CAPACITY, &ids(&mine)).await;
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_writes_nothing() {
    // Arrange: the default limit (256 KiB) and a name four times larger
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let before = write_counts(&app.pool).await;
    let mut oversized = booking_request(tour.tour_id);
    oversized.customer_name = "A".repeat(1024 * 1024);

    // Act
    let refused = app.booking().create_booking(oversized).await.expect_err("too large");

    // Assert: RESOURCE_EXHAUSTED, nothing written, the server still books
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(reason(&refused), "MESSAGE_TOO_LARGE");
    assert_eq!(write_counts(&app.pool).await, before, "nothing written");
    create_ok(&app, booking_request(tour.tour_id)).await;
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_response_over_the_size_limit_fails_its_call_and_smaller_ones_pass() {
    // Arrange: the smallest response limit, and a page of tours larger than it
    let app = spawn_app_with(|s| s.max_response_bytes = 1024).await;
    for _ in 0..20 {
        create_tour(&app.pool, TourSpec::default()).await;
    }
    let small = ListToursRequest { page_size: 1, ..ListToursRequest::default() };
    let large = ListToursRequest { page_size: 20, ..ListToursRequest::default() };

    // Act
    let small = app.booking().list_tours(small).await;
    let large = app.booking().list_tours(large).await;

    // Assert
    assert_eq!(small.expect("a page under the limit").into_inner().tours.len(), 1);
    assert_eq!(large.expect_err("a page over the limit").code(), Code::OutOfRange);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shed_calls_are_counted_by_reason() {
    // Arrange: 3 calls at once; per tour 1 in the database and 1 waiting;
    // two calls stuck on the hot tour's row lock fill its gate
    let telemetry = telemetry();
    let app = spawn_app_with(|s| {
        s.concurrency_limit = 3;
        s.batch_bookings = false;
        s.tour_max_in_database = Some(1);
        s.tour_max_waiting = 1;
        patient_database(s);
    })
    .await;
    let hot = create_tour(&app.pool, TourSpec::default()).await.tour_id;
    let other = create_tour(&app.pool, TourSpec::default()).await.tour_id;
    let hot_lock = lock_tour(&app.pool, hot).await;
    let other_lock = lock_tour(&app.pool, other).await;
    let mut stuck = Vec::new();
    for (tour, in_flight) in [(hot, 1), (hot, 2)] {
        stuck.push(tokio::spawn(call(app.booking(), booking_request(tour))));
        wait_until("the call to be in flight", Duration::from_secs(10), || async {
            app.load_shed.in_flight() == in_flight
        })
        .await;
    }

    // Act: a third on the hot tour meets its full gate; then a call stuck on
    // another tour takes the last permit and the next one meets the limit
    let busy = call(app.booking(), booking_request(hot)).await;
    stuck.push(tokio::spawn(call(app.booking(), booking_request(other))));
    wait_until("the last permit taken", Duration::from_secs(10), || async { app.load_shed.in_flight() == 3 }).await;
    let overloaded = call(app.booking(), booking_request(other)).await;

    // Assert: each refused with its reason and counted under it
    assert_eq!(busy.result.as_ref().map_err(reason).expect_err("refused"), "TOUR_BUSY");
    assert_eq!(overloaded.result.as_ref().map_err(reason).expect_err("refused"), "OVERLOADED");
    for shed_reason in ["tour_waiters", "concurrency_limit"] {
        wait_until(
            &format!("bookingd.rpc.shed{{{shed_reason}}} reaches the collector"),
            Duration::from_secs(10),
            || async {
                telemetry.received.metrics_named("bookingd.rpc.shed").iter().any(|metric| {
                    let Some(Data::Sum(sum)) = &metric.data else { return false };
                    sum.is_monotonic
                        && sum
                            .data_points
                            .iter()
                            .any(|point| string_attribute(&point.attributes, "shed.reason") == Some(shed_reason))
                })
            },
        )
        .await;
    }
    hot_lock.rollback().await.expect("release");
    other_lock.rollback().await.expect("release");
    for stuck in stuck {
        stuck.await.expect("stuck call").result.expect("booked once the locks are gone");
    }
    assert_healthy(&app.pool).await;
}
