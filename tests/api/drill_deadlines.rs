//! Deadline drills: a caller's deadline reaches the database (a blocked
//! booking is cancelled there before the deadline fires, leaving nothing
//! running and nothing committed), a client that cancels mid-call and
//! retries gets exactly one booking, the session timeouts are in force on
//! the service's pooled connections (sent as startup parameters or set after
//! connecting), and hold expiry is computed by the
//! database's clock. Every drill runs on the three booking paths.

use std::time::{Duration, Instant};

use bookingd::{config::Settings, db::TimeoutsVia};
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

use crate::{
    fixtures::{
        TourSpec, audit_count, booking_request, bookings_with_request_id, create_ok, create_tour, lock_tour, reason,
    },
    helpers::{TestApp, assert_healthy, spawn_app_with, wait_until},
};

/// The three ways a booking reaches the database.
#[derive(Debug, Clone, Copy)]
enum Path {
    AtomicAlone,
    AtomicBatched,
    Legacy,
}

const PATHS: [Path; 3] = [Path::AtomicAlone, Path::AtomicBatched, Path::Legacy];

impl Path {
    fn configure(self, settings: &mut Settings) {
        match self {
            Path::AtomicAlone => settings.batch_bookings = false,
            Path::AtomicBatched => settings.batch_bookings = true,
            Path::Legacy => settings.use_legacy_booking_service = Some(true),
        }
    }
}

/// bookingd's booking statements still running in the test's database
/// (waiting for a lock or working), by `pg_stat_activity`.
async fn booking_statements_running(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
          where datname = current_database() and application_name = 'bookingd'
            and pid <> pg_backend_pid() and state <> 'idle'
            and (query like '%create_booking_atomic%' or query like '%for update%')",
    )
    .fetch_one(pool)
    .await
    .expect("read pg_stat_activity")
}

/// A booking waiting on a locked tour ends at the session's `lock_timeout`
/// (300 ms, far below the request timeout of 10 s), however the session got it.
async fn a_lock_wait_ends_at_the_session_lock_timeout(path: Path, via: TimeoutsVia) {
    // Arrange: a lock timeout far below the request timeout (10 s)
    let app: TestApp = spawn_app_with(|s| {
        path.configure(s);
        s.db_lock_timeout = Duration::from_millis(300);
        s.db_timeouts_via = via;
    })
    .await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let blocker = lock_tour(&app.pool, tour.tour_id).await;
    let request = booking_request(tour.tour_id);

    // Act: no grpc-timeout, so only the session's lock_timeout can end the wait
    let started = Instant::now();
    let refused = app.booking().create_booking(request.clone()).await.expect_err("the tour is locked");
    let took = started.elapsed();
    blocker.rollback().await.expect("release the lock");

    // Assert: ABORTED LOCK_TIMEOUT from the database, long before the request timeout
    println!("{path:?} ({via:?}): lock held → {:?} {} after {took:?}", refused.code(), reason(&refused));
    assert_eq!(refused.code(), Code::Aborted, "{path:?}: {refused:?}");
    assert_eq!(reason(&refused), "LOCK_TIMEOUT", "{path:?}");
    assert!(took < Duration::from_secs(3), "{path:?}: the lock wait took {took:?}");
    assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 0, "{path:?}");
    // the same request, retried once the lock is gone, books
    app.booking().create_booking(request.clone()).await.expect("retry books");
    assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 1, "{path:?}");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

#[tokio::test]
async fn a_lock_held_past_the_session_lock_timeout_fails_the_booking_fast_on_every_path() {
    for path in PATHS {
        a_lock_wait_ends_at_the_session_lock_timeout(path, TimeoutsVia::StartupParameters).await;
    }
}

#[tokio::test]
async fn session_timeouts_set_after_connecting_are_in_force_on_every_path() {
    // the form used behind PgBouncer 1.18, which refuses the `options` startup parameter
    for path in PATHS {
        a_lock_wait_ends_at_the_session_lock_timeout(path, TimeoutsVia::Set).await;
    }
}

#[tokio::test]
async fn a_booking_blocked_past_the_callers_deadline_is_cancelled_in_the_database_and_commits_nothing() {
    for path in PATHS {
        // Arrange: the tour's row is locked by a transaction of the test's own
        let app = spawn_app_with(|s| path.configure(s)).await;
        let tour = create_tour(&app.pool, TourSpec::default()).await;
        let blocker = lock_tour(&app.pool, tour.tour_id).await;
        let request = booking_request(tour.tour_id);

        // Act: a caller that gives the call 500 ms (grpc-timeout)
        let mut call = tonic::Request::new(request.clone());
        call.set_timeout(Duration::from_millis(500));
        let started = Instant::now();
        let refused = app.booking().create_booking(call).await.expect_err("the tour is locked");
        let took = started.elapsed();

        // Assert: DEADLINE_EXCEEDED from the database's own cancel (its
        // reason), within about the deadline; nothing of the call is left
        // waiting while the lock is still held, so releasing it commits nothing
        println!("{path:?}: 500 ms deadline → {:?} {} after {took:?}", refused.code(), reason(&refused));
        assert_eq!(refused.code(), Code::DeadlineExceeded, "{path:?}: {refused:?}");
        assert_eq!(reason(&refused), "DATABASE_TIMEOUT", "{path:?}: the database did not cancel it first");
        assert!(took < Duration::from_millis(1500), "{path:?}: answered after {took:?}");
        let waited = Instant::now();
        wait_until("the cancelled booking statement to be gone", Duration::from_secs(2), || async {
            booking_statements_running(&app.pool).await == 0
        })
        .await;
        println!("{path:?}: no booking statement running {:?} after the answer", waited.elapsed());
        blocker.rollback().await.expect("release the lock");
        assert_eq!(booking_statements_running(&app.pool).await, 0, "{path:?}");
        assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 0, "{path:?}: committed");
        // the caller's own short deadline is not a service failure: the
        // runbook's failure-rate monitor must not count it
        assert_eq!(audit_count(&app.pool, "creation_failed").await, 0, "{path:?}: recorded as a failure");
        assert_healthy(&app.pool).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_client_that_cancels_mid_call_and_retries_gets_exactly_one_booking() {
    for path in PATHS {
        // Arrange: a booking blocked on the tour's row lock
        let app = spawn_app_with(|s| path.configure(s)).await;
        let tour = create_tour(&app.pool, TourSpec::default()).await;
        let blocker = lock_tour(&app.pool, tour.tour_id).await;
        let request = booking_request(tour.tour_id);
        let mut client = app.booking();
        let first = request.clone();
        let call = tokio::spawn(async move { client.create_booking(first).await });
        wait_until("the booking to wait for the tour's lock", Duration::from_secs(5), || async {
            booking_statements_running(&app.pool).await == 1
        })
        .await;

        // Act: the client gives up (the call's future is dropped), the lock
        // is released, the client retries with the same request id
        call.abort();
        assert!(call.await.expect_err("aborted").is_cancelled());
        blocker.rollback().await.expect("release the lock");
        let retried = app.booking().create_booking(request.clone()).await.expect("the retry is answered").into_inner();

        // Assert: one booking under the key, whichever call made it; nothing left running
        println!("{path:?}: cancelled mid-call, retry replayed = {}", retried.replayed);
        assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 1, "{path:?}");
        let again = create_ok(&app, request.clone()).await;
        assert_eq!(Some(&again), retried.booking.as_ref(), "{path:?}: the key answers with its one booking");
        wait_until("no booking statement running", Duration::from_secs(2), || async {
            booking_statements_running(&app.pool).await == 0
        })
        .await;
        assert_healthy(&app.pool).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn hold_expiry_is_the_database_transaction_time_plus_the_hold_on_every_path() {
    for path in PATHS {
        // Arrange
        let app = spawn_app_with(|s| path.configure(s)).await;
        let tour = create_tour(&app.pool, TourSpec::default()).await;

        // Act: a booking holding its seat for 120 s
        let booking = create_ok(
            &app,
            bookingd::proto::v1::CreateBookingRequest { hold_seconds: Some(120), ..booking_request(tour.tour_id) },
        )
        .await;

        // Assert: the hold ends exactly 120 s after the row's created_at (the
        // database's transaction time), not at an instant of the app's clock
        let hold: f64 = sqlx::query_scalar(
            "select extract(epoch from hold_expires_at - created_at)::float8 from bookings where id = $1::uuid",
        )
        .bind(&booking.id)
        .fetch_one(&app.pool)
        .await
        .expect("hold of the booking");
        println!("{path:?}: hold_expires_at - created_at = {hold} s");
        assert!((hold - 120.0).abs() < 0.000_001, "{path:?}: {hold}");
        assert_healthy(&app.pool).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_payload_without_a_hold_length_keeps_its_own_hold_expires_at() {
    // Arrange: a payload as the previous bookingd (mid rolling deploy) or a
    // hand-made call sends it: a hold_expires_at and no hold_seconds
    let app = spawn_app_with(|_| {}).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let payload = serde_json::json!({
        "id": Uuid::new_v4(),
        "booking_reference": "BK-PREVBIN1",
        "request_id": "previous-binary",
        "request_fingerprint": "fingerprint of the previous binary",
        "tour_id": tour.tour_id,
        "num_adults": 1,
        "num_children": 0,
        "customer_name": "Grace Hopper",
        "customer_email": "grace@example.com",
        "hold_expires_at": "2099-01-01T00:00:00Z",
    });

    // Act
    let hold: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select hold_expires_at from create_booking_atomic($1, null)")
            .bind(&payload)
            .fetch_one(&app.pool)
            .await
            .expect("the function accepts the payload");

    // Assert
    assert_eq!(hold.to_rfc3339(), "2099-01-01T00:00:00+00:00");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

#[tokio::test]
async fn a_cancellation_blocked_past_the_callers_deadline_is_cancelled_in_the_database() {
    // Arrange: a booking whose row a transaction of the test's own has locked
    let app = spawn_app_with(|_| {}).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let booking = create_ok(&app, booking_request(tour.tour_id)).await;
    let mut blocker = app.pool.begin().await.expect("begin the blocker");
    sqlx::query("select 1 from bookings where id = $1::uuid for update")
        .bind(&booking.id)
        .execute(&mut *blocker)
        .await
        .expect("lock the booking row");

    // Act: a cancellation that gives the call 500 ms
    let mut call = tonic::Request::new(bookingd::proto::v1::CancelBookingRequest {
        booking_id: booking.id.clone(),
        reason: "changed plans".into(),
    });
    call.set_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let refused = app.booking().cancel_booking(call).await.expect_err("the booking is locked");
    let took = started.elapsed();

    // Assert: the database cancelled it; once the lock is gone the booking is still pending
    println!("cancel with a 500 ms deadline → {:?} {} after {took:?}", refused.code(), reason(&refused));
    assert_eq!(refused.code(), Code::DeadlineExceeded, "{refused:?}");
    assert_eq!(reason(&refused), "DATABASE_TIMEOUT");
    wait_until("the cancelled statement to be gone", Duration::from_secs(2), || async {
        booking_statements_running(&app.pool).await == 0
    })
    .await;
    blocker.rollback().await.expect("release the lock");
    let status: String = sqlx::query_scalar("select booking_status from bookings where id = $1::uuid")
        .bind(&booking.id)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "pending");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

#[tokio::test]
async fn a_batched_booking_whose_deadline_nears_while_it_queues_is_booked_alone_with_its_deadline() {
    // Arrange: group commit, sessions bounded at 1 s; a first booking of a
    // locked tour occupies the tour's lane for that second
    let app = spawn_app_with(|s| {
        Path::AtomicBatched.configure(s);
        s.db_statement_timeout = Duration::from_secs(1);
        s.db_lock_timeout = Duration::from_secs(1);
    })
    .await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let blocker = lock_tour(&app.pool, tour.tour_id).await;
    let mut client = app.booking();
    let first = booking_request(tour.tour_id);
    let occupying = tokio::spawn(async move { client.create_booking(first).await });
    wait_until("the first booking to wait for the tour's lock", Duration::from_secs(5), || async {
        booking_statements_running(&app.pool).await == 1
    })
    .await;

    // Act: a caller with 1.3 s, more than the session's 1 s when it arrives,
    // queues behind the first one's batch
    let second = booking_request(tour.tour_id);
    let mut call = tonic::Request::new(second.clone());
    call.set_timeout(Duration::from_millis(1300));
    let started = Instant::now();
    let refused = app.booking().create_booking(call).await.expect_err("the tour is locked");
    let took = started.elapsed();

    // Assert: once its deadline came nearer than the batch could run, it was
    // booked alone and the database cancelled it before the deadline
    println!("queued with a 1.3 s deadline → {:?} {} after {took:?}", refused.code(), reason(&refused));
    assert_eq!(refused.code(), Code::DeadlineExceeded, "{refused:?}");
    assert_eq!(reason(&refused), "DATABASE_TIMEOUT");
    let occupied = occupying.await.expect("first call").expect_err("the first booking timed out too");
    println!("the first booking → {:?} {}", occupied.code(), reason(&occupied));
    wait_until("no booking statement running", Duration::from_secs(2), || async {
        booking_statements_running(&app.pool).await == 0
    })
    .await;
    blocker.rollback().await.expect("release the lock");
    assert_eq!(bookings_with_request_id(&app.pool, &second.request_id).await, 0);
    assert_healthy(&app.pool).await;
    app.stop().await;
}
