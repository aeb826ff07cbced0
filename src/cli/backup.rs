//! `bookingctl backup create | verify | restore`: rendering over
//! [`crate::backup`], which talks to PostgreSQL with pg_dump and pg_restore.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};

use crate::backup::{self, Comparison, PgTools, Scratch};

/// Back up, verify and restore the database (pg_dump / pg_restore).
#[derive(Debug, Args)]
#[command(long_about = "Back up, verify and restore bookingd's database. These commands talk to PostgreSQL \
                        directly (pg_dump, pg_restore from --pg-bin-dir, else the newest \
                        /usr/lib/postgresql/*/bin, else PATH), not to bookingd.\n\n\
                        A backup is a directory bookingd_backup_<timestamp> holding: the whole database as one \
                        custom-format archive, one archive per critical table (bookings, tours, operators, \
                        schedules), the schema as plain SQL, and manifest.json with every table's row count and \
                        checksum and every file's sha-256. Everything is taken from one database snapshot and \
                        named with one timestamp, so the pieces agree with each other even while bookings flow.")]
pub struct BackupArgs {
    #[command(subcommand)]
    pub action: BackupAction,

    /// Directory with pg_dump and pg_restore.
    #[arg(long, env = "BOOKINGD_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Write a new backup directory under --out.
    #[command(
        after_help = "Example:\n  bookingctl backup create --database-url postgres://... --out /var/backups/bookingd"
    )]
    Create {
        /// Database to back up.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: SecretString,
        /// Directory under which bookingd_backup_<timestamp> is created.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a backup: file checksums, pg_restore --list, then a test restore compared with the manifest.
    #[command(
        long_about = "Check a backup directory: every file against its sha-256 in the manifest; the archives' \
                      tables of contents with pg_restore --list; then the full archive is restored into a \
                      scratch database and every table's row count and checksum is compared with the manifest. \
                      The scratch database is dropped afterwards, whatever happened.\n\n\
                      The scratch database is created on --scratch-url's server if given; otherwise a private \
                      PostgreSQL is started from the local server binaries for the duration of the check.\n\n\
                      Exits non-zero when anything does not match.",
        after_help = "Example:\n  bookingctl backup verify /var/backups/bookingd/bookingd_backup_20261126_101500"
    )]
    Verify {
        /// The backup directory (the one holding manifest.json).
        dir: PathBuf,
        /// Any database on a server where a scratch database may be created and dropped.
        #[arg(long, env = "BOOKINGD_SCRATCH_URL", hide_env_values = true)]
        scratch_url: Option<SecretString>,
    },
    /// Restore a backup into a database (created if missing); refuses a non-empty one without --force.
    #[command(
        long_about = "Restore a backup directory's full archive into --target-url, in one transaction, then \
                      compare every table's row count and checksum with the manifest (exits non-zero on any \
                      difference). The target database is created if it does not exist.\n\n\
                      A target that already holds tables is refused unless --force, which drops and recreates \
                      the backed-up objects (pg_restore --clean). A forced restore needs --reason; it refuses a \
                      target with live bookingd sessions (pg_stat_activity) unless --allow-live-sessions, and \
                      first takes a safety backup of the target (into --safety-dir, default: the directory \
                      holding the backup being restored). Every restore is recorded in the restored \
                      database's audit_logs (action backup_restored) with --principal and the reason.",
        after_help = "Example:\n  bookingctl backup restore /var/backups/bookingd/bookingd_backup_20261126_101500 \\\n    \
                      --target-url postgres://.../bookings_restored"
    )]
    Restore {
        /// The backup directory (the one holding manifest.json).
        dir: PathBuf,
        /// Database to restore into.
        #[arg(long, hide_env_values = true)]
        target_url: SecretString,
        /// Replace what the target already holds.
        #[arg(long)]
        force: bool,
        /// Restore over a target even while bookingd sessions are connected to it.
        #[arg(long)]
        allow_live_sessions: bool,
        /// Why (required with --force over a non-empty target; recorded in audit_logs).
        #[arg(long)]
        reason: Option<String>,
        /// Who restores, recorded in audit_logs [default: os:<login name>].
        #[arg(long, env = "BOOKINGD_PRINCIPAL")]
        principal: Option<String>,
        /// Where the safety backup of a non-empty target goes [default: beside the backup].
        #[arg(long, value_name = "DIR")]
        safety_dir: Option<PathBuf>,
    },
}

pub async fn run(args: &BackupArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let tools = PgTools::new(args.pg_bin_dir.clone());
    let started = Instant::now();
    let progress = move |line: &str| eprintln!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
    match &args.action {
        BackupAction::Create { database_url, out } => {
            let (dir, manifest) = backup::create(database_url.expose_secret(), out, &tools, &progress).await?;
            println!("{}", dir.display());
            for table in &manifest.tables {
                println!("  {:<40} {:>10} rows  {}", table.qualified_name(), table.rows, &table.sha256[..16]);
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupAction::Verify { dir, scratch_url } => {
            let scratch = match scratch_url {
                Some(url) => Scratch::Server(url.expose_secret().to_owned()),
                None => Scratch::Embedded,
            };
            let comparison = backup::verify(dir, scratch, &tools, &progress).await?;
            Ok(report(&comparison, "verified"))
        }
        BackupAction::Restore { dir, target_url, force, allow_live_sessions, reason, principal, safety_dir } => {
            let options = backup::RestoreOptions {
                force: *force,
                allow_live_sessions: *allow_live_sessions,
                safety_dir: safety_dir.clone(),
                principal: principal.clone().unwrap_or_else(os_principal),
                reason: reason.clone(),
            };
            let restored = backup::restore(dir, target_url.expose_secret(), &options, &tools, &progress).await?;
            if let Some(safety) = &restored.safety_backup {
                println!("safety backup of the target before the restore: {}", safety.display());
            }
            Ok(report(&restored.comparison, "restored"))
        }
    }
}

/// The login name, when no --principal is given: restores bypass bookingd,
/// so no token names the caller.
fn os_principal() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_owned());
    format!("os:{user}")
}

fn report(comparison: &Comparison, verb: &str) -> ExitCode {
    let manifest = &comparison.manifest;
    if comparison.matches() {
        println!(
            "{verb}: backup {} of {}: {} tables, {} rows, counts and checksums match the manifest",
            manifest.timestamp,
            manifest.database,
            comparison.tables.len(),
            manifest.tables.iter().map(|t| t.rows).sum::<u64>()
        );
        return ExitCode::SUCCESS;
    }
    println!("{verb} with differences: backup {} of {}", manifest.timestamp, manifest.database);
    for table in comparison.mismatches() {
        println!(
            "  {:<40} expected {:>10} rows, found {:>10}, checksum {}",
            table.table,
            table.expected_rows,
            table.actual_rows.map_or("-".to_owned(), |rows| rows.to_string()),
            if table.checksum_matches { "matches" } else { "DIFFERS" }
        );
    }
    ExitCode::FAILURE
}
