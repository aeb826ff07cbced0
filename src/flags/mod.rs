//! Feature flags, first of all the operators' kill switch
//! `use_legacy_booking_service`.
//!
//! Resolution order: environment pin > cached value > `feature_flags` row >
//! default (false: atomic path). `flags/` knows nothing of bookings.
//!
//! CONTRACT (used by booking/ and grpc/): `Flags::use_legacy_booking_service`
//! never fails and, in steady state, never queries the database.
//!
//! - `resolver`: evaluation (env pin, moka cache, database read, last known).
//! - `cache`: the moka cache, per-flag generations, the last-known store.
//! - `listener`: LISTEN `bookingd_feature_flags`, so a flip made by another
//!   process reaches this one within a second.
//! - `changes`: SetFlag (one transaction with its audit row) and the history.
//! - `store`: the SQL. `registry`: the flags bookingd knows.

mod cache;
mod changes;
mod error;
mod listener;
mod registry;
mod resolver;
mod store;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

pub use error::FlagError;
pub use listener::NOTIFY_CHANNEL;
pub use registry::{FlagDefinition, KNOWN_FLAGS, definition};

/// Key of the booking-path kill switch (the runbook's USE_LEGACY_BOOKING_SERVICE).
pub const USE_LEGACY_BOOKING_SERVICE: &str = "use_legacy_booking_service";

/// Where a flag's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagSource {
    /// Pinned by an environment variable; SetFlag refuses to change it.
    Environment,
    /// Read from the `feature_flags` row (possibly through the cache).
    Database,
    /// No row and no pin.
    Default,
    /// The database could not be read; this is the last value seen.
    LastKnown,
}

impl FlagSource {
    /// The name used in spans and logs (`feature_flag.source`).
    pub fn as_str(self) -> &'static str {
        match self {
            FlagSource::Environment => "environment",
            FlagSource::Database => "database",
            FlagSource::Default => "default",
            FlagSource::LastKnown => "last_known",
        }
    }
}

/// One evaluation of a flag.
#[derive(Debug, Clone)]
pub struct FlagValue {
    pub key: &'static str,
    pub enabled: bool,
    pub source: FlagSource,
    /// True when no database query was needed for this evaluation.
    pub from_cache: bool,
    /// Age of the value that answered.
    pub age: Duration,
}

/// A flag as GetFlag reports it: the evaluation plus who last wrote the row.
#[derive(Debug, Clone)]
pub struct FlagState {
    pub value: FlagValue,
    /// From the `feature_flags` row; `None` when the value is pinned or defaulted.
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub id: i64,
    pub key: String,
    pub old_value: bool,
    pub new_value: bool,
    pub changed_by: String,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

/// The result of a SetFlag.
#[derive(Debug, Clone)]
pub struct FlagChanged {
    pub flag: FlagState,
    pub previous: bool,
    pub change: FlagChange,
}

/// One page of the audit trail, newest first.
#[derive(Debug, Clone)]
pub struct ChangesPage {
    pub changes: Vec<FlagChange>,
    /// Present when older changes remain.
    pub next_page_token: Option<String>,
}

/// Flag resolver shared by every request. Cheap to clone: every clone shares
/// one cache, so a SetFlag through one is seen by all at once.
#[derive(Clone)]
pub struct Flags {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// `(key, value)` of flags pinned by their environment variable.
    pins: Vec<(&'static str, bool)>,
    cache: cache::FlagCache,
    /// Database reads made to evaluate flags (for tests and diagnostics).
    reads: AtomicU64,
    /// The last read failed; reset by the next successful one (log once per outage).
    store_unreachable: AtomicBool,
    page_keys: crate::page::PageKeys,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("pins", &self.inner.pins)
            .field("cached", &self.inner.cache.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl Flags {
    /// `env_pin` is `USE_LEGACY_BOOKING_SERVICE` from the environment
    /// (`Settings::use_legacy_booking_service`); `cache_ttl` bounds how long a
    /// value is trusted when no notification arrives
    /// (`Settings::flag_cache_ttl()`). Run [`Flags::listen`] in the background
    /// to hear other processes' flips.
    pub fn new(pool: PgPool, env_pin: Option<bool>, cache_ttl: Duration) -> Self {
        let pins = env_pin.map(|value| (USE_LEGACY_BOOKING_SERVICE, value)).into_iter().collect();
        Flags {
            inner: Arc::new(Inner {
                page_keys: crate::page::PageKeys::new(pool.clone()),
                pool,
                pins,
                cache: cache::FlagCache::new(cache_ttl),
                reads: AtomicU64::new(0),
                store_unreachable: AtomicBool::new(false),
            }),
        }
    }

    /// The booking path to use: true = legacy.
    pub async fn use_legacy_booking_service(&self) -> FlagValue {
        let flag = definition(USE_LEGACY_BOOKING_SERVICE).expect("the booking-path flag is in the registry");
        self.resolve(flag).await.value
    }

    /// Evaluates any known flag; never touches the database on a cache hit.
    pub async fn evaluate(&self, key: &str) -> Result<FlagValue, FlagError> {
        Ok(self.resolve(known(key)?).await.value)
    }

    /// What GetFlag reports: the evaluation, with the row's last writer.
    pub async fn describe(&self, key: &str) -> Result<FlagState, FlagError> {
        Ok(self.resolve(known(key)?).await)
    }

    /// How many times this resolver has read a flag from the database.
    pub fn database_reads(&self) -> u64 {
        self.inner.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn pin(&self, flag: &FlagDefinition) -> Option<bool> {
        self.inner.pins.iter().find(|(key, _)| *key == flag.key).map(|(_, value)| *value)
    }
}

fn known(key: &str) -> Result<&'static FlagDefinition, FlagError> {
    definition(key).ok_or_else(|| FlagError::UnknownFlag { key: key.to_owned() })
}
