//! bookingd's metrics, exported over OTLP when an endpoint is configured
//! (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`).
//! Without one every function here returns after one atomic load: no
//! instrument exists, nothing is allocated.
//!
//! No Prometheus endpoint in the service: the collector's `prometheus`
//! exporter (deploy/otel-collector.yaml) serves the same data for scraping,
//! and the OTLP path needs no second HTTP server in bookingd.
//!
//! # API for the domains (call sites, values are low-cardinality `&str`s)
//!
//! | call | metric | attributes |
//! |---|---|---|
//! | [`booking_outcome`]`(code_path, outcome)` | `bookingd.bookings` (counter) | `booking.code_path` = `atomic`/`legacy`, `booking.outcome` = `created`/`replayed`/`sold_out`/`refused`/`failed` |
//! | [`atomic_fallback`]`(reason)` | `bookingd.booking.fallbacks` (counter) | `booking.fallback.reason`, e.g. `function_missing` |
//! | [`flag_flip`]`(key, enabled)` | `bookingd.feature_flag.flips` (counter) | `feature_flag.key`, `feature_flag.result.value` |
//! | [`check_result`]`(name, status)` | `bookingd.integrity.check.results` (counter) | `check.name`, `check.status` = `pass`/`warn`/`fail`/`error` |
//! | [`load_shed`]`(reason)` | `bookingd.rpc.shed` (counter) | `shed.reason` = `concurrency_limit`/`tour_waiters` |
//! | [`hold_expiry_failure`]`()` | `bookingd.holds.expiry_failures` (counter) | — |
//! | (the RPC layer) | `rpc.server.duration` (histogram, ms) | `rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code` |
//! | [`sample_db_pool`] (startup) | `db.client.connection.count` (gauge, `db.client.connection.state` = `used`/`idle`), `db.client.connection.max` | `db.client.connection.pool.name` |
//!
//! Wired today: `booking::service` (`booking_outcome` once per CreateBooking
//! that reached a path, a replayed idempotency key counting as `replayed`;
//! `atomic_fallback` with `function_missing`, `interrupted` or
//! `atomic_unavailable`), `flags::cache` (`flag_flip` when a value this
//! instance reads, writes or hears of by NOTIFY differs from the last one),
//! `integrity::runner` (`check_result` as each check finishes), startup
//! (`sample_db_pool`), `grpc::limits` (`load_shed` with `concurrency_limit`)
//! and `booking::tour_gate` (`load_shed` with `tour_waiters`). Requests refused before a path was chosen (malformed
//! input) are not counted in `bookingd.bookings`.

use std::{sync::OnceLock, time::Duration};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Gauge, Histogram, Meter},
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

struct Instruments {
    bookings: Counter<u64>,
    fallbacks: Counter<u64>,
    flag_flips: Counter<u64>,
    check_results: Counter<u64>,
    rpc_duration: Histogram<f64>,
    shed: Counter<u64>,
    hold_expiry_failures: Counter<u64>,
    db_connections: Gauge<u64>,
    db_connections_max: Gauge<u64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// Creates the instruments on `meter`; the first call wins (one meter
/// provider per process).
pub(crate) fn install(meter: &Meter) {
    INSTRUMENTS.get_or_init(|| Instruments {
        bookings: meter
            .u64_counter("bookingd.bookings")
            .with_description("CreateBooking requests by the code path that served them and their outcome")
            .build(),
        fallbacks: meter
            .u64_counter("bookingd.booking.fallbacks")
            .with_description("bookings the atomic path handed to the legacy path")
            .build(),
        flag_flips: meter
            .u64_counter("bookingd.feature_flag.flips")
            .with_description("feature flag value changes seen by this instance")
            .build(),
        check_results: meter
            .u64_counter("bookingd.integrity.check.results")
            .with_description("integrity check runs by check and result")
            .build(),
        rpc_duration: meter
            .f64_histogram("rpc.server.duration")
            .with_unit("ms")
            .with_description("duration of inbound RPCs, until the last response byte")
            .with_boundaries(vec![
                1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            ])
            .build(),
        shed: meter
            .u64_counter("bookingd.rpc.shed")
            .with_description("calls refused at once with RESOURCE_EXHAUSTED instead of queueing")
            .build(),
        hold_expiry_failures: meter
            .u64_counter("bookingd.holds.expiry_failures")
            .with_description("lapsed holds the sweeper failed to expire (skipped until the next tick)")
            .build(),
        db_connections: meter
            .u64_gauge("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("database pool connections by state")
            .build(),
        db_connections_max: meter
            .u64_gauge("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("database pool size limit")
            .build(),
    });
}

/// True when metrics are exported (an OTLP metrics endpoint is configured).
pub fn enabled() -> bool {
    INSTRUMENTS.get().is_some()
}

/// One CreateBooking finished: `code_path` is `atomic` or `legacy`, `outcome`
/// one of `created`, `replayed`, `sold_out`, `refused`, `failed`.
pub fn booking_outcome(code_path: &str, outcome: &str) {
    if let Some(m) = INSTRUMENTS.get() {
        m.bookings.add(
            1,
            &[
                KeyValue::new("booking.code_path", code_path.to_owned()),
                KeyValue::new("booking.outcome", outcome.to_owned()),
            ],
        );
    }
}

/// A booking meant for the atomic path was served by the legacy path.
pub fn atomic_fallback(reason: &str) {
    if let Some(m) = INSTRUMENTS.get() {
        m.fallbacks.add(1, &[KeyValue::new("booking.fallback.reason", reason.to_owned())]);
    }
}

/// A feature flag changed value (`enabled` = the new value).
pub fn flag_flip(key: &str, enabled: bool) {
    if let Some(m) = INSTRUMENTS.get() {
        m.flag_flips.add(
            1,
            &[KeyValue::new("feature_flag.key", key.to_owned()), KeyValue::new("feature_flag.result.value", enabled)],
        );
    }
}

/// An integrity check finished with `status` (`pass`, `warn`, `fail`, `error`).
pub fn check_result(name: &str, status: &str) {
    if let Some(m) = INSTRUMENTS.get() {
        m.check_results
            .add(1, &[KeyValue::new("check.name", name.to_owned()), KeyValue::new("check.status", status.to_owned())]);
    }
}

/// A call was shed: `reason` is `concurrency_limit` (the process-wide limit)
/// or `tour_waiters` (too many callers already waiting on one tour).
pub fn load_shed(reason: &'static str) {
    if let Some(m) = INSTRUMENTS.get() {
        m.shed.add(1, &[KeyValue::new("shed.reason", reason)]);
    }
}

/// The sweeper could not expire one lapsed hold this tick.
pub fn hold_expiry_failure() {
    if let Some(m) = INSTRUMENTS.get() {
        m.hold_expiry_failures.add(1, &[]);
    }
}

pub(crate) fn rpc_server_duration(service: &str, method: &str, code: i32, elapsed: Duration) {
    if let Some(m) = INSTRUMENTS.get() {
        m.rpc_duration.record(
            elapsed.as_secs_f64() * 1e3,
            &[
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", service.to_owned()),
                KeyValue::new("rpc.method", method.to_owned()),
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }
}

/// Samples the pool's size every `interval` until `stop`; returns at once when
/// metrics are off. Spawned by startup next to the health probe.
pub async fn sample_db_pool(pool: PgPool, max_connections: u32, interval: Duration, stop: CancellationToken) {
    let Some(m) = INSTRUMENTS.get() else { return };
    let pool_name = KeyValue::new("db.client.connection.pool.name", "bookingd");
    crate::periodic::every(interval, stop, || {
        let size = u64::from(pool.size());
        let idle = pool.num_idle() as u64;
        m.db_connections.record(
            size.saturating_sub(idle),
            &[pool_name.clone(), KeyValue::new("db.client.connection.state", "used")],
        );
        m.db_connections.record(idle, &[pool_name.clone(), KeyValue::new("db.client.connection.state", "idle")]);
        m.db_connections_max.record(u64::from(max_connections), std::slice::from_ref(&pool_name));
        std::future::ready(())
    })
    .await
}
