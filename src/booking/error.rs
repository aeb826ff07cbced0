//! What can go wrong for a caller of the booking domain. Variants are named
//! for the caller's problem; `src/grpc/status.rs` maps them to gRPC codes.

use crate::booking::types::{BookingStatus, FieldProblem};
use crate::db::error::{DbError, sqlstate};

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// The request is malformed; nothing was written.
    #[error("invalid request ({} field problem(s))", .0.len())]
    InvalidRequest(Vec<FieldProblem>),

    /// A cancellation's reason broke the crate's one rule for reasons.
    #[error(transparent)]
    InvalidReason(#[from] crate::reason::ReasonError),

    #[error("tour not found")]
    TourNotFound,

    /// A template (or an undated tour): only its dated instances are bookable.
    #[error("tour is a template or has no date")]
    TourNotBookable,

    #[error("tour is not active (status {status})")]
    TourNotActive { status: String },

    #[error("not enough seats left: {seats_left} left, {requested} requested")]
    SoldOut { seats_left: i32, requested: i32 },

    /// The idempotency key already produced a booking for a different request.
    #[error("request_id was already used for a different request")]
    IdempotencyKeyReused,

    #[error("booking not found")]
    BookingNotFound,

    /// The pending booking's hold ran out; its seats are released.
    #[error("the hold on this booking has expired")]
    HoldExpired,

    #[error("cannot {action} a {from} booking")]
    InvalidTransition { from: BookingStatus, action: &'static str },

    #[error("the price of this booking does not fit in the money columns")]
    PriceOutOfRange,

    /// Too many bookings of this tour are already in flight (the tour gate):
    /// refused at once, before a connection was taken; nothing was written.
    #[error("too many bookings of this tour are in flight ({in_flight})")]
    TourBusy { in_flight: usize },

    /// A database fault, sorted by `db::error` (unavailable, contention,
    /// lock timeout, …); its kind decides the code and the reason.
    #[error(transparent)]
    Database(#[from] DbError),

    #[error("internal error while {context}: {source}")]
    Internal { context: &'static str, source: Cause },
}

impl BookingError {
    pub fn internal(context: &'static str, source: impl Into<Cause>) -> Self {
        BookingError::Internal { context, source: source.into() }
    }

    /// Classifies a database error that no query-specific mapping claimed.
    pub fn from_db(context: &'static str, source: sqlx::Error) -> Self {
        // bigint overflow while pricing inside the database
        if crate::db::error::has_sqlstate(&source, sqlstate::NUMERIC_VALUE_OUT_OF_RANGE) {
            return BookingError::PriceOutOfRange;
        }
        BookingError::Database(DbError::new(context, source))
    }

    /// Stable machine-readable code: the gRPC ErrorInfo reason and the
    /// `reason` of `creation_failed` audit rows.
    pub fn reason_code(&self) -> &'static str {
        match self {
            BookingError::InvalidRequest(_) => "INVALID_ARGUMENT",
            BookingError::InvalidReason(error) => error.code(),
            BookingError::TourNotFound => "TOUR_NOT_FOUND",
            BookingError::TourNotBookable => "TOUR_NOT_BOOKABLE",
            BookingError::TourNotActive { .. } => "TOUR_NOT_ACTIVE",
            BookingError::SoldOut { .. } => "SOLD_OUT",
            BookingError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            BookingError::BookingNotFound => "BOOKING_NOT_FOUND",
            BookingError::HoldExpired => "HOLD_EXPIRED",
            BookingError::InvalidTransition { .. } => "INVALID_TRANSITION",
            BookingError::PriceOutOfRange => "PRICE_OUT_OF_RANGE",
            BookingError::TourBusy { .. } => "TOUR_BUSY",
            BookingError::Database(error) => error.kind.reason_code(),
            BookingError::Internal { .. } => "INTERNAL",
        }
    }

    /// Whether a failed creation is recorded as `creation_failed` in
    /// audit_logs: only when the service failed (a database fault, a function
    /// error, a bug). Refusals (sold out, not active, key reused, malformed)
    /// are the business working: they are counted in the `bookingd.bookings`
    /// metric by outcome, never written on the request path, so a popular
    /// tour selling out leaves the runbook's failure-rate query ("more than 5
    /// an hour") quiet and nobody can grow audit_logs by hammering one.
    pub fn is_recorded_creation_failure(&self) -> bool {
        matches!(self, BookingError::Internal { .. } | BookingError::Database(_))
    }
}
