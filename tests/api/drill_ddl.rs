//! Fault drills: DDL on the atomic path (deploy, rollback, start-up refresh)
//! while another session holds locks on `bookings`, as pg_dump does for its
//! whole run. Bookings must keep flowing, and the DDL must answer within
//! seconds — done, unchanged, or ABORTED naming the session in the way.

use std::time::{Duration, Instant};

use bookingd::{
    grpc::health::ATOMIC_PATH,
    proto::v1::{DeployFunctionsRequest, RollbackFunctionsRequest},
};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, postgres::PgConnectOptions};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{
    fixtures::{TourSpec, booking_request, create_ok, create_tour, error_metadata, reason},
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_on, wait_until},
};

/// Longer than any DDL answer may take (attempts × lock timeout + backoff):
/// a stall fails the test instead of hanging it.
const ANSWER_WITHIN: Duration = Duration::from_secs(9);

/// A session named like pg_dump holding `mode` on bookings in an open transaction.
async fn dump_like_lock(app: &TestApp, mode: &str) -> (PgConnection, i32) {
    let options: PgConnectOptions = app.database_url.parse().expect("url");
    let mut conn = options.application_name("pg_dump").connect().await.expect("connect");
    conn.execute("begin").await.expect("begin");
    conn.execute(sqlx::AssertSqlSafe(format!("lock table bookings in {mode} mode"))).await.expect("lock bookings");
    let pid = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut conn).await.expect("pid");
    (conn, pid)
}

/// Books `count` seats one after another on a fresh tour, each within `deadline`.
async fn bookings_keep_flowing(app: &TestApp, count: usize, deadline: Duration) -> Vec<Duration> {
    let tour = create_tour(&app.pool, TourSpec { capacity: 1000, ..TourSpec::default() }).await;
    let mut client = app.booking();
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        tokio::time::timeout(deadline, client.create_booking(booking_request(tour.tour_id)))
            .await
            .expect("a booking stalled behind the DDL")
            .expect("booking while the DDL runs");
        latencies.push(started.elapsed());
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_functions_during_a_dump_neither_waits_for_it_nor_stalls_bookings() {
    // Arrange: functions rolled back, so the deploy has real DDL to run
    let app = spawn_app().await;
    let reason_text = "drill";
    app.admin()
        .rollback_functions(RollbackFunctionsRequest { reason: reason_text.into() })
        .await
        .expect("rollback before the dump");
    let (mut dump, _) = dump_like_lock(&app, "access share").await;

    // Act
    let mut admin = app.admin();
    let started = Instant::now();
    let deploy = tokio::spawn(async move {
        tokio::time::timeout(ANSWER_WITHIN, admin.deploy_functions(DeployFunctionsRequest { reason: "drill".into() }))
            .await
    });
    let latencies = bookings_keep_flowing(&app, 20, Duration::from_secs(3)).await;
    let deployed = deploy.await.expect("deploy task").expect("the deploy waited for the dump").expect("deployed");
    let took = started.elapsed();

    // Assert
    assert!(deployed.into_inner().checks.iter().all(|c| c.passed), "every object present after the deploy");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!("deploy during dump: answered in {took:?}; 20 bookings meanwhile, slowest {slowest:?}");
    dump.execute("rollback").await.expect("end the dump");
    wait_until("the atomic path to be SERVING again", Duration::from_secs(10), || async {
        let request = HealthCheckRequest { service: ATOMIC_PATH.to_owned() };
        app.health().check(request).await.is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
    })
    .await;
    let after = create_ok(&app, booking_request(create_tour(&app.pool, TourSpec::default()).await.tour_id)).await;
    assert_eq!(after.code_path(), bookingd::proto::v1::CodePath::Atomic, "the atomic path serves again");
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_behind_a_dump_is_aborted_naming_the_dump_and_bookings_keep_flowing() {
    // Arrange
    let app = spawn_app().await;
    let (mut dump, dump_pid) = dump_like_lock(&app, "access share").await;

    // Act
    let mut admin = app.admin();
    let started = Instant::now();
    let rollback = tokio::spawn(async move {
        tokio::time::timeout(
            ANSWER_WITHIN,
            admin.rollback_functions(RollbackFunctionsRequest { reason: "drill".into() }),
        )
        .await
    });
    let latencies = bookings_keep_flowing(&app, 20, Duration::from_secs(3)).await;
    let refused =
        rollback.await.expect("rollback task").expect("the rollback stalled").expect_err("the dump holds its lock");
    let took = started.elapsed();

    // Assert
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(reason(&refused), "BOOKINGS_TABLE_LOCKED");
    assert!(refused.message().contains("pg_dump"), "names the blocker: {}", refused.message());
    let pids = error_metadata(&refused, "blocking_pids").unwrap_or_default();
    assert!(pids.split(',').any(|p| p == dump_pid.to_string()), "{pids} lists the dump's pid {dump_pid}");
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    println!("rollback behind dump: ABORTED after {took:?}; 20 bookings meanwhile, slowest {slowest:?}");
    let still_there: bool = sqlx::query_scalar(
        "select exists (select 1 from information_schema.triggers where trigger_name = 'restore_availability_trigger')",
    )
    .fetch_one(&app.pool)
    .await
    .expect("trigger");
    assert!(still_there, "nothing was dropped");
    dump.execute("rollback").await.expect("end the dump");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_deploy_or_a_restart_with_matching_definitions_takes_no_lock_on_bookings() {
    // Arrange: a session holds ACCESS EXCLUSIVE, so any DDL would wait
    let app = spawn_app().await;
    let (mut blocker, _) = dump_like_lock(&app, "access exclusive").await;

    // Act
    let deployed = tokio::time::timeout(
        ANSWER_WITHIN,
        app.admin().deploy_functions(DeployFunctionsRequest { reason: "nothing to do".into() }),
    )
    .await
    .expect("the deploy waited for a lock")
    .expect("deployed");
    let restarted = tokio::time::timeout(ANSWER_WITHIN, spawn_app_on(&app.database_url, |_| {}))
        .await
        .expect("a restart waited for a lock");

    // Assert
    assert!(deployed.into_inner().checks.iter().all(|c| c.passed));
    let unchanged: Option<bool> = sqlx::query_scalar(
        "select (details ->> 'unchanged')::boolean from audit_logs
          where table_name = 'database_functions' and action = 'functions_deployed' order by id desc limit 1",
    )
    .fetch_one(&app.pool)
    .await
    .expect("audit row");
    assert_eq!(unchanged, Some(true), "the operator's request is audited as a no-op");
    blocker.execute("rollback").await.expect("release");
    restarted.stop().await;
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_function_changed_by_hand_is_redeployed() {
    // Arrange: someone edits the function in place (same signature)
    let app = spawn_app().await;
    let mut conn = PgConnection::connect(&app.database_url).await.expect("connect");
    let definition: String =
        sqlx::query_scalar("select pg_get_functiondef('create_booking_atomic(jsonb, uuid)'::regprocedure)")
            .fetch_one(&mut conn)
            .await
            .expect("definition");
    let edited = definition.replacen("AS $function$", "AS $function$\n-- hand edit", 1);
    assert_ne!(edited, definition);
    sqlx::raw_sql(sqlx::AssertSqlSafe(edited)).execute(&mut conn).await.expect("edit the function");

    // Act
    app.admin().deploy_functions(DeployFunctionsRequest { reason: "restore".into() }).await.expect("deployed");

    // Assert
    let now: String =
        sqlx::query_scalar("select pg_get_functiondef('create_booking_atomic(jsonb, uuid)'::regprocedure)")
            .fetch_one(&mut conn)
            .await
            .expect("definition");
    assert!(!now.contains("hand edit"), "the binary's definition is back");
    assert_eq!(now, definition);
    assert_healthy(&app.pool).await;
}
