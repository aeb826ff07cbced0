//! What can go wrong when reading or changing a flag, named for the caller's
//! problem. Evaluation itself never fails (it degrades to the last known
//! value); these come from the operator-facing operations.

/// Most characters a change reason may have.
pub const MAX_REASON_CHARS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Only flags in the registry can be read or set.
    #[error("unknown feature flag {key:?}")]
    UnknownFlag { key: String },

    /// The environment decides this flag; a database write would be ignored.
    #[error(
        "{key} is pinned by the environment variable {variable}={value}; unset it and restart to manage the flag here"
    )]
    PinnedByEnvironment { key: &'static str, variable: &'static str, value: bool },

    /// Every flip must say why: the audit trail is read during incidents.
    #[error("a reason is required to change a flag")]
    ReasonRequired,

    #[error("the reason must have at most {MAX_REASON_CHARS} characters")]
    ReasonTooLong,

    #[error("the reason must be printable text")]
    ReasonNotPrintable,

    #[error("the page token is not one this server issued")]
    InvalidPageToken,

    #[error("the page size must not be negative")]
    InvalidPageSize,

    /// The database could not be reached (or did not answer in time): retryable.
    #[error("the flag store is unavailable while {action}: {source}")]
    StoreUnavailable { action: &'static str, source: sqlx::Error },

    #[error("database error while {action}: {source}")]
    Store { action: &'static str, source: sqlx::Error },
}

impl FlagError {
    /// Classifies a database error met while doing `action`.
    pub(crate) fn store(action: &'static str, source: sqlx::Error) -> Self {
        if is_unavailable(&source) {
            FlagError::StoreUnavailable { action, source }
        } else {
            FlagError::Store { action, source }
        }
    }
}

/// Errors that mean "the database is not there right now" rather than "the
/// query is wrong".
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // class 57 (operator intervention: admin_shutdown, cannot_connect_now)
        // and class 08 (connection exception)
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("57") || code.starts_with("08")),
        _ => false,
    }
}
