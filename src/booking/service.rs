//! The booking operations the API calls. `create` validates, asks the flag
//! which path to take, falls back to legacy when the atomic path is gone,
//! and records failures; the lifecycle operations (confirm, cancel, expire)
//! are path-independent and release seats exactly once.

use std::time::Instant;

use sqlx::PgPool;

use crate::{
    booking::{
        atomic::{self, AtomicFailure},
        batch::Batcher,
        catalog,
        error::BookingError,
        journey, legacy,
        path_status::AtomicPathStatus,
        prepared::PreparedBooking,
        store,
        tour_gate::{Admission, TourGate},
        types::{
            Booking, BookingId, BookingRequest, BookingRules, BookingStatus, Cancelled, CodePath, CreateBookingInput,
            Created, FieldProblem, JourneyPage, TourPage,
        },
    },
    db::{deadline, error::DbErrorKind, warm::WarmConnections},
    flags::Flags,
    page::PageKeys,
    reason::Reason,
    telemetry::metrics,
};

pub use crate::booking::{catalog::TourQuery, journey::JourneyQuery};

/// The booking service shared by every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Bookings {
    pool: PgPool,
    /// Connections the booking paths keep between bookings (`db::warm`).
    warm: WarmConnections,
    flags: Flags,
    rules: BookingRules,
    atomic_path: AtomicPathStatus,
    page_keys: PageKeys,
    /// Group commit for the atomic path; None: one call per booking.
    batcher: Option<Batcher>,
    /// Bounds the bookings of one tour in flight (and in the database).
    tour_gate: TourGate,
}

/// What one sweep of lapsed holds did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    pub expired: usize,
    /// Holds whose expiry failed (each logged and counted), skipped this tick.
    pub failed: usize,
}

/// Which booking GetBooking asks for.
#[derive(Debug, Clone)]
pub enum BookingKey {
    Id(String),
    Reference(String),
}

impl Bookings {
    pub fn new(
        warm: WarmConnections,
        flags: Flags,
        rules: BookingRules,
        atomic_path: AtomicPathStatus,
        batcher: Option<Batcher>,
        tour_gate: TourGate,
    ) -> Self {
        let pool = warm.pool().clone();
        Bookings { page_keys: PageKeys::new(pool.clone()), pool, warm, flags, rules, atomic_path, batcher, tour_gate }
    }

    /// Whether the atomic path is usable (for GetFlag and health).
    pub fn atomic_path_status(&self) -> &AtomicPathStatus {
        &self.atomic_path
    }

    #[tracing::instrument(
        name = "booking.create",
        skip_all,
        fields(
            booking.code_path = tracing::field::Empty,
            booking.replayed = tracing::field::Empty,
            error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        )
    )]
    pub async fn create(&self, input: CreateBookingInput) -> Result<Created, BookingError> {
        let request = BookingRequest::parse(&input, &self.rules).map_err(BookingError::InvalidRequest)?;
        let tour_id = request.tour_id;
        // read before any work: by the time an error comes back, every
        // deadline looks short
        let caller_deadline_short = deadline::is_short();
        let prepared = PreparedBooking::new(request);
        let wanted =
            if self.flags.use_legacy_booking_service().await.enabled { CodePath::Legacy } else { CodePath::Atomic };

        let (path, result) = self.create_on(wanted, &prepared).await;
        let span = tracing::Span::current();
        span.record("booking.code_path", path.as_str());
        match &result {
            Ok(created) => {
                span.record("booking.replayed", created.replayed);
                metrics::booking_outcome(path.as_str(), if created.replayed { "replayed" } else { "created" });
            }
            Err(error) => {
                // a refusal is an error on this span, with its reason
                span.record("error.type", error.reason_code());
                span.record("otel.status_code", "ERROR");
                metrics::booking_outcome(path.as_str(), outcome_of(error));
                // a caller who gave the call less time than the database's
                // own timeout and ran out of it chose that (a checkout page
                // giving up): counted, not recorded, or a burst of impatient
                // callers on one busy tour would page the runbook's
                // failure-rate monitor. The session's own timeout firing is a
                // slow database: recorded.
                let callers_choice = caller_deadline_short
                    && matches!(error, BookingError::Database(db) if db.kind == DbErrorKind::Cancelled);
                if error.is_recorded_creation_failure() && !callers_choice {
                    store::record_creation_failed(&self.pool, error.reason_code(), tour_id, path).await;
                }
                match error {
                    BookingError::Internal { .. } | BookingError::Database(_) => {
                        tracing::error!(error = %error, code_path = path.as_str(), "booking creation failed");
                    }
                    _ => tracing::debug!(reason = error.reason_code(), "booking refused"),
                }
            }
        }
        result
    }

    /// Runs the wanted path, or legacy when the atomic path is unavailable.
    /// Returns the path that actually answered (the wanted one when the tour
    /// gate refused the booking before any path ran).
    ///
    /// Every booking passes the tour gate first; a path that takes a
    /// connection per booking also waits there for one of the tour's turns in
    /// the database, so a hot tour's callers queue without a connection.
    async fn create_on(
        &self,
        wanted: CodePath,
        prepared: &PreparedBooking,
    ) -> (CodePath, Result<Created, BookingError>) {
        let tour_id = prepared.request.tour_id.0;
        let batched = wanted == CodePath::Atomic && self.batcher.is_some() && self.atomic_path.is_available();
        let admission = if batched { Admission::Batched } else { Admission::OwnConnection };
        let ticket = match self.tour_gate.admit(tour_id, admission) {
            Ok(ticket) => ticket,
            Err(busy) => return (wanted, Err(busy)),
        };
        if wanted == CodePath::Atomic {
            let reason = if self.atomic_path.is_available() {
                let called_at = Instant::now();
                let answered = match &self.batcher {
                    Some(batcher) => batcher.create(prepared).await,
                    None => match ticket.turn_in_database().await {
                        Ok(_turn) => atomic::create(&self.warm, prepared).await,
                        Err(error) => Err(AtomicFailure::Refused(error)),
                    },
                };
                match answered {
                    Ok(created) => return (CodePath::Atomic, Ok(created)),
                    Err(AtomicFailure::Refused(error)) => return (CodePath::Atomic, Err(error)),
                    // the failed call wrote nothing: serving it through legacy is safe
                    Err(AtomicFailure::PathUnavailable(detail)) => {
                        self.atomic_path.mark_unavailable(&self.pool, &detail, called_at).await;
                        "function_missing"
                    }
                    Err(AtomicFailure::Interrupted(detail)) => {
                        tracing::warn!(detail, "atomic call raced a change of the database functions");
                        "interrupted"
                    }
                }
            } else {
                "atomic_unavailable"
            };
            metrics::atomic_fallback(reason);
            tracing::info_span!("booking.fallback", from = "atomic", to = "legacy", booking.fallback.reason = reason)
                .in_scope(|| {
                    tracing::debug!("atomic path unavailable, serving through the legacy path");
                });
        }
        let answered = match ticket.turn_in_database().await {
            Ok(_turn) => legacy::create(&self.warm, prepared).await,
            Err(error) => Err(error),
        };
        (CodePath::Legacy, answered)
    }

    /// pending → confirmed. A lapsed hold is expired (seats released) in the
    /// same transaction and the confirmation refused.
    #[tracing::instrument(name = "booking.confirm", skip_all)]
    pub async fn confirm(&self, booking_id: &str) -> Result<Booking, BookingError> {
        let id = parse_booking_id(booking_id)?;
        let mut tx = self.begin().await?;
        let locked = store::lock_booking(&mut tx, id).await?.ok_or(BookingError::BookingNotFound)?;
        let booking = locked.booking;
        match booking.status {
            // a retried confirm gets the same answer
            BookingStatus::Confirmed => Ok(booking),
            BookingStatus::Expired => Err(BookingError::HoldExpired),
            BookingStatus::Cancelled => {
                Err(BookingError::InvalidTransition { from: booking.status, action: "confirm" })
            }
            BookingStatus::Pending if locked.hold_lapsed => {
                store::end_booking(&mut tx, &booking, BookingStatus::Expired, None).await?;
                commit(tx).await?;
                tracing::info!(booking_id = %id, "confirmation refused: hold expired, seats released");
                Err(BookingError::HoldExpired)
            }
            BookingStatus::Pending => {
                let confirmed = store::confirm(&mut tx, id).await?;
                commit(tx).await?;
                Ok(confirmed)
            }
        }
    }

    /// pending/confirmed → cancelled, seats back exactly once, audited as
    /// `booking_cancelled` with the calling principal in the same
    /// transaction. Cancelling an ended booking returns it unchanged with
    /// `seats_released = false` (and records nothing). On a warm connection
    /// (`db::warm`), like a booking: a cancellation is as frequent.
    #[tracing::instrument(name = "booking.cancel", skip_all)]
    pub async fn cancel(&self, booking_id: &str, reason: &str, cancelled_by: &str) -> Result<Cancelled, BookingError> {
        let id = parse_booking_id(booking_id)?;
        let reason = Reason::parse_optional(reason)?;
        let reason = reason.as_ref().map(Reason::as_str);
        let mut conn = self
            .warm
            .acquire()
            .await
            .map_err(|e| BookingError::from_db("acquiring a connection for a cancellation", e))?;
        let mut tx =
            deadline::begin_on(&mut conn).await.map_err(|e| BookingError::from_db("starting a transaction", e))?;
        let found = store::cancel(&mut tx, id, reason, cancelled_by).await?;
        commit(tx).await?;
        // only a completed call keeps the connection warm; after an error it
        // goes back to the pool, which checks it
        conn.release();
        found.ok_or(BookingError::BookingNotFound)
    }

    #[tracing::instrument(name = "booking.get", skip_all)]
    pub async fn get(&self, key: BookingKey) -> Result<Booking, BookingError> {
        let found = match key {
            BookingKey::Id(raw) => store::booking_by_id(&self.pool, parse_booking_id(&raw)?).await?,
            BookingKey::Reference(raw) => {
                store::booking_by_reference(&self.pool, &parse_booking_reference(&raw)?).await?
            }
        };
        found.ok_or(BookingError::BookingNotFound)
    }

    #[tracing::instrument(name = "booking.lookup_journey", skip_all, fields(booking.journey_fallback = tracing::field::Empty))]
    pub async fn lookup_journey(&self, query: JourneyQuery) -> Result<JourneyPage, BookingError> {
        let page = journey::lookup(&self.pool, &self.page_keys, query).await?;
        tracing::Span::current().record("booking.journey_fallback", page.used_fallback);
        Ok(page)
    }

    #[tracing::instrument(name = "booking.list_tours", skip_all)]
    pub async fn list_tours(&self, query: TourQuery) -> Result<TourPage, BookingError> {
        catalog::list(&self.pool, &self.page_keys, query).await
    }

    /// Expires up to `limit` lapsed holds, one transaction each (no lock is
    /// held across bookings, so no ordering can deadlock). A hold that fails
    /// to expire is logged, counted and skipped for the rest of the tick, so
    /// one bad row never stops the others expiring; a database that is not
    /// there ends the tick.
    #[tracing::instrument(
        name = "booking.expire_holds",
        skip_all,
        fields(booking.expired = tracing::field::Empty, booking.expiry_failures = tracing::field::Empty)
    )]
    pub async fn expire_lapsed_holds(&self, limit: usize) -> Result<Sweep, BookingError> {
        let mut sweep = Sweep::default();
        let mut failed: Vec<uuid::Uuid> = Vec::new();
        while sweep.expired + failed.len() < limit {
            let mut tx = self.begin().await?;
            let Some(booking) = store::lock_next_lapsed_hold(&mut tx, &failed).await? else { break };
            let ended = match store::end_booking(&mut tx, &booking, BookingStatus::Expired, None).await {
                Ok(_) => commit(tx).await,
                Err(error) => Err(error),
            };
            match ended {
                Ok(()) => sweep.expired += 1,
                Err(error) if matches!(&error, BookingError::Database(db) if db.kind == DbErrorKind::Unavailable) => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(booking_id = %booking.id, %error, "could not expire a lapsed hold; skipping it this tick");
                    metrics::hold_expiry_failure();
                    failed.push(booking.id.0);
                }
            }
        }
        sweep.failed = failed.len();
        let span = tracing::Span::current();
        span.record("booking.expired", sweep.expired);
        span.record("booking.expiry_failures", sweep.failed);
        Ok(sweep)
    }

    /// A transaction bounded by the caller's deadline (`db::deadline`): a
    /// confirm or cancel the caller gave up on is cancelled by the database
    /// rather than committed behind its back. The sweeper has no deadline.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, BookingError> {
        deadline::begin(&self.pool).await.map_err(|e| BookingError::from_db("starting a transaction", e))
    }
}

async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), BookingError> {
    tx.commit().await.map_err(|e| BookingError::from_db("committing", e))
}

fn invalid(field: &'static str, description: impl Into<String>) -> BookingError {
    BookingError::InvalidRequest(vec![FieldProblem::new(field, description)])
}

fn parse_booking_id(raw: &str) -> Result<BookingId, BookingError> {
    BookingId::parse("booking_id", raw).map_err(|p| BookingError::InvalidRequest(vec![p]))
}

/// References are matched case-insensitively for generated ones (read aloud,
/// typed in lower case); anything printable up to 64 characters is looked up.
fn parse_booking_reference(raw: &str) -> Result<String, BookingError> {
    if raw.is_empty() {
        return Err(invalid("booking_reference", "is required"));
    }
    if raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("booking_reference", "must be a booking reference like BK-7KX9M2QD"));
    }
    let upper = raw.to_ascii_uppercase();
    Ok(if crate::booking::reference::is_generated_shape(&upper) { upper } else { raw.to_owned() })
}

/// The `bookingd.bookings` outcome of a failed creation.
fn outcome_of(error: &BookingError) -> &'static str {
    match error {
        BookingError::SoldOut { .. } => "sold_out",
        BookingError::Internal { .. } | BookingError::Database(_) => "failed",
        _ => "refused",
    }
}
