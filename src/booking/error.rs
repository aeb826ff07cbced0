//! What can go wrong for a caller of the booking domain. Variants are named
//! for the caller's problem; `src/grpc/status.rs` maps them to gRPC codes.

use crate::booking::types::{BookingStatus, FieldProblem};

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// The request is malformed; nothing was written.
    #[error("invalid request ({} field problem(s))", .0.len())]
    InvalidRequest(Vec<FieldProblem>),

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

    /// A deadlock or serialization failure: safe to retry.
    #[error("database contention while {context}")]
    Contention { context: &'static str, source: sqlx::Error },

    #[error("database unavailable while {context}")]
    DatabaseUnavailable { context: &'static str, source: sqlx::Error },

    #[error("internal error while {context}: {source}")]
    Internal { context: &'static str, source: Cause },
}

impl BookingError {
    pub fn internal(context: &'static str, source: impl Into<Cause>) -> Self {
        BookingError::Internal { context, source: source.into() }
    }

    /// Classifies a database error that no query-specific mapping claimed.
    pub fn from_db(context: &'static str, source: sqlx::Error) -> Self {
        let code = source.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        match (&source, code.as_deref()) {
            (
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::BeginFailed,
                _,
            ) => BookingError::DatabaseUnavailable { context, source },
            // connection exceptions, shutdown, too many connections
            (_, Some(code)) if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
                BookingError::DatabaseUnavailable { context, source }
            }
            (_, Some("40001" | "40P01")) => BookingError::Contention { context, source },
            // bigint overflow while pricing inside the database
            (_, Some("22003")) => BookingError::PriceOutOfRange,
            _ => BookingError::Internal { context, source: Box::new(source) },
        }
    }

    /// Stable machine-readable code: the gRPC ErrorInfo reason and the
    /// `reason` of `creation_failed` audit rows.
    pub fn reason_code(&self) -> &'static str {
        match self {
            BookingError::InvalidRequest(_) => "INVALID_ARGUMENT",
            BookingError::TourNotFound => "TOUR_NOT_FOUND",
            BookingError::TourNotBookable => "TOUR_NOT_BOOKABLE",
            BookingError::TourNotActive { .. } => "TOUR_NOT_ACTIVE",
            BookingError::SoldOut { .. } => "SOLD_OUT",
            BookingError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            BookingError::BookingNotFound => "BOOKING_NOT_FOUND",
            BookingError::HoldExpired => "HOLD_EXPIRED",
            BookingError::InvalidTransition { .. } => "INVALID_TRANSITION",
            BookingError::PriceOutOfRange => "PRICE_OUT_OF_RANGE",
            BookingError::Contention { .. } => "CONTENTION",
            BookingError::DatabaseUnavailable { .. } => "DATABASE_UNAVAILABLE",
            BookingError::Internal { .. } => "INTERNAL",
        }
    }

    /// Whether a failed creation is recorded as `creation_failed` in
    /// audit_logs. Malformed requests and unknown tours are not: they never
    /// reached a bookable tour, are the caller's bug, and would let anyone
    /// flood the audit table (and the runbook's alert) without touching a
    /// real tour. Everything else that stopped a well-formed request for a
    /// real tour is, the refusals (sold out, not active, key reused) as well
    /// as the failures; the row's `reason` lets the alert tell them apart.
    pub fn is_recorded_creation_failure(&self) -> bool {
        !matches!(self, BookingError::InvalidRequest(_) | BookingError::TourNotFound)
    }
}
