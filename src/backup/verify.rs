//! `backup verify`: files, tables of contents, then a real restore into a
//! scratch database compared with the manifest.

use std::path::Path;

use super::{
    BackupError, PgTools, Progress,
    checksum::checksum_database,
    database::{create_database, drop_database},
    manifest::{Comparison, Manifest, check_files, compare_tables, read_manifest},
    target::DbTarget,
    tools::has_table_data,
};
use crate::{
    db::url::with_database,
    embedded_pg::{EmbeddedPgOptions, PostgresThread, free_port},
};

/// Where [`verify`] restores: a scratch database on an existing server, or
/// a throwaway PostgreSQL started for the occasion.
#[derive(Debug, Clone)]
pub enum Scratch {
    /// URL of any database on a server where we may create and drop a
    /// database.
    Server(String),
    /// A private, temporary server from the local PostgreSQL binaries.
    Embedded,
}

/// Checks a backup directory: files against their checksums, archives with
/// `pg_restore --list`, then a restore into a scratch database compared with
/// the manifest. The scratch database is always removed.
pub async fn verify(
    dir: &Path,
    scratch: Scratch,
    tools: &PgTools,
    progress: Progress<'_>,
) -> Result<Comparison, BackupError> {
    let manifest = read_manifest(dir).await?;
    check_files(dir, &manifest, progress).await?;
    check_tables_of_contents(dir, &manifest, tools, progress).await?;

    let name = format!("bookingd_verify_{}_{}", manifest.timestamp, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut embedded = None;
    let server_url = match scratch {
        Scratch::Server(url) => url,
        Scratch::Embedded => {
            progress("starting a scratch postgresql server");
            let server = start_scratch_server(tools).await?;
            let url = server.url("postgres");
            embedded = Some(server);
            url
        }
    };
    let scratch_url = with_database(&server_url, &name);
    progress(&format!("restoring into scratch database {name}"));
    let result = async {
        create_database(&server_url, &name).await?;
        tools.restore_archive(&DbTarget::parse(&scratch_url)?, &dir.join(&manifest.archive.file), false).await?;
        let actual = checksum_database(&scratch_url, progress).await?;
        Ok::<_, BackupError>(compare_tables(&manifest, &actual, progress))
    }
    .await;
    if let Err(error) = drop_database(&server_url, &name).await {
        progress(&format!("warning: could not drop scratch database {name}: {error}"));
    } else {
        progress(&format!("dropped scratch database {name}"));
    }
    if let Some(server) = embedded {
        let data_dir = server.data_dir().to_owned();
        server.shutdown().await;
        let _ = tokio::fs::remove_dir_all(&data_dir).await;
        progress("scratch postgresql server stopped and removed");
    }
    let tables = result?;
    Ok(Comparison { manifest, tables })
}

/// A throwaway server in the temporary directory, from the tools' binaries.
async fn start_scratch_server(tools: &PgTools) -> Result<PostgresThread, BackupError> {
    let data_dir = std::env::temp_dir().join(format!("bookingd-verify-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port().map_err(|e| BackupError::ScratchServer(e.to_string()))?;
    let options = EmbeddedPgOptions {
        data_dir: data_dir.clone(),
        port,
        bin_dir: tools.bin_dir().map(Path::to_owned),
        ephemeral: true,
        max_connections: 20,
    };
    match PostgresThread::start_async("scratch-postgres", options).await {
        Ok(server) => Ok(server),
        Err(error) => {
            let _ = tokio::fs::remove_dir_all(&data_dir).await;
            Err(BackupError::ScratchServer(error.to_string()))
        }
    }
}

async fn check_tables_of_contents(
    dir: &Path,
    manifest: &Manifest,
    tools: &PgTools,
    progress: Progress<'_>,
) -> Result<(), BackupError> {
    let listing = tools.list(&dir.join(&manifest.archive.file)).await?;
    for table in &manifest.tables {
        if !has_table_data(&listing, &table.schema, &table.name) {
            return Err(BackupError::TableDataMissing {
                file: manifest.archive.file.clone(),
                table: table.qualified_name(),
            });
        }
    }
    progress(&format!("pg_restore --list {}: data for all {} tables", manifest.archive.file, manifest.tables.len()));
    for archive in &manifest.table_archives {
        let table = archive.table.as_deref().unwrap_or_default();
        let listing = tools.list(&dir.join(&archive.file)).await?;
        if !has_table_data(&listing, "public", table) {
            return Err(BackupError::TableDataMissing { file: archive.file.clone(), table: table.to_owned() });
        }
        progress(&format!("pg_restore --list {}: ok", archive.file));
    }
    Ok(())
}
