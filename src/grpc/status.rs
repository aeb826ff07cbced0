//! The one table from domain errors to `tonic::Status`.
//!
//! Every refusal carries `google.rpc.ErrorInfo` with a stable reason (callers
//! branch on it, not on the message) and, for bad fields, `BadRequest` field
//! violations. Internal causes are logged here and never sent to clients.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::db::error::{DbError, DbErrorKind};
use crate::{admin::AdminError, auth::AuthError, booking::BookingError, flags::FlagError, reason::ReasonError};

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
    /// How long the caller should wait before retrying (`RetryInfo`).
    pub retry_delay: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: Code, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            field_violations: Vec::new(),
            metadata: Vec::new(),
            retry_delay: None,
        }
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

    pub fn with_retry_delay(mut self, delay: std::time::Duration) -> Self {
        self.retry_delay = Some(delay);
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

/// Bounds on what one refusal carries in its trailers. Messages, metadata
/// values and violations echo caller input (an unknown flag key, a list of
/// tour ids, check names); unbounded, a 5,000-character key made the
/// `grpc-message` and `grpc-status-details-bin` headers outgrow the 16 KiB
/// header list that hyper and grpc-go accept by default, and the caller got
/// an HTTP/2 reset instead of the refusal. With these bounds the worst case
/// stays under 8 KiB of headers (a unit test below builds it), whatever was
/// sent. Limits are bytes of UTF-8; the message is percent-encoded in
/// `grpc-message` (up to 3 bytes per byte) and also sent inside the details.
const MAX_MESSAGE_BYTES: usize = 512;
/// One `ErrorInfo` metadata value or field violation description: room for
/// the server's own lists (every valid check name), not for an echo.
const MAX_DETAIL_BYTES: usize = 512;
/// All metadata values and violation descriptions together, given out in
/// order (metadata first): a few long ones cannot add up past the limit.
const DETAILS_BUDGET_BYTES: usize = 2048;
/// Metadata keys and violated field names (chosen by the server, but a
/// field name can carry an index).
const MAX_NAME_BYTES: usize = 64;
const MAX_METADATA_ENTRIES: usize = 8;
/// Violations past this are dropped and counted in the
/// `omitted_field_violations` metadata entry.
const MAX_FIELD_VIOLATIONS: usize = 10;

const ELLIPSIS: char = '…';

/// `text` cut to at most `max_bytes` bytes (never less than the ellipsis)
/// on a char boundary, with an ellipsis when something was cut.
fn bounded(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let end = text.floor_char_boundary(max_bytes.saturating_sub(ELLIPSIS.len_utf8()));
    text.truncate(end);
    text.push(ELLIPSIS);
    text
}

/// What is left of [`DETAILS_BUDGET_BYTES`] while the details are built.
struct DetailsBudget(usize);

impl DetailsBudget {
    fn spend(&mut self, text: String) -> String {
        let text = bounded(text, MAX_DETAIL_BYTES.min(self.0));
        self.0 = self.0.saturating_sub(text.len());
        text
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Status {
        let mut budget = DetailsBudget(DETAILS_BUDGET_BYTES);
        let omitted_violations = error.field_violations.len().saturating_sub(MAX_FIELD_VIOLATIONS);
        let mut metadata: std::collections::HashMap<String, String> = error
            .metadata
            .into_iter()
            .take(MAX_METADATA_ENTRIES)
            .map(|(key, value)| (bounded(key, MAX_NAME_BYTES), budget.spend(value)))
            .collect();
        if omitted_violations > 0 {
            metadata.insert("omitted_field_violations".to_owned(), omitted_violations.to_string());
        }
        let mut details = ErrorDetails::new();
        details.set_error_info(error.reason, ERROR_DOMAIN, metadata);
        if error.retry_delay.is_some() {
            details.set_retry_info(error.retry_delay);
        }
        if !error.field_violations.is_empty() {
            let violations = error
                .field_violations
                .into_iter()
                .take(MAX_FIELD_VIOLATIONS)
                .map(|mut violation| {
                    violation.field = bounded(violation.field, MAX_NAME_BYTES);
                    violation.description = budget.spend(violation.description);
                    violation
                })
                .collect::<Vec<_>>();
            details.set_bad_request(violations);
        }
        Status::with_error_details(error.code, bounded(error.message, MAX_MESSAGE_BYTES), details)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let message = error.to_string();
        match error {
            AuthError::MissingCredential => ApiError::new(Code::Unauthenticated, "CREDENTIAL_MISSING", message),
            AuthError::MalformedCredential => ApiError::new(Code::Unauthenticated, "CREDENTIAL_MALFORMED", message),
            AuthError::UnknownCredential => ApiError::new(Code::Unauthenticated, "CREDENTIAL_UNKNOWN", message),
            AuthError::RoleNotPermitted { principal, role, required } => {
                ApiError::new(Code::PermissionDenied, "ROLE_NOT_PERMITTED", message)
                    .with_metadata("principal", principal)
                    .with_metadata("role", role)
                    .with_metadata("required_roles", required)
            }
        }
    }
}

impl From<BookingError> for ApiError {
    fn from(error: BookingError) -> ApiError {
        let reason = error.reason_code();
        match error {
            BookingError::InvalidRequest(problems) => {
                let summary: Vec<String> = problems.iter().map(|p| format!("{}: {}", p.field, p.description)).collect();
                let mut api =
                    ApiError::new(Code::InvalidArgument, reason, format!("invalid request: {}", summary.join("; ")));
                for problem in problems {
                    api = api.with_violation(problem.field, problem.description);
                }
                api
            }
            BookingError::InvalidReason(error) => error.into(),
            BookingError::TourNotFound => ApiError::new(Code::NotFound, reason, "no tour with this id"),
            BookingError::BookingNotFound => {
                ApiError::new(Code::NotFound, reason, "no booking with this id or reference")
            }
            BookingError::TourNotBookable => ApiError::new(
                Code::FailedPrecondition,
                reason,
                "this tour is a template (or has no date); book one of its dated instances",
            ),
            BookingError::TourNotActive { status } => ApiError::new(
                Code::FailedPrecondition,
                reason,
                format!("this tour is not taking bookings: it is {status}"),
            )
            .with_metadata("tour_status", status),
            BookingError::SoldOut { seats_left, requested } => ApiError::new(
                Code::FailedPrecondition,
                reason,
                format!("not enough seats left: {seats_left} left, {requested} requested"),
            )
            .with_metadata("seats_left", seats_left)
            .with_metadata("seats_requested", requested),
            // ALREADY_EXISTS, not FAILED_PRECONDITION: what the caller tried to
            // create (a booking under this key) exists, and no change of state
            // will make the retry succeed; only a new key will
            BookingError::IdempotencyKeyReused => ApiError::new(
                Code::AlreadyExists,
                reason,
                "request_id was already used for a different request; use a new request_id for a new booking",
            ),
            BookingError::HoldExpired => ApiError::new(
                Code::FailedPrecondition,
                reason,
                "the hold on this booking has expired and its seats were released; create a new booking",
            ),
            BookingError::InvalidTransition { from, action } => {
                ApiError::new(Code::FailedPrecondition, reason, format!("cannot {action} a {from} booking"))
                    .with_metadata("booking_status", from)
            }
            BookingError::PriceOutOfRange => {
                ApiError::new(Code::FailedPrecondition, reason, "the price of this booking is out of range")
            }
            BookingError::TourBusy { in_flight } => ApiError::new(
                Code::ResourceExhausted,
                reason,
                "too many bookings of this tour are already waiting; retry shortly with the same request",
            )
            .with_metadata("tour_in_flight", in_flight)
            .with_retry_delay(TOUR_BUSY_RETRY_DELAY),
            BookingError::Database(error) => error.into(),
            BookingError::Internal { context, source } => ApiError::internal(context, &source),
        }
    }
}

/// Every service refuses a bad reason alike: INVALID_ARGUMENT, a reason
/// code per rule, a field violation on `reason`.
impl From<ReasonError> for ApiError {
    fn from(error: ReasonError) -> ApiError {
        let message = error.to_string();
        ApiError::new(Code::InvalidArgument, error.code(), &message).with_violation("reason", message)
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
            FlagError::Reason(error) => error.into(),
            FlagError::Page(error) => ApiError::invalid_field(error.field(), error.to_string()),
            FlagError::Database(error) => error.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> ApiError {
        let message = error.to_string();
        match error {
            AdminError::Reason(error) => error.into(),
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
            AdminError::TableLocked { ref pids, .. } => {
                ApiError::new(Code::Aborted, "BOOKINGS_TABLE_LOCKED", &message).with_metadata("blocking_pids", pids)
            }
            AdminError::Database(error) => error.into(),
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

/// The one mapping of a database fault to a status, whichever service met
/// it. Transient kinds are retryable codes; the cause is logged, never sent.
impl From<DbError> for ApiError {
    fn from(error: DbError) -> ApiError {
        let reason = error.kind.reason_code();
        let action = error.action;
        match &error.kind {
            DbErrorKind::Unavailable => ApiError::unavailable(action, &error),
            DbErrorKind::Contention => {
                tracing::warn!(error = %error, "database contention");
                ApiError::new(Code::Aborted, reason, "the call collided with a concurrent change; retry")
            }
            DbErrorKind::LockTimeout => {
                tracing::warn!(error = %error, "lock wait timed out");
                ApiError::new(
                    Code::Aborted,
                    reason,
                    "data this call needs is locked by another transaction; retry shortly",
                )
            }
            DbErrorKind::Cancelled => {
                tracing::warn!(error = %error, "statement cancelled");
                ApiError::new(
                    Code::DeadlineExceeded,
                    reason,
                    "the database did not finish in time and nothing was changed; retry with the same request",
                )
            }
            // a key no query claimed: a concurrent insert of the same thing
            DbErrorKind::UniqueViolation { .. } => {
                tracing::warn!(error = %error, "unclaimed unique violation");
                ApiError::new(Code::Aborted, reason, "the call collided with a concurrent change; retry")
            }
            DbErrorKind::UndefinedObject => {
                tracing::error!(error = %error, context = action, "database object missing");
                ApiError::new(
                    Code::FailedPrecondition,
                    reason,
                    "a database object this call needs is missing (functions rolled back or migrations not run); see the server log",
                )
            }
            DbErrorKind::Other => ApiError::internal(action, &error),
        }
    }
}

/// How long a caller shed by the concurrency limit should wait: calls last
/// milliseconds, so permits free up quickly.
pub const OVERLOADED_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a caller refused by a busy tour should wait: that tour's queue
/// moves at the speed of one row lock.
pub const TOUR_BUSY_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

/// A call refused at once because the process is at its concurrency limit
/// (grpc::limits): retryable, on this replica or another.
pub fn overloaded(limit: usize) -> Status {
    ApiError::new(
        Code::ResourceExhausted,
        "OVERLOADED",
        "bookingd is serving as many calls as it may at once; retry shortly with the same request",
    )
    .with_metadata("concurrency_limit", limit)
    .with_retry_delay(OVERLOADED_RETRY_DELAY)
    .into()
}

/// A request larger than BOOKINGD_MAX_REQUEST_BYTES (grpc::limits), refused
/// before its handler ran: RESOURCE_EXHAUSTED, as the gRPC spec has it.
pub fn message_too_large(limit: usize) -> Status {
    ApiError::new(
        Code::ResourceExhausted,
        "MESSAGE_TOO_LARGE",
        format!("the request is larger than this server accepts ({limit} bytes)"),
    )
    .with_metadata("max_request_bytes", limit)
    .into()
}

/// The end of a stream the server closes because it is stopping: retryable
/// on another connection (or replica).
pub fn shutting_down() -> Status {
    ApiError::new(Code::Unavailable, "SHUTTING_DOWN", "bookingd is shutting down; reconnect to continue").into()
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
    fn sold_out_says_how_many_seats_are_left() {
        let status: Status = ApiError::from(BookingError::SoldOut { seats_left: 3, requested: 5 }).into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(info.reason, "SOLD_OUT");
        assert_eq!(info.metadata.get("seats_left").map(String::as_str), Some("3"));
        assert!(status.message().contains("3 left"), "{}", status.message());
    }

    #[test]
    fn shed_calls_say_when_to_retry() {
        for (status, reason) in [
            (overloaded(4), "OVERLOADED"),
            (ApiError::from(BookingError::TourBusy { in_flight: 66 }).into(), "TOUR_BUSY"),
        ] {
            assert_eq!(status.code(), Code::ResourceExhausted);
            let details = status.get_error_details();
            assert_eq!(details.error_info().expect("error info").reason, reason);
            assert!(details.retry_info().and_then(|retry| retry.retry_delay).is_some(), "{reason}: a retry delay");
        }
    }

    #[test]
    fn internal_causes_are_not_sent_to_clients() {
        let error = BookingError::internal("doing a thing", "secret table name exploded");
        let status: Status = ApiError::from(error).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
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

    /// What an HTTP/2 peer counts against its header list limit: name,
    /// value and 32 bytes per field (RFC 9113 §6.5.2).
    fn header_list_size(status: &Status) -> usize {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).expect("status headers");
        headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 32).sum()
    }

    #[test]
    fn an_unknown_flag_key_of_5000_characters_is_echoed_truncated_within_the_header_limit() {
        let key = "k".repeat(5_000);
        let status: Status = ApiError::from(FlagError::UnknownFlag { key: key.clone() }).into();
        assert_eq!(status.code(), Code::NotFound);
        assert!(header_list_size(&status) < 8 * 1024, "{} bytes of headers", header_list_size(&status));
        let info = status.get_error_details().error_info().cloned().expect("error info");
        assert_eq!(info.reason, "FLAG_NOT_FOUND");
        let echoed = info.metadata.get("key").expect("key metadata");
        assert!(echoed.len() <= MAX_DETAIL_BYTES && echoed.ends_with(ELLIPSIS), "{echoed}");
        assert!(key.starts_with(echoed.trim_end_matches('…')));
        assert!(status.message().starts_with("unknown feature flag \"kkk"), "{}", status.message());
    }

    #[test]
    fn no_refusal_outgrows_the_header_limit_whatever_it_echoes() {
        // Arrange: every part at its worst: multi-byte and control characters
        // (percent-encoded three times over in grpc-message), more metadata
        // and violations than kept
        let nasty = "é\u{0}\n🎟%".repeat(2_000);
        let mut error = ApiError::new(Code::InvalidArgument, "INVALID_ARGUMENT", nasty.clone())
            .with_retry_delay(std::time::Duration::from_secs(1));
        for n in 0..40 {
            error = error
                .with_metadata(&format!("{n}{nasty}"), &nasty)
                .with_violation(&format!("items[{n}].{nasty}"), nasty.clone());
        }

        // Act
        let status: Status = error.into();

        // Assert
        assert!(header_list_size(&status) < 8 * 1024, "{} bytes of headers", header_list_size(&status));
        let details = status.get_error_details();
        let violations = &details.bad_request().expect("bad request").field_violations;
        assert_eq!(violations.len(), MAX_FIELD_VIOLATIONS);
        assert!(violations[0].field.starts_with("items[0]."), "{}", violations[0].field);
        let info = details.error_info().expect("error info");
        assert_eq!(info.metadata.get("omitted_field_violations").map(String::as_str), Some("30"));
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn truncation_cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(bounded("short".to_owned(), 8), "short");
        assert_eq!(bounded("exactly8".to_owned(), 8), "exactly8");
        // '…' is 3 bytes: 8 - 3 leaves 5 bytes, and "ab" + "🎟" (4 bytes) = 6
        // does not fit, so the ticket goes whole
        assert_eq!(bounded("ab🎟cdefgh".to_owned(), 8), "ab…");
        assert_eq!(bounded("abcdefghij".to_owned(), 8), "abcde…");
        assert_eq!(bounded("abcdefghij".to_owned(), 1), "…", "a spent budget leaves the ellipsis");
    }

    #[test]
    fn every_valid_check_name_is_kept_while_the_unknown_ones_are_cut() {
        let unknown: Vec<String> = (0..1_000).map(|n| format!("no_such_check_{n}")).collect();
        let status: Status = ApiError::from(crate::integrity::IntegrityError::UnknownChecks { unknown }).into();
        let info = status.get_error_details().error_info().cloned().expect("error info");
        let valid = info.metadata.get("valid_checks").expect("valid checks");
        assert_eq!(valid, &crate::integrity::checks::names().collect::<Vec<_>>().join(", "));
        assert!(header_list_size(&status) < 8 * 1024, "{} bytes of headers", header_list_size(&status));
    }

    #[test]
    fn a_missing_reason_is_a_field_violation() {
        let status: Status = ApiError::from(FlagError::Reason(ReasonError::Required)).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        assert_eq!(details.bad_request().expect("bad request").field_violations[0].field, "reason");
    }
}
