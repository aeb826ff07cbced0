//! Fault drills: a hold whose release fails every time, a sell-out storm
//! against the runbook's failure-rate monitor, and injected function errors
//! that the monitor must see.

use std::time::Duration;

use bookingd::proto::v1::{BookingStatus, CreateBookingRequest};
use sqlx::PgPool;
use tonic::Code;

use crate::{
    fixtures::{TourSpec, assert_sold_exactly, booking_request, create_ok, create_tour, get_booking, reason, storm},
    helpers::{assert_healthy, spawn_app, spawn_app_on, spawn_app_with, wait_until},
};

/// The runbook's failure-rate monitor (scenario 2), as SQL: `creation_failed`
/// rows of bookings in the last hour; "more than 5" pages.
async fn runbook_failure_rate(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from audit_logs
          where table_name = 'bookings' and action = 'creation_failed'
            and created_at >= now() - interval '1 hour'",
    )
    .fetch_one(pool)
    .await
    .expect("failure rate")
}

const RUNBOOK_THRESHOLD: i64 = 5;

#[tokio::test]
async fn one_hold_that_cannot_be_released_does_not_stop_the_others_expiring() {
    // Arrange: three short holds; the oldest one's release always fails
    let app = spawn_app_with(|s| s.hold_sweep_interval = Duration::from_millis(100)).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let short = || CreateBookingRequest { hold_seconds: Some(1), ..booking_request(tour.tour_id) };
    let stuck = create_ok(&app, short()).await;
    let others = [create_ok(&app, short()).await, create_ok(&app, short()).await];
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create function refuse_release() returns trigger language plpgsql as $$
         begin raise exception 'this hold cannot be released'; end $$;
         create trigger refuse_release before update on bookings
         for each row when (old.id = '{}') execute function refuse_release();",
        stuck.id
    )))
    .execute(&app.pool)
    .await
    .expect("break one release");

    // Act: the sweeper runs every 100 ms
    wait_until("the other holds to expire", Duration::from_secs(15), || async {
        let mut all = true;
        for other in &others {
            all &= get_booking(&app, &other.id).await.status() == BookingStatus::Expired;
        }
        all
    })
    .await;

    // Assert: the stuck one is still pending and holds its seat; once it can
    // be released, it expires too
    assert_eq!(get_booking(&app, &stuck.id).await.status(), BookingStatus::Pending);
    assert_healthy(&app.pool).await;
    sqlx::raw_sql("drop trigger refuse_release on bookings").execute(&app.pool).await.expect("repair");
    wait_until("the stuck hold to expire once it can", Duration::from_secs(15), || async {
        get_booking(&app, &stuck.id).await.status() == BookingStatus::Expired
    })
    .await;
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sell_out_storm_leaves_the_runbook_failure_rate_monitor_quiet() {
    const SEATS: i32 = 30;
    const REQUESTS: usize = 300;
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: SEATS, ..TourSpec::default() }).await;

    let outcome = storm(&app, tour.tour_id, REQUESTS, 30, Vec::new()).await;

    assert_sold_exactly(&app, tour.tour_id, SEATS, REQUESTS, &outcome).await;
    let failures = runbook_failure_rate(&app.pool).await;
    println!("sell-out storm: {} sold out, runbook failure rate {failures}", outcome.sold_out.len());
    assert_eq!(failures, 0, "refusals are not failures");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn injected_function_errors_are_recorded_and_trip_the_runbook_monitor() {
    // Arrange: the atomic function fails for a reason that is not a refusal;
    // legacy bookings fail on an insert trigger
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&atomic.pool, TourSpec::default()).await;
    sqlx::raw_sql(
        "create or replace function create_booking_atomic(p_booking jsonb, p_user_id uuid)
         returns bookings language plpgsql as $$
         begin raise exception 'injected function error'; end $$;
         create function refuse_insert() returns trigger language plpgsql as $$
         begin raise exception 'injected insert error'; end $$;
         create trigger refuse_insert before insert on bookings
         for each row when (new.code_path = 'legacy') execute function refuse_insert();",
    )
    .execute(&atomic.pool)
    .await
    .expect("inject errors");

    // Act
    let mut answers = Vec::new();
    for app in [&atomic, &legacy, &atomic, &legacy, &atomic, &legacy] {
        let mut request = booking_request(tour.tour_id);
        request.customer_name = "Grace Hopper".into();
        answers.push(app.booking().create_booking(request).await.expect_err("injected error"));
    }

    // Assert
    for answer in &answers {
        assert_eq!(answer.code(), Code::Internal, "{answer:?}");
        assert_eq!(reason(answer), "INTERNAL");
        assert!(!answer.message().contains("injected"), "the cause stays in the log: {}", answer.message());
    }
    let failures = runbook_failure_rate(&atomic.pool).await;
    assert_eq!(failures, 6);
    assert!(failures > RUNBOOK_THRESHOLD, "the runbook's monitor trips");
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select details ->> 'reason', details ->> 'code_path' from audit_logs
          where action = 'creation_failed' order by id",
    )
    .fetch_all(&atomic.pool)
    .await
    .expect("rows");
    assert!(rows.iter().all(|(r, _)| r == "INTERNAL"), "{rows:?}");
    assert_eq!(rows.iter().filter(|(_, path)| path == "legacy").count(), 3, "{rows:?}");
    let personal: i64 = sqlx::query_scalar("select count(*) from audit_logs where details::text like '%Grace%'")
        .fetch_one(&atomic.pool)
        .await
        .expect("personal data");
    assert_eq!(personal, 0, "no personal data in the audit rows");
    let bookings: i64 =
        sqlx::query_scalar("select count(*) from bookings").fetch_one(&atomic.pool).await.expect("bookings");
    assert_eq!(bookings, 0, "nothing written");
    assert_healthy(&atomic.pool).await;
}
