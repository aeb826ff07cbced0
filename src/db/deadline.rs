//! The caller's deadline, carried to the database. The request timeout (and
//! a client's `grpc-timeout`) only drops the call's future: the statement
//! it started would run on and could still commit, so a caller told
//! DEADLINE_EXCEEDED might own a booking. The gRPC layer
//! (`grpc::deadline`) runs each call inside [`scope`]; a transaction begun
//! here whose caller has less time left than the session's
//! `statement_timeout` gets `SET LOCAL statement_timeout` = the time left
//! minus [`MARGIN`], so the database cancels the statement (and nothing
//! commits) before the caller's deadline fires.
//!
//! Calls with the usual deadline (longer than the session's timeout) pay no
//! extra round trip: the session's own `statement_timeout` already bounds
//! them below the request timeout.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::task::futures::TaskLocalFuture;

/// Kept between the database's cancel and the caller's deadline: the cancel's
/// answer, the rollback and the reply must all reach the caller in time.
pub const MARGIN: Duration = Duration::from_millis(100);

/// The deadline of the call being served, and the `statement_timeout` its
/// pooled sessions start with (a shorter deadline is what needs a SET LOCAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: Instant,
    pub session_statement_timeout: Duration,
}

tokio::task_local! {
    static DEADLINE: Deadline;
}

/// Runs `future` with `deadline` as the current call's deadline. Work
/// spawned onto other tasks does not inherit it.
pub fn scope<F: Future>(deadline: Deadline, future: F) -> TaskLocalFuture<Deadline, F> {
    DEADLINE.scope(deadline, future)
}

/// The current call's deadline, if the task serves one.
pub fn current() -> Option<Deadline> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

impl Deadline {
    /// The `statement_timeout` a transaction under this deadline must set:
    /// the time left minus [`MARGIN`] (at least 1 ms: 0 would mean none), or
    /// None when the session's own timeout already ends first.
    pub fn statement_limit(&self) -> Option<Duration> {
        let left = self.at.saturating_duration_since(Instant::now()).saturating_sub(MARGIN);
        (left < self.session_statement_timeout).then(|| left.max(Duration::from_millis(1)))
    }

    /// Whether it is nearer than the session's `statement_timeout` (its
    /// statements need a transaction of their own).
    pub fn is_short(&self) -> bool {
        self.statement_limit().is_some()
    }
}

/// [`Deadline::statement_limit`] of the current call; None outside one.
pub fn statement_limit() -> Option<Duration> {
    current()?.statement_limit()
}

/// Whether the current call's deadline is short ([`Deadline::is_short`]).
pub fn is_short() -> bool {
    statement_limit().is_some()
}

/// Begins a transaction bounded by the current call's deadline.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    bound(pool.begin().await?).await
}

/// [`begin`] on a connection the caller holds (a warm one: `db::warm`).
pub async fn begin_on(conn: &mut PgConnection) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    bound(sqlx::Connection::begin(conn).await?).await
}

async fn bound(mut tx: Transaction<'_, Postgres>) -> Result<Transaction<'_, Postgres>, sqlx::Error> {
    if let Some(limit) = statement_limit() {
        set_statement_timeout(&mut tx, limit).await?;
    }
    Ok(tx)
}

/// `SET LOCAL statement_timeout` (as `set_config`, so the value is a bind
/// parameter): ends with the transaction.
pub async fn set_statement_timeout(conn: &mut PgConnection, limit: Duration) -> Result<(), sqlx::Error> {
    sqlx::query("select set_config('statement_timeout', $1, true)")
        .bind(format!("{}ms", limit.as_millis().max(1)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Commits after `result` succeeded, rolls back after it failed; the
/// statement's own error wins over a failed rollback.
pub async fn finish<T>(tx: Transaction<'_, Postgres>, result: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::debug!(%rollback, "rollback after a failed statement failed too");
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn outside_a_call_there_is_no_limit() {
        assert_eq!(current(), None);
        assert_eq!(statement_limit(), None);
    }

    #[tokio::test]
    async fn a_deadline_longer_than_the_session_timeout_needs_no_limit() {
        let deadline = Deadline { at: Instant::now() + Duration::from_secs(10), session_statement_timeout: SESSION };
        assert_eq!(scope(deadline, async { statement_limit() }).await, None);
    }

    #[tokio::test]
    async fn a_short_deadline_limits_statements_to_the_time_left_minus_the_margin() {
        let deadline = Deadline { at: Instant::now() + Duration::from_millis(500), session_statement_timeout: SESSION };
        let limit = scope(deadline, async { statement_limit() }).await.expect("a limit");
        assert!(limit <= Duration::from_millis(400) && limit > Duration::from_millis(300), "{limit:?}");
    }

    #[tokio::test]
    async fn a_deadline_already_passed_still_limits_to_one_millisecond() {
        let deadline = Deadline { at: Instant::now(), session_statement_timeout: SESSION };
        assert_eq!(scope(deadline, async { statement_limit() }).await, Some(Duration::from_millis(1)));
    }
}
