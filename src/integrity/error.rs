//! What a caller of the integrity checks can get wrong. A check that cannot
//! run is not an error of the request: it comes back as an ERROR result and
//! the other checks carry on.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The request named checks that do not exist; nothing was run.
    #[error("unknown check(s): {}", unknown.join(", "))]
    UnknownChecks { unknown: Vec<String> },
    #[error("max_samples must not be negative (0 means the default)")]
    NegativeSampleLimit { requested: i32 },
    #[error("the watch interval must be at least {minimum:?}")]
    IntervalTooShort { requested: Duration, minimum: Duration },
}
