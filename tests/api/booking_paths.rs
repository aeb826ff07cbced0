//! The two code paths: identical bookings and refusals for identical
//! requests, identical rounding, exactly-once seat release in every
//! combination of creating path × trigger present/absent × cancelling
//! server, and the fallback to legacy (with health) when the atomic path's
//! database objects are missing.

use std::time::Duration;

use bookingd::{
    booking::pricing,
    db,
    grpc::health::ATOMIC_PATH,
    proto::v1::{Booking, BookingStatus, CodePath, CreateBookingRequest},
};
use rust_decimal::Decimal;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use uuid::Uuid;

use crate::{
    fixtures::{
        TourSpec, audit_count, available_spots, booking_request, cancel, create_ok, create_tour, error_metadata,
        reason, releases_of, wait_for_audit,
    },
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_on, wait_until},
};

async fn atomic_path_health(app: &TestApp) -> Option<ServingStatus> {
    let request = HealthCheckRequest { service: ATOMIC_PATH.to_owned() };
    Some(app.health().check(request).await.ok()?.into_inner().status())
}

async fn overall_health(app: &TestApp) -> Option<ServingStatus> {
    Some(app.health().check(HealthCheckRequest::default()).await.ok()?.into_inner().status())
}

fn is_readable_reference(reference: &str) -> bool {
    reference
        .strip_prefix("BK-")
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b"ABCDEFGHJKMNPQRSTVWXYZ23456789".contains(&b)))
}

/// Everything that must not depend on the path.
fn path_independent(booking: &Booking) -> impl PartialEq + std::fmt::Debug {
    (
        booking.tour_id.clone(),
        booking.schedule_id.clone(),
        booking.operator_id.clone(),
        booking.customer_name.clone(),
        booking.customer_email.clone(),
        booking.customer_whatsapp.clone(),
        (booking.num_adults, booking.num_children),
        (booking.subtotal_cents, booking.commission_amount_cents, booking.total_amount_cents),
        booking.applied_commission_rate.clone(),
        booking.currency_code.clone(),
        booking.status(),
        booking.hold_expires_at.is_some(),
    )
}

#[tokio::test]
async fn identical_requests_make_identical_bookings_on_both_paths() {
    // Arrange
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    // 1236 × 12.5 % = 154.5: only half-away-from-zero rounding gives 155
    let halves =
        create_tour(&atomic.pool, TourSpec { adult_price_cents: 1236, child_price_cents: 618, ..TourSpec::default() })
            .await;
    let odd = create_tour(
        &atomic.pool,
        TourSpec { adult_price_cents: 9999, child_price_cents: 4321, commission_rate: "7.25", ..TourSpec::default() },
    )
    .await;
    let instance = create_tour(&atomic.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;

    // Act
    for tour in [halves, odd, instance] {
        for (adults, children) in [(1, 0), (0, 1), (2, 1), (3, 3), (1, 4)] {
            let request = || CreateBookingRequest {
                num_adults: adults,
                num_children: children,
                customer_whatsapp: "+4915112345678".into(),
                ..booking_request(tour.tour_id)
            };
            let on_atomic = create_ok(&atomic, request()).await;
            let on_legacy = create_ok(&legacy, request()).await;

            // Assert
            assert_eq!(path_independent(&on_atomic), path_independent(&on_legacy), "{adults}+{children}");
            assert_eq!(on_atomic.code_path(), CodePath::Atomic);
            assert_eq!(on_legacy.code_path(), CodePath::Legacy);
            assert_eq!(on_atomic.status(), BookingStatus::Pending);
            assert!(is_readable_reference(&on_atomic.booking_reference), "{}", on_atomic.booking_reference);
            assert!(is_readable_reference(&on_legacy.booking_reference), "{}", on_legacy.booking_reference);
            assert_eq!(on_atomic.total_amount_cents, on_atomic.subtotal_cents, "the customer pays the subtotal");
        }
    }
    let half = sqlx::query_scalar::<_, i64>(
        "select commission_amount from bookings where tour_id = $1 and num_adults = 1 and num_children = 0",
    )
    .bind(halves.tour_id)
    .fetch_all(&atomic.pool)
    .await
    .expect("commissions");
    assert_eq!(half, [155, 155]);
    let captured: i64 = sqlx::query_scalar("select count(*) from bookings where tour_id = $1 and schedule_id = $2")
        .bind(instance.tour_id)
        .bind(instance.schedule_id)
        .fetch_one(&atomic.pool)
        .await
        .expect("schedule ids");
    assert_eq!(captured, 10, "both paths capture the schedule of template instances");
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn both_paths_refuse_the_same_requests_the_same_way() {
    // Arrange
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let small = create_tour(&atomic.pool, TourSpec { capacity: 2, ..TourSpec::default() }).await;
    let maintenance = create_tour(&atomic.pool, TourSpec { status: "maintenance", ..TourSpec::default() }).await;
    let instance = create_tour(&atomic.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;
    let template_id = instance.template_id.expect("template");

    // Act
    let cases: Vec<(&str, Uuid, i32)> = vec![
        ("sold out", small.tour_id, 3),
        ("maintenance", maintenance.tour_id, 1),
        ("template", template_id, 1),
        ("unknown", Uuid::new_v4(), 1),
    ];
    for (what, tour_id, adults) in cases {
        let request = CreateBookingRequest { num_adults: adults, ..booking_request(tour_id) };
        let on_atomic = atomic.booking().create_booking(request.clone()).await.expect_err(what);
        let on_legacy = legacy.booking().create_booking(request).await.expect_err(what);

        // Assert
        assert_eq!(on_atomic.code(), on_legacy.code(), "{what}");
        assert_eq!(reason(&on_atomic), reason(&on_legacy), "{what}");
        assert_eq!(on_atomic.message(), on_legacy.message(), "{what}");
        for key in ["seats_left", "tour_status"] {
            assert_eq!(error_metadata(&on_atomic, key), error_metadata(&on_legacy, key), "{what}: {key}");
        }
    }
    assert_eq!(available_spots(&atomic.pool, small.tour_id).await, 2);
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn commission_rounding_in_rust_matches_postgres_round() {
    // Arrange
    let app = spawn_app().await;
    let rates: Vec<Decimal> =
        ["12.50", "7.25", "33.33", "0.01", "99.99", "15.00", "2.50"].iter().map(|r| r.parse().expect("rate")).collect();

    // Act
    let expected: Vec<(i64, Decimal, i64)> = sqlx::query_as(
        "select s, r, round(s * r / 100)::bigint
           from generate_series(0::bigint, 4000::bigint) s cross join unnest($1::numeric[]) r",
    )
    .bind(&rates)
    .fetch_all(&app.pool)
    .await
    .expect("postgres rounding");

    // Assert
    assert_eq!(expected.len(), 4001 * rates.len());
    for (subtotal, rate, by_postgres) in expected {
        assert_eq!(pricing::commission(subtotal, rate), Ok(by_postgres), "{subtotal} × {rate} %");
    }
}

#[tokio::test]
async fn seats_come_back_exactly_once_for_every_path_and_trigger_combination() {
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&atomic.pool, TourSpec { capacity: 30, ..TourSpec::default() }).await;
    let two_seats = || CreateBookingRequest { num_adults: 1, num_children: 1, ..booking_request(tour.tour_id) };
    let mut ended = Vec::new();

    // trigger present: created on one path, cancelled through the other server
    let a1 = create_ok(&atomic, two_seats()).await;
    let l1 = create_ok(&legacy, two_seats()).await;
    assert_eq!((a1.code_path(), l1.code_path()), (CodePath::Atomic, CodePath::Legacy));
    for (booking, server) in [(&a1, &legacy), (&l1, &atomic)] {
        assert!(cancel(server, &booking.id).await.seats_released);
        assert_eq!(releases_of(&atomic.pool, &booking.id).await, ["trigger"]);
        ended.push(booking.id.clone());
    }

    // trigger absent: bookings made before and during the rollback
    let a2 = create_ok(&atomic, two_seats()).await;
    let l2 = create_ok(&legacy, two_seats()).await;
    db::functions::rollback(&atomic.pool, "test", "cancel matrix").await.expect("rollback");
    let during = create_ok(&atomic, two_seats()).await;
    assert_eq!(during.code_path(), CodePath::Legacy, "served by legacy while the function is gone");
    for (booking, server) in [(&a2, &atomic), (&l2, &legacy), (&during, &legacy)] {
        assert!(cancel(server, &booking.id).await.seats_released);
        assert_eq!(releases_of(&atomic.pool, &booking.id).await, ["application"]);
        ended.push(booking.id.clone());
    }

    // made while absent, cancelled once the trigger is back
    let made_absent = create_ok(&legacy, two_seats()).await;
    db::functions::deploy(&atomic.pool, "test", "cancel matrix").await.expect("deploy");
    wait_until("atomic path available again", Duration::from_secs(10), || async {
        atomic_path_health(&atomic).await == Some(ServingStatus::Serving)
    })
    .await;
    let a3 = create_ok(&atomic, two_seats()).await;
    assert_eq!(a3.code_path(), CodePath::Atomic);
    for (booking, server) in [(&made_absent, &atomic), (&a3, &legacy)] {
        assert!(cancel(server, &booking.id).await.seats_released);
        assert_eq!(releases_of(&atomic.pool, &booking.id).await, ["trigger"]);
        ended.push(booking.id.clone());
    }

    // cancelling again, anywhere, restores nothing
    for id in &ended {
        for server in [&atomic, &legacy] {
            let again = cancel(server, id).await;
            assert!(!again.seats_released);
            assert_eq!(again.booking.expect("booking").status(), BookingStatus::Cancelled);
        }
        assert_eq!(releases_of(&atomic.pool, id).await.len(), 1, "{id}");
    }
    assert_eq!(available_spots(&atomic.pool, tour.tour_id).await, 30);
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn a_missing_trigger_alone_sends_bookings_to_legacy_and_shows_in_health() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let before = create_ok(&app, booking_request(tour.tour_id)).await;
    assert_eq!(before.code_path(), CodePath::Atomic);

    // Act
    sqlx::query("drop trigger restore_availability_trigger on bookings").execute(&app.pool).await.expect("drop");
    wait_until("atomic path NOT_SERVING, service SERVING", Duration::from_secs(10), || async {
        atomic_path_health(&app).await == Some(ServingStatus::NotServing)
            && overall_health(&app).await == Some(ServingStatus::Serving)
    })
    .await;
    let during = create_ok(&app, booking_request(tour.tour_id)).await;
    let released = cancel(&app, &before.id).await;

    // Assert
    assert_eq!(during.code_path(), CodePath::Legacy);
    assert!(released.seats_released);
    assert_eq!(releases_of(&app.pool, &before.id).await, ["application"]);
    wait_for_audit(&app.pool, "atomic_path_unavailable").await;
    assert_eq!(audit_count(&app.pool, "atomic_path_unavailable").await, 1);
    let detail: String =
        sqlx::query_scalar("select details ->> 'detail' from audit_logs where action = 'atomic_path_unavailable'")
            .fetch_one(&app.pool)
            .await
            .expect("detail");
    assert!(detail.contains("restore_availability_trigger missing"), "{detail}");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 49);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_server_started_after_a_rollback_serves_legacy_from_its_first_request() {
    // Arrange
    let first = spawn_app().await;
    let tour = create_tour(&first.pool, TourSpec::default()).await;
    db::functions::rollback(&first.pool, "test", "rolled back before a restart").await.expect("rollback");

    // Act
    let second = spawn_app_on(&first.database_url, |_| {}).await;
    let health = atomic_path_health(&second).await;
    let booking = create_ok(&second, booking_request(tour.tour_id)).await;

    // Assert
    assert_eq!(health, Some(ServingStatus::NotServing));
    assert_eq!(booking.code_path(), CodePath::Legacy);
    assert_eq!(overall_health(&second).await, Some(ServingStatus::Serving));
    assert_healthy(&first.pool).await;
}
