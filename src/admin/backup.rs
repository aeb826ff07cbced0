//! Backups as the runbook means them, made correct.
//!
//! The runbook's backup has three bugs: every `$(date ...)` is evaluated
//! again, so the file it verifies and the file it logs are not the file it
//! wrote; it writes a plain SQL dump and "verifies" it with `pg_restore
//! --list`, which only reads archive formats; and nothing checks that the
//! data came back. Here:
//!
//! - [`create`] takes ONE timestamp for the whole run and ONE database
//!   snapshot (exported with `pg_export_snapshot()` and handed to every
//!   `pg_dump --snapshot`): the full archive (custom format, `-Fc`), the
//!   per-table archives (bookings, tours, operators, schedules), the
//!   schema-only SQL and the manifest's checksums all describe the same
//!   instant, however busy the database is.
//! - The manifest (`manifest.json`) lists every table with its row count and
//!   a checksum, and every file with its size and sha-256. A table's checksum
//!   is the sha-256 of `copy (select * from <table> order by <primary key>)
//!   to stdout` (text format) under fixed output settings (UTC, ISO dates),
//!   so the same rows give the same bytes on any server with the same
//!   major version; its row count is the number of lines of that output.
//! - [`verify`] checks each file against its sha-256, reads the archives'
//!   tables of contents with `pg_restore --list` (the tool that fits the
//!   custom format), restores the full archive into a scratch database and
//!   compares counts and checksums with the manifest; the scratch database is
//!   dropped (or the scratch server stopped and deleted) whatever happens.
//! - [`restore`] refuses a target that already holds tables unless forced,
//!   restores in one transaction (a failure leaves the target as it was) and
//!   then compares counts and checksums like `verify`.
//!
//! The client tools come from `--pg-bin-dir`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `PATH`. A password in a URL is passed to
//! them through `PGPASSWORD`, never on their command line.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncReadExt;

use super::error::BackupError;
use crate::embedded_pg::{self, EmbeddedPgOptions, EmbeddedPostgres};

/// The runbook's "critical tables", also backed up one archive each.
pub const CRITICAL_TABLES: [&str; 4] = ["bookings", "tours", "operators", "schedules"];

pub const MANIFEST_FILE: &str = "manifest.json";
const MANIFEST_FORMAT: u32 = 1;

const TABLES_SQL: &str = include_str!("sql/backup_tables.sql");

const CHECKSUM_METHOD: &str = "sha-256 of `copy (select * from <table> order by <primary key>) to stdout` \
     (text format; TimeZone=UTC, DateStyle=ISO, IntervalStyle=postgres, bytea_output=hex, extra_float_digits=1); \
     rows = lines of that output";

/// Where to report progress: one line per step.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// The PostgreSQL client tools.
#[derive(Debug, Clone, Default)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
}

impl PgTools {
    /// `bin_dir`: use only that directory. `None`: the newest
    /// `/usr/lib/postgresql/*/bin`, then `PATH`.
    pub fn new(bin_dir: Option<PathBuf>) -> Self {
        PgTools { bin_dir }
    }

    fn path_of(&self, tool: &'static str) -> Result<PathBuf, BackupError> {
        if let Some(dir) = &self.bin_dir {
            let path = dir.join(tool);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(BackupError::ToolMissing { tool, searched: dir.display().to_string() })
            };
        }
        let newest = embedded_pg::find_bin_dir().ok().map(|dir| dir.join(tool)).filter(|path| path.is_file());
        let on_path = || {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(tool))
                .find(|path| path.is_file())
        };
        newest
            .or_else(on_path)
            .ok_or(BackupError::ToolMissing { tool, searched: "/usr/lib/postgresql/*/bin and PATH".to_owned() })
    }

    /// Runs `tool args...` against `target`, returning its standard output.
    async fn run(&self, tool: &'static str, target: &DbTarget, args: Vec<OsString>) -> Result<String, BackupError> {
        let mut command = tokio::process::Command::new(self.path_of(tool)?);
        command.arg(format!("--dbname={}", target.tool_url)).args(args);
        if let Some(password) = &target.password {
            command.env("PGPASSWORD", password);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let output =
            command.output().await.map_err(BackupError::io("running a postgresql client tool", Path::new(tool)))?;
        if !output.status.success() {
            return Err(BackupError::ToolFailed {
                tool,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `pg_restore --list`: reads an archive's table of contents without a
    /// database.
    async fn list(&self, archive: &Path) -> Result<String, BackupError> {
        let output = tokio::process::Command::new(self.path_of("pg_restore")?)
            .arg("--list")
            .arg(archive)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(BackupError::io("running pg_restore --list", archive))?;
        if !output.status.success() {
            return Err(BackupError::ToolFailed {
                tool: "pg_restore",
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// What a backup directory holds, written last by [`create`].
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

/// The outcome of [`verify`] or [`restore`]: the restored data against the
/// manifest.
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
    dump(tools, &target, &dir, &archive_name, &snapshot, &["--format=custom"], progress).await?;
    let mut table_archive_names = Vec::new();
    for table in CRITICAL_TABLES {
        let name = format!("{table}_backup_{timestamp}.dump");
        dump(tools, &target, &dir, &name, &snapshot, &["--format=custom", &format!("--table={table}")], progress)
            .await?;
        table_archive_names.push((table, name));
    }
    let schema_name = format!("schema_backup_{timestamp}.sql");
    dump(tools, &target, &dir, &schema_name, &snapshot, &["--schema-only", "--no-owner"], progress).await?;
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
    let manifest_path = dir.join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serialises");
    tokio::fs::write(&manifest_path, json).await.map_err(BackupError::io("writing the manifest", &manifest_path))?;
    progress(&format!(
        "backup complete: {} tables, {} rows, manifest {}",
        manifest.tables.len(),
        manifest.tables.iter().map(|t| t.rows).sum::<u64>(),
        manifest_path.display()
    ));
    Ok((dir, manifest))
}

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
            let server = ScratchServer::start(tools.bin_dir.clone()).await?;
            let url = server.url.clone();
            embedded = Some(server);
            url
        }
    };
    let scratch_url = url_with_database(&server_url, &name);
    progress(&format!("restoring into scratch database {name}"));
    let result = async {
        create_database(&server_url, &name).await?;
        restore_archive(tools, &DbTarget::parse(&scratch_url)?, &dir.join(&manifest.archive.file), false).await?;
        compare(&scratch_url, &manifest, progress).await
    }
    .await;
    if let Err(error) = drop_database(&server_url, &name).await {
        progress(&format!("warning: could not drop scratch database {name}: {error}"));
    } else {
        progress(&format!("dropped scratch database {name}"));
    }
    if let Some(mut server) = embedded {
        server.stop().await;
        progress("scratch postgresql server stopped and removed");
    }
    let tables = result?;
    Ok(Comparison { manifest, tables })
}

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
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("3D000") => {
            let name = target.database.clone();
            progress(&format!("database {name} does not exist; creating it"));
            create_database(&url_with_database(&target.url, "postgres"), &name).await?;
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
    restore_archive(tools, &target, &dir.join(&manifest.archive.file), relations > 0).await?;
    progress(&format!("restored in {:.1}s", started.elapsed().as_secs_f64()));
    let tables = compare(&target.url, &manifest, progress).await?;
    Ok(Comparison { manifest, tables })
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

async fn dump(
    tools: &PgTools,
    target: &DbTarget,
    dir: &Path,
    file: &str,
    snapshot: &str,
    options: &[&str],
    progress: Progress<'_>,
) -> Result<(), BackupError> {
    let started = Instant::now();
    let path = dir.join(file);
    let mut args: Vec<OsString> = options.iter().map(OsString::from).collect();
    args.push(format!("--snapshot={snapshot}").into());
    args.push("--file".into());
    args.push(path.clone().into_os_string());
    tools.run("pg_dump", target, args).await?;
    let bytes = tokio::fs::metadata(&path).await.map_err(BackupError::io("reading a dump's size", &path))?.len();
    progress(&format!("wrote {file} ({} in {:.1}s)", human_bytes(bytes), started.elapsed().as_secs_f64()));
    Ok(())
}

async fn restore_archive(tools: &PgTools, target: &DbTarget, archive: &Path, clean: bool) -> Result<(), BackupError> {
    let mut args: Vec<OsString> =
        ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"].map(OsString::from).to_vec();
    if clean {
        args.extend(["--clean", "--if-exists"].map(OsString::from));
    }
    args.push(archive.as_os_str().to_owned());
    tools.run("pg_restore", target, args).await?;
    Ok(())
}

/// Row counts and checksums of every table, in the caller's transaction
/// (whose snapshot decides what they describe).
async fn checksum_tables(conn: &mut PgConnection, progress: Progress<'_>) -> Result<Vec<TableSummary>, BackupError> {
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

async fn compare(url: &str, manifest: &Manifest, progress: Progress<'_>) -> Result<Vec<TableComparison>, BackupError> {
    let mut conn = PgConnection::connect(url).await.map_err(BackupError::db("connecting to the restored database"))?;
    let mut tx = conn
        .begin_with("begin isolation level repeatable read, read only")
        .await
        .map_err(BackupError::db("starting the comparison transaction"))?;
    let actual = checksum_tables(&mut tx, progress).await?;
    tx.rollback().await.map_err(BackupError::db("ending the comparison transaction"))?;
    let _ = conn.close().await;
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
    Ok(comparisons)
}

async fn check_files(dir: &Path, manifest: &Manifest, progress: Progress<'_>) -> Result<(), BackupError> {
    let files = std::iter::once(&manifest.archive).chain(&manifest.table_archives).chain([&manifest.schema_file]);
    for expected in files {
        let actual = describe_file(dir, &expected.file).await?;
        if actual.sha256 != expected.sha256 || actual.bytes != expected.bytes {
            return Err(BackupError::FileCorrupt {
                file: expected.file.clone(),
                expected: expected.sha256.clone(),
                actual: actual.sha256,
            });
        }
    }
    progress(&format!("{} files match their sha-256", 2 + manifest.table_archives.len()));
    Ok(())
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

/// Whether a `pg_restore --list` output has the data entry of a table
/// (`<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>`).
fn has_table_data(listing: &str, schema: &str, table: &str) -> bool {
    let entry = format!(" TABLE DATA {schema} {table}");
    listing.lines().filter(|line| !line.starts_with(';')).any(|line| {
        line.find(&entry).is_some_and(|at| matches!(line[at + entry.len()..].chars().next(), None | Some(' ')))
    })
}

async fn describe_file(dir: &Path, name: &str) -> Result<BackupFile, BackupError> {
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

async fn count_relations(conn: &mut PgConnection) -> Result<i64, BackupError> {
    sqlx::query_scalar(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            and n.nspname not in ('pg_catalog', 'information_schema')
            and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'",
    )
    .fetch_one(conn)
    .await
    .map_err(BackupError::db("inspecting the target database"))
}

/// `create database`, with the name quoted by the server (`format('%I')`).
async fn create_database(server_url: &str, name: &str) -> Result<(), BackupError> {
    database_ddl(server_url, "select format('create database %I', $1::text)", name, "creating a database").await
}

async fn drop_database(server_url: &str, name: &str) -> Result<(), BackupError> {
    database_ddl(
        server_url,
        "select format('drop database if exists %I with (force)', $1::text)",
        name,
        "dropping a database",
    )
    .await
}

/// Runs a database-level statement built by `template` (a `format` call
/// quoting the name server-side) on its own connection to the server.
async fn database_ddl(
    server_url: &str,
    template: &'static str,
    name: &str,
    action: &'static str,
) -> Result<(), BackupError> {
    let mut conn = PgConnection::connect(server_url).await.map_err(BackupError::db("connecting to the server"))?;
    let statement: String = sqlx::query_scalar(template)
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(BackupError::db("quoting the database name"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(&mut conn).await.map_err(BackupError::db(action))?;
    let _ = conn.close().await;
    Ok(())
}

/// A database URL split for the client tools: the password goes into
/// `PGPASSWORD` so it never shows in a process list.
#[derive(Clone)]
struct DbTarget {
    /// As given, for our own connections.
    url: String,
    /// Without the password, for `--dbname`.
    tool_url: String,
    password: Option<String>,
    database: String,
}

impl DbTarget {
    fn parse(url: &str) -> Result<Self, BackupError> {
        let options: sqlx::postgres::PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| BackupError::BadUrl(e.to_string()))?;
        let database = options.get_database().unwrap_or("postgres").to_owned();
        let (tool_url, password) = split_password(url);
        Ok(DbTarget { url: url.to_owned(), tool_url, password, database })
    }
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `secret`),
/// the password percent-decoded.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return (url.to_owned(), None) };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else { return (url.to_owned(), None) };
    let Some((user, password)) = authority[..at].split_once(':') else { return (url.to_owned(), None) };
    let stripped = format!("{}{user}{}", &url[..scheme_end], &rest[at..]);
    (stripped, Some(percent_decode(password)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces the database of a postgres URL.
pub fn url_with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A throwaway PostgreSQL for `verify`. It lives in a thread of its own: the
/// server's parent-death signal is tied to the thread that started it.
struct ScratchServer {
    url: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    data_dir: PathBuf,
}

impl ScratchServer {
    async fn start(bin_dir: Option<PathBuf>) -> Result<Self, BackupError> {
        let data_dir = std::env::temp_dir().join(format!("bookingd-verify-{}", uuid::Uuid::new_v4().simple()));
        let port = embedded_pg::free_port().map_err(|e| BackupError::ScratchServer(e.to_string()))?;
        let options =
            EmbeddedPgOptions { data_dir: data_dir.clone(), port, bin_dir, ephemeral: true, max_connections: 20 };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("scratch-postgres".into())
            .spawn(move || match EmbeddedPostgres::start(options) {
                Ok(mut server) => {
                    let _ = ready_tx.send(Ok(server.url("postgres")));
                    let _ = stop_rx.recv();
                    server.stop();
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error.to_string()));
                }
            })
            .map_err(|e| BackupError::ScratchServer(e.to_string()))?;
        let mut server = ScratchServer { url: String::new(), stop: Some(stop_tx), thread: Some(thread), data_dir };
        match ready_rx.await {
            Ok(Ok(url)) => {
                server.url = url;
                Ok(server)
            }
            Ok(Err(reason)) => {
                server.stop().await;
                Err(BackupError::ScratchServer(reason))
            }
            Err(_) => {
                server.stop().await;
                Err(BackupError::ScratchServer("the server thread ended".to_owned()))
            }
        }
    }

    async fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        let _ = tokio::fs::remove_dir_all(&self.data_dir).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_and_is_decoded() {
        let (url, password) = split_password("postgres://app:s%40cr%3At@db.example:5432/bookings?sslmode=require");
        assert_eq!(url, "postgres://app@db.example:5432/bookings?sslmode=require");
        assert_eq!(password.as_deref(), Some("s@cr:t"));

        let (url, password) = split_password("postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(url, "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(password, None);
    }

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(url_with_database("postgres://u@h:1/a?x=y", "b"), "postgres://u@h:1/b?x=y");
        assert_eq!(url_with_database("postgres://u@h:1", "b"), "postgres://u@h:1/b");
    }

    #[test]
    fn table_data_entries_are_found_by_exact_name() {
        let listing = ";\n; Archive created at ...\n3372; 0 16404 TABLE DATA public bookings postgres\n\
                       3373; 0 16405 TABLE DATA public tours_extra postgres\n";
        assert!(has_table_data(listing, "public", "bookings"));
        assert!(!has_table_data(listing, "public", "tours"));
        assert!(has_table_data("1; 0 1 TABLE DATA public tours", "public", "tours"));
    }
}
