//! SIGTERM drills on the real `bookingd` binary: readiness goes NOT_SERVING
//! at once while liveness stays SERVING, in-flight calls are answered within
//! the grace period, open streams (health Watch) are ended, and the process
//! exits within grace + a few seconds whatever clients hold open. No booking
//! is half-written: a call cut off by the exit committed whole or not at
//! all, and a retry with its `request_id` says which.

use std::time::{Duration, Instant};

use bookingd::{
    grpc::health::LIVENESS,
    proto::v1::{CreateBookingRequest, booking_service_client::BookingServiceClient},
};
use nix::{sys::signal::Signal, unistd::Pid};
use sqlx::PgPool;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    fixtures::{
        TourSpec, booking_request, bookings_with_request_id, create_tour, lock_tour, reason, sessions_waiting_on_locks,
    },
    helpers::{Authed, assert_healthy, wait_until},
    process::{Replica, migrated_database},
};

/// Extra time the process may take past its grace period: ending streams,
/// closing connections, the pool and the background tasks (each bounded at
/// 2 s), and the process exit itself.
const EXIT_SLACK: Duration = Duration::from_secs(7);

/// Waits until `n` sessions of the database wait on a lock.
async fn wait_for_blocked_calls(pool: &PgPool, n: i64) {
    wait_until("booking calls blocked on the tour's row lock", Duration::from_secs(20), || async {
        sessions_waiting_on_locks(pool).await >= n
    })
    .await;
}

fn sigterm(replica: &Replica) -> Instant {
    let pid = replica.child.id().expect("bookingd is running") as i32;
    nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM).expect("send SIGTERM");
    Instant::now()
}

/// Starts one CreateBooking in the background.
fn book_in_background(
    mut client: BookingServiceClient<Authed>,
    request: CreateBookingRequest,
) -> tokio::task::JoinHandle<Result<bookingd::proto::v1::Booking, tonic::Status>> {
    tokio::spawn(async move {
        client.create_booking(request).await.map(|r| r.into_inner().booking.expect("a booking in the answer"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_an_open_watch_and_a_call_in_flight_answers_the_call_ends_the_watch_and_exits_in_time() {
    // Arrange: a server with a 3 s grace, a Watch stream open on readiness,
    // and a booking blocked on the tour's row lock
    let (url, pool) = migrated_database().await;
    let tour = create_tour(&pool, TourSpec { capacity: 10, ..TourSpec::default() }).await.tour_id;
    let grace = Duration::from_secs(3);
    let mut replica =
        Replica::start(&url, &[("BOOKINGD_SHUTDOWN_GRACE", "3s"), ("BOOKINGD_BATCH_BOOKINGS", "false")]).await;
    let mut health = HealthClient::new(replica.channel());
    let mut watch = health.watch(HealthCheckRequest { service: String::new() }).await.expect("watch").into_inner();
    let first = watch.next().await.expect("a first status").expect("status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let mut liveness =
        health.watch(HealthCheckRequest { service: LIVENESS.to_owned() }).await.expect("watch").into_inner();
    assert_eq!(liveness.next().await.expect("a first status").expect("status").status(), ServingStatus::Serving);
    let lock = lock_tour(&pool, tour).await;
    let request = booking_request(tour);
    let in_flight = book_in_background(replica.booking(), request.clone());
    wait_for_blocked_calls(&pool, 1).await;

    // Act: SIGTERM, then let the blocked call through well within the grace
    let sent = sigterm(&replica);
    let next = tokio::time::timeout(Duration::from_secs(2), watch.next()).await.expect("Watch hears of the shutdown");
    let not_serving = next.expect("an update").expect("status");
    let readiness_after = sent.elapsed();
    assert_eq!(not_serving.status(), ServingStatus::NotServing, "readiness goes NOT_SERVING first");
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.rollback().await.expect("release the tour");
    let answered = in_flight.await.expect("the call's task");
    let answered_after = sent.elapsed();
    // the call was the last one in flight: the Watch need not wait out the grace
    let watch_end = tokio::time::timeout(grace, watch.next()).await.expect("the Watch ends before the grace is over");
    let watch_ended_after = sent.elapsed();
    let status = tokio::time::timeout(grace + EXIT_SLACK, replica.child.wait())
        .await
        .expect("bookingd exits within grace + slack")
        .expect("wait for bookingd");
    let exited_after = sent.elapsed();

    // Assert
    println!(
        "readiness NOT_SERVING after {readiness_after:?}, in-flight call answered after {answered_after:?}, \
         Watch ended after {watch_ended_after:?}, exit after {exited_after:?} (grace {grace:?})"
    );
    let booking = answered.expect("the in-flight call is answered, not cut off");
    assert_eq!(booking.request_id, request.request_id);
    match watch_end {
        None => {}
        Some(Err(status)) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(reason(&status), "SHUTTING_DOWN");
        }
        Some(Ok(update)) => panic!("the Watch stream should end, got {update:?}"),
    }
    // liveness never left SERVING: the process was stopping, not broken
    let liveness_end = liveness.next().await;
    assert!(
        !matches!(&liveness_end, Some(Ok(update)) if update.status() != ServingStatus::Serving),
        "liveness must not flip: {liveness_end:?}"
    );
    assert!(status.success(), "clean exit: {status:?}\n{}", replica.all_logs());
    assert!(exited_after < grace + EXIT_SLACK, "exit took {exited_after:?}");
    assert_eq!(bookings_with_request_id(&pool, &request.request_id).await, 1);
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_call_blocked_past_the_grace_period_exits_in_time_and_leaves_no_half_booking() {
    // Arrange: a 1 s grace and a call that stays blocked past it
    let (url, pool) = migrated_database().await;
    let tour = create_tour(&pool, TourSpec { capacity: 10, ..TourSpec::default() }).await.tour_id;
    let grace = Duration::from_secs(1);
    // the database's own lock and statement timeouts longer than grace +
    // close, so that the call is still blocked when the process exits
    let env = [
        ("BOOKINGD_SHUTDOWN_GRACE", "1s"),
        ("USE_LEGACY_BOOKING_SERVICE", "true"),
        ("BOOKINGD_DB_LOCK_TIMEOUT", "8s"),
        ("BOOKINGD_DB_STATEMENT_TIMEOUT", "9s"),
    ];
    let mut replica = Replica::start(&url, &env).await;
    let lock = lock_tour(&pool, tour).await;
    let request = booking_request(tour);
    let in_flight = book_in_background(replica.booking(), request.clone());
    wait_for_blocked_calls(&pool, 1).await;

    // Act
    let sent = sigterm(&replica);
    let status = tokio::time::timeout(grace + EXIT_SLACK, replica.child.wait())
        .await
        .expect("bookingd exits within grace + slack although a call is stuck")
        .expect("wait for bookingd");
    let exited_after = sent.elapsed();
    let cut_off = in_flight.await.expect("the call's task");
    lock.rollback().await.expect("release the tour");

    // Assert: the caller was told to retry, and a retry on a fresh server
    // with the same key finds the booking whole or makes it (never two)
    println!("exit after {exited_after:?} (grace {grace:?}); the blocked call got {cut_off:?}");
    assert!(status.success(), "clean exit: {status:?}\n{}", replica.all_logs());
    let cut_off = cut_off.expect_err("the blocked call cannot have succeeded");
    assert!(
        matches!(cut_off.code(), Code::Unavailable | Code::Cancelled | Code::Unknown),
        "a retryable transport answer, got {cut_off:?}"
    );
    let next = Replica::start(&url, &[]).await;
    let retried = next.booking().create_booking(request.clone()).await.expect("the retry is answered");
    let booking = retried.into_inner().booking.expect("booking");
    assert_eq!(booking.request_id, request.request_id);
    assert_eq!(bookings_with_request_id(&pool, &request.request_id).await, 1, "exactly one booking for the key");
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_server_refuses_new_connections_and_exits_at_once_when_idle() {
    // Arrange
    let (url, pool) = migrated_database().await;
    let mut replica = Replica::start(&url, &[("BOOKINGD_SHUTDOWN_GRACE", "30s")]).await;
    assert_eq!(replica.health().await, Some(ServingStatus::Serving));

    // Act
    let sent = sigterm(&replica);
    let status = tokio::time::timeout(Duration::from_secs(10), replica.child.wait())
        .await
        .expect("an idle server does not wait out its 30 s grace")
        .expect("wait for bookingd");

    // Assert
    println!("idle exit after {:?}", sent.elapsed());
    assert!(status.success(), "clean exit: {status:?}\n{}", replica.all_logs());
    assert_eq!(replica.health().await, None, "nothing listens any more");
    assert_healthy(&pool).await;
}
