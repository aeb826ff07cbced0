//! Backups as the runbook means them, made correct. Used by bookingctl and
//! the tests only; no RPC reaches it.
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
//! - The [`manifest`] lists every table with its row count and a checksum
//!   ([`checksum`]), and every file with its size and sha-256.
//! - [`verify`] checks each file against its sha-256, reads the archives'
//!   tables of contents with `pg_restore --list` (the tool that fits the
//!   custom format), restores the full archive into a scratch database and
//!   compares counts and checksums with the manifest; the scratch database is
//!   dropped (or the scratch server stopped and deleted) whatever happens.
//! - [`restore`] refuses a target that already holds tables unless forced,
//!   restores in one transaction (a failure leaves the target as it was) and
//!   then compares counts and checksums like `verify`.
//!
//! Modules: [`tools`] runs pg_dump/pg_restore, [`target`] splits a database
//! URL for them, [`database`] creates and drops whole databases.

pub mod checksum;
mod create;
pub mod database;
pub mod error;
pub mod manifest;
mod restore;
pub mod target;
pub mod tools;
mod verify;

pub use create::create;
pub use error::BackupError;
pub use manifest::{BackupFile, Comparison, MANIFEST_FILE, Manifest, TableComparison, TableSummary};
pub use restore::{RestoreOptions, Restored, restore};
pub use tools::PgTools;
pub use verify::{Scratch, verify};

/// The runbook's "critical tables", also backed up one archive each.
pub const CRITICAL_TABLES: [&str; 4] = ["bookings", "tours", "operators", "schedules"];

/// Where to report progress: one line per step.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);
