//! A validated request with the values the app chooses for it (id,
//! fingerprint, hold length), identical whichever path stores it, and the
//! loop both paths run around one attempt: a fresh reference on a reference
//! collision, the racing booking replayed when the request id is taken.
//!
//! Dependencies point one way: `service` → `atomic`/`legacy` → `prepared`.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::booking::{
    error::BookingError,
    reference,
    store::{self, REFERENCE_KEY, REQUEST_ID_KEY},
    types::{Booking, BookingId, BookingRequest, Created},
};

#[derive(Debug, Clone)]
pub struct PreparedBooking {
    pub id: BookingId,
    pub request: BookingRequest,
    pub fingerprint: String,
}

impl PreparedBooking {
    pub fn new(request: BookingRequest) -> Self {
        PreparedBooking { id: BookingId::new_random(), fingerprint: request.fingerprint(), request }
    }

    /// The hold's length in seconds (microsecond fractions): the database
    /// adds it to its own clock (`now()`, the booking's transaction time), the
    /// clock the sweeper compares with, so a skewed app clock cannot shorten
    /// or stretch a hold.
    pub fn hold_seconds(&self) -> f64 {
        self.request.hold.as_secs_f64()
    }

    /// The hold's end on the app's clock: only for a `create_booking_atomic`
    /// deployed by the previous binary, which reads no hold length (see
    /// `atomic::Payload`).
    pub fn hold_expires_at_by_app_clock(&self) -> DateTime<Utc> {
        let hold = chrono::Duration::from_std(self.request.hold).unwrap_or(chrono::Duration::MAX);
        Utc::now().checked_add_signed(hold).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// An earlier booking under the same key: the same request gets it back,
    /// a different one is refused.
    pub fn replay(&self, existing: Booking) -> Result<Created, BookingError> {
        if existing.request_fingerprint == self.fingerprint {
            Ok(Created { booking: existing, replayed: true })
        } else {
            Err(BookingError::IdempotencyKeyReused)
        }
    }

    /// After a unique violation on the request id: the racing transaction
    /// committed, so its booking is there to compare against.
    async fn replay_after_race(&self, pool: &PgPool) -> Result<Created, BookingError> {
        match store::booking_by_request_id(pool, &self.request.created_by, self.request.request_id.as_str()).await? {
            Some(existing) => self.replay(existing),
            None => Err(BookingError::internal("replaying a raced request", "the racing booking vanished")),
        }
    }
}

/// How one attempt that stored nothing ended. `E` is the path's own error.
#[derive(Debug)]
pub enum AttemptError<E> {
    /// The generated reference was taken: try again with a fresh one.
    ReferenceTaken,
    /// Another transaction committed this request id first: it owns the key.
    RequestIdTaken,
    Failed(E),
}

impl<E> AttemptError<E> {
    /// The collision a unique violation means, if it is one of ours.
    pub fn collision(error: &sqlx::Error) -> Option<Self> {
        match store::violated_unique_constraint(error) {
            Some(REFERENCE_KEY) => Some(AttemptError::ReferenceTaken),
            Some(REQUEST_ID_KEY) => Some(AttemptError::RequestIdTaken),
            _ => None,
        }
    }
}

impl<E: From<BookingError>> From<BookingError> for AttemptError<E> {
    fn from(error: BookingError) -> Self {
        AttemptError::Failed(error.into())
    }
}

/// Runs `attempt` with a fresh reference until one is free (at most
/// [`reference::ATTEMPTS`]); a request id taken by a racing transaction is
/// answered with that booking (or refused if the request differs).
pub async fn with_fresh_reference<E, F, Fut>(
    pool: &PgPool,
    prepared: &PreparedBooking,
    mut attempt: F,
) -> Result<Created, E>
where
    E: From<BookingError>,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<Created, AttemptError<E>>>,
{
    for _ in 0..reference::ATTEMPTS {
        match attempt(reference::generate()).await {
            Ok(created) => return Ok(created),
            Err(AttemptError::ReferenceTaken) => {
                tracing::info!("booking reference collision, retrying with a fresh one");
            }
            // the same key raced on another tour (or the other path): the
            // first one to commit owns it
            Err(AttemptError::RequestIdTaken) => return Ok(prepared.replay_after_race(pool).await?),
            Err(AttemptError::Failed(error)) => return Err(error),
        }
    }
    Err(BookingError::internal("creating a booking", "no free booking reference after several attempts").into())
}
