//! The booking domain's SQL on `bookings`, `tours` (seats only) and its
//! `audit_logs` rows. Functions take a pool or a `&mut PgConnection` inside
//! the caller's transaction; the caller owns the transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use crate::booking::{
    error::BookingError,
    types::{Booking, BookingId, BookingStatus, Cancelled, CodePath, TourId},
};

pub(crate) use crate::telemetry::db_span;

/// Every column of `bookings`, in one place for every query that reads a booking.
macro_rules! booking_columns {
    () => {
        "id, booking_reference, request_id, request_fingerprint, tour_id, schedule_id, operator_id, user_id,
         customer_name, customer_email, customer_whatsapp, num_adults, num_children, subtotal,
         commission_amount, total_amount, applied_commission_rate, currency_code, booking_status,
         code_path, hold_expires_at, confirmed_at, cancelled_at, cancellation_reason,
         seats_released_at, created_at, updated_at"
    };
}
pub(crate) use booking_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BookingRow {
    id: Uuid,
    booking_reference: String,
    request_id: String,
    request_fingerprint: String,
    tour_id: Uuid,
    schedule_id: Option<Uuid>,
    operator_id: Uuid,
    user_id: Option<Uuid>,
    customer_name: String,
    customer_email: Option<String>,
    customer_whatsapp: Option<String>,
    num_adults: i32,
    num_children: i32,
    subtotal: i64,
    commission_amount: i64,
    total_amount: i64,
    applied_commission_rate: Decimal,
    currency_code: String,
    booking_status: String,
    code_path: String,
    hold_expires_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    cancelled_at: Option<DateTime<Utc>>,
    cancellation_reason: Option<String>,
    seats_released_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<BookingRow> for Booking {
    type Error = BookingError;

    fn try_from(row: BookingRow) -> Result<Self, Self::Error> {
        let status = BookingStatus::parse(&row.booking_status).ok_or_else(|| {
            BookingError::internal("reading a booking", format!("unknown status {}", row.booking_status))
        })?;
        let code_path = CodePath::parse(&row.code_path).ok_or_else(|| {
            BookingError::internal("reading a booking", format!("unknown code path {}", row.code_path))
        })?;
        Ok(Booking {
            id: BookingId(row.id),
            booking_reference: row.booking_reference,
            request_id: row.request_id,
            request_fingerprint: row.request_fingerprint,
            tour_id: TourId(row.tour_id),
            schedule_id: row.schedule_id,
            operator_id: row.operator_id,
            user_id: row.user_id,
            customer_name: row.customer_name,
            customer_email: row.customer_email,
            customer_whatsapp: row.customer_whatsapp,
            num_adults: row.num_adults,
            num_children: row.num_children,
            subtotal_cents: row.subtotal,
            commission_amount_cents: row.commission_amount,
            total_amount_cents: row.total_amount,
            applied_commission_rate: row.applied_commission_rate,
            currency_code: row.currency_code,
            status,
            code_path,
            hold_expires_at: row.hold_expires_at,
            confirmed_at: row.confirmed_at,
            cancelled_at: row.cancelled_at,
            cancellation_reason: row.cancellation_reason,
            seats_released_at: row.seats_released_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

pub(crate) use crate::db::error::violated_unique_constraint;

pub const REFERENCE_KEY: &str = "bookings_booking_reference_key";
pub const REQUEST_ID_KEY: &str = "bookings_request_id_created_by_key";

pub async fn booking_by_id(db: impl PgExecutor<'_>, id: BookingId) -> Result<Option<Booking>, BookingError> {
    sqlx::query_as::<_, BookingRow>(concat!("select ", booking_columns!(), " from bookings where id = $1"))
        .bind(id.0)
        .fetch_optional(db)
        .instrument(db_span("select booking by id"))
        .await
        .map_err(|e| BookingError::from_db("reading a booking", e))?
        .map(Booking::try_from)
        .transpose()
}

pub async fn booking_by_reference(db: impl PgExecutor<'_>, reference: &str) -> Result<Option<Booking>, BookingError> {
    sqlx::query_as::<_, BookingRow>(concat!(
        "select ",
        booking_columns!(),
        " from bookings where booking_reference = $1"
    ))
    .bind(reference)
    .fetch_optional(db)
    .instrument(db_span("select booking by reference"))
    .await
    .map_err(|e| BookingError::from_db("reading a booking", e))?
    .map(Booking::try_from)
    .transpose()
}

/// The booking `created_by` made under its idempotency key `request_id`.
pub async fn booking_by_request_id(
    db: impl PgExecutor<'_>,
    created_by: &str,
    request_id: &str,
) -> Result<Option<Booking>, BookingError> {
    sqlx::query_as::<_, BookingRow>(concat!(
        "select ",
        booking_columns!(),
        " from bookings where request_id = $1 and created_by = $2"
    ))
    .bind(request_id)
    .bind(created_by)
    .fetch_optional(db)
    .instrument(db_span("select booking by request_id"))
    .await
    .map_err(|e| BookingError::from_db("reading a booking by request_id", e))?
    .map(Booking::try_from)
    .transpose()
}

#[derive(Debug, sqlx::FromRow)]
struct LockedBookingRow {
    #[sqlx(flatten)]
    booking: BookingRow,
    hold_lapsed: bool,
}

/// A booking row locked for the rest of the transaction.
pub struct LockedBooking {
    pub booking: Booking,
    /// Pending and its hold ran out (by the database clock).
    pub hold_lapsed: bool,
}

pub async fn lock_booking(tx: &mut PgConnection, id: BookingId) -> Result<Option<LockedBooking>, BookingError> {
    let row = sqlx::query_as::<_, LockedBookingRow>(concat!(
        "select ",
        booking_columns!(),
        ", (booking_status = 'pending' and hold_expires_at <= now()) as hold_lapsed
         from bookings where id = $1 for update"
    ))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .instrument(db_span("select booking for update"))
    .await
    .map_err(|e| BookingError::from_db("locking a booking", e))?;
    row.map(|row| Ok(LockedBooking { booking: Booking::try_from(row.booking)?, hold_lapsed: row.hold_lapsed }))
        .transpose()
}

/// Locks the pending booking whose hold lapsed first, skipping rows another
/// transaction (a cancel, a confirm, another sweeper) holds.
pub async fn lock_next_lapsed_hold(tx: &mut PgConnection, skip: &[Uuid]) -> Result<Option<Booking>, BookingError> {
    sqlx::query_as::<_, BookingRow>(concat!(
        "select ",
        booking_columns!(),
        " from bookings
         where booking_status = 'pending' and hold_expires_at <= now()
           and id <> all($1)
         order by hold_expires_at
         limit 1
         for update skip locked"
    ))
    .bind(skip)
    .fetch_optional(&mut *tx)
    .instrument(db_span("select lapsed hold for update skip locked"))
    .await
    .map_err(|e| BookingError::from_db("finding lapsed holds", e))?
    .map(Booking::try_from)
    .transpose()
}

pub async fn confirm(tx: &mut PgConnection, id: BookingId) -> Result<Booking, BookingError> {
    let row = sqlx::query_as::<_, BookingRow>(concat!(
        "update bookings
            set booking_status = 'confirmed', confirmed_at = now(), updated_at = now()
          where id = $1 and booking_status = 'pending'
         returning ",
        booking_columns!()
    ))
    .bind(id.0)
    .fetch_one(&mut *tx)
    .instrument(db_span("update booking confirm"))
    .await
    .map_err(|e| BookingError::from_db("confirming a booking", e))?;
    Booking::try_from(row)
}

/// Ends a live booking (cancelled or expired) and gives its seats back,
/// exactly once, in the caller's transaction (which holds the row lock).
///
/// The status update fires `restore_availability_trigger` when it exists;
/// the trigger restores the seats and sets `seats_released_at`. When the
/// trigger is absent (the runbook's rollback ran) `seats_released_at` comes
/// back null and the seats are restored here. Either way one mechanism does
/// it, whichever path created the booking.
pub async fn end_booking(
    tx: &mut PgConnection,
    booking: &Booking,
    status: BookingStatus,
    cancellation_reason: Option<&str>,
) -> Result<Booking, BookingError> {
    debug_assert!(matches!(status, BookingStatus::Cancelled | BookingStatus::Expired));
    let row = sqlx::query_as::<_, BookingRow>(concat!(
        "update bookings
            set booking_status = $2,
                cancelled_at = case when $2 = 'cancelled' then now() else cancelled_at end,
                cancellation_reason = coalesce($3, cancellation_reason),
                updated_at = now()
          where id = $1 and booking_status in ('pending', 'confirmed')
         returning ",
        booking_columns!()
    ))
    .bind(booking.id.0)
    .bind(status.as_str())
    .bind(cancellation_reason)
    .fetch_one(&mut *tx)
    .instrument(db_span("update booking end"))
    .await
    .map_err(|e| BookingError::from_db("ending a booking", e))?;
    release_seats_unless_released(tx, Booking::try_from(row)?).await
}

/// The seats of `ended` (just ended in the caller's transaction) back to its
/// tour, unless `restore_availability_trigger` already gave them back (it
/// sets `seats_released_at`). When the trigger is absent (the runbook's
/// rollback ran) they are restored here, and the row marked, so nothing
/// releases them twice. An overbooked tour's excess is paid down first (as
/// the trigger does).
async fn release_seats_unless_released(tx: &mut PgConnection, ended: Booking) -> Result<Booking, BookingError> {
    if ended.seats_released_at.is_some() {
        return Ok(ended);
    }
    sqlx::query(
        "update tours
            set available_spots = available_spots + greatest(0, $2 - overbooked_seats),
                overbooked_seats = greatest(0, overbooked_seats - $2),
                updated_at = now()
          where id = $1",
    )
    .bind(ended.tour_id.0)
    .bind(ended.seats())
    .execute(&mut *tx)
    .instrument(db_span("update tours release seats"))
    .await
    .map_err(|e| BookingError::from_db("releasing seats", e))?;
    let row = sqlx::query_as::<_, BookingRow>(concat!(
        "update bookings set seats_released_at = now() where id = $1 and seats_released_at is null returning ",
        booking_columns!()
    ))
    .bind(ended.id.0)
    .fetch_one(&mut *tx)
    .instrument(db_span("update booking seats_released_at"))
    .await
    .map_err(|e| BookingError::from_db("marking seats released", e))?;
    sqlx::query(
        "insert into audit_logs (table_name, record_id, action, details)
         values ('bookings', $1, 'spots_restored',
                 jsonb_build_object('tour_id', $2::uuid, 'seats', $3::int, 'released_by', 'application'))",
    )
    .bind(ended.id.0)
    .bind(ended.tour_id.0)
    .bind(ended.seats())
    .execute(&mut *tx)
    .instrument(db_span("insert audit_logs spots_restored"))
    .await
    .map_err(|e| BookingError::from_db("auditing released seats", e))?;
    Booking::try_from(row)
}

#[derive(Debug, sqlx::FromRow)]
struct CancelRow {
    #[sqlx(flatten)]
    booking: BookingRow,
    cancelled_now: bool,
}

/// Cancels a live booking and audits it as `booking_cancelled` (who
/// cancelled: the principal's name, never a token; why; ids only, no personal
/// data) in one statement, in the caller's transaction; an ended booking is
/// returned as it is (locked, so the answer is its latest state) with
/// `seats_released = false`. None: no such booking.
///
/// One statement rather than lock, update, audit: the status update fires
/// `restore_availability_trigger`, which locks the tour's row until the
/// transaction ends, so every round trip after it holds up that tour's
/// bookings. Only when the trigger is absent does the release take more
/// statements ([`release_seats_unless_released`]).
pub async fn cancel(
    tx: &mut PgConnection,
    id: BookingId,
    reason: Option<&str>,
    cancelled_by: &str,
) -> Result<Option<Cancelled>, BookingError> {
    let row = sqlx::query_as::<_, CancelRow>(concat!(
        "with ended as (
             update bookings
                set booking_status = 'cancelled', cancelled_at = now(),
                    cancellation_reason = coalesce($2, cancellation_reason), updated_at = now()
              where id = $1 and booking_status in ('pending', 'confirmed')
          returning ",
        booking_columns!(),
        "), audited as (
             insert into audit_logs (table_name, record_id, action, actor, details)
             select 'bookings', id, 'booking_cancelled', $3,
                    jsonb_build_object('tour_id', tour_id, 'seats', num_adults + num_children, 'reason', $2::text)
               from ended
         ), unchanged as (
             select ",
        booking_columns!(),
        " from bookings where id = $1 and not exists (select from ended) for update
         )
         select true as cancelled_now, ",
        booking_columns!(),
        " from ended
         union all
         select false, ",
        booking_columns!(),
        " from unchanged"
    ))
    .bind(id.0)
    .bind(reason)
    .bind(cancelled_by)
    .fetch_optional(&mut *tx)
    .instrument(db_span("update booking cancel"))
    .await
    .map_err(|e| BookingError::from_db("cancelling a booking", e))?;
    let Some(row) = row else { return Ok(None) };
    let booking = Booking::try_from(row.booking)?;
    if !row.cancelled_now {
        return Ok(Some(Cancelled { booking, seats_released: false }));
    }
    let booking = release_seats_unless_released(tx, booking).await?;
    Ok(Some(Cancelled { booking, seats_released: true }))
}

/// `creation_failed` for the runbook's alert: a reason code, the tour and
/// the path, never personal data. Written outside the failed transaction;
/// a failure to write it is logged and does not replace the real error.
pub async fn record_creation_failed(pool: &PgPool, reason: &'static str, tour_id: TourId, code_path: CodePath) {
    let written = sqlx::query(
        "insert into audit_logs (table_name, action, details)
         values ('bookings', 'creation_failed',
                 jsonb_build_object('reason', $1::text, 'tour_id', $2::uuid, 'code_path', $3::text))",
    )
    .bind(reason)
    .bind(tour_id.0)
    .bind(code_path.as_str())
    .execute(pool)
    .instrument(db_span("insert audit_logs creation_failed"))
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, reason, "could not record creation_failed in audit_logs");
    }
}

/// `atomic_path_unavailable` / `atomic_path_restored`, once per transition.
pub async fn record_atomic_path_transition(pool: &PgPool, action: &'static str, detail: &str) {
    let written = sqlx::query(
        "insert into audit_logs (table_name, action, actor, details)
         values ('database_functions', $1, 'bookingd', jsonb_build_object('detail', $2::text))",
    )
    .bind(action)
    .bind(detail)
    .execute(pool)
    .instrument(db_span("insert audit_logs atomic path"))
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, action, "could not record the atomic path transition in audit_logs");
    }
}
