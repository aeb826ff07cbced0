//! The one integration-test binary: every test starts the real server on an
//! ephemeral port against its own fresh database.

mod access;
mod admin;
mod backup;
mod booking_batch;
mod booking_journey;
mod booking_lifecycle;
mod booking_paths;
mod booking_storm;
mod booking_validation;
mod conventions;
mod db_errors;
mod drill_ddl;
mod drill_deadlines;
mod drill_failures;
mod drill_fuzz;
mod drill_overbooked;
mod drill_overload;
mod drill_redeploy;
mod drill_shutdown;
mod embedded_postgres;
mod fixtures;
mod flags;
mod foundation;
mod helpers;
mod idempotency;
mod integrity;
mod otlp_collector;
mod process;
mod replicas;
mod support_tools;
mod telemetry;
mod tls;
mod warm_connections;
