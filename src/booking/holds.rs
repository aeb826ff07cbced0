//! The hold sweeper: pending bookings whose hold lapsed become `expired` and
//! give their seats back exactly once (see `store::end_booking`). ConfirmBooking
//! checks the hold itself, so a late sweep never lets an expired hold through.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::booking::service::{Bookings, Sweep};

/// Most holds expired per tick, so one tick never runs unbounded.
const MAX_PER_TICK: usize = 1000;

/// Sweeps every `interval` until `stop` is cancelled (a sweep in progress is
/// abandoned: each hold expires in a transaction of its own).
pub async fn run_sweeper(bookings: Bookings, interval: Duration, stop: CancellationToken) {
    crate::periodic::every(interval, stop, || async {
        match bookings.expire_lapsed_holds(MAX_PER_TICK).await {
            Ok(Sweep { expired: 0, failed: 0 }) => {}
            Ok(Sweep { expired, failed }) => {
                tracing::info!(expired, failed, "expired lapsed holds and released their seats")
            }
            Err(error) => tracing::warn!(%error, "hold sweep failed; retrying next tick"),
        }
    })
    .await
}
