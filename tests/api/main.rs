//! The one integration-test binary: every test starts the real server on an
//! ephemeral port against its own fresh database.

mod admin;
mod backup;
mod flags;
mod foundation;
mod helpers;
mod integrity;
mod otlp_collector;
mod telemetry;
