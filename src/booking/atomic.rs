//! The atomic path: one call to `create_booking_atomic(JSONB, UUID)`, which
//! locks the tour, re-checks the idempotency key under the lock, checks and
//! decrements availability and inserts the booking in one statement.
//!
//! The SQLSTATEs it raises are mapped to domain errors here, next to the call.

use serde_json::json;
use tracing::Instrument;

use crate::booking::{
    error::BookingError,
    prepared::{AttemptError, PreparedBooking, with_fresh_reference},
    store::{BookingRow, db_span},
    types::{Booking, Created},
};
use crate::db::error::sqlstate;

/// Why the atomic path did not produce an answer.
#[derive(Debug)]
pub enum AtomicFailure {
    /// The function is gone (the runbook's rollback ran): serve through
    /// legacy and mark the path unavailable. Carries a log-safe detail.
    PathUnavailable(String),
    /// The call raced a drop or redeploy of the function and wrote nothing;
    /// serve this request through legacy but leave the verdict to the probe.
    Interrupted(String),
    /// A real answer: a refusal or a failure.
    Refused(BookingError),
}

impl From<BookingError> for AtomicFailure {
    fn from(error: BookingError) -> Self {
        AtomicFailure::Refused(error)
    }
}

pub async fn create(pool: &sqlx::PgPool, prepared: &PreparedBooking) -> Result<Created, AtomicFailure> {
    with_fresh_reference(pool, prepared, |booking_reference| async move {
        attempt(pool, prepared, &booking_reference).await
    })
    .await
}

/// One call of the function with one reference.
async fn attempt(
    pool: &sqlx::PgPool,
    prepared: &PreparedBooking,
    booking_reference: &str,
) -> Result<Created, AttemptError<AtomicFailure>> {
    // not a persistent prepared statement: a plan cached on a connection
    // before the runbook's rollback kept pointing at the dropped function's
    // oid after a redeploy ("cache lookup failed for function")
    let called = sqlx::query_as::<_, BookingRow>("select * from create_booking_atomic($1, $2)")
        .persistent(false)
        .bind(payload(prepared, booking_reference))
        .bind(prepared.request.user_id)
        .fetch_one(pool)
        .instrument(db_span("create_booking_atomic"))
        .await;
    match called {
        Ok(row) => {
            let booking = Booking::try_from(row)?;
            // the function answers a known key with the booking it made before
            if booking.id == prepared.id {
                Ok(Created { booking, replayed: false })
            } else {
                Ok(prepared.replay(booking)?)
            }
        }
        Err(error) => Err(AttemptError::collision(&error)
            .unwrap_or_else(|| AttemptError::Failed(classify(error, prepared.request.seats.total())))),
    }
}

/// The JSONB argument: the app chooses id, reference and hold so both paths
/// produce the same booking from the same request.
fn payload(prepared: &PreparedBooking, booking_reference: &str) -> serde_json::Value {
    let request = &prepared.request;
    json!({
        "id": prepared.id.0,
        "booking_reference": booking_reference,
        "request_id": request.request_id.as_str(),
        // idempotency keys are per principal; the function scopes its lookup by it
        "created_by": request.created_by,
        "request_fingerprint": prepared.fingerprint,
        "tour_id": request.tour_id.0,
        "num_adults": request.seats.adults(),
        "num_children": request.seats.children(),
        "customer_name": request.customer_name.as_str(),
        "customer_email": request.contact.email().map(|e| e.as_str()),
        "customer_whatsapp": request.contact.whatsapp().map(|w| w.as_str()),
        "hold_expires_at": prepared.hold_expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    })
}

/// The function's SQLSTATEs (see migrations/functions/database_enhancements.sql).
fn classify(error: sqlx::Error, requested: i32) -> AtomicFailure {
    let Some(db) = error.as_database_error() else {
        return BookingError::from_db("calling create_booking_atomic", error).into();
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|pg| pg.detail())
        .map(str::to_owned)
        .unwrap_or_default();
    let refused = match code.as_str() {
        // a missing function (or signature): the runbook's rollback ran
        sqlstate::UNDEFINED_FUNCTION => return AtomicFailure::PathUnavailable(db.message().to_owned()),
        // the function was dropped between planning and execution
        "XX000" if db.message().starts_with("cache lookup failed for function") => {
            return AtomicFailure::Interrupted(db.message().to_owned());
        }
        "BK001" => BookingError::TourNotFound,
        "BK002" => BookingError::TourNotActive { status: detail },
        "BK003" => BookingError::SoldOut { seats_left: detail.parse().unwrap_or(0), requested },
        "BK004" => BookingError::TourNotBookable,
        // validation upstream makes this unreachable; if it happens the
        // function and the app disagree about what a valid request is
        "22023" => BookingError::internal("calling create_booking_atomic", error),
        _ => BookingError::from_db("calling create_booking_atomic", error),
    };
    AtomicFailure::Refused(refused)
}
