//! bookingd: takes bookings for a tour marketplace and keeps its seat
//! inventory honest.
//!
//! Who owns what:
//! - [`cli`]: bookingctl's commands (parsing and rendering over the gRPC API).
//! - [`config`]: the one typed `Settings`.
//! - [`startup`]: wires everything together; `Application::build` binds and
//!   returns a handle that knows its port.
//! - [`embedded_pg`]: the private PostgreSQL of the default run and of tests.
//! - [`db`]: pool, migrations, the deployable atomic-path functions, seed.
//! - [`booking`]: bookings, both code paths, holds, journeys; the seat invariant.
//! - [`flags`]: feature flags (the booking-path kill switch); knows no bookings.
//! - [`integrity`]: the runbook's monitors as checks, run in read-only
//!   snapshots and streamed as they finish.
//! - [`admin`]: operator tools (repair, clamp, pause/resume, deploy/rollback
//!   of the atomic path); audited with the principal, SQL of its own.
//! - [`auth`]: principals and roles, the credentials standing for them, and
//!   their reloadable configuration (the access check itself is `grpc::auth`).
//! - [`backup`]: backup create/verify/restore with pg_dump and pg_restore
//!   (bookingctl only, no RPC).
//! - [`grpc`]: thin adapters from the generated services to the domains, and
//!   the single domain-error → `tonic::Status` table.
//! - [`telemetry`]: tracing subscriber and OpenTelemetry export.
//! - [`page`]: pagination for every list (sizes, signed page tokens).
//! - [`periodic`]: background work on an interval until the server stops.
//! - [`proto`]: generated code for `booking.v1`.
//! - [`reason`]: the one rule for an operator's (or caller's) reason.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod booking;
pub mod cli;
pub mod config;
pub mod db;
pub mod embedded_pg;
pub mod flags;
pub mod grpc;
pub mod integrity;
pub mod page;
pub mod periodic;
pub mod proto;
pub mod reason;
pub mod startup;
pub mod telemetry;
