//! The legacy path: the atomic path's outcome in an app-side transaction
//! that uses neither `create_booking_atomic` nor the restore trigger, so it
//! keeps working after the runbook's emergency rollback.
//!
//! Unlike the runbook's "old system" it is no read-then-write: the tour row
//! is locked (`select ... for update`) before availability is read, the
//! idempotency key is re-checked under that lock, and the decrement is
//! conditional (`available_spots >= n`) as a second line of defence.
//! Checks run in the same order as the function's, so both paths refuse the
//! same request with the same error.

use sqlx::PgPool;

use crate::booking::{
    error::BookingError,
    prepared::{AttemptError, PreparedBooking, with_fresh_reference},
    pricing,
    store::{self, NewBooking},
    types::Created,
};

pub async fn create(pool: &PgPool, prepared: &PreparedBooking) -> Result<Created, BookingError> {
    with_fresh_reference(pool, prepared, |booking_reference| async move {
        attempt(pool, prepared, &booking_reference).await
    })
    .await
}

/// One transaction. Any early return drops it, which rolls it back.
async fn attempt(
    pool: &PgPool,
    prepared: &PreparedBooking,
    booking_reference: &str,
) -> Result<Created, AttemptError<BookingError>> {
    let request = &prepared.request;
    let seats = request.seats.total();
    let mut tx = pool.begin().await.map_err(|e| BookingError::from_db("starting a booking transaction", e))?;

    let tour = store::lock_tour(&mut tx, request.tour_id).await?.ok_or(BookingError::TourNotFound)?;
    if let Some(existing) =
        store::booking_by_request_id(&mut *tx, &request.created_by, request.request_id.as_str()).await?
    {
        return Ok(prepared.replay(existing)?);
    }
    if tour.is_template || tour.tour_date.is_none() {
        return Err(BookingError::TourNotBookable.into());
    }
    if tour.status != "active" {
        return Err(BookingError::TourNotActive { status: tour.status.clone() }.into());
    }
    if tour.available_spots < seats {
        return Err(BookingError::SoldOut { seats_left: tour.available_spots, requested: seats }.into());
    }

    let price = pricing::price(request.seats, &tour.tariff()).map_err(|_| BookingError::PriceOutOfRange)?;
    if !store::take_seats(&mut tx, request.tour_id, seats).await? {
        // unreachable under the row lock; refuse rather than oversell if it ever is
        tracing::error!(tour_id = %request.tour_id, "conditional seat decrement found too few seats under the lock");
        return Err(BookingError::SoldOut { seats_left: 0, requested: seats }.into());
    }

    let new = NewBooking {
        id: prepared.id,
        booking_reference,
        request_id: request.request_id.as_str(),
        created_by: &request.created_by,
        request_fingerprint: &prepared.fingerprint,
        tour: &tour,
        user_id: request.user_id,
        customer_name: request.customer_name.as_str(),
        customer_email: request.contact.email().map(|e| e.as_str()),
        customer_whatsapp: request.contact.whatsapp().map(|w| w.as_str()),
        num_adults: request.seats.adults(),
        num_children: request.seats.children(),
        subtotal_cents: price.subtotal_cents,
        commission_amount_cents: price.commission_amount_cents,
        total_amount_cents: price.total_amount_cents,
        applied_commission_rate: price.applied_commission_rate,
        hold_expires_at: prepared.hold_expires_at,
    };
    let booking = match store::insert_legacy_booking(&mut tx, &new).await {
        Ok(booking) => booking,
        Err(error) => {
            return Err(AttemptError::collision(&error)
                .unwrap_or_else(|| AttemptError::Failed(BookingError::from_db("inserting a booking", error))));
        }
    };
    tx.commit().await.map_err(|e| BookingError::from_db("committing a booking", e))?;
    Ok(Created { booking, replayed: false })
}
