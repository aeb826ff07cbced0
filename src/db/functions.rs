//! The atomic path's database objects (`create_booking_atomic`, the
//! `restore_tour_availability` trigger function and `restore_availability_trigger`),
//! deployed and dropped as a unit, apart from the schema migrations.

use sqlx::{PgPool, Postgres, Transaction};

pub const DEPLOY_SQL: &str = include_str!("../../migrations/functions/database_enhancements.sql");
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

async fn locked(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1)").bind(DEPLOY_LOCK_KEY).execute(&mut *tx).await?;
    Ok(tx)
}

/// Creates (or replaces) the functions and the trigger in one transaction.
pub async fn deploy(pool: &PgPool, actor: &str, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = locked(pool).await?;
    sqlx::raw_sql(DEPLOY_SQL).execute(&mut *tx).await?;
    record(&mut tx, "functions_deployed", actor, reason).await?;
    tx.commit().await
}

/// Drops them, exactly as the runbook's emergency rollback does.
pub async fn rollback(pool: &PgPool, actor: &str, reason: &str) -> Result<(), sqlx::Error> {
    let mut tx = locked(pool).await?;
    sqlx::raw_sql(ROLLBACK_SQL).execute(&mut *tx).await?;
    record(&mut tx, "functions_rolled_back", actor, reason).await?;
    tx.commit().await
}

/// Deploys on the database's first start only: after an operator's rollback
/// a restart must not silently bring the functions back.
pub async fn deploy_on_first_start(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let mut tx = locked(pool).await?;
    let ever: bool = sqlx::query_scalar(
        "select exists (select 1 from audit_logs
                        where table_name = 'database_functions'
                          and action in ('functions_deployed', 'functions_rolled_back'))",
    )
    .fetch_one(&mut *tx)
    .await?;
    if ever {
        // present functions are brought up to this binary's definition (a
        // schema migration may have renamed what they read); absent ones stay
        // absent: an operator removed them
        if state_in(&mut tx).await?.complete() {
            sqlx::raw_sql(DEPLOY_SQL).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        return Ok(false);
    }
    sqlx::raw_sql(DEPLOY_SQL).execute(&mut *tx).await?;
    record(&mut tx, "functions_deployed", "bookingd", "first start").await?;
    tx.commit().await?;
    Ok(true)
}

async fn record(
    tx: &mut Transaction<'static, Postgres>,
    action: &str,
    actor: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_logs (table_name, action, actor, details)
         values ('database_functions', $1, $2, jsonb_build_object('reason', $3::text))",
    )
    .bind(action)
    .bind(actor)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
