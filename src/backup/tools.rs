//! The PostgreSQL client tools: finding them and running them.
//!
//! The tools come from `--pg-bin-dir`, else the newest
//! `/usr/lib/postgresql/*/bin`, else `PATH`. A password in a URL is passed to
//! them through `PGPASSWORD`, never on their command line.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::Instant,
};

use super::{BackupError, Progress, target::DbTarget};
use crate::embedded_pg;

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

    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
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
        output_of(tool, command, Path::new(tool)).await
    }

    /// `pg_restore --list`: reads an archive's table of contents without a
    /// database.
    pub(super) async fn list(&self, archive: &Path) -> Result<String, BackupError> {
        let mut command = tokio::process::Command::new(self.path_of("pg_restore")?);
        command.arg("--list").arg(archive);
        output_of("pg_restore", command, archive).await
    }

    /// `pg_dump <options> --snapshot <snapshot>` into `dir/file`.
    pub(super) async fn dump(
        &self,
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
        self.run("pg_dump", target, args).await?;
        let bytes = tokio::fs::metadata(&path).await.map_err(BackupError::io("reading a dump's size", &path))?.len();
        progress(&format!("wrote {file} ({} in {:.1}s)", human_bytes(bytes), started.elapsed().as_secs_f64()));
        Ok(())
    }

    /// `pg_restore` of a custom-format archive in one transaction; `clean`
    /// replaces the archive's objects in a non-empty target.
    pub(super) async fn restore_archive(
        &self,
        target: &DbTarget,
        archive: &Path,
        clean: bool,
    ) -> Result<(), BackupError> {
        let mut args: Vec<OsString> =
            ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"].map(OsString::from).to_vec();
        if clean {
            args.extend(["--clean", "--if-exists"].map(OsString::from));
        }
        args.push(archive.as_os_str().to_owned());
        self.run("pg_restore", target, args).await?;
        Ok(())
    }
}

/// Runs a prepared command to completion: its standard output, or its
/// standard error in a [`BackupError::ToolFailed`].
async fn output_of(
    tool: &'static str,
    mut command: tokio::process::Command,
    subject: &Path,
) -> Result<String, BackupError> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = command.output().await.map_err(BackupError::io("running a postgresql client tool", subject))?;
    if !output.status.success() {
        return Err(BackupError::ToolFailed {
            tool,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether a `pg_restore --list` output has the data entry of a table
/// (`<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>`).
pub(super) fn has_table_data(listing: &str, schema: &str, table: &str) -> bool {
    let entry = format!(" TABLE DATA {schema} {table}");
    listing.lines().filter(|line| !line.starts_with(';')).any(|line| {
        line.find(&entry).is_some_and(|at| matches!(line[at + entry.len()..].chars().next(), None | Some(' ')))
    })
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_data_entries_are_found_by_exact_name() {
        let listing = ";\n; Archive created at ...\n3372; 0 16404 TABLE DATA public bookings postgres\n\
                       3373; 0 16405 TABLE DATA public tours_extra postgres\n";
        assert!(has_table_data(listing, "public", "bookings"));
        assert!(!has_table_data(listing, "public", "tours"));
        assert!(has_table_data("1; 0 1 TABLE DATA public tours", "public", "tours"));
    }

    #[test]
    fn sizes_are_written_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
