//! Background work on an interval until the server stops — the hold
//! sweeper, the health and atomic-path probes, the pool sampler: one loop for
//! all of them.
//!
//! The first tick runs at once; a tick that overruns delays the next one
//! rather than bunching them up. `stop` ends the loop between ticks and also
//! abandons a tick in progress, so shutdown never waits on a slow query: each
//! tick must therefore leave nothing half-done when dropped (every tick here
//! is one query or a series of single-transaction steps).

use std::{future::Future, time::Duration};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Runs `tick` every `interval` until `stop` is cancelled.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// Waits (with a deadline) until `ticks` reaches `at_least`.
    async fn until_ticked(ticks: &AtomicUsize, at_least: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while ticks.load(Ordering::SeqCst) < at_least {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("ticked in time");
    }

    #[tokio::test]
    async fn ticks_repeatedly_and_ends_when_stopped() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = ticks.clone();
        let task = tokio::spawn(every(Duration::from_millis(20), stop.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }));

        until_ticked(&ticks, 3).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("the loop ends").expect("no panic");
    }

    #[tokio::test]
    async fn a_tick_in_progress_is_abandoned_on_stop() {
        let started = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counted = started.clone();
        let task = tokio::spawn(every(Duration::from_millis(10), stop.clone(), move || {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(3600))
        }));

        until_ticked(&started, 1).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("not held by the tick").expect("no panic");
    }
}
