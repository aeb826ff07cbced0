//! The legacy path: the atomic path's outcome in app-side SQL that uses
//! neither `create_booking_atomic` nor the restore trigger, so it keeps
//! working after the runbook's emergency rollback.
//!
//! Unlike the runbook's "old system" it is no read-then-write, and it is one
//! statement (`sql/legacy_create.sql`): the tour row is locked before
//! availability is read, the idempotency key is checked, the decrement is
//! conditional (`available_spots >= n`) on the locked row and the insert is
//! priced from it. One round trip, and no lock held across a client round
//! trip. Checks run in the same order as the function's, so both paths
//! refuse the same request with the same error.

use sqlx::{
    FromRow, PgConnection, Postgres, Row,
    postgres::{PgArguments, PgRow},
    query::QueryAs,
};
use tracing::Instrument;

use crate::booking::{
    error::BookingError,
    prepared::{AttemptError, PreparedBooking, with_fresh_reference},
    store::{BookingRow, db_span},
    types::{Booking, Created},
};
use crate::db::{deadline, error::sqlstate, warm::WarmConnections};

pub async fn create(warm: &WarmConnections, prepared: &PreparedBooking) -> Result<Created, BookingError> {
    with_fresh_reference(warm.pool(), prepared, |booking_reference| async move {
        attempt(warm, prepared, &booking_reference).await
    })
    .await
}

/// What the statement answered for an existing tour.
enum Outcome {
    Booked(BookingRow),
    Existing(BookingRow),
    Refused { status: String, seats_left: i32, bookable: bool },
}

impl FromRow<'_, PgRow> for Outcome {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let outcome: Option<String> = row.try_get("outcome")?;
        Ok(match outcome.as_deref() {
            Some("booked") => Outcome::Booked(BookingRow::from_row(row)?),
            Some("existing") => Outcome::Existing(BookingRow::from_row(row)?),
            _ => Outcome::Refused {
                status: row.try_get("tour_status")?,
                seats_left: row.try_get("tour_seats")?,
                bookable: row.try_get("tour_bookable")?,
            },
        })
    }
}

/// The statement alone (autocommit, one round trip) unless the caller's
/// deadline is nearer than the session's `statement_timeout`: then in a
/// transaction whose `statement_timeout` ends before the deadline, so a call
/// the caller gave up on is cancelled by the database and commits nothing.
async fn run_by_deadline(
    conn: &mut PgConnection,
    query: QueryAs<'_, Postgres, Outcome, PgArguments>,
) -> Result<Option<Outcome>, sqlx::Error> {
    let Some(limit) = deadline::statement_limit() else { return query.fetch_optional(conn).await };
    let mut tx = sqlx::Connection::begin(conn).await?;
    deadline::set_statement_timeout(&mut tx, limit).await?;
    let answered = query.fetch_optional(&mut *tx).await;
    deadline::finish(tx, answered).await
}

/// One statement (autocommit). A failure writes nothing.
async fn attempt(
    warm: &WarmConnections,
    prepared: &PreparedBooking,
    booking_reference: &str,
) -> Result<Created, AttemptError<BookingError>> {
    let request = &prepared.request;
    let seats = request.seats.total();
    let query = sqlx::query_as::<_, Outcome>(include_str!("sql/legacy_create.sql"))
        .bind(request.tour_id.0)
        .bind(request.request_id.as_str())
        .bind(seats)
        .bind(request.seats.adults())
        .bind(request.seats.children())
        .bind(prepared.id.0)
        .bind(booking_reference)
        .bind(&prepared.fingerprint)
        .bind(request.user_id)
        .bind(request.customer_name.as_str())
        .bind(request.contact.email().map(|e| e.as_str()))
        .bind(request.contact.whatsapp().map(|w| w.as_str()))
        .bind(prepared.hold_seconds())
        .bind(&request.created_by);
    let answered = async {
        let mut conn = warm.acquire().await?;
        let answered = run_by_deadline(&mut conn, query).await;
        conn.release_after(&answered);
        answered
    }
    .instrument(db_span("legacy create booking"))
    .await;
    let outcome = match answered {
        Ok(outcome) => outcome.ok_or(BookingError::TourNotFound)?,
        Err(error) => {
            return Err(AttemptError::collision(&error).unwrap_or_else(|| {
                AttemptError::Failed(if crate::db::error::has_sqlstate(&error, sqlstate::NUMERIC_VALUE_OUT_OF_RANGE) {
                    BookingError::PriceOutOfRange
                } else {
                    BookingError::from_db("creating a booking", error)
                })
            }));
        }
    };
    match outcome {
        Outcome::Booked(row) => Ok(Created { booking: Booking::try_from(row)?, replayed: false }),
        Outcome::Existing(row) => Ok(prepared.replay(Booking::try_from(row)?)?),
        Outcome::Refused { bookable: false, .. } => Err(BookingError::TourNotBookable.into()),
        Outcome::Refused { status, .. } if status != "active" => Err(BookingError::TourNotActive { status }.into()),
        Outcome::Refused { seats_left, .. } => Err(BookingError::SoldOut { seats_left, requested: seats }.into()),
    }
}
