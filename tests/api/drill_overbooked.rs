//! Fault drill: an overbooked tour (more live seats than capacity) after the
//! operator's repair or clamp sells nothing until cancellations have paid
//! the excess down — whether the trigger or the application releases the
//! seats — and the integrity check shows it as overbooked meanwhile.

use bookingd::{
    db,
    proto::v1::{CheckStatus, ClampNegativeAvailabilityRequest, RepairAvailabilityRequest, RunChecksRequest},
};
use tonic::Code;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, available_spots, booking_request, cancel, create_ok, create_tour, reason},
    helpers::{TestApp, assert_healthy, spawn_app},
};

const CAPACITY: i32 = 10;
const OVERBOOKED_BY: i32 = 2;

/// A tour with `CAPACITY + OVERBOOKED_BY` live one-seat bookings: sold in
/// full, then its capacity cut (a smaller vehicle) behind the service's back.
async fn overbooked_tour(app: &TestApp) -> (Uuid, Vec<String>) {
    let tour = create_tour(&app.pool, TourSpec { capacity: CAPACITY + OVERBOOKED_BY, ..TourSpec::default() }).await;
    let mut ids = Vec::new();
    for _ in 0..CAPACITY + OVERBOOKED_BY {
        ids.push(create_ok(app, booking_request(tour.tour_id)).await.id);
    }
    sqlx::query("update tours set max_capacity = $2 where id = $1")
        .bind(tour.tour_id)
        .bind(CAPACITY)
        .execute(&app.pool)
        .await
        .expect("cut the capacity");
    (tour.tour_id, ids)
}

async fn overbooked_seats(app: &TestApp, tour: Uuid) -> i32 {
    sqlx::query_scalar("select overbooked_seats from tours where id = $1")
        .bind(tour)
        .fetch_one(&app.pool)
        .await
        .expect("overbooked seats")
}

/// The integrity check's verdict on availability: status, message, and
/// the `kind` of each sample.
async fn availability_check(app: &TestApp) -> (CheckStatus, String, Vec<String>) {
    let request = RunChecksRequest { checks: vec!["availability_consistency".into()], max_samples: 5 };
    let mut stream = app.integrity().run_checks(request).await.expect("run checks").into_inner();
    let result = stream.message().await.expect("stream").expect("one result");
    let kinds = result
        .samples
        .iter()
        .filter_map(|sample| match sample.fields.get("kind").and_then(|v| v.kind.clone()) {
            Some(prost_types::value::Kind::StringValue(kind)) => Some(kind),
            _ => None,
        })
        .collect();
    (result.status(), result.message, kinds)
}

/// Cancels the overbooking away one booking at a time; nothing can be sold
/// until the live seats are below capacity.
async fn cancellations_pay_the_excess_down_first(app: &TestApp, tour: Uuid, ids: &[String]) {
    for (paid, id) in ids.iter().take(OVERBOOKED_BY as usize).enumerate() {
        cancel(app, id).await;
        assert_eq!(overbooked_seats(app, tour).await, OVERBOOKED_BY - paid as i32 - 1);
        assert_eq!(available_spots(&app.pool, tour).await, 0, "paying down, nothing to sell");
        let refused = app.booking().create_booking(booking_request(tour)).await.expect_err("still overbooked");
        assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "SOLD_OUT"));
    }
    // live seats = capacity now: still nothing to sell; one more cancellation frees one seat
    let refused = app.booking().create_booking(booking_request(tour)).await.expect_err("exactly full");
    assert_eq!(reason(&refused), "SOLD_OUT");
    cancel(app, &ids[OVERBOOKED_BY as usize]).await;
    assert_eq!(available_spots(&app.pool, tour).await, 1);
    create_ok(app, booking_request(tour)).await;
    assert_eq!(available_spots(&app.pool, tour).await, 0);
}

#[tokio::test]
async fn after_repair_an_overbooked_tour_sells_nothing_until_paid_down_by_the_trigger() {
    // Arrange
    let app = spawn_app().await;
    let (tour, ids) = overbooked_tour(&app).await;
    app.admin()
        .repair_availability(RepairAvailabilityRequest {
            apply: true,
            tour_ids: vec![tour.to_string()],
            reason: "drill".into(),
        })
        .await
        .expect("repair");
    assert_eq!((available_spots(&app.pool, tour).await, overbooked_seats(&app, tour).await), (0, OVERBOOKED_BY));
    let (status, message, kinds) = availability_check(&app).await;
    assert_eq!(status, CheckStatus::Fail, "an overbooked tour is not consistent");
    assert!(message.contains("1 of them overbooked"), "shown as overbooked: {message}");
    assert_eq!(kinds, ["overbooked"]);

    // Act + Assert
    cancellations_pay_the_excess_down_first(&app, tour, &ids).await;
    let (status, message, _) = availability_check(&app).await;
    assert_eq!(status, CheckStatus::Pass, "{message}");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn after_a_clamp_an_overbooked_tour_sells_nothing_until_paid_down_by_the_application() {
    // Arrange: the constraint that forbids negatives was dropped (what the
    // clamp is for), the tour went negative, the trigger is rolled back so
    // the application releases seats
    let app = spawn_app().await;
    let (tour, ids) = overbooked_tour(&app).await;
    sqlx::raw_sql("alter table tours drop constraint tours_available_spots_non_negative")
        .execute(&app.pool)
        .await
        .expect("drop the constraint");
    sqlx::query("update tours set available_spots = -$2 where id = $1")
        .bind(tour)
        .bind(OVERBOOKED_BY)
        .execute(&app.pool)
        .await
        .expect("go negative");
    db::functions::rollback(&app.pool, "drill", "application releases").await.expect("rollback");
    app.admin()
        .clamp_negative_availability(ClampNegativeAvailabilityRequest { reason: "drill".into() })
        .await
        .expect("clamp");
    assert_eq!((available_spots(&app.pool, tour).await, overbooked_seats(&app, tour).await), (0, OVERBOOKED_BY));

    // Act + Assert
    cancellations_pay_the_excess_down_first(&app, tour, &ids).await;
    let released_by: Vec<String> =
        sqlx::query_scalar("select distinct details ->> 'released_by' from audit_logs where action = 'spots_restored'")
            .fetch_all(&app.pool)
            .await
            .expect("releases");
    assert_eq!(released_by, ["application"]);
    assert_healthy(&app.pool).await;
}
