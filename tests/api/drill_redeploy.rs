//! Redeploying the database functions behind the server's back, while its
//! connections hold the atomic path's call as a cached prepared statement:
//! the next booking still succeeds on the atomic path (batched and
//! unbatched), with no `creation_failed` row and no fallback.
//!
//! What PostgreSQL 15 does with such a statement, and so what each phase
//! pins:
//! - The runbook's rollback and redeploy alone (new function OIDs, same
//!   definitions): the plan cache tracks the function and re-plans the
//!   statement by name; no error reaches bookingd, nothing is re-prepared.
//!   ("cache lookup failed for function", XX000, needs the drop to commit
//!   between the re-plan and the executor's lookup: a race, which the storm
//!   in `booking_storm.rs` may or may not hit.)
//! - A column added to `bookings` (a release's migration) and then the
//!   redeploy: the re-planned statement's `bookings` columns change, which a
//!   prepared statement may not, so every later execution on that connection
//!   fails with "cached plan must not change result type" (0A000) until its
//!   cached statements are dropped. That is deterministic: the retry in
//!   `booking/atomic.rs` and `booking/batch.rs` is what keeps those bookings
//!   on the atomic path (and in their batch), and these tests fail without it.
//!   The batch call reads `bookings` through `create_booking_atomic_batch`,
//!   which the runbook leaves in place: it goes stale when a release
//!   replaces that function too (`deploy_batch_function` at start-up).
//!
//! The servers run on a pool of 4 connections, so the booking paths keep 2
//! warm (`db::warm`) and every booking runs on a connection that booked
//! before; the tests see which statement made a booking through a trigger
//! of their own, and the server's re-preparations through its log events.
//!
//! With group commit, a booking alone in its lane is a plain call on the
//! lane's connection, and a bookings migration makes both of that
//! connection's calls stale at once: whichever runs first after it is
//! re-prepared (which drops the connection's cached statements, so the
//! other is prepared afresh). The batched test sees the lane's call go stale,
//! be re-prepared, and the bookings queued behind it still booked in one
//! batch.

use bookingd::{db, proto::v1::CodePath};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use uuid::Uuid;

use crate::{
    fixtures::{
        TourSpec, audit_count, available_spots, booking_request, create_ok, create_tour, lock_tour,
        sessions_waiting_on_locks,
    },
    helpers::{TestApp, assert_healthy, spawn_app_with, wait_until},
    otlp_collector::CapturedLogs,
};

/// The statements that make bookings: the unbatched call and the batch call
/// (the first words of each, as `current_query()` reports them).
const SINGLE_CALL: &str = "select * from create_booking_atomic(";
const BATCH_CALL: &str = "select r.item, r.error_code";

/// Records, for every booking inserted, the client statement that inserted it.
const RECORD_BOOKING_STATEMENTS: &str = "
    create table test_booked_by (booking_id uuid primary key, statement text not null);
    create function test_record_booking_statement() returns trigger language plpgsql as $$
    begin
        insert into test_booked_by values (new.id, current_query());
        return new;
    end $$;
    create trigger test_record_booking_statement after insert on bookings
        for each row execute function test_record_booking_statement();";

async fn spawn_on_a_small_pool(batched: bool) -> TestApp {
    let app = spawn_app_with(|s| {
        s.db_max_connections = 4;
        s.batch_bookings = batched;
        s.batch_lanes = 1;
    })
    .await;
    sqlx::raw_sql(RECORD_BOOKING_STATEMENTS).execute(&app.pool).await.expect("record booking statements");
    app
}

/// The server's log events of this test's thread (the current-thread
/// runtime polls the server's tasks here too), as JSON lines.
fn capture_logs() -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// (statement, error) of every stale cached statement the server dropped
/// and re-prepared (`atomic::dropped_stale_statements`).
fn re_preparations(logs: &CapturedLogs) -> Vec<(String, String)> {
    logs.lines()
        .into_iter()
        .filter(|line| line["target"] == "bookingd::booking::atomic")
        .filter_map(|line| {
            let fields = &line["fields"];
            Some((fields["statement"].as_str()?.to_owned(), fields["error"].as_str()?.to_owned()))
        })
        .collect()
}

/// What an operator runs from psql, not through bookingd: the runbook's
/// emergency_database_rollback.sql verbatim, then database_enhancements.sql
/// (and, for a release that changed it, bookingd's batch function), as one
/// transaction (`psql --single-transaction`), so the server's probe never
/// sees the functions gone and the bookings after it are not sent to legacy
/// for that reason.
async fn redeploy_behind_the_servers_back(app: &TestApp, with_batch_function: bool) {
    let before = atomic_function_oid(&app.pool).await;
    let mut operator = PgConnection::connect(&app.database_url).await.expect("operator session");
    let mut tx = operator.begin().await.expect("begin");
    sqlx::raw_sql(db::functions::ROLLBACK_SQL).execute(&mut *tx).await.expect("the runbook's rollback");
    sqlx::raw_sql(db::functions::DEPLOY_SQL).execute(&mut *tx).await.expect("the runbook's deployment");
    if with_batch_function {
        sqlx::raw_sql(db::functions::BATCH_SQL).execute(&mut *tx).await.expect("the batch function");
    }
    tx.commit().await.expect("commit the redeploy");
    assert_ne!(atomic_function_oid(&app.pool).await, before, "the redeployed function is a new object");
}

/// create_booking_atomic's OID: a redeploy gives it a new one.
async fn atomic_function_oid(pool: &PgPool) -> u32 {
    let oid: sqlx::postgres::types::Oid =
        sqlx::query_scalar("select to_regprocedure('create_booking_atomic(jsonb, uuid)')::oid")
            .fetch_one(pool)
            .await
            .expect("the function's oid");
    oid.0
}

/// A release's migration: a new column on `bookings`, behind the server's back.
async fn add_a_column_to_bookings(app: &TestApp) {
    let mut operator = PgConnection::connect(&app.database_url).await.expect("operator session");
    sqlx::raw_sql("alter table bookings add column loyalty_tier text").execute(&mut operator).await.expect("migrate");
}

/// Books once and checks it was made on the atomic path by `statement`.
async fn book_atomically(app: &TestApp, tour_id: Uuid, statement: &str) {
    let booking = create_ok(app, booking_request(tour_id)).await;
    assert_eq!(booking.code_path(), CodePath::Atomic, "answered by the atomic path");
    let (code_path, booked_by): (String, String) = sqlx::query_as(
        "select b.code_path, s.statement from bookings b join test_booked_by s on s.booking_id = b.id where b.id = $1::uuid",
    )
    .bind(&booking.id)
    .fetch_one(&app.pool)
    .await
    .expect("the booking and the statement that made it");
    assert_eq!(code_path, "atomic");
    assert!(booked_by.trim_start().starts_with(statement), "made by {statement:?}, was made by {booked_by:?}");
}

/// Nothing failed, nothing fell back, and the books balance.
async fn assert_nothing_failed_or_fell_back(app: &TestApp) {
    assert_eq!(audit_count(&app.pool, "creation_failed").await, 0, "no booking failed");
    assert_eq!(audit_count(&app.pool, "atomic_path_unavailable").await, 0, "the atomic path never went away");
    let off_atomic: i64 = sqlx::query_scalar("select count(*) from bookings where code_path <> 'atomic'")
        .fetch_one(&app.pool)
        .await
        .expect("bookings off the atomic path");
    assert_eq!(off_atomic, 0, "no booking was served by legacy");
    assert_healthy(&app.pool).await;
}

/// Makes both warm connections of the server prepare the unbatched call:
/// one booking holds a connection while it waits for a tour row the test
/// has locked, so the other booking has to run on the other one.
async fn prepare_the_call_on_every_connection(app: &TestApp, pool: &PgPool) {
    let held = create_tour(pool, TourSpec::default()).await;
    let free = create_tour(pool, TourSpec::default()).await;
    let blocker = lock_tour(pool, held.tour_id).await;
    let waiting = create_ok(app, booking_request(held.tour_id));
    let other = async {
        wait_until("a booking waiting for the locked tour", Duration::from_secs(10), || async {
            sessions_waiting_on_locks(pool).await == 1
        })
        .await;
        book_atomically(app, free.tour_id, SINGLE_CALL).await;
        blocker.rollback().await.expect("release the tour");
    };
    let (waited, ()) = tokio::join!(waiting, other);
    assert_eq!(waited.code_path(), CodePath::Atomic);
}

#[tokio::test]
async fn unbatched_bookings_stay_on_the_atomic_path_when_the_functions_are_redeployed_under_cached_calls() {
    // Arrange: both pooled connections hold the call as a prepared statement
    let (logs, _capture) = capture_logs();
    let app = spawn_on_a_small_pool(false).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    prepare_the_call_on_every_connection(&app, &app.pool).await;

    // Act 1: the runbook's rollback and redeploy
    redeploy_behind_the_servers_back(&app, false).await;
    book_atomically(&app, tour.tour_id, SINGLE_CALL).await;

    // Assert 1: PostgreSQL re-planned the cached statement; nothing to re-prepare
    assert_eq!(re_preparations(&logs), vec![], "a plain redeploy raises nothing on a cached call");

    // Act 2: a release's migration, then the redeploy
    add_a_column_to_bookings(&app).await;
    redeploy_behind_the_servers_back(&app, false).await;
    book_atomically(&app, tour.tour_id, SINGLE_CALL).await;

    // Assert 2: the cached call went stale, was re-prepared and booked
    let stale = re_preparations(&logs);
    assert_eq!(stale.len(), 1, "the booking ran on a connection with the call cached: {stale:?}");
    assert_eq!(stale[0].0, "create_booking_atomic");
    assert!(stale[0].1.contains("cached plan must not change result type"), "{}", stale[0].1);
    book_atomically(&app, tour.tour_id, SINGLE_CALL).await;
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 47);
    assert_nothing_failed_or_fell_back(&app).await;
    app.stop().await;
}

/// Two bookings on `tour` in one batch: a booking on a locked tour holds the
/// lane while they queue behind it. Returns the statements that made the
/// two, or None when they did not queue together (then they were booked one
/// by one, each checked atomic).
async fn book_a_batch_of_two(app: &TestApp, tour: Uuid) -> Option<[String; 2]> {
    let gate = create_tour(&app.pool, TourSpec::default()).await;
    let blocker = lock_tour(&app.pool, gate.tour_id).await;
    let before = app.load_shed.in_flight();
    let release = async {
        wait_until("the lane's booking waits for its locked tour", Duration::from_secs(10), || async {
            sessions_waiting_on_locks(&app.pool).await == 1
        })
        .await;
        wait_until("two more bookings in the server", Duration::from_secs(10), || async {
            app.load_shed.in_flight() == before + 3
        })
        .await;
        blocker.rollback().await.expect("release the tour");
    };
    let (first, second, third, ()) = tokio::join!(
        create_ok(app, booking_request(gate.tour_id)),
        create_ok(app, booking_request(tour)),
        create_ok(app, booking_request(tour)),
        release
    );
    let mut statements = Vec::new();
    for booking in [&first, &second, &third] {
        assert_eq!(booking.code_path(), CodePath::Atomic, "answered by the atomic path");
        statements.push(booked_by(&app.pool, &booking.id).await);
    }
    let queued = [statements[1].clone(), statements[2].clone()];
    queued.iter().all(|s| s.trim_start().starts_with(BATCH_CALL)).then_some(queued)
}

/// The statement that inserted a booking (the test's trigger).
async fn booked_by(pool: &PgPool, booking_id: &str) -> String {
    sqlx::query_scalar("select statement from test_booked_by where booking_id = $1::uuid")
        .bind(booking_id)
        .fetch_one(pool)
        .await
        .expect("the statement that made the booking")
}

/// Rounds of [`book_a_batch_of_two`] until two bookings shared a batch (at
/// most 5); the number of bookings made.
async fn book_until_a_batch(app: &TestApp, tour: Uuid) -> i32 {
    for round in 1..=5 {
        if book_a_batch_of_two(app, tour).await.is_some() {
            return 2 * round;
        }
    }
    panic!("5 rounds and two bookings queued behind a busy lane never shared a batch");
}

#[tokio::test]
async fn batched_bookings_stay_in_their_batch_when_the_functions_are_redeployed_under_cached_calls() {
    // Arrange: the lane's connection holds both calls as prepared statements
    let (logs, _capture) = capture_logs();
    let app = spawn_on_a_small_pool(true).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 60, ..TourSpec::default() }).await;
    let mut booked = book_until_a_batch(&app, tour.tour_id).await;

    // Act 1: the runbook's rollback and redeploy (the batch function stays)
    redeploy_behind_the_servers_back(&app, false).await;
    booked += book_until_a_batch(&app, tour.tour_id).await;

    // Assert 1: nothing to re-prepare
    assert_eq!(re_preparations(&logs), vec![], "a plain redeploy raises nothing on a cached call");

    // Act 2: a release's migration, then the redeploy of every function
    add_a_column_to_bookings(&app).await;
    redeploy_behind_the_servers_back(&app, true).await;
    booked += book_until_a_batch(&app, tour.tour_id).await;

    // Assert 2: the lane's first call went stale and was re-prepared, once;
    // the bookings behind it were still booked in one batch
    let stale = re_preparations(&logs);
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(["create_booking_atomic", "create_booking_atomic_batch"].contains(&stale[0].0.as_str()), "{stale:?}");
    assert!(stale[0].1.contains("cached plan must not change result type"), "{}", stale[0].1);
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 60 - booked);
    assert_nothing_failed_or_fell_back(&app).await;
    app.stop().await;
}
