//! Group commit: the batch function's per-booking outcomes, storms with
//! batching off (the rest of the suite runs batched, the default), and
//! batched bookings after the runbook's rollback.

use bookingd::{db, proto::v1::CodePath};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, assert_sold_exactly, available_spots, booking_request, create_ok, create_tour, storm},
    helpers::{assert_healthy, spawn_app, spawn_app_with},
};

/// item, error code, error detail, request id of the booking
type ItemAnswer = (i32, Option<String>, Option<String>, Option<String>);

fn payload(tour_id: Uuid, request_id: &str, adults: i32) -> serde_json::Value {
    json!({
        "id": Uuid::new_v4(),
        "booking_reference": format!("BT-{}", &Uuid::new_v4().simple().to_string()[..12]),
        "request_id": request_id,
        "request_fingerprint": format!("fingerprint {request_id}"),
        "tour_id": tour_id,
        "num_adults": adults,
        "num_children": 0,
        "customer_name": "Batch Guest",
        "customer_email": "batch@example.com",
        "hold_expires_at": "2099-01-01T00:00:00Z",
    })
}

#[tokio::test]
async fn one_batch_call_keeps_every_bookings_own_outcome_in_arrival_order() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 3, ..TourSpec::default() }).await;
    let batch = json!([
        payload(tour.tour_id, "first", 2),
        // 1 seat left: refused, and its neighbours still book
        payload(tour.tour_id, "second", 2),
        payload(tour.tour_id, "third", 1),
        // the first request replayed inside the same batch
        payload(tour.tour_id, "first", 2),
        payload(Uuid::new_v4(), "unknown tour", 1),
    ]);

    let rows: Vec<ItemAnswer> = sqlx::query_as(
        "select item, error_code, error_detail, (booking).request_id from create_booking_atomic_batch($1) order by item",
    )
    .bind(&batch)
    .fetch_all(&app.pool)
    .await
    .expect("batch call");

    assert_eq!(
        rows,
        vec![
            (0, None, None, Some("first".to_owned())),
            (1, Some("BK003".to_owned()), Some("1".to_owned()), None),
            (2, None, None, Some("third".to_owned())),
            (3, None, None, Some("first".to_owned())),
            (4, Some("BK001".to_owned()), Some(String::new()), None),
        ]
    );
    let stored: i64 = sqlx::query_scalar("select count(*) from bookings where tour_id = $1")
        .bind(tour.tour_id)
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 2, "the replay made no second booking");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 0);
    assert_healthy(&app.pool).await;
}

/// Subtransactions that wrote the bookings of `request_ids`: each one writes
/// its rows under its own transaction id (`xmin`).
async fn writing_subtransactions(pool: &sqlx::PgPool, request_ids: &[&str]) -> i64 {
    sqlx::query_scalar("select count(distinct xmin::text) from bookings where request_id = any($1)")
        .bind(request_ids)
        .fetch_one(pool)
        .await
        .expect("xmin of the bookings")
}

#[tokio::test]
async fn a_batch_without_refusals_is_booked_in_one_subtransaction_and_one_with_a_refusal_item_by_item() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let call = |batch: serde_json::Value| {
        let pool = app.pool.clone();
        async move {
            let rows: Vec<ItemAnswer> = sqlx::query_as(
                "select item, error_code, error_detail, (booking).request_id
                   from create_booking_atomic_batch($1) order by item",
            )
            .bind(&batch)
            .fetch_all(&pool)
            .await
            .expect("batch call");
            rows
        }
    };

    // no refusal: every item booked at once
    let rows =
        call(json!([payload(tour.tour_id, "a", 2), payload(tour.tour_id, "b", 2), payload(tour.tour_id, "c", 2)]))
            .await;
    assert!(rows.iter().all(|row| row.1.is_none()), "{rows:?}");
    assert_eq!(writing_subtransactions(&app.pool, &["a", "b", "c"]).await, 1);

    // a refusal in the middle (4 seats left, 2 after "d": "e"'s 3 are
    // refused): the first attempt is undone whole, then each item books alone
    let rows =
        call(json!([payload(tour.tour_id, "d", 2), payload(tour.tour_id, "e", 3), payload(tour.tour_id, "f", 1)]))
            .await;
    let codes: Vec<Option<&str>> = rows.iter().map(|row| row.1.as_deref()).collect();
    assert_eq!(codes, [None, Some("BK003"), None]);
    assert_eq!(writing_subtransactions(&app.pool, &["d", "f"]).await, 2);
    let undone: i64 = sqlx::query_scalar("select count(*) from bookings where request_id = 'e'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(undone, 0, "the refused item left nothing behind");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 10 - 6 - 3);
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unbatched_storm_on_the_atomic_path_sells_exactly_the_seats_there_are() {
    let app = spawn_app_with(|s| s.batch_bookings = false).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 50, ..TourSpec::default() }).await;

    let outcome = storm(&app, tour.tour_id, 300, 50, vec![]).await;

    assert_sold_exactly(&app, tour.tour_id, 50, 300, &outcome).await;
    assert_eq!(outcome.on_path(CodePath::Atomic), outcome.bookings.len());
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batched_storm_over_many_tours_sells_exactly_each_tours_seats() {
    let app = spawn_app_with(|s| s.batch_max_size = 8).await;
    let mut tours = Vec::new();
    for _ in 0..6 {
        tours.push(create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await);
    }

    let storms = tours.iter().map(|tour| storm(&app, tour.tour_id, 40, 8, vec![]));
    let outcomes = join_all(storms).await;

    for (tour, outcome) in tours.iter().zip(&outcomes) {
        assert_sold_exactly(&app, tour.tour_id, 10, 40, outcome).await;
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_bookings_go_to_the_legacy_path_after_the_runbooks_rollback() {
    let app = spawn_app().await;
    let warm_up = create_tour(&app.pool, TourSpec::default()).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 40, ..TourSpec::default() }).await;
    assert_eq!(create_ok(&app, booking_request(warm_up.tour_id)).await.code_path(), CodePath::Atomic);

    // the runbook's emergency_database_rollback.sql, verbatim
    sqlx::raw_sql(db::functions::ROLLBACK_SQL).execute(&app.pool).await.expect("rollback");
    let outcome = storm(&app, tour.tour_id, 60, 20, vec![]).await;

    assert_sold_exactly(&app, tour.tour_id, 40, 60, &outcome).await;
    assert_eq!(outcome.on_path(CodePath::Legacy), outcome.bookings.len(), "all served by the legacy path");
    assert_healthy(&app.pool).await;
}
