//! The flag cache: a moka cache with a TTL (the backstop), a generation per
//! flag (so a slow read that started before a flip can never win over it),
//! and a last-known store that outlives TTL eviction (the answer while the
//! database is unreachable).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use super::registry::KNOWN_FLAGS;

/// Where a value read from the database came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoredSource {
    /// The `feature_flags` row.
    Row,
    /// No row: the registry's default.
    Default,
}

/// A value as last read from (or written to) the database.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub enabled: bool,
    pub source: StoredSource,
    pub read_at: Instant,
    pub updated_at: Option<DateTime<Utc>>,
    // shared: every evaluation clones the entry out of moka
    pub updated_by: Option<Arc<str>>,
}

/// A cache entry.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub known: Known,
    /// The database could not be read when this entry was made: `known` is
    /// the last value seen before.
    pub last_known: bool,
    /// The flag's generation when the read that produced this entry began.
    pub generation: u64,
}

#[derive(Debug, Default)]
struct Slot {
    generation: AtomicU64,
    /// (generation of the read, value): kept apart from moka, which evicts on TTL.
    last_known: Mutex<Option<(u64, Known)>>,
}

pub(super) struct FlagCache {
    pub entries: moka::future::Cache<&'static str, Cached>,
    slots: HashMap<&'static str, Slot>,
}

/// Bounds for the TTL: moka refuses zero-length and absurdly long ones.
const MIN_TTL: Duration = Duration::from_millis(1);
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl FlagCache {
    pub fn new(ttl: Duration) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(KNOWN_FLAGS.len() as u64 * 2 + 8)
            .time_to_live(ttl.clamp(MIN_TTL, MAX_TTL))
            .build();
        let slots = KNOWN_FLAGS.iter().map(|flag| (flag.key, Slot::default())).collect();
        FlagCache { entries, slots }
    }

    fn slot(&self, key: &'static str) -> &Slot {
        self.slots.get(key).expect("every registry key has a slot")
    }

    pub fn generation(&self, key: &'static str) -> u64 {
        self.slot(key).generation.load(Ordering::Acquire)
    }

    /// Marks every cached entry of `key` as outdated; returns the new generation.
    pub fn bump(&self, key: &'static str) -> u64 {
        self.slot(key).generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records a value read at `generation`, unless a newer one is already known.
    pub fn remember(&self, key: &'static str, generation: u64, known: &Known) {
        let mut last = self.slot(key).last_known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.as_ref().is_none_or(|(seen, _)| *seen <= generation) {
            // a flip this instance made or heard of (NOTIFY, TTL reread)
            if last.as_ref().is_some_and(|(_, previous)| previous.enabled != known.enabled) {
                crate::telemetry::metrics::flag_flip(key, known.enabled);
            }
            *last = Some((generation, known.clone()));
        }
    }

    pub fn last_known(&self, key: &'static str) -> Option<Known> {
        let last = self.slot(key).last_known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        last.as_ref().map(|(_, known)| known.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::USE_LEGACY_BOOKING_SERVICE;

    fn known(enabled: bool) -> Known {
        Known { enabled, source: StoredSource::Row, read_at: Instant::now(), updated_at: None, updated_by: None }
    }

    #[test]
    fn a_read_that_began_before_a_flip_does_not_overwrite_the_flip() {
        let cache = FlagCache::new(Duration::from_secs(1));
        let before_flip = cache.generation(USE_LEGACY_BOOKING_SERVICE);
        let flip = cache.bump(USE_LEGACY_BOOKING_SERVICE);
        cache.remember(USE_LEGACY_BOOKING_SERVICE, flip, &known(true));

        cache.remember(USE_LEGACY_BOOKING_SERVICE, before_flip, &known(false));

        assert!(cache.last_known(USE_LEGACY_BOOKING_SERVICE).expect("known").enabled);
    }

    #[test]
    fn a_newer_read_replaces_the_last_known_value() {
        let cache = FlagCache::new(Duration::from_secs(1));
        cache.remember(USE_LEGACY_BOOKING_SERVICE, 0, &known(true));
        let later = cache.bump(USE_LEGACY_BOOKING_SERVICE);

        cache.remember(USE_LEGACY_BOOKING_SERVICE, later, &known(false));

        assert!(!cache.last_known(USE_LEGACY_BOOKING_SERVICE).expect("known").enabled);
    }

    #[test]
    fn nothing_is_known_before_the_first_read() {
        assert!(FlagCache::new(Duration::ZERO).last_known(USE_LEGACY_BOOKING_SERVICE).is_none());
    }
}
