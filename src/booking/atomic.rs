//! The atomic path: one call to `create_booking_atomic(JSONB, UUID)`, which
//! locks the tour, re-checks the idempotency key under the lock, checks and
//! decrements availability and inserts the booking in one statement.
//!
//! The call is a cached prepared statement (one round trip, no parse per
//! booking). A statement cached before the functions were dropped and
//! redeployed can go stale ("cache lookup failed for function"); the call
//! wrote nothing then, so the connection's cached statements are dropped and
//! the call is made once more, re-prepared: a redeploy never fails a booking.
//!
//! A caller whose deadline is nearer than the session's `statement_timeout`
//! gets the call in a transaction of its own with a shorter one
//! (`db::deadline`); everyone else pays one round trip, as before.
//!
//! The SQLSTATEs it raises are mapped to domain errors here, next to the call.

use serde::Serialize;
use sqlx::{PgConnection, types::Json};
use tracing::Instrument;
use uuid::Uuid;

use crate::booking::{
    error::BookingError,
    prepared::{AttemptError, PreparedBooking, with_fresh_reference},
    store::{BookingRow, db_span},
    types::{Booking, Created},
};
use crate::db::{
    deadline,
    error::{self as db_error, sqlstate},
    warm::WarmConnections,
};

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

pub async fn create(warm: &WarmConnections, prepared: &PreparedBooking) -> Result<Created, AtomicFailure> {
    with_fresh_reference(warm.pool(), prepared, |booking_reference| async move {
        attempt(warm, prepared, &booking_reference).await
    })
    .await
}

/// One call of the function with one reference, on a warm connection.
async fn attempt(
    warm: &WarmConnections,
    prepared: &PreparedBooking,
    booking_reference: &str,
) -> Result<Created, AttemptError<AtomicFailure>> {
    let mut conn =
        warm.acquire().await.map_err(|e| BookingError::from_db("acquiring a connection for a booking", e))?;
    let called = call_on(&mut conn, prepared, booking_reference).instrument(db_span("create_booking_atomic")).await;
    conn.release_after(&called);
    outcome(prepared, called)
}

/// One call of the function on `conn`; a stale cached statement is
/// re-prepared and the call made once more. No span of its own: the caller
/// owns the booking's `db.query` span (a batch lane's caller span covers its
/// wait in the lane as well).
pub(crate) async fn call_on(
    conn: &mut PgConnection,
    prepared: &PreparedBooking,
    booking_reference: &str,
) -> Result<BookingRow, sqlx::Error> {
    let payload = Payload::new(prepared, booking_reference);
    let user_id = prepared.request.user_id;
    let called = call_by_deadline(conn, &payload, user_id).await;
    match &called {
        Err(error) if dropped_stale_statements(conn, "create_booking_atomic", error).await => {
            call_by_deadline(conn, &payload, user_id).await
        }
        _ => called,
    }
}

/// What the call's answer means for the booking.
pub(crate) fn outcome(
    prepared: &PreparedBooking,
    called: Result<BookingRow, sqlx::Error>,
) -> Result<Created, AttemptError<AtomicFailure>> {
    match called {
        Ok(row) => Ok(answer(prepared, Booking::try_from(row)?)?),
        Err(error) => Err(AttemptError::collision(&error)
            .unwrap_or_else(|| AttemptError::Failed(classify(error, prepared.request.seats.total())))),
    }
}

/// The call, alone (autocommit, one round trip) unless the caller's deadline
/// is nearer than the session's `statement_timeout`: then in a transaction
/// whose `statement_timeout` ends before the deadline, so a call the caller
/// gave up on is cancelled by the database and commits nothing.
async fn call_by_deadline(
    conn: &mut PgConnection,
    payload: &Payload<'_>,
    user_id: Option<Uuid>,
) -> Result<BookingRow, sqlx::Error> {
    let Some(limit) = deadline::statement_limit() else { return call(conn, payload, user_id).await };
    let mut tx = sqlx::Connection::begin(conn).await?;
    deadline::set_statement_timeout(&mut tx, limit).await?;
    let called = call(&mut tx, payload, user_id).await;
    deadline::finish(tx, called).await
}

async fn call(
    conn: &mut PgConnection,
    payload: &Payload<'_>,
    user_id: Option<Uuid>,
) -> Result<BookingRow, sqlx::Error> {
    sqlx::query_as::<_, BookingRow>("select * from create_booking_atomic($1, $2)")
        .bind(Json(payload))
        .bind(user_id)
        .fetch_one(conn)
        .await
}

/// When `error` says a cached statement went stale (the functions were
/// redeployed under it), drops the connection's cached statements and
/// returns true: the same call, made again, is re-prepared. Only for calls
/// that write nothing when they fail this way (one statement, autocommit).
pub(crate) async fn dropped_stale_statements(conn: &mut PgConnection, what: &'static str, error: &sqlx::Error) -> bool {
    if !db_error::is_stale_cached_statement(error) {
        return false;
    }
    tracing::info!(statement = what, %error, "cached statement went stale (functions redeployed); re-preparing");
    match sqlx::Connection::clear_cached_statements(conn).await {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "could not drop the cached statements");
            false
        }
    }
}

/// The function answers a known key with the booking it made before.
pub(crate) fn answer(prepared: &PreparedBooking, booking: Booking) -> Result<Created, BookingError> {
    if booking.id == prepared.id { Ok(Created { booking, replayed: false }) } else { prepared.replay(booking) }
}

/// The JSONB argument: the app chooses id, reference and hold length so both
/// paths produce the same booking from the same request. Serialized straight into
/// the bind buffer (no intermediate JSON value).
#[derive(Debug, Serialize)]
pub(crate) struct Payload<'a> {
    id: Uuid,
    booking_reference: &'a str,
    request_id: &'a str,
    /// Idempotency keys are per principal; the function scopes its lookup by it.
    created_by: &'a str,
    request_fingerprint: &'a str,
    tour_id: Uuid,
    num_adults: i32,
    num_children: i32,
    customer_name: &'a str,
    customer_email: Option<&'a str>,
    customer_whatsapp: Option<&'a str>,
    /// The hold's length: the function adds it to the database's clock.
    hold_seconds: f64,
    /// The same hold on the app's clock, read only by a function deployed by
    /// the previous binary (during a rolling deploy, or after a start whose
    /// refresh found `bookings` locked); the current one ignores it when
    /// `hold_seconds` is present.
    hold_expires_at: String,
    /// Read by the batch function only (the single call binds it as `$2`).
    user_id: Option<Uuid>,
}

impl<'a> Payload<'a> {
    pub(crate) fn new(prepared: &'a PreparedBooking, booking_reference: &'a str) -> Self {
        let request = &prepared.request;
        Payload {
            id: prepared.id.0,
            booking_reference,
            request_id: request.request_id.as_str(),
            created_by: &request.created_by,
            request_fingerprint: &prepared.fingerprint,
            tour_id: request.tour_id.0,
            num_adults: request.seats.adults(),
            num_children: request.seats.children(),
            customer_name: request.customer_name.as_str(),
            customer_email: request.contact.email().map(|e| e.as_str()),
            customer_whatsapp: request.contact.whatsapp().map(|w| w.as_str()),
            hold_seconds: prepared.hold_seconds(),
            hold_expires_at: prepared
                .hold_expires_at_by_app_clock()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            user_id: request.user_id,
        }
    }
}

/// The function's SQLSTATEs (see migrations/functions/database_enhancements.sql).
fn classify(error: sqlx::Error, requested: i32) -> AtomicFailure {
    let Some(db) = error.as_database_error() else {
        return BookingError::from_db("calling create_booking_atomic", error).into();
    };
    let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
    match code.as_str() {
        // a missing function (or signature): the runbook's rollback ran
        sqlstate::UNDEFINED_FUNCTION => return AtomicFailure::PathUnavailable(db.message().to_owned()),
        // still stale after re-preparing: the function was dropped between planning and execution
        _ if db_error::is_stale_cached_statement(&error) => {
            return AtomicFailure::Interrupted(db.message().to_owned());
        }
        _ => {}
    }
    let detail = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().and_then(|pg| pg.detail()).unwrap_or("");
    match refusal(&code, detail, requested) {
        Some(refused) => AtomicFailure::Refused(refused),
        None => BookingError::from_db("calling create_booking_atomic", error).into(),
    }
}

/// The refusal a SQLSTATE the function raises stands for, or None when the
/// code is not one of its answers.
pub(crate) fn refusal(code: &str, detail: &str, requested: i32) -> Option<BookingError> {
    Some(match code {
        "BK001" => BookingError::TourNotFound,
        "BK002" => BookingError::TourNotActive { status: detail.to_owned() },
        "BK003" => BookingError::SoldOut { seats_left: detail.parse().unwrap_or(0), requested },
        "BK004" => BookingError::TourNotBookable,
        // validation upstream makes this unreachable; if it happens the
        // function and the app disagree about what a valid request is
        "22023" => BookingError::internal("calling create_booking_atomic", "invalid parameter for the function"),
        _ => return None,
    })
}
