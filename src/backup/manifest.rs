//! `manifest.json`: what a backup directory holds, written last by
//! [`create`](super::create), and the comparison of a restored database
//! with it.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{BackupError, Progress};

pub const MANIFEST_FILE: &str = "manifest.json";
pub(super) const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The run's one timestamp (UTC), in every file name.
    pub timestamp: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub database: String,
    pub server_version: String,
    pub checksum_method: String,
    /// The whole database, custom format.
    pub archive: BackupFile,
    /// One custom-format archive per critical table.
    pub table_archives: Vec<BackupFile>,
    /// Schema only, plain SQL (the runbook's "functions backup"), for reading.
    pub schema_file: BackupFile,
    pub tables: Vec<TableSummary>,
}

impl Manifest {
    /// Every file of the backup, the full archive first.
    pub fn files(&self) -> impl Iterator<Item = &BackupFile> {
        std::iter::once(&self.archive).chain(&self.table_archives).chain([&self.schema_file])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSummary {
    pub schema: String,
    pub name: String,
    pub rows: u64,
    pub sha256: String,
}

impl TableSummary {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// One table of the manifest compared with a restored database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableComparison {
    pub table: String,
    pub expected_rows: u64,
    /// `None`: the table is missing from the restored database.
    pub actual_rows: Option<u64>,
    pub checksum_matches: bool,
}

impl TableComparison {
    pub fn matches(&self) -> bool {
        self.actual_rows == Some(self.expected_rows) && self.checksum_matches
    }
}

/// The outcome of [`verify`](super::verify) or [`restore`](super::restore):
/// the restored data against the manifest.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub manifest: Manifest,
    pub tables: Vec<TableComparison>,
}

impl Comparison {
    pub fn matches(&self) -> bool {
        self.tables.iter().all(TableComparison::matches)
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &TableComparison> {
        self.tables.iter().filter(|t| !t.matches())
    }
}

pub async fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = tokio::fs::read(&path).await.map_err(BackupError::io("reading the manifest", &path))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::ManifestUnreadable { path: path.display().to_string(), reason: e.to_string() })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(BackupError::ManifestUnreadable {
            path: path.display().to_string(),
            reason: format!("format {} (this bookingctl reads {MANIFEST_FORMAT})", manifest.format),
        });
    }
    Ok(manifest)
}

pub(super) async fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<std::path::PathBuf, BackupError> {
    let path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest always serialises");
    tokio::fs::write(&path, json).await.map_err(BackupError::io("writing the manifest", &path))?;
    Ok(path)
}

/// Size and sha-256 of one file of the backup directory.
pub(super) async fn describe_file(dir: &Path, name: &str) -> Result<BackupFile, BackupError> {
    let path = dir.join(name);
    let mut file = tokio::fs::File::open(&path).await.map_err(BackupError::io("opening a backup file", &path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer).await.map_err(BackupError::io("reading a backup file", &path))?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok(BackupFile { file: name.to_owned(), bytes, sha256: hex::encode(hasher.finalize()), table: None })
}

/// Every file against the size and sha-256 the manifest gives it.
pub(super) async fn check_files(dir: &Path, manifest: &Manifest, progress: Progress<'_>) -> Result<(), BackupError> {
    let mut checked = 0;
    for expected in manifest.files() {
        let actual = describe_file(dir, &expected.file).await?;
        if actual.sha256 != expected.sha256 || actual.bytes != expected.bytes {
            return Err(BackupError::FileCorrupt {
                file: expected.file.clone(),
                expected: expected.sha256.clone(),
                actual: actual.sha256,
            });
        }
        checked += 1;
    }
    progress(&format!("{checked} files match their sha-256"));
    Ok(())
}

/// The manifest's tables against `actual` (the restored database's), with a
/// progress line per mismatch.
pub(super) fn compare_tables(
    manifest: &Manifest,
    actual: &[TableSummary],
    progress: Progress<'_>,
) -> Vec<TableComparison> {
    let comparisons: Vec<TableComparison> = manifest
        .tables
        .iter()
        .map(|expected| {
            let found = actual.iter().find(|t| t.schema == expected.schema && t.name == expected.name);
            TableComparison {
                table: expected.qualified_name(),
                expected_rows: expected.rows,
                actual_rows: found.map(|t| t.rows),
                checksum_matches: found.is_some_and(|t| t.sha256 == expected.sha256),
            }
        })
        .collect();
    for table in comparisons.iter().filter(|t| !t.matches()) {
        progress(&format!(
            "MISMATCH {}: expected {} rows, found {}, checksum {}",
            table.table,
            table.expected_rows,
            table.actual_rows.map_or("no table".to_owned(), |r| r.to_string()),
            if table.checksum_matches { "matches" } else { "differs" }
        ));
    }
    comparisons
}
