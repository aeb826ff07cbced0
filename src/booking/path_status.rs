//! Whether the atomic path can be used right now.
//!
//! It becomes unavailable when a call to `create_booking_atomic` fails
//! because the function is gone, or when the probe finds the functions or
//! the trigger incomplete; the probe makes it available again once they are
//! redeployed. Each transition is logged and written to audit_logs once
//! (`atomic_path_unavailable` / `atomic_path_restored`).
//!
//! This is the one answer to "is the atomic path available": the booking
//! service picks its path from it, startup mirrors it into the health
//! service, and GetFlag reports [`AtomicPathStatus::current`]. A probe that
//! cannot read the catalogs changes no verdict (both paths need the database
//! anyway) but marks it unconfirmed, so GetFlag does not claim more than it
//! knows during an outage.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{booking::store, db};

/// How often the probe rereads the catalogs.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomicPathState {
    pub available: bool,
    /// Why it is unavailable (log-safe), or what brought it back.
    pub detail: String,
    pub since: DateTime<Utc>,
    /// Monotonic twin of `since`, to refuse observations older than the state.
    changed_at: Instant,
    /// Why the last probe could not confirm the verdict (the catalogs could
    /// not be read); `None` once a probe reads them again.
    pub unconfirmed: Option<String>,
}

impl AtomicPathState {
    /// Available, and confirmed by the last probe.
    pub fn confirmed_available(&self) -> bool {
        self.available && self.unconfirmed.is_none()
    }
}

/// Shared handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct AtomicPathStatus {
    sender: Arc<watch::Sender<AtomicPathState>>,
}

impl Default for AtomicPathStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl AtomicPathStatus {
    /// Starts available: the first failed call or probe says otherwise.
    pub fn new() -> Self {
        let (sender, _) = watch::channel(AtomicPathState {
            available: true,
            detail: "assumed available at start".to_owned(),
            since: Utc::now(),
            changed_at: Instant::now(),
            unconfirmed: None,
        });
        AtomicPathStatus { sender: Arc::new(sender) }
    }

    pub fn is_available(&self) -> bool {
        self.sender.borrow().available
    }

    pub fn current(&self) -> AtomicPathState {
        self.sender.borrow().clone()
    }

    /// Changes as they happen (for the health mirror).
    pub fn subscribe(&self) -> watch::Receiver<AtomicPathState> {
        self.sender.subscribe()
    }

    /// Sets availability from an observation that started at `observed_at`;
    /// true only for the caller that made the transition. An observation
    /// older than the last change is stale and ignored: a probe that read
    /// the catalogs just before a rollback committed must not undo the
    /// "unavailable" a failed call reported after it (and vice versa), or
    /// the status would flap and audit each flap.
    /// An observation that agrees with the state refreshes its detail and
    /// confirms it without notifying anyone.
    fn transition(&self, available: bool, detail: &str, observed_at: Instant) -> bool {
        self.sender.send_if_modified(|state| {
            if observed_at < state.changed_at {
                return false;
            }
            if state.available == available {
                state.unconfirmed = None;
                if state.detail != detail {
                    detail.clone_into(&mut state.detail);
                }
                return false;
            }
            *state = AtomicPathState {
                available,
                detail: detail.to_owned(),
                since: Utc::now(),
                changed_at: Instant::now(),
                unconfirmed: None,
            };
            true
        })
    }

    /// The probe could not read the catalogs: the verdict stands, unconfirmed.
    fn unconfirmed(&self, reason: String) {
        self.sender.send_if_modified(|state| {
            state.unconfirmed = Some(reason);
            false
        });
    }

    /// Marks the path unavailable; the one caller that flips it logs and
    /// audits. `observed_at`: when the failing call started.
    pub async fn mark_unavailable(&self, pool: &PgPool, detail: &str, observed_at: Instant) {
        if self.transition(false, detail, observed_at) {
            tracing::error!(detail, "atomic booking path unavailable, serving bookings through the legacy path");
            store::record_atomic_path_transition(pool, "atomic_path_unavailable", detail).await;
        }
    }

    pub async fn mark_available(&self, pool: &PgPool, detail: &str, observed_at: Instant) {
        if self.transition(true, detail, observed_at) {
            tracing::info!(detail, "atomic booking path available again");
            store::record_atomic_path_transition(pool, "atomic_path_restored", detail).await;
        }
    }

    /// Reads the catalogs once and updates the status. A database error
    /// changes nothing (the health probe reports an unreachable database).
    pub async fn probe(&self, pool: &PgPool) {
        let observed_at = Instant::now();
        match db::functions::state(pool).await {
            Ok(state) if state.complete() => {
                let detail =
                    "create_booking_atomic, restore_tour_availability and restore_availability_trigger are deployed";
                self.mark_available(pool, detail, observed_at).await;
            }
            Ok(state) => {
                let detail = format!(
                    "database functions incomplete: create_booking_atomic {}, restore_tour_availability {}, \
                     restore_availability_trigger {}",
                    present(state.atomic_function),
                    present(state.restore_function),
                    present(state.trigger)
                );
                self.mark_unavailable(pool, &detail, observed_at).await;
            }
            Err(error) => {
                tracing::debug!(%error, "atomic path probe could not read the catalogs");
                self.unconfirmed(format!("the database catalog cannot be read: {error}"));
            }
        }
    }

    /// Probes every `interval` until cancelled (the first probe runs at once).
    pub async fn run_probe(self, pool: PgPool, interval: Duration, stop: CancellationToken) {
        crate::periodic::every(interval, stop, || self.probe(&pool)).await
    }
}

fn present(yes: bool) -> &'static str {
    if yes { "present" } else { "missing" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_several_identical_marks_is_a_transition() {
        let status = AtomicPathStatus::new();
        let mut watcher = status.subscribe();

        assert!(status.transition(false, "gone", Instant::now()));
        assert!(!status.transition(false, "gone again", Instant::now()));
        assert!(watcher.has_changed().expect("sender alive"));
        // the verdict is the first one; its detail the latest observation's
        assert_eq!(watcher.borrow_and_update().detail, "gone again");
        assert!(status.transition(true, "back", Instant::now()));
        assert!(status.is_available());
    }

    #[test]
    fn an_observation_older_than_the_last_change_is_ignored() {
        let status = AtomicPathStatus::new();
        let probe_started = Instant::now();
        assert!(status.transition(false, "call failed: function missing", Instant::now()));

        // the probe read the catalogs before the failure: its "available" is stale
        assert!(!status.transition(true, "probe: deployed", probe_started));
        assert!(!status.is_available());
        assert!(status.transition(true, "probe: deployed", Instant::now()));
    }

    #[test]
    fn a_failed_probe_leaves_the_verdict_unconfirmed_until_one_succeeds() {
        let status = AtomicPathStatus::new();
        status.unconfirmed("the database catalog cannot be read".to_owned());
        assert!(status.is_available(), "the booking service keeps the last verdict");
        assert!(!status.current().confirmed_available());

        assert!(!status.transition(true, "deployed", Instant::now()), "no change of verdict, no notification");
        let state = status.current();
        assert!(state.confirmed_available());
        assert_eq!(state.detail, "deployed");
    }
}
