//! The hold sweeper: pending bookings whose hold lapsed become `expired` and
//! give their seats back exactly once (see `store::end_booking`). ConfirmBooking
//! checks the hold itself, so a late sweep never lets an expired hold through.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::booking::service::{Bookings, Sweep};

/// Most holds expired per tick, so one tick never runs unbounded.
const MAX_PER_TICK: usize = 1000;

/// Sweeps every `interval` until `stop` is cancelled.
pub async fn run_sweeper(bookings: Bookings, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let swept = tokio::select! {
            _ = stop.cancelled() => return,
            swept = bookings.expire_lapsed_holds(MAX_PER_TICK) => swept,
        };
        match swept {
            Ok(Sweep { expired: 0, failed: 0 }) => {}
            Ok(Sweep { expired, failed }) => {
                tracing::info!(expired, failed, "expired lapsed holds and released their seats")
            }
            Err(error) => tracing::warn!(%error, "hold sweep failed; retrying next tick"),
        }
    }
}
