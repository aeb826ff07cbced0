//! The booking paths' warm connections (`db::warm`): a connection whose call
//! completed serves the next booking without going back through the pool
//! (whose release costs a round trip), at most `capacity` wait, and one
//! that was interrupted, left in a transaction or ended by the server is
//! never handed out again. Real PostgreSQL, its own database.

use std::time::Duration;

use bookingd::db::{self, SessionTimeouts, warm::WarmConnections};
use sqlx::{PgConnection, PgPool};

use crate::helpers::create_test_database;

async fn pool(max: u32) -> PgPool {
    let url = create_test_database().await;
    db::connect(&url, max, Duration::from_secs(10), SessionTimeouts::NONE).await.expect("connect")
}

async fn backend_pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()").fetch_one(conn).await.expect("pid")
}

#[tokio::test]
async fn a_released_connection_serves_the_next_caller_and_callers_beyond_capacity_wait() {
    let pool = pool(6).await;
    let warm = WarmConnections::new(pool.clone(), 2);

    let mut first = warm.acquire().await.expect("acquire");
    let pid = backend_pid(&mut first).await;
    first.release();
    assert_eq!(warm.waiting(), 1);
    let mut again = warm.acquire().await.expect("acquire");
    assert_eq!(backend_pid(&mut again).await, pid, "the warm connection is handed out again");
    assert_eq!(warm.waiting(), 0);

    // capacity two: a third caller waits for a turn (tokio's semaphore is
    // fair, so waiters are served in arrival order)
    let second = warm.acquire().await.expect("acquire");
    let third = {
        let warm = warm.clone();
        tokio::spawn(async move {
            let mut conn = warm.acquire().await.expect("a turn within the acquire timeout");
            let pid = backend_pid(&mut conn).await;
            (conn, pid)
        })
    };
    again.release();
    let (third, got) = third.await.expect("the waiter is served");
    assert_eq!(got, pid, "the waiter gets the released, warm connection");
    second.release();
    third.release();
    assert_eq!(warm.waiting(), 2);
    assert_eq!(pool.size(), 2, "the booking paths never held more than their two connections");
}

#[tokio::test]
async fn only_a_session_that_can_run_the_next_statement_is_kept() {
    let pool = pool(4).await;
    let warm = WarmConnections::new(pool.clone(), 4);

    // a statement's own error leaves the session usable
    let mut conn = warm.acquire().await.expect("acquire");
    let failed = sqlx::query("select 1 / 0").execute(&mut *conn).await;
    assert!(failed.is_err());
    conn.release_after(&failed);
    assert_eq!(warm.waiting(), 1);
    let mut conn = warm.acquire().await.expect("acquire");
    let one: i32 = sqlx::query_scalar("select 1").fetch_one(&mut *conn).await.expect("the kept session works");
    assert_eq!(one, 1);

    // dropped without release (an interrupted call): back to the pool
    drop(conn);
    assert_eq!(warm.waiting(), 0);

    // left inside a transaction (as after a failed rollback): not kept
    let mut conn = warm.acquire().await.expect("acquire");
    let open = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    // neither committed nor rolled back
    std::mem::forget(open);
    conn.release();
    assert_eq!(warm.waiting(), 0);

    // ended by the server (pg_terminate_backend): not kept
    let mut conn = warm.acquire().await.expect("acquire");
    let pid = backend_pid(&mut conn).await;
    let mut other = pool.acquire().await.expect("another connection");
    sqlx::query("select pg_terminate_backend($1)").bind(pid).execute(&mut *other).await.expect("terminate");
    drop(other);
    let mut answered = sqlx::query("select 1").execute(&mut *conn).await.map(|_| ());
    // the FATAL may land with this statement or the next
    if answered.is_ok() {
        answered = sqlx::query("select 1").execute(&mut *conn).await.map(|_| ());
    }
    assert!(answered.is_err(), "a terminated session answers with an error");
    conn.release_after(&answered);
    assert_eq!(warm.waiting(), 0, "a terminated session is not kept");
}

#[tokio::test]
async fn close_gives_every_connection_back_so_the_pool_closes_at_once() {
    let pool = pool(4).await;
    let warm = WarmConnections::new(pool.clone(), 4);
    let a = warm.acquire().await.expect("acquire");
    let b = warm.acquire().await.expect("acquire");
    a.release();
    warm.close();
    assert_eq!(warm.waiting(), 0);
    // released after close: not kept either
    b.release();
    assert_eq!(warm.waiting(), 0);
    tokio::time::timeout(Duration::from_secs(5), pool.close()).await.expect("the pool closes: nothing is held");
}
