//! What can go wrong when reading or changing a flag, named for the caller's
//! problem. Evaluation itself never fails (it degrades to the last known
//! value); these come from the operator-facing operations.

use crate::db::error::DbError;

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
    #[error(transparent)]
    Reason(#[from] crate::reason::ReasonError),

    #[error("{field}: {0}", field = .0.field())]
    Page(#[from] crate::page::PageError),

    /// A database fault, sorted by `db::error`; its kind decides the code.
    #[error("the flag store failed: {0}")]
    Database(#[from] DbError),
}

impl FlagError {
    /// Wraps a database error met while doing `action`.
    pub(crate) fn store(action: &'static str, source: sqlx::Error) -> Self {
        FlagError::Database(DbError::new(action, source))
    }
}
