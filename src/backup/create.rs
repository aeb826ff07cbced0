//! `backup create`: one timestamp, one snapshot, every file and checksum
//! describing the same instant.

use std::path::{Path, PathBuf};

use chrono::Utc;
use sqlx::{Connection, PgConnection};

use super::{
    BackupError, CRITICAL_TABLES, PgTools, Progress,
    checksum::{CHECKSUM_METHOD, checksum_tables},
    manifest::{MANIFEST_FORMAT, Manifest, describe_file, write_manifest},
    target::DbTarget,
};

/// Backs up the database at `database_url` into a new directory
/// `<out_dir>/bookingd_backup_<timestamp>`, returned with its manifest.
pub async fn create(
    database_url: &str,
    out_dir: &Path,
    tools: &PgTools,
    progress: Progress<'_>,
) -> Result<(PathBuf, Manifest), BackupError> {
    let created_at = Utc::now();
    let timestamp = created_at.format("%Y%m%d_%H%M%S").to_string();
    let target = DbTarget::parse(database_url)?;
    let dir = out_dir.join(format!("bookingd_backup_{timestamp}"));
    tokio::fs::create_dir_all(out_dir).await.map_err(BackupError::io("creating the output directory", out_dir))?;
    if let Err(error) = tokio::fs::create_dir(&dir).await {
        return Err(if error.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::OutputExists { path: dir.display().to_string() }
        } else {
            BackupError::io("creating the backup directory", &dir)(error)
        });
    }
    progress(&format!("backup {timestamp} into {}", dir.display()));

    // one snapshot for everything: held open until the last pg_dump is done
    let mut conn = PgConnection::connect(&target.url).await.map_err(BackupError::db("connecting to the database"))?;
    let mut snapshot_tx = conn
        .begin_with("begin isolation level repeatable read, read only")
        .await
        .map_err(BackupError::db("starting the snapshot transaction"))?;
    let (snapshot, database, server_version): (String, String, String) =
        sqlx::query_as("select pg_export_snapshot(), current_database(), current_setting('server_version')")
            .fetch_one(&mut *snapshot_tx)
            .await
            .map_err(BackupError::db("exporting a snapshot"))?;
    progress(&format!("database {database} (postgresql {server_version}), snapshot {snapshot}"));

    let tables = checksum_tables(&mut snapshot_tx, progress).await?;

    let archive_name = format!("backup_{database}_{timestamp}.dump");
    tools.dump(&target, &dir, &archive_name, &snapshot, &["--format=custom"], progress).await?;
    let mut table_archive_names = Vec::new();
    for table in CRITICAL_TABLES {
        let name = format!("{table}_backup_{timestamp}.dump");
        let only_table = format!("--table={table}");
        tools.dump(&target, &dir, &name, &snapshot, &["--format=custom", &only_table], progress).await?;
        table_archive_names.push((table, name));
    }
    let schema_name = format!("schema_backup_{timestamp}.sql");
    tools.dump(&target, &dir, &schema_name, &snapshot, &["--schema-only", "--no-owner"], progress).await?;
    snapshot_tx.rollback().await.map_err(BackupError::db("ending the snapshot transaction"))?;

    let mut table_archives = Vec::new();
    for (table, name) in table_archive_names {
        let mut file = describe_file(&dir, &name).await?;
        file.table = Some(table.to_owned());
        table_archives.push(file);
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        timestamp,
        created_at,
        created_by: format!("bookingctl {}", env!("CARGO_PKG_VERSION")),
        database,
        server_version,
        checksum_method: CHECKSUM_METHOD.to_owned(),
        archive: describe_file(&dir, &archive_name).await?,
        table_archives,
        schema_file: describe_file(&dir, &schema_name).await?,
        tables,
    };
    let manifest_path = write_manifest(&dir, &manifest).await?;
    progress(&format!(
        "backup complete: {} tables, {} rows, manifest {}",
        manifest.tables.len(),
        manifest.tables.iter().map(|t| t.rows).sum::<u64>(),
        manifest_path.display()
    ));
    Ok((dir, manifest))
}
