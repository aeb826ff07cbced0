//! The demo catalog of the default run, loaded once.

use sqlx::PgPool;

const SEED_SQL: &str = include_str!("seed.sql");
const SEED_LOCK_KEY: i64 = 0x7365_6564; // "seed"

/// Loads the demo catalog unless the database already has operators.
/// Returns whether it loaded anything. Safe to call from several processes.
pub async fn seed_demo_catalog(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("select pg_advisory_xact_lock($1)").bind(SEED_LOCK_KEY).execute(&mut *tx).await?;
    let has_data: bool = sqlx::query_scalar("select exists (select 1 from operators)").fetch_one(&mut *tx).await?;
    if has_data {
        return Ok(false);
    }
    sqlx::raw_sql(SEED_SQL).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(true)
}
