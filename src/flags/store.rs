//! The flags' SQL: `feature_flags` (current values) and
//! `feature_flag_changes` (the audit trail of every SetFlag).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use tracing::Instrument;

use crate::telemetry::db_span;

/// One `feature_flags` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FlagRow {
    pub enabled: bool,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One `feature_flag_changes` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FlagChangeRow {
    pub id: i64,
    pub flag_key: String,
    pub old_value: Option<bool>,
    pub new_value: bool,
    pub changed_by: String,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

/// What a committed write left behind.
#[derive(Debug, Clone)]
pub struct WrittenFlag {
    pub previous: bool,
    pub row: FlagRow,
    pub change: FlagChangeRow,
}

pub async fn read_flag(pool: &PgPool, key: &str) -> Result<Option<FlagRow>, sqlx::Error> {
    sqlx::query_as("select enabled, updated_at, updated_by from feature_flags where key = $1")
        .bind(key)
        .fetch_optional(pool)
        .instrument(db_span("select feature_flags"))
        .await
}

/// Sets the flag and records the change, in one transaction. The row is
/// created with the flag's default first when missing, so that concurrent
/// writers serialise on its row lock and each records the value it really
/// replaced (the default, when there was no row).
pub async fn write_flag(
    pool: &PgPool,
    key: &str,
    default: bool,
    enabled: bool,
    changed_by: &str,
    reason: &str,
) -> Result<WrittenFlag, sqlx::Error> {
    let mut tx = pool.begin().instrument(db_span("begin")).await?;
    sqlx::query("insert into feature_flags (key, enabled) values ($1, $2) on conflict (key) do nothing")
        .bind(key)
        .bind(default)
        .execute(&mut *tx)
        .instrument(db_span("insert feature_flags default"))
        .await?;
    let previous: bool = sqlx::query_scalar("select enabled from feature_flags where key = $1 for update")
        .bind(key)
        .fetch_one(&mut *tx)
        .instrument(db_span("select feature_flags for update"))
        .await?;
    let row: FlagRow = sqlx::query_as(
        "update feature_flags set enabled = $2, updated_at = now(), updated_by = $3 where key = $1
         returning enabled, updated_at, updated_by",
    )
    .bind(key)
    .bind(enabled)
    .bind(changed_by)
    .fetch_one(&mut *tx)
    .instrument(db_span("update feature_flags"))
    .await?;
    let change = record_change(&mut tx, key, previous, enabled, changed_by, reason).await?;
    tx.commit().instrument(db_span("commit")).await?;
    Ok(WrittenFlag { previous, row, change })
}

async fn record_change(
    tx: &mut Transaction<'static, Postgres>,
    key: &str,
    old_value: bool,
    new_value: bool,
    changed_by: &str,
    reason: &str,
) -> Result<FlagChangeRow, sqlx::Error> {
    sqlx::query_as(
        "insert into feature_flag_changes (flag_key, old_value, new_value, changed_by, reason)
         values ($1, $2, $3, $4, $5)
         returning id, flag_key, old_value, new_value, changed_by, reason, changed_at",
    )
    .bind(key)
    .bind(old_value)
    .bind(new_value)
    .bind(changed_by)
    .bind(reason)
    .fetch_one(&mut **tx)
    .instrument(db_span("insert feature_flag_changes"))
    .await
}

/// Newest first, ids below `before_id` (the keyset page boundary).
pub async fn list_changes(
    pool: &PgPool,
    key: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<FlagChangeRow>, sqlx::Error> {
    let before_id = before_id.unwrap_or(i64::MAX);
    // two statements rather than "$1 is null or ...": each gets a plan that
    // walks its index ((flag_key, id desc), or the primary key) in order
    match key {
        Some(key) => {
            sqlx::query_as(
                "select id, flag_key, old_value, new_value, changed_by, reason, changed_at
                 from feature_flag_changes
                 where flag_key = $1 and id < $2
                 order by id desc
                 limit $3",
            )
            .bind(key)
            .bind(before_id)
            .bind(limit)
            .fetch_all(pool)
            .instrument(db_span("select feature_flag_changes"))
            .await
        }
        None => {
            sqlx::query_as(
                "select id, flag_key, old_value, new_value, changed_by, reason, changed_at
                 from feature_flag_changes
                 where id < $1
                 order by id desc
                 limit $2",
            )
            .bind(before_id)
            .bind(limit)
            .fetch_all(pool)
            .instrument(db_span("select feature_flag_changes"))
            .await
        }
    }
}
