//! The database-error classifier against real faults raised by PostgreSQL,
//! and the same fault answered with the same status by different services.

use std::time::Duration;

use bookingd::db::error::{DbErrorKind, classify};
use sqlx::{Connection, Executor, PgConnection};
use tonic::Code;

use bookingd::proto::v1::SetFlagRequest;

use crate::{
    fixtures::{TourSpec, available_spots, booking_request, create_tour, reason, sessions_waiting_on_locks},
    helpers::{assert_healthy, create_test_database, spawn_app, wait_until},
};

async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("connect")
}

#[tokio::test]
async fn real_postgres_faults_are_sorted_into_their_kinds() {
    let url = create_test_database().await;
    let mut conn = connect(&url).await;
    conn.execute("create table t (id int primary key, name text constraint t_name_key unique)").await.expect("table");
    conn.execute("insert into t values (1, 'a')").await.expect("row");

    // unique violation, with its constraint
    let error = conn.execute("insert into t values (2, 'a')").await.expect_err("duplicate");
    assert_eq!(classify(&error), DbErrorKind::UniqueViolation { constraint: Some("t_name_key".into()) });

    // statement_timeout → cancelled
    let error = conn.execute("set statement_timeout = '50ms'; select pg_sleep(5)").await.expect_err("timeout");
    assert_eq!(classify(&error), DbErrorKind::Cancelled);
    conn.execute("reset statement_timeout").await.expect("reset");

    // lock_timeout behind another session's lock → lock timeout
    let mut holder = connect(&url).await;
    holder.execute("begin; lock table t in access exclusive mode").await.expect("hold lock");
    let error = conn.execute("set lock_timeout = '50ms'; select * from t").await.expect_err("lock timeout");
    assert_eq!(classify(&error), DbErrorKind::LockTimeout);
    holder.execute("rollback").await.expect("release");

    // a dropped function, table or column → undefined object
    for statement in ["select no_such_function()", "select * from no_such_table", "select no_such_column from t"] {
        let error = conn.execute(statement).await.expect_err(statement);
        assert_eq!(classify(&error), DbErrorKind::UndefinedObject, "{statement}");
    }

    // a terminated backend (57P01 on the next statement, or a closed socket)
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()").fetch_one(&mut conn).await.expect("pid");
    sqlx::query("select pg_terminate_backend($1)").bind(pid).execute(&mut holder).await.expect("terminate");
    let error = conn.execute("select 1").await.expect_err("terminated");
    assert_eq!(classify(&error), DbErrorKind::Unavailable, "{error}");

    // anything else → other
    let error = holder.execute("select 1/0").await.expect_err("division by zero");
    assert_eq!(classify(&error), DbErrorKind::Other);
}

/// A booking and an admin call whose database sessions are terminated
/// mid-statement (57P01, as in a failover or `pg_terminate_backend`) answer
/// the same code and reason; the admin call used to say INTERNAL.
#[tokio::test]
async fn a_terminated_session_is_unavailable_from_booking_and_admin_alike() {
    // Arrange: a lock the test holds makes both calls wait inside PostgreSQL
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let mut holder = connect(&app.database_url).await;
    holder.execute("begin").await.expect("begin");
    sqlx::query("select 1 from tours where id = $1 for update")
        .bind(tour.tour_id)
        .execute(&mut holder)
        .await
        .expect("lock");
    // EXCLUSIVE: flag reads go on, flag writes wait
    holder.execute("lock table feature_flags in exclusive mode").await.expect("lock flags");

    let mut booking = app.booking();
    let mut admin = app.admin();
    let booked = tokio::spawn(async move { booking.create_booking(booking_request(tour.tour_id)).await });
    let flagged = tokio::spawn(async move {
        admin
            .set_flag(SetFlagRequest {
                key: bookingd::flags::USE_LEGACY_BOOKING_SERVICE.into(),
                enabled: true,
                reason: "drill".into(),
            })
            .await
    });
    wait_until("both calls wait on the test's locks", Duration::from_secs(10), || async {
        sessions_waiting_on_locks(&app.pool).await >= 2
    })
    .await;

    // Act
    sqlx::query(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'",
    )
    .execute(&app.pool)
    .await
    .expect("terminate the waiting sessions");
    let booked = booked.await.expect("booking task").expect_err("session terminated");
    let flagged = flagged.await.expect("admin task").expect_err("session terminated");
    holder.execute("rollback").await.expect("release");

    // Assert
    for status in [&booked, &flagged] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(reason(status), "DATABASE_UNAVAILABLE", "{status:?}");
    }
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 50, "nothing was booked");
    assert_healthy(&app.pool).await;
}
