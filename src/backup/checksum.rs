//! Table checksums: a table's checksum is the sha-256 of `copy (select *
//! from <table> order by <primary key>) to stdout` (text format) under fixed
//! output settings (UTC, ISO dates), so the same rows give the same bytes on
//! any server with the same major version; its row count is the number of
//! lines of that output.

use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use super::{BackupError, Progress, manifest::TableSummary};

const TABLES_SQL: &str = include_str!("sql/backup_tables.sql");

pub(super) const CHECKSUM_METHOD: &str = "sha-256 of `copy (select * from <table> order by <primary key>) to stdout` \
     (text format; TimeZone=UTC, DateStyle=ISO, IntervalStyle=postgres, bytea_output=hex, extra_float_digits=1); \
     rows = lines of that output";

/// Row counts and checksums of every table, in the caller's transaction
/// (whose snapshot decides what they describe).
pub(super) async fn checksum_tables(
    conn: &mut PgConnection,
    progress: Progress<'_>,
) -> Result<Vec<TableSummary>, BackupError> {
    sqlx::query(
        "select set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true),
                set_config('IntervalStyle', 'postgres', true), set_config('bytea_output', 'hex', true),
                set_config('extra_float_digits', '1', true)",
    )
    .execute(&mut *conn)
    .await
    .map_err(BackupError::db("fixing the output settings"))?;
    let tables: Vec<(String, String, String)> =
        sqlx::query_as(TABLES_SQL).fetch_all(&mut *conn).await.map_err(BackupError::db("listing the tables"))?;
    let mut summaries = Vec::with_capacity(tables.len());
    for (schema, name, copy_sql) in tables {
        let started = Instant::now();
        let mut hasher = Sha256::new();
        let mut rows = 0u64;
        let mut stream = conn.copy_out_raw(&copy_sql).await.map_err(BackupError::db("reading a table"))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(BackupError::db("reading a table"))?;
            rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            hasher.update(&chunk);
        }
        drop(stream);
        let summary = TableSummary { schema, name, rows, sha256: hex::encode(hasher.finalize()) };
        progress(&format!(
            "checksummed {}: {} rows in {:.1}s",
            summary.qualified_name(),
            summary.rows,
            started.elapsed().as_secs_f64()
        ));
        summaries.push(summary);
    }
    Ok(summaries)
}

/// Checksums of the database at `url`, each table read in one read-only
/// snapshot.
pub(super) async fn checksum_database(url: &str, progress: Progress<'_>) -> Result<Vec<TableSummary>, BackupError> {
    let mut conn = PgConnection::connect(url).await.map_err(BackupError::db("connecting to the restored database"))?;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read, read only")
        .await
        .map_err(BackupError::db("starting the comparison transaction"))?;
    let actual = checksum_tables(&mut tx, progress).await?;
    tx.rollback().await.map_err(BackupError::db("ending the comparison transaction"))?;
    let _ = conn.close().await;
    Ok(actual)
}
