//! Connections the booking paths keep checked out between bookings.
//!
//! sqlx takes every connection back into its pool with a ping (a `Sync` and
//! its `ReadyForQuery`: one more round trip per checkout, which
//! `test_before_acquire(false)` does not remove). On the booking paths that
//! round trip cost about a fifth of the throughput (see docs/scaling.md). A
//! booking whose call completed puts its connection here instead, for the
//! next booking; one whose call was interrupted (its future dropped, the
//! socket broken, the session ended by the server) drops it, and the pool
//! pings and drains it as before.
//!
//! The booking paths hold at most `capacity` connections at once (waiting
//! here or in use), so the rest of the pool stays free for everything else;
//! callers beyond that wait their turn first come, first served (a fair
//! semaphore), bounded by the pool's acquire timeout. A connection that idled
//! longer than [`IDLE`] goes back to the pool when the next booking comes,
//! and [`WarmConnections::close`] gives every one back before the pool closes
//! at shutdown.

use std::{
    ops::{Deref, DerefMut},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::error;

/// How long a connection may wait here before it goes back to the pool.
pub const IDLE: Duration = Duration::from_secs(10);

/// The pool and the connections kept warm beside it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WarmConnections {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    /// A stack (the most recently used on top) with when each came back.
    idle: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
    /// One per connection the booking paths may hold (fair: FIFO).
    turns: Arc<Semaphore>,
    closed: AtomicBool,
}

impl Inner {
    fn idle(&self) -> MutexGuard<'_, Vec<(PoolConnection<Postgres>, Instant)>> {
        // the lock guards a plain Vec: a panic elsewhere cannot leave it torn
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WarmConnections {
    /// The booking paths hold at most `capacity` (at least 1) connections of
    /// `pool` at once, and keep them warm.
    pub fn new(pool: PgPool, capacity: usize) -> Self {
        let turns = Arc::new(Semaphore::new(capacity.max(1)));
        WarmConnections {
            inner: Arc::new(Inner { pool, idle: Mutex::new(Vec::new()), turns, closed: AtomicBool::new(false) }),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The most recently used warm connection, or one from the pool, after
    /// waiting for a turn (at most the pool's acquire timeout, like the
    /// pool itself).
    pub async fn acquire(&self) -> Result<WarmConnection, sqlx::Error> {
        let wait = self.inner.pool.options().get_acquire_timeout();
        let turn = match tokio::time::timeout(wait, self.inner.turns.clone().acquire_owned()).await {
            Ok(Ok(turn)) => turn,
            // never closed; a timeout is the pool's own answer to waiting too long
            Ok(Err(_)) | Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let conn = match self.take_idle() {
            Some(conn) => conn,
            None => self.inner.pool.acquire().await?,
        };
        Ok(WarmConnection { conn, home: self.inner.clone(), _turn: turn })
    }

    fn take_idle(&self) -> Option<PoolConnection<Postgres>> {
        let mut idle = self.inner.idle();
        // the bottom of the stack idled longest
        let stale = idle.iter().take_while(|(_, since)| since.elapsed() > IDLE).count();
        let stale: Vec<_> = idle.drain(..stale).collect();
        let taken = idle.pop().map(|(conn, _)| conn);
        drop(idle);
        // back to the pool (which pings them) outside the lock
        drop(stale);
        taken
    }

    /// Connections waiting here now.
    pub fn waiting(&self) -> usize {
        self.inner.idle().len()
    }

    /// Gives every waiting connection back to the pool; from now on none
    /// waits here. Before the pool closes: `close()` waits for checked-out
    /// connections.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let all = std::mem::take(&mut *self.inner.idle());
        drop(all);
    }
}

/// A connection out of [`WarmConnections`]. Dropped, it goes back to the
/// pool; [`WarmConnection::release`] keeps it warm.
#[derive(Debug)]
pub struct WarmConnection {
    conn: PoolConnection<Postgres>,
    home: Arc<Inner>,
    /// Given back with the connection (after it is put back to wait here).
    _turn: OwnedSemaphorePermit,
}

impl WarmConnection {
    /// Keeps the connection for the next booking: only after a call that
    /// completed (answered, or refused by the server, which leaves the
    /// protocol in step), never after one that was interrupted.
    pub fn release(self) {
        let WarmConnection { conn, home, _turn } = self;
        // a transaction left open (a failed rollback) is the pool's to clean up
        if home.closed.load(Ordering::SeqCst) || sqlx::Connection::is_in_transaction(&*conn) {
            return;
        }
        // no more wait here than there are turns: room for it is certain
        home.idle().push((conn, Instant::now()));
        // `_turn` drops here, after the connection is back: the next caller finds it
    }

    /// Keeps it when the call's answer leaves the session usable
    /// ([`error::leaves_session_usable`]); otherwise it goes back to the pool.
    pub fn release_after<T>(self, called: &Result<T, sqlx::Error>) {
        if called.as_ref().err().is_none_or(error::leaves_session_usable) {
            self.release();
        }
    }
}

impl Deref for WarmConnection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for WarmConnection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
