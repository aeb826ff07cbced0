//! Concurrency: storms on a 50-seat tour on both paths and through a drop
//! and redeploy of the database functions, racing idempotent retries, and
//! cancelling everything.

use std::time::Duration;

use bookingd::{
    db,
    flags::USE_LEGACY_BOOKING_SERVICE,
    grpc::health::ATOMIC_PATH,
    proto::v1::{CodePath, SetFlagRequest},
};
use futures::future::join_all;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{
    fixtures::{
        Interlude, TourSpec, assert_sold_exactly, audit_count, available_spots, booking_request, cancel, create_ok,
        create_tour, error_metadata, reason, storm, wait_for_audit,
    },
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_on, spawn_app_with, wait_until},
};

const REQUESTS: usize = 300;
const CONNECTIONS: usize = 50;
const SEATS: i32 = 50;

async fn health_of(app: &TestApp, service: &str) -> Option<ServingStatus> {
    let response = app.health().check(HealthCheckRequest { service: service.to_owned() }).await.ok()?;
    Some(response.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_on_the_atomic_path_sells_exactly_the_seats_there_are() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: SEATS, ..TourSpec::default() }).await;

    let outcome = storm(&app, tour.tour_id, REQUESTS, CONNECTIONS, vec![]).await;

    assert_sold_exactly(&app, tour.tour_id, SEATS, REQUESTS, &outcome).await;
    assert_eq!(outcome.on_path(CodePath::Atomic), outcome.bookings.len(), "all served by the atomic path");
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_on_the_legacy_path_sells_exactly_the_seats_there_are() {
    let app = spawn_app_with(|s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: SEATS, ..TourSpec::default() }).await;

    let outcome = storm(&app, tour.tour_id, REQUESTS, CONNECTIONS, vec![]).await;

    assert_sold_exactly(&app, tour.tour_id, SEATS, REQUESTS, &outcome).await;
    assert_eq!(outcome.on_path(CodePath::Legacy), outcome.bookings.len(), "all served by the legacy path");
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_survives_the_functions_being_dropped_and_redeployed_mid_storm() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: SEATS, ..TourSpec::default() }).await;
    let side_tour = create_tour(&app.pool, TourSpec::default()).await;

    let dropped = async {
        db::functions::rollback(&app.pool, "test", "emergency rollback mid-storm").await.expect("rollback");
        // a booking while the functions are gone is served by the legacy path
        let booking = create_ok(&app, booking_request(side_tour.tour_id)).await;
        assert_eq!(booking.code_path(), CodePath::Legacy);
        wait_until("atomic path NOT_SERVING while the service stays SERVING", Duration::from_secs(10), || async {
            health_of(&app, ATOMIC_PATH).await == Some(ServingStatus::NotServing)
                && health_of(&app, "").await == Some(ServingStatus::Serving)
        })
        .await;
    };
    let redeployed = async {
        db::functions::deploy(&app.pool, "test", "redeploy mid-storm").await.expect("deploy");
        wait_until("atomic path SERVING again", Duration::from_secs(10), || async {
            health_of(&app, ATOMIC_PATH).await == Some(ServingStatus::Serving)
        })
        .await;
    };
    let outcome = storm(
        &app,
        tour.tour_id,
        REQUESTS,
        CONNECTIONS,
        vec![Interlude::new(20, dropped), Interlude::new(150, redeployed)],
    )
    .await;

    assert_sold_exactly(&app, tour.tour_id, SEATS, REQUESTS, &outcome).await;
    wait_for_audit(&app.pool, "atomic_path_restored").await;
    let transitions: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "select action, details from audit_logs where action like 'atomic_path%' or table_name = 'database_functions' order by id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("transitions");
    assert_eq!(
        audit_count(&app.pool, "atomic_path_unavailable").await,
        1,
        "one audit row per transition: {transitions:#?}"
    );
    assert_eq!(audit_count(&app.pool, "atomic_path_restored").await, 1, "one audit row per transition");
    let after = create_ok(&app, booking_request(side_tour.tour_id)).await;
    assert_eq!(after.code_path(), CodePath::Atomic, "the atomic path is used again once redeployed");
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_survives_the_flag_flipped_back_and_forth_mid_storm() {
    let app = spawn_app().await;
    // seats for most of the storm, so bookings (which record their path) are
    // made between every flip; refusals record none
    let seats = REQUESTS as i32 - CONNECTIONS as i32;
    let tour = create_tour(&app.pool, TourSpec { capacity: seats, ..TourSpec::default() }).await;
    // 60 answers apart: at most CONNECTIONS were in flight at a flip, so
    // requests are launched on every side of every flip
    let flip = |after_completed, legacy| {
        let app = &app;
        Interlude::new(after_completed, async move {
            let request = SetFlagRequest {
                key: USE_LEGACY_BOOKING_SERVICE.to_owned(),
                enabled: legacy,
                reason: "flipped mid-storm".to_owned(),
            };
            app.admin().set_flag(request).await.expect("flip the flag");
        })
    };

    let outcome =
        storm(&app, tour.tour_id, REQUESTS, CONNECTIONS, vec![flip(60, true), flip(120, false), flip(180, true)]).await;

    assert_sold_exactly(&app, tour.tour_id, seats, REQUESTS, &outcome).await;
    let served_by: Vec<(String, i64)> = sqlx::query_as(
        "select code_path, count(*) from bookings where tour_id = $1 group by code_path order by code_path",
    )
    .bind(tour.tour_id)
    .fetch_all(&app.pool)
    .await
    .expect("bookings by path");
    assert_eq!(served_by.iter().map(|(_, n)| n).sum::<i64>(), seats as i64, "{served_by:?}");
    assert_eq!(served_by.iter().map(|(path, _)| path.as_str()).collect::<Vec<_>>(), ["atomic", "legacy"]);
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_retries_of_one_request_create_one_booking_on_either_path() {
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&atomic.pool, TourSpec::default()).await;
    let mut request = booking_request(tour.tour_id);
    request.num_adults = 2;

    // the same request, 40 times at once, half through each path
    let attempts = (0..40).map(|i| {
        let app = if i % 2 == 0 { &atomic } else { &legacy };
        let request = request.clone();
        async move { app.booking().create_booking(request).await }
    });
    let answers = join_all(attempts).await;

    let responses: Vec<_> = answers.into_iter().map(|a| a.expect("every retry succeeds").into_inner()).collect();
    let first = responses[0].booking.clone().expect("booking");
    assert!(responses.iter().all(|r| r.booking.as_ref().map(|b| &b.id) == Some(&first.id)), "one booking id");
    assert_eq!(responses.iter().filter(|r| !r.replayed).count(), 1, "exactly one original, the rest replays");
    let stored: i64 = sqlx::query_scalar("select count(*) from bookings where request_id = $1")
        .bind(&request.request_id)
        .fetch_one(&atomic.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1);
    assert_eq!(available_spots(&atomic.pool, tour.tour_id).await, 48);
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn a_reused_key_with_a_different_request_is_refused_on_either_path() {
    // Arrange
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&atomic.pool, TourSpec::default()).await;
    let other_tour = create_tour(&atomic.pool, TourSpec::default()).await;
    let request = booking_request(tour.tour_id);
    create_ok(&atomic, request.clone()).await;

    // Act
    let mut more_seats = request.clone();
    more_seats.num_adults = 3;
    let mut other_tour_request = request.clone();
    other_tour_request.tour_id = other_tour.tour_id.to_string();

    // Assert
    for (app, changed) in
        [(&atomic, &more_seats), (&legacy, &more_seats), (&atomic, &other_tour_request), (&legacy, &other_tour_request)]
    {
        let refusal = app.booking().create_booking(changed.clone()).await.expect_err("key reused");
        assert_eq!(refusal.code(), tonic::Code::AlreadyExists);
        assert_eq!(reason(&refusal), "IDEMPOTENCY_KEY_REUSED");
    }
    let replay = legacy.booking().create_booking(request).await.expect("same request replays").into_inner();
    assert!(replay.replayed);
    assert_eq!(available_spots(&atomic.pool, tour.tour_id).await, 49);
    assert_eq!(available_spots(&atomic.pool, other_tour.tour_id).await, 50);
    assert_healthy(&atomic.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_everything_gives_every_tour_its_capacity_back() {
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tours = [
        create_tour(&atomic.pool, TourSpec { capacity: 12, ..TourSpec::default() }).await,
        create_tour(&atomic.pool, TourSpec { capacity: 9, from_template: true, ..TourSpec::default() }).await,
    ];
    let mut bookings = Vec::new();
    for (i, tour) in tours.iter().enumerate() {
        let outcome = storm(if i == 0 { &atomic } else { &legacy }, tour.tour_id, 30, 10, vec![]).await;
        assert!(outcome.other_errors.is_empty(), "{:?}", outcome.other_errors);
        bookings.extend(outcome.bookings);
    }
    assert_eq!(bookings.len(), 21);

    // every booking cancelled twice at once, through both paths' servers
    let cancels = bookings.iter().flat_map(|b| [(&atomic, b.id.clone()), (&legacy, b.id.clone())]);
    let answers = join_all(cancels.map(|(app, id)| async move { cancel(app, &id).await })).await;

    assert_eq!(answers.iter().filter(|a| a.seats_released).count(), bookings.len(), "each released exactly once");
    for tour in &tours {
        let capacity: i32 = sqlx::query_scalar("select max_capacity from tours where id = $1")
            .bind(tour.tour_id)
            .fetch_one(&atomic.pool)
            .await
            .expect("capacity");
        assert_eq!(available_spots(&atomic.pool, tour.tour_id).await, capacity);
    }
    assert_eq!(audit_count(&atomic.pool, "spots_restored").await, bookings.len() as i64);
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn sold_out_says_how_many_seats_are_left() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 5, ..TourSpec::default() }).await;
    let mut three = booking_request(tour.tour_id);
    three.num_adults = 3;
    create_ok(&app, three).await;

    // Act
    let mut four = booking_request(tour.tour_id);
    four.num_adults = 4;
    let refusal = app.booking().create_booking(four).await.expect_err("sold out");

    // Assert
    assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
    assert_eq!(reason(&refusal), "SOLD_OUT");
    assert_eq!(error_metadata(&refusal, "seats_left").as_deref(), Some("2"));
    assert!(refusal.message().contains("2 left"), "{}", refusal.message());
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_roll_back_and_redeploy_through_the_admin_api_while_bookings_flow() {
    // Arrange: bookings made on the atomic path, to be cancelled while the
    // trigger is gone (the application must give their seats back)
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: SEATS, ..TourSpec::default() }).await;
    let side_tour = create_tour(&app.pool, TourSpec { capacity: 40, ..TourSpec::default() }).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(create_ok(&app, booking_request(side_tour.tour_id)).await);
    }
    assert!(held.iter().all(|b| b.code_path() == CodePath::Atomic));

    let rolled_back = async {
        let response = app
            .admin()
            .rollback_functions(bookingd::proto::v1::RollbackFunctionsRequest { reason: "incident drill".into() })
            .await
            .expect("rollback")
            .into_inner();
        assert!(response.checks.iter().any(|c| !c.passed), "post-deployment checks report the functions gone");
        for booking in &held {
            assert!(cancel(&app, &booking.id).await.seats_released, "seats come back without the trigger");
        }
        let during = create_ok(&app, booking_request(side_tour.tour_id)).await;
        assert_eq!(during.code_path(), CodePath::Legacy, "served by the fallback while the functions are gone");
        assert!(cancel(&app, &during.id).await.seats_released);
    };
    let redeployed = async {
        let response = app
            .admin()
            .deploy_functions(bookingd::proto::v1::DeployFunctionsRequest { reason: "incident over".into() })
            .await
            .expect("deploy")
            .into_inner();
        assert!(response.checks.iter().all(|c| c.passed), "{:?}", response.checks);
        wait_until("atomic path SERVING again", Duration::from_secs(10), || async {
            health_of(&app, ATOMIC_PATH).await == Some(ServingStatus::Serving)
        })
        .await;
    };

    // Act
    let outcome = storm(
        &app,
        tour.tour_id,
        REQUESTS,
        CONNECTIONS,
        vec![Interlude::new(30, rolled_back), Interlude::new(150, redeployed)],
    )
    .await;

    // Assert: nothing oversold, nothing lost, seats of the cancelled holds back exactly once
    assert_sold_exactly(&app, tour.tour_id, SEATS, REQUESTS, &outcome).await;
    assert_eq!(available_spots(&app.pool, side_tour.tour_id).await, 40);
    let after = create_ok(&app, booking_request(side_tour.tour_id)).await;
    assert_eq!(after.code_path(), CodePath::Atomic, "the atomic path is used again once redeployed");
    assert_healthy(&app.pool).await;
}
