//! `backup restore`: into an empty (or new) database, or over a non-empty
//! one when forced; one transaction; then compared with the manifest and
//! recorded in the restored database's `audit_logs`.
//!
//! Over a non-empty database the restore first refuses a target that a
//! running bookingd is connected to (its sessions carry `application_name`
//! `bookingd…`), unless told otherwise, then takes a safety backup of the
//! target, so a wrong restore can itself be undone.

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

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

/// How a restore may treat its target, and who asks.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace what a non-empty target holds.
    pub force: bool,
    /// Restore even while bookingd sessions are connected to the target.
    pub allow_live_sessions: bool,
    /// Where the safety backup of a non-empty target goes (default: beside the backup being restored).
    pub safety_dir: Option<PathBuf>,
    /// Who restores, for `audit_logs` (bookingctl: `--principal`).
    pub principal: String,
    /// Why; required over a non-empty target.
    pub reason: Option<String>,
}

/// What a restore did.
pub struct Restored {
    pub comparison: Comparison,
    /// The safety backup taken of a non-empty target before it was replaced.
    pub safety_backup: Option<PathBuf>,
}

/// Restores a backup into `target_url` (created when the database does not
/// exist). A target holding tables is refused unless `options.force`, which
/// replaces the backed-up objects (`pg_restore --clean`) after the checks in
/// the module header. One transaction: a failure leaves the target as it was.
pub async fn restore(
    dir: &Path,
    target_url: &str,
    options: &RestoreOptions,
    tools: &PgTools,
    progress: Progress<'_>,
) -> Result<Restored, BackupError> {
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
    if relations > 0 && !options.force {
        return Err(BackupError::TargetNotEmpty { relations });
    }
    let reason = options.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    let mut safety_backup = None;
    if relations > 0 {
        if reason.is_none() {
            return Err(BackupError::ReasonRequired);
        }
        let (sessions, names) = live_bookingd_sessions(&target.url).await?;
        if sessions > 0 && !options.allow_live_sessions {
            return Err(BackupError::TargetInUse { sessions, names });
        }
        if sessions > 0 {
            progress(&format!("--allow-live-sessions: restoring under {sessions} live bookingd session(s) ({names})"));
        }
        let safety_dir = match &options.safety_dir {
            Some(dir) => dir.clone(),
            None => dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        };
        progress(&format!(
            "target holds {relations} relations; taking a safety backup into {} first",
            safety_dir.display()
        ));
        let (made, _) = super::create(&target.url, &safety_dir, tools, progress).await?;
        progress(&format!("safety backup: {}", made.display()));
        safety_backup = Some(made);
        progress("--force: replacing the backed-up objects");
    }
    progress(&format!("restoring {} into {}", manifest.archive.file, target.database));
    let started = Instant::now();
    tools.restore_archive(&target, &dir.join(&manifest.archive.file), relations > 0).await?;
    progress(&format!("restored in {:.1}s", started.elapsed().as_secs_f64()));
    let actual = checksum_database(&target.url, progress).await?;
    let tables = compare_tables(&manifest, &actual, progress);
    let comparison = Comparison { manifest, tables };
    // after the comparison: this row is the restore's, not the backup's
    record_restore(&target.url, dir, options, reason, &comparison, safety_backup.as_deref()).await?;
    Ok(Restored { comparison, safety_backup })
}

/// Sessions of a running bookingd on the target's database (not ours).
async fn live_bookingd_sessions(url: &str) -> Result<(i64, String), BackupError> {
    let mut conn = PgConnection::connect(url).await.map_err(BackupError::db("connecting to the target database"))?;
    let found: (i64, Option<String>) = sqlx::query_as(
        "select count(*), string_agg(distinct application_name, ', ')
           from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()
            and application_name like $1 || '%'",
    )
    .bind(crate::db::APPLICATION_NAME)
    .fetch_one(&mut conn)
    .await
    .map_err(BackupError::db("looking for live bookingd sessions"))?;
    let _ = conn.close().await;
    Ok((found.0, found.1.unwrap_or_default()))
}

/// One `audit_logs` row in the restored database: who, why, from which backup.
async fn record_restore(
    url: &str,
    dir: &Path,
    options: &RestoreOptions,
    reason: Option<&str>,
    comparison: &Comparison,
    safety_backup: Option<&Path>,
) -> Result<(), BackupError> {
    let mut conn = PgConnection::connect(url).await.map_err(BackupError::db("connecting to the restored database"))?;
    let details = serde_json::json!({
        "reason": reason,
        "backup": dir.display().to_string(),
        "backup_timestamp": comparison.manifest.timestamp,
        "backup_database": comparison.manifest.database,
        "forced": options.force,
        "live_sessions_allowed": options.allow_live_sessions,
        "safety_backup": safety_backup.map(|p| p.display().to_string()),
        "matches_manifest": comparison.matches(),
    });
    sqlx::query(
        "insert into audit_logs (table_name, action, actor, details) values ('database', 'backup_restored', $1, $2)",
    )
    .bind(&options.principal)
    .bind(sqlx::types::Json(details))
    .execute(&mut conn)
    .await
    .map_err(BackupError::db("recording the restore in audit_logs"))?;
    let _ = conn.close().await;
    Ok(())
}
