//! The one place that reads a `sqlx::Error` and decides what kind of fault it
//! is. Every domain wraps the result ([`DbError`]) in its own error type and
//! `grpc/status.rs` maps [`DbErrorKind`] to a code once, so the same fault
//! gets the same status from every service (a terminated backend used to be
//! UNAVAILABLE from BookingService and INTERNAL from AdminService).
//!
//! Query-specific meanings (a function's own SQLSTATEs, which unique key a
//! booking insert hit) stay next to their query; they ask this module for the
//! SQLSTATE or the constraint rather than reading the error themselves.

use std::borrow::Cow;

/// SQLSTATEs bookingd reacts to (PostgreSQL appendix A).
pub mod sqlstate {
    /// A statement ran past `statement_timeout`, or was cancelled
    /// (`pg_cancel_backend`, a dropped client connection's cancel request).
    pub const QUERY_CANCELED: &str = "57014";
    /// `pg_terminate_backend`, or the server shutting down.
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const CRASH_SHUTDOWN: &str = "57P02";
    pub const CANNOT_CONNECT_NOW: &str = "57P03";
    /// A lock wait ran past `lock_timeout` (or NOWAIT found the lock taken).
    pub const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_OBJECT: &str = "42704";
    /// `idle_in_transaction_session_timeout` ended the session.
    pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    /// "cache lookup failed for ..." among others.
    pub const INTERNAL_ERROR: &str = "XX000";
    /// "cached plan must not change result type" among others.
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    /// Class 08: connection exception.
    pub const CLASS_CONNECTION_EXCEPTION: &str = "08";
    /// Class 53: insufficient resources (too many connections, out of memory, disk full).
    pub const CLASS_INSUFFICIENT_RESOURCES: &str = "53";
}

/// What kind of fault a database error is, from a caller's point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database cannot be reached, is shutting down, ended our session or
    /// has no room for us: retry later, maybe elsewhere.
    Unavailable,
    /// A deadlock or serialization failure: the transaction rolled back and
    /// an immediate retry is expected to succeed.
    Contention,
    /// A lock another session holds did not come free within `lock_timeout`.
    LockTimeout,
    /// The statement was cancelled: `statement_timeout` (which bookingd sets
    /// below the caller's deadline) or a cancel request.
    Cancelled,
    /// A unique constraint that no query-specific mapping claimed.
    UniqueViolation { constraint: Option<String> },
    /// A function, table, column or other object the statement needs is
    /// missing (the runbook's rollback, a migration not run).
    UndefinedObject,
    /// Anything else: a bug or a surprise; logged, answered as internal.
    Other,
}

impl DbErrorKind {
    /// Stable machine-readable name: the ErrorInfo reason, and the `reason`
    /// of audit rows that record a failure.
    pub fn reason_code(&self) -> &'static str {
        match self {
            DbErrorKind::Unavailable => "DATABASE_UNAVAILABLE",
            DbErrorKind::Contention => "CONTENTION",
            DbErrorKind::LockTimeout => "LOCK_TIMEOUT",
            DbErrorKind::Cancelled => "DATABASE_TIMEOUT",
            DbErrorKind::UniqueViolation { .. } => "CONFLICT",
            DbErrorKind::UndefinedObject => "DATABASE_OBJECT_MISSING",
            DbErrorKind::Other => "INTERNAL",
        }
    }

    /// Whether the same call, retried unchanged, may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DbErrorKind::Unavailable | DbErrorKind::Contention | DbErrorKind::LockTimeout | DbErrorKind::Cancelled
        )
    }
}

/// Sorts a database error into its kind. Errors of the driver or the pool
/// that mean "no usable connection" are unavailable as well.
pub fn classify(error: &sqlx::Error) -> DbErrorKind {
    use sqlstate::*;
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => DbErrorKind::Unavailable,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or(Cow::Borrowed(""));
            match code.as_ref() {
                QUERY_CANCELED => DbErrorKind::Cancelled,
                LOCK_NOT_AVAILABLE => DbErrorKind::LockTimeout,
                SERIALIZATION_FAILURE | DEADLOCK_DETECTED => DbErrorKind::Contention,
                UNIQUE_VIOLATION => DbErrorKind::UniqueViolation { constraint: db.constraint().map(str::to_owned) },
                UNDEFINED_FUNCTION | UNDEFINED_TABLE | UNDEFINED_COLUMN | UNDEFINED_OBJECT => {
                    DbErrorKind::UndefinedObject
                }
                ADMIN_SHUTDOWN | CRASH_SHUTDOWN | CANNOT_CONNECT_NOW | IDLE_IN_TRANSACTION_TIMEOUT => {
                    DbErrorKind::Unavailable
                }
                code if code.starts_with(CLASS_CONNECTION_EXCEPTION)
                    || code.starts_with(CLASS_INSUFFICIENT_RESOURCES) =>
                {
                    DbErrorKind::Unavailable
                }
                _ => DbErrorKind::Other,
            }
        }
        _ => DbErrorKind::Other,
    }
}

/// The SQLSTATE of an error the server raised, if it is one.
pub fn sqlstate(error: &sqlx::Error) -> Option<Cow<'_, str>> {
    error.as_database_error().and_then(|db| db.code())
}

/// Whether the server raised exactly this SQLSTATE.
pub fn has_sqlstate(error: &sqlx::Error, code: &str) -> bool {
    sqlstate(error).is_some_and(|c| c == code)
}

/// The unique constraint a statement violated, if that is what failed.
pub fn violated_unique_constraint(error: &sqlx::Error) -> Option<&str> {
    let db = error.as_database_error()?;
    if db.code().as_deref() == Some(sqlstate::UNIQUE_VIOLATION) { db.constraint() } else { None }
}

/// A cached prepared statement the catalogs moved under: its function was
/// dropped and recreated ("cache lookup failed for function", XX000) or its
/// result type changed ("cached plan must not change result type", 0A000).
/// The statement did nothing; re-preparing it (dropping the connection's
/// cached statements) makes the same call valid again.
pub fn is_stale_cached_statement(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else { return false };
    match db.code().as_deref() {
        Some(sqlstate::INTERNAL_ERROR) => db.message().starts_with("cache lookup failed for function"),
        Some(sqlstate::FEATURE_NOT_SUPPORTED) => db.message().starts_with("cached plan must not change result type"),
        _ => false,
    }
}

/// Whether the session that returned `error` can run the next statement:
/// the server answered with an error of the statement (followed by
/// `ReadyForQuery`, which sqlx reads before the next query), not one that
/// ended the session (FATAL: terminated, shutting down) and not an I/O or
/// protocol failure.
pub fn leaves_session_usable(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some() && classify(error) != DbErrorKind::Unavailable
}

/// A classified database error with what we were doing when it happened, so
/// the log tells the story. Domains wrap it; `grpc/status.rs` maps it.
#[derive(Debug, thiserror::Error)]
#[error("database error while {action}: {source}")]
pub struct DbError {
    pub action: &'static str,
    pub kind: DbErrorKind,
    #[source]
    pub source: sqlx::Error,
}

impl DbError {
    pub fn new(action: &'static str, source: sqlx::Error) -> Self {
        DbError { action, kind: classify(&source), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_connection_failures_are_unavailable() {
        assert_eq!(classify(&sqlx::Error::PoolTimedOut), DbErrorKind::Unavailable);
        assert_eq!(classify(&sqlx::Error::PoolClosed), DbErrorKind::Unavailable);
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(classify(&io), DbErrorKind::Unavailable);
    }

    #[test]
    fn a_missing_row_is_not_a_fault_of_the_database() {
        assert_eq!(classify(&sqlx::Error::RowNotFound), DbErrorKind::Other);
        assert!(!DbErrorKind::Other.is_retryable());
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        assert!(DbErrorKind::LockTimeout.is_retryable());
        assert!(!DbErrorKind::UndefinedObject.is_retryable());
        assert!(!DbErrorKind::UniqueViolation { constraint: None }.is_retryable());
    }
}
