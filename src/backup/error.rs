//! What can go wrong with a backup, a verification or a restore (bookingctl
//! only; never sent over gRPC).

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{tool} not found (looked in {searched}); install the PostgreSQL client tools or pass --pg-bin-dir")]
    ToolMissing { tool: &'static str, searched: String },
    #[error("{tool} failed ({status}): {stderr}")]
    ToolFailed { tool: &'static str, status: String, stderr: String },
    #[error("{path} already exists; choose another --out")]
    OutputExists { path: String },
    #[error("io error while {action} ({path}): {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("{path} is not a backup manifest: {reason}")]
    ManifestUnreadable { path: String, reason: String },
    #[error("{file} is damaged: sha-256 {actual}, the manifest says {expected}")]
    FileCorrupt { file: String, expected: String, actual: String },
    #[error("{file} has no data for table {table}")]
    TableDataMissing { file: String, table: String },
    #[error("invalid database url: {0}")]
    BadUrl(String),
    #[error(
        "the target database is not empty ({relations} tables, views or sequences); restore into an empty database or pass --force to replace them"
    )]
    TargetNotEmpty { relations: i64 },
    #[error(
        "the target database has {sessions} live bookingd session(s) ({names}); stop bookingd first, or pass \
         --allow-live-sessions to restore under it anyway"
    )]
    TargetInUse { sessions: i64, names: String },
    #[error("a restore over a non-empty database needs --reason (it is recorded in audit_logs)")]
    ReasonRequired,
    #[error("cannot start a scratch PostgreSQL for verification: {0}")]
    ScratchServer(String),
    #[error("database error while {action}: {source}")]
    Database { action: &'static str, source: sqlx::Error },
}

impl BackupError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BackupError {
        let path = path.display().to_string();
        move |source| BackupError::Io { action, path, source }
    }

    pub(crate) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> BackupError {
        move |source| BackupError::Database { action, source }
    }
}
