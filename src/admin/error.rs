//! What can go wrong with an operator action, named for the operator's
//! problem. Mapped to `tonic::Status` in `grpc/status.rs`.

use uuid::Uuid;

use crate::db::error::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Reason(#[from] crate::reason::ReasonError),
    #[error("{field}: {value:?} is not a tour id (a UUID)")]
    InvalidTourId { field: String, value: String },
    #[error("pause_id: {value:?} is not a pause id (a UUID)")]
    InvalidPauseId { value: String },
    #[error("no such tour: {}", join(.0))]
    UnknownTours(Vec<Uuid>),
    /// The tours already have an open pause (someone reactivated them by hand
    /// since): resume that pause first, so its prior statuses are not lost.
    #[error("tours already have an open pause, resume it first: {}", join(.0))]
    AlreadyPaused(Vec<Uuid>),
    #[error("no active tour to pause")]
    NothingToPause,
    #[error("no such pause: {0}")]
    UnknownPause(Uuid),
    #[error("pause {0} has already been resumed")]
    PauseAlreadyResumed(Uuid),
    #[error("tours are not in an open pause{}: {}", .pause_id.map(|p| format!(" {p}")).unwrap_or_default(), join(.tours))]
    ToursNotPaused { pause_id: Option<Uuid>, tours: Vec<Uuid> },
    /// Tour rows stayed locked by other transactions past the lock timeout.
    #[error("tours are busy (locked by other transactions); try again")]
    ToursBusy,
    /// DDL on `bookings` could not get its locks in time, on every attempt.
    #[error("{message}")]
    TableLocked { message: String, pids: String },
    /// A database fault, sorted by `db::error`; its kind decides the code.
    #[error(transparent)]
    Database(#[from] DbError),
}

fn join(ids: &[Uuid]) -> String {
    ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
}

/// Adds what we were doing to a database error, so the log tells the story.
pub(crate) trait DbContext<T> {
    fn context(self, action: &'static str) -> Result<T, AdminError>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn context(self, action: &'static str) -> Result<T, AdminError> {
        self.map_err(|source| AdminError::Database(DbError::new(action, source)))
    }
}
