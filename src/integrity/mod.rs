//! The runbook's data-integrity monitors as checks that can be run on demand
//! (RunChecks) or watched (WatchChecks).
//!
//! One check = one SQL file in `sql/` + a descriptor with its threshold and
//! judgement ([`checks`]); the runner ([`runner`]) gives each check its own
//! short read-only snapshot with timeouts and streams results as they finish.
//! Knows nothing of gRPC; `grpc::integrity` converts.

pub mod checks;
pub mod error;
pub mod runner;

pub use checks::{CHECKS, Check, CheckStatus, SampleRow};
pub use error::IntegrityError;
pub use runner::{CheckReport, IntegrityRunner, RunnerSettings, Selection};
