//! Getting a database ready for this binary: the schema migrations, the first
//! deployment of the database functions and the demo catalog. `bookingd
//! migrate` and the server's start (unless `--migrate-on-start false`) both
//! come here, and one session-level advisory lock makes it one process at a
//! time: when several replicas start at once against an empty database,
//! exactly one migrates, the others wait for it and then find nothing to do.
//! A server that does not migrate waits until the schema is current instead.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool};

use super::{
    DbSetupError, MIGRATOR,
    functions::{self, DdlError, DdlPolicy},
    seed,
};

/// Key of the advisory lock held while a process prepares the database
/// (distinct from the functions' deploy lock, which `functions` takes inside).
const PREPARE_LOCK_KEY: i64 = 0x626f_6f6b_6d69_6772; // "bookmigr"

/// What one `prepare` did.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Versions this process applied (empty: the schema was already current).
    pub applied: Vec<i64>,
    /// How long this process waited for another one holding the lock.
    pub waited: Option<Duration>,
    pub functions_deployed: bool,
    pub seeded: bool,
}

/// Migrates, deploys the functions on the database's first start, and loads
/// the demo catalog into an empty database when `seed_demo` — all under the
/// advisory lock, held on a connection of its own that is closed at the end
/// (closing releases the lock even when a step failed).
pub async fn prepare(pool: &PgPool, seed_demo: bool) -> Result<Prepared, DbSetupError> {
    let query = |action: &'static str| move |source| DbSetupError::Query { action, source };
    let mut lock = pool.acquire().await.map_err(query("connecting to migrate"))?.detach();
    // the pool's session timeouts are for requests: waiting for another
    // replica's migration and a long migration must not hit them (this
    // connection is closed at the end, so the pool never sees the change)
    sqlx::raw_sql("set statement_timeout = 0; set lock_timeout = 0; set idle_in_transaction_session_timeout = 0")
        .execute(&mut lock)
        .await
        .map_err(query("turning off the session timeouts to migrate"))?;
    let mut prepared = Prepared::default();

    let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(PREPARE_LOCK_KEY)
        .fetch_one(&mut lock)
        .await
        .map_err(query("taking the migration lock"))?;
    if !got {
        tracing::info!("another process is migrating this database; waiting for it");
        let started = Instant::now();
        sqlx::query("select pg_advisory_lock($1)")
            .bind(PREPARE_LOCK_KEY)
            .execute(&mut lock)
            .await
            .map_err(query("waiting for the migration lock"))?;
        prepared.waited = Some(started.elapsed());
    }

    let result = prepare_locked(&mut lock, pool, seed_demo, &mut prepared).await;
    // also releases the lock; a failed close leaves it to the server's
    // session cleanup, which is just as final
    let _ = sqlx::Connection::close(lock).await;
    result?;

    match prepared.applied.as_slice() {
        [] => tracing::info!(waited_ms = prepared.waited.map(|w| w.as_millis() as u64), "schema already current"),
        applied => tracing::info!(
            count = applied.len(),
            first = applied[0],
            last = applied[applied.len() - 1],
            "applied schema migrations"
        ),
    }
    if prepared.functions_deployed {
        tracing::info!("deployed create_booking_atomic and restore_availability_trigger");
    }
    if prepared.seeded {
        tracing::info!("loaded the demo catalog");
    }
    Ok(prepared)
}

async fn prepare_locked(
    lock: &mut PgConnection,
    pool: &PgPool,
    seed_demo: bool,
    prepared: &mut Prepared,
) -> Result<(), DbSetupError> {
    prepared.applied = pending(lock)
        .await
        .map_err(|source| DbSetupError::Query { action: "reading the applied migrations", source })?;
    MIGRATOR.run(&mut *lock).await?;
    prepared.functions_deployed = match functions::deploy_on_first_start(pool, DdlPolicy::default()).await {
        Ok(deployed) => deployed,
        // the functions in place keep serving; a start must not queue
        // bookings behind a lock (a rolling restart during a pg_dump)
        Err(error @ DdlError::Busy { .. }) => {
            tracing::warn!(%error, "database functions not refreshed; retry with `bookingctl functions deploy`");
            false
        }
        Err(DdlError::Database(source)) => {
            return Err(DbSetupError::Query { action: "deploying the database functions", source });
        }
    };
    // bookingd's group-commit wrapper; takes no table lock
    functions::deploy_batch_function(pool)
        .await
        .map_err(|source| DbSetupError::Query { action: "deploying the batch function", source })?;
    if seed_demo {
        prepared.seeded = seed::seed_demo_catalog(pool)
            .await
            .map_err(|source| DbSetupError::Query { action: "loading the demo catalog", source })?;
    }
    Ok(())
}

/// Waits until every migration of this binary is applied (by `bookingd
/// migrate` or another replica), polling twice a second, at most `wait`.
pub async fn wait_until_current(pool: &PgPool, wait: Duration) -> Result<(), DbSetupError> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        let mut conn = pool
            .acquire()
            .await
            .map_err(|source| DbSetupError::Query { action: "reading the applied migrations", source })?;
        let missing = pending(&mut conn)
            .await
            .map_err(|source| DbSetupError::Query { action: "reading the applied migrations", source })?;
        drop(conn);
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DbSetupError::NotMigrated { pending: missing.len(), waited: wait });
        }
        if !told {
            tracing::info!(pending = missing.len(), "schema not current yet; waiting for `bookingd migrate`");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Versions of this binary's migrations the database has not applied yet.
async fn pending(conn: &mut PgConnection) -> Result<Vec<i64>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null").fetch_one(&mut *conn).await?;
    let applied: HashSet<i64> = if exists {
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| m.version)
        .collect())
}
