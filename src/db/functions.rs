//! The atomic path's database objects (`create_booking_atomic`, the
//! `restore_tour_availability` trigger function and `restore_availability_trigger`),
//! deployed and dropped as a unit, apart from the schema migrations.
//!
//! DDL here never stalls bookings for long: each attempt waits at most a
//! short `lock_timeout` for its locks (a waiting DDL queues every booking
//! behind it), backs off and retries, and finally answers [`DdlError::Busy`]
//! naming the sessions in the way. A deployment whose definitions are
//! already in place takes no lock at all.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

use crate::db::error::{DbErrorKind, classify};

pub const DEPLOY_SQL: &str = include_str!("../../migrations/functions/database_enhancements.sql");
/// bookingd's own batch wrapper around create_booking_atomic (group commit);
/// not the runbook's, so its rollback leaves it (inert without the function).
pub const BATCH_SQL: &str = include_str!("../../migrations/functions/booking_batch.sql");
pub const ROLLBACK_SQL: &str = include_str!("../../migrations/functions/emergency_database_rollback.sql");

/// Serialises deploy/rollback across processes (and against the first-start
/// deployment of a second process).
const DEPLOY_LOCK_KEY: i64 = 0x626f_6f6b_696e_6764; // "bookingd"

/// What exists right now, read from the catalogs the runbook's
/// post-deployment validation reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionsState {
    pub atomic_function: bool,
    pub restore_function: bool,
    pub trigger: bool,
}

impl FunctionsState {
    pub fn complete(&self) -> bool {
        self.atomic_function && self.restore_function && self.trigger
    }
}

pub async fn state(pool: &PgPool) -> Result<FunctionsState, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    state_in(&mut conn).await
}

async fn state_in(conn: &mut sqlx::PgConnection) -> Result<FunctionsState, sqlx::Error> {
    let (atomic_function, restore_function, trigger): (bool, bool, bool) = sqlx::query_as(
        "select
            exists (select 1 from information_schema.routines where routine_name = 'create_booking_atomic'),
            exists (select 1 from information_schema.routines where routine_name = 'restore_tour_availability'),
            exists (select 1 from information_schema.triggers where trigger_name = 'restore_availability_trigger')",
    )
    .fetch_one(conn)
    .await?;
    Ok(FunctionsState { atomic_function, restore_function, trigger })
}

/// How DDL on `bookings` waits for its locks. Every attempt gives up after
/// `lock_timeout` (bookings queue behind a waiting DDL, so this is the longest
/// a deploy may hold them up), then backs off and tries again.
#[derive(Debug, Clone, Copy)]
pub struct DdlPolicy {
    pub lock_timeout: Duration,
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl Default for DdlPolicy {
    fn default() -> Self {
        DdlPolicy { lock_timeout: Duration::from_millis(1000), attempts: 4, first_backoff: Duration::from_millis(100) }
    }
}

/// A session holding a lock the DDL needed, as `pg_stat_activity` names it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LockHolder {
    pub pid: i32,
    pub application_name: String,
    pub mode: String,
    pub held_seconds: i64,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = if self.application_name.is_empty() { "unnamed session" } else { &self.application_name };
        write!(f, "pid {} ({name}, {}, for {} s)", self.pid, self.mode, self.held_seconds)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    /// Every attempt timed out waiting for a lock on `bookings` (or for
    /// another deployment): the operator retries when the holder is done.
    #[error("the bookings table is locked by {}; retry when it is free", describe(.holders))]
    Busy { holders: Vec<LockHolder>, attempts: u32 },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn describe(holders: &[LockHolder]) -> String {
    if holders.is_empty() {
        return "another session (gone by now)".to_owned();
    }
    holders.iter().map(LockHolder::to_string).collect::<Vec<_>>().join(", ")
}

/// What a deployment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployed {
    /// The definitions were (re)created.
    Changed,
    /// The deployed definitions already were this binary's: nothing was
    /// locked or replaced.
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ddl {
    Deploy,
    Rollback,
    /// Start-up: deploy on the database's first start; afterwards bring
    /// present functions up to this binary's definitions, leave absent ones
    /// absent (an operator removed them).
    Refresh,
}

/// Creates (or replaces) the functions and the trigger in one transaction;
/// nothing when they already match this binary's.
pub async fn deploy(pool: &PgPool, actor: &str, reason: &str) -> Result<Deployed, DdlError> {
    deploy_with(pool, DdlPolicy::default(), actor, reason).await
}

pub async fn deploy_with(pool: &PgPool, policy: DdlPolicy, actor: &str, reason: &str) -> Result<Deployed, DdlError> {
    run(pool, policy, Ddl::Deploy, actor, reason).await.map(|(deployed, _)| deployed)
}

/// Drops them, exactly as the runbook's emergency rollback does.
pub async fn rollback(pool: &PgPool, actor: &str, reason: &str) -> Result<(), DdlError> {
    rollback_with(pool, DdlPolicy::default(), actor, reason).await
}

pub async fn rollback_with(pool: &PgPool, policy: DdlPolicy, actor: &str, reason: &str) -> Result<(), DdlError> {
    run(pool, policy, Ddl::Rollback, actor, reason).await.map(|_| ())
}

/// Creates or refreshes `create_booking_atomic_batch` unless this binary's
/// definition is already there (its comment carries the SQL's hash). Under
/// the deployers' advisory lock, so replicas starting together do not race.
/// Takes no lock on any table.
pub async fn deploy_batch_function(pool: &PgPool) -> Result<(), sqlx::Error> {
    use sha2::Digest;
    let wanted = format!("bookingd {}", hex::encode(sha2::Sha256::digest(BATCH_SQL.as_bytes())));
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1)").bind(DEPLOY_LOCK_KEY).execute(&mut *tx).await?;
    let deployed: Option<String> =
        sqlx::query_scalar("select obj_description(to_regprocedure('create_booking_atomic_batch(jsonb)'), 'pg_proc')")
            .fetch_one(&mut *tx)
            .await?;
    if deployed.as_deref() != Some(wanted.as_str()) {
        sqlx::raw_sql(BATCH_SQL).execute(&mut *tx).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "comment on function create_booking_atomic_batch(jsonb) is '{wanted}'"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await
}

/// Deploys on the database's first start only: after an operator's rollback
/// a restart must not silently bring the functions back. Returns whether this
/// was the first deployment.
pub async fn deploy_on_first_start(pool: &PgPool, policy: DdlPolicy) -> Result<bool, DdlError> {
    run(pool, policy, Ddl::Refresh, "bookingd", "first start").await.map(|(_, first)| first)
}

async fn run(
    pool: &PgPool,
    policy: DdlPolicy,
    ddl: Ddl,
    actor: &str,
    reason: &str,
) -> Result<(Deployed, bool), DdlError> {
    let mut backoff = policy.first_backoff;
    let mut holders = Vec::new();
    for attempt in 1..=policy.attempts.max(1) {
        match attempt_once(pool, policy, ddl, actor, reason).await {
            Err(error) if classify(&error) == DbErrorKind::LockTimeout => {
                holders = lock_holders(pool).await.unwrap_or_default();
                tracing::warn!(attempt, ?ddl, blockers = %describe(&holders), "ddl lock wait timed out; backing off");
                if attempt < policy.attempts {
                    // jitter so two deployers do not retry in step
                    let jitter = rand::random_range(0..=backoff.as_millis() as u64 / 2);
                    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
            other => return Ok(other?),
        }
    }
    Err(DdlError::Busy { holders, attempts: policy.attempts.max(1) })
}

/// One transaction: the advisory lock that serialises deployers (across
/// processes too), then the DDL. `lock_timeout` bounds every lock wait in it,
/// the advisory lock included.
async fn attempt_once(
    pool: &PgPool,
    policy: DdlPolicy,
    ddl: Ddl,
    actor: &str,
    reason: &str,
) -> Result<(Deployed, bool), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select set_config('lock_timeout', $1, true)")
        .bind(format!("{}ms", policy.lock_timeout.as_millis().max(1)))
        .execute(&mut *tx)
        .await?;
    sqlx::query("select pg_advisory_xact_lock($1)").bind(DEPLOY_LOCK_KEY).execute(&mut *tx).await?;
    let outcome = match ddl {
        Ddl::Deploy => {
            let deployed = deploy_in(&mut tx).await?;
            let action = "functions_deployed";
            record(&mut tx, action, actor, reason, deployed == Deployed::Unchanged).await?;
            (deployed, false)
        }
        Ddl::Rollback => {
            sqlx::raw_sql(ROLLBACK_SQL).execute(&mut *tx).await?;
            record(&mut tx, "functions_rolled_back", actor, reason, false).await?;
            (Deployed::Changed, false)
        }
        Ddl::Refresh => {
            let ever: bool = sqlx::query_scalar(
                "select exists (select 1 from audit_logs
                                where table_name = 'database_functions'
                                  and action in ('functions_deployed', 'functions_rolled_back'))",
            )
            .fetch_one(&mut *tx)
            .await?;
            if !ever {
                deploy_in(&mut tx).await?;
                record(&mut tx, "functions_deployed", actor, reason, false).await?;
                (Deployed::Changed, true)
            } else if state_in(&mut tx).await?.complete() {
                // a schema migration may have renamed what they read
                (deploy_in(&mut tx).await?, false)
            } else {
                (Deployed::Unchanged, false)
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Replaces the definitions unless the deployed ones are this binary's, as
/// recorded by the fingerprint comment the last deployment left: the hash of
/// the SQL it ran and of the catalog definitions it produced. A function
/// changed by hand since changes the second half, a new binary the first.
async fn deploy_in(tx: &mut Transaction<'static, Postgres>) -> Result<Deployed, sqlx::Error> {
    let expected = catalog_fingerprint(tx).await?.map(|catalog| fingerprint_comment(&catalog));
    let recorded: Option<String> =
        sqlx::query_scalar("select obj_description(to_regprocedure('create_booking_atomic(jsonb, uuid)'), 'pg_proc')")
            .fetch_one(&mut **tx)
            .await?;
    if expected.is_some() && recorded == expected && state_in(tx).await?.complete() {
        return Ok(Deployed::Unchanged);
    }
    sqlx::raw_sql(DEPLOY_SQL).execute(&mut **tx).await?;
    let catalog = catalog_fingerprint(tx).await?.unwrap_or_default();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "comment on function create_booking_atomic(jsonb, uuid) is '{}'",
        fingerprint_comment(&catalog)
    )))
    .execute(&mut **tx)
    .await?;
    Ok(Deployed::Changed)
}

/// `bookingd <sha-256 of DEPLOY_SQL> <md5 of the deployed definitions>`: hex only, safe to quote.
fn fingerprint_comment(catalog: &str) -> String {
    use sha2::Digest;
    format!("bookingd {} {catalog}", hex::encode(sha2::Sha256::digest(DEPLOY_SQL.as_bytes())))
}

/// md5 of the deployed definitions of both functions and the trigger; None
/// when none of them exists.
async fn catalog_fingerprint(tx: &mut Transaction<'static, Postgres>) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select md5(string_agg(def, E'\\n' order by def)) from (
             select pg_get_functiondef(p.oid) as def
               from pg_proc p
              where p.proname in ('create_booking_atomic', 'restore_tour_availability')
                and p.pronamespace = to_regnamespace(current_schema())
             union all
             select pg_get_triggerdef(t.oid)
               from pg_trigger t
              where t.tgname = 'restore_availability_trigger' and not t.tgisinternal
                and t.tgrelid = to_regclass('bookings')
         ) defs",
    )
    .fetch_one(&mut **tx)
    .await
}

/// Sessions holding a lock on `bookings` (or the deployers' advisory lock),
/// longest first: who the operator has to wait for.
async fn lock_holders(pool: &PgPool) -> Result<Vec<LockHolder>, sqlx::Error> {
    sqlx::query_as(
        "select a.pid, coalesce(a.application_name, '') as application_name, l.mode,
                extract(epoch from now() - coalesce(a.xact_start, a.query_start, now()))::bigint as held_seconds
           from pg_locks l
           join pg_stat_activity a on a.pid = l.pid
          where l.granted
            and a.pid <> pg_backend_pid()
            and ((l.locktype = 'relation' and l.relation = to_regclass('bookings'))
                 or (l.locktype = 'advisory' and l.objid = ($1::bigint & 4294967295)::oid))
          order by held_seconds desc, a.pid
          limit 5",
    )
    .bind(DEPLOY_LOCK_KEY)
    .fetch_all(pool)
    .await
}

async fn record(
    tx: &mut Transaction<'static, Postgres>,
    action: &str,
    actor: &str,
    reason: &str,
    unchanged: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_logs (table_name, action, actor, details)
         values ('database_functions', $1, $2, jsonb_build_object('reason', $3::text, 'unchanged', $4))",
    )
    .bind(action)
    .bind(actor)
    .bind(reason)
    .bind(unchanged)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
