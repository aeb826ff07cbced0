//! `backup restore`: into an empty (or new) database, or over a non-empty
//! one when forced; one transaction; then compared with the manifest.

use std::{path::Path, time::Instant};

use sqlx::{Connection, PgConnection};

use super::{
    BackupError, PgTools, Progress,
    checksum::checksum_database,
    database::{count_relations, create_database},
    manifest::{Comparison, check_files, compare_tables, read_manifest},
    target::DbTarget,
};
use crate::db::url::with_database;

/// SQLSTATE invalid_catalog_name: the database does not exist.
const UNKNOWN_DATABASE: &str = "3D000";

/// Restores a backup into `target_url` (created when the database does not
/// exist). A target holding tables is refused unless `force`, which replaces
/// the backed-up objects (`pg_restore --clean`). One transaction: a failure
/// leaves the target as it was.
pub async fn restore(
    dir: &Path,
    target_url: &str,
    force: bool,
    tools: &PgTools,
    progress: Progress<'_>,
) -> Result<Comparison, BackupError> {
    let manifest = read_manifest(dir).await?;
    check_files(dir, &manifest, progress).await?;
    let target = DbTarget::parse(target_url)?;

    let relations = match PgConnection::connect(&target.url).await {
        Ok(mut conn) => {
            let count = count_relations(&mut conn).await?;
            let _ = conn.close().await;
            count
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some(UNKNOWN_DATABASE) => {
            let name = target.database.clone();
            progress(&format!("database {name} does not exist; creating it"));
            create_database(&with_database(&target.url, "postgres"), &name).await?;
            0
        }
        Err(error) => return Err(BackupError::db("connecting to the target database")(error)),
    };
    if relations > 0 && !force {
        return Err(BackupError::TargetNotEmpty { relations });
    }
    if relations > 0 {
        progress(&format!("target holds {relations} relations; --force: replacing the backed-up objects"));
    }
    progress(&format!("restoring {} into {}", manifest.archive.file, target.database));
    let started = Instant::now();
    tools.restore_archive(&target, &dir.join(&manifest.archive.file), relations > 0).await?;
    progress(&format!("restored in {:.1}s", started.elapsed().as_secs_f64()));
    let actual = checksum_database(&target.url, progress).await?;
    let tables = compare_tables(&manifest, &actual, progress);
    Ok(Comparison { manifest, tables })
}
