//! The one table from domain errors to `tonic::Status`.
//!
//! Every refusal carries `google.rpc.ErrorInfo` with a stable reason (callers
//! branch on it, not on the message) and, for bad fields, `BadRequest` field
//! violations. Internal causes are logged here and never sent to clients.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::admin::AdminError;
use crate::flags::FlagError;

/// `ErrorInfo.domain` of every error bookingd sends.
pub const ERROR_DOMAIN: &str = "bookingd.booking.v1";

/// A refusal in API terms: the code, a stable reason, a message a caller can
/// act on, and optional field violations.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub reason: &'static str,
    pub message: String,
    pub field_violations: Vec<FieldViolation>,
    pub metadata: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), field_violations: Vec::new(), metadata: Vec::new() }
    }

    pub fn invalid_field(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        ApiError::new(Code::InvalidArgument, "INVALID_ARGUMENT", format!("{field}: {description}"))
            .with_violation(field, description)
    }

    pub fn with_violation(mut self, field: &str, description: impl Into<String>) -> Self {
        self.field_violations.push(FieldViolation::new(field, description));
        self
    }

    pub fn with_metadata(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.push((key.to_owned(), value.to_string()));
        self
    }

    /// An internal failure: logged with its cause, answered with a safe message.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, context, "internal error");
        ApiError::new(Code::Internal, "INTERNAL", "internal error; it has been logged")
    }

    /// The database could not be reached or timed out: retryable.
    pub fn unavailable(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, context, "database unavailable");
        ApiError::new(Code::Unavailable, "DATABASE_UNAVAILABLE", "the database is unavailable; retry later")
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(
            error.reason,
            ERROR_DOMAIN,
            error.metadata.into_iter().collect::<std::collections::HashMap<_, _>>(),
        );
        if !error.field_violations.is_empty() {
            details.set_bad_request(error.field_violations);
        }
        Status::with_error_details(error.code, error.message, details)
    }
}

impl From<FlagError> for ApiError {
    fn from(error: FlagError) -> ApiError {
        let message = error.to_string();
        match error {
            FlagError::UnknownFlag { key } => {
                ApiError::new(Code::NotFound, "FLAG_NOT_FOUND", message).with_metadata("key", key)
            }
            FlagError::PinnedByEnvironment { key, variable, value } => {
                ApiError::new(Code::FailedPrecondition, "FLAG_PINNED_BY_ENVIRONMENT", message)
                    .with_metadata("key", key)
                    .with_metadata("variable", variable)
                    .with_metadata("value", value)
            }
            FlagError::ReasonRequired | FlagError::ReasonTooLong | FlagError::ReasonNotPrintable => {
                ApiError::invalid_field("reason", message)
            }
            FlagError::InvalidPageToken => ApiError::invalid_field("page_token", message),
            FlagError::InvalidPageSize => ApiError::invalid_field("page_size", message),
            FlagError::StoreUnavailable { .. } => ApiError::unavailable("feature flags", &error),
            FlagError::Store { .. } => ApiError::internal("feature flags", &error),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> ApiError {
        let message = error.to_string();
        match error {
            AdminError::ReasonRequired | AdminError::ReasonTooLong { .. } => {
                ApiError::new(Code::InvalidArgument, "REASON_REQUIRED", &message).with_violation("reason", message)
            }
            AdminError::InvalidTourId { ref field, .. } => {
                ApiError::new(Code::InvalidArgument, "INVALID_ARGUMENT", &message).with_violation(field, &message)
            }
            AdminError::InvalidPauseId { .. } => {
                ApiError::new(Code::InvalidArgument, "INVALID_ARGUMENT", &message).with_violation("pause_id", message)
            }
            AdminError::UnknownTours(ref ids) => {
                ApiError::new(Code::NotFound, "TOUR_NOT_FOUND", &message).with_metadata("tour_ids", join_ids(ids))
            }
            AdminError::UnknownPause(id) => {
                ApiError::new(Code::NotFound, "PAUSE_NOT_FOUND", message).with_metadata("pause_id", id)
            }
            AdminError::PauseAlreadyResumed(id) => {
                ApiError::new(Code::FailedPrecondition, "PAUSE_ALREADY_RESUMED", message).with_metadata("pause_id", id)
            }
            AdminError::ToursNotPaused { ref tours, .. } => {
                ApiError::new(Code::FailedPrecondition, "TOUR_NOT_PAUSED", &message)
                    .with_metadata("tour_ids", join_ids(tours))
            }
            AdminError::AlreadyPaused(ref ids) => {
                ApiError::new(Code::FailedPrecondition, "TOUR_ALREADY_PAUSED", &message)
                    .with_metadata("tour_ids", join_ids(ids))
            }
            AdminError::NothingToPause => ApiError::new(Code::FailedPrecondition, "NOTHING_TO_PAUSE", message),
            AdminError::ToursBusy => ApiError::new(Code::Aborted, "TOURS_BUSY", message),
            AdminError::Database { action, source } => database_error(action, &source),
        }
    }
}

impl From<crate::integrity::IntegrityError> for ApiError {
    fn from(error: crate::integrity::IntegrityError) -> Self {
        use crate::integrity::IntegrityError;
        match &error {
            IntegrityError::UnknownChecks { unknown } => {
                let valid = crate::integrity::checks::names().collect::<Vec<_>>().join(", ");
                ApiError::new(
                    Code::InvalidArgument,
                    "UNKNOWN_CHECK",
                    format!("unknown check(s): {}; valid checks: {valid}", unknown.join(", ")),
                )
                .with_violation("checks", format!("unknown: {}; valid: {valid}", unknown.join(", ")))
                .with_metadata("valid_checks", valid)
            }
            IntegrityError::NegativeSampleLimit { .. } => ApiError::invalid_field("max_samples", error.to_string()),
            IntegrityError::IntervalTooShort { .. } => ApiError::invalid_field("interval", error.to_string()),
        }
    }
}

fn join_ids(ids: &[uuid::Uuid]) -> String {
    ids.iter().map(uuid::Uuid::to_string).collect::<Vec<_>>().join(",")
}

/// A database failure: unreachable or timed out is retryable, anything else
/// is internal (logged, never sent).
fn database_error(action: &str, source: &sqlx::Error) -> ApiError {
    match source {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ApiError::unavailable(action, source)
        }
        _ => ApiError::internal(action, source),
    }
}

/// Answer for an RPC whose behaviour has not been built yet: never a fake success.
pub fn not_built(rpc: &str) -> Status {
    ApiError::new(Code::Unimplemented, "NOT_IMPLEMENTED", format!("{rpc} is not implemented yet")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_info_and_field_violations_survive_the_round_trip() {
        let status: Status = ApiError::invalid_field("num_adults", "must not be negative").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.error_info().expect("error info").reason, "INVALID_ARGUMENT");
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, "num_adults");
    }

    #[test]
    fn a_pinned_flag_names_its_environment_variable() {
        let status: Status = ApiError::from(FlagError::PinnedByEnvironment {
            key: crate::flags::USE_LEGACY_BOOKING_SERVICE,
            variable: "USE_LEGACY_BOOKING_SERVICE",
            value: true,
        })
        .into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().contains("USE_LEGACY_BOOKING_SERVICE"), "{}", status.message());
        let info = status.get_error_details().error_info().cloned().expect("error info");
        assert_eq!(info.reason, "FLAG_PINNED_BY_ENVIRONMENT");
        assert_eq!(info.metadata.get("variable").map(String::as_str), Some("USE_LEGACY_BOOKING_SERVICE"));
    }

    #[test]
    fn a_missing_reason_is_a_field_violation() {
        let status: Status = ApiError::from(FlagError::ReasonRequired).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.bad_request().expect("bad request").field_violations[0].field, "reason");
    }
}
