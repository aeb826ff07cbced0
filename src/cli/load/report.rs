//! A load run's figures, as text for people and JSON for the benchmark
//! harness (one shape, so both read the same numbers).

use std::{collections::BTreeMap, time::Duration};

use serde::{Deserialize, Serialize};

use super::{Interval, LoadPlan, Workload};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub workload: String,
    pub concurrency: usize,
    pub tours: usize,
    pub seconds: f64,
    /// Completed bookings (created, and cancelled for create-cancel).
    pub bookings: u64,
    pub bookings_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Calls by "Method Code", e.g. "CreateBooking FailedPrecondition".
    pub calls: BTreeMap<String, u64>,
    /// Which path served the created bookings (the booking's code_path).
    pub served_by: BTreeMap<String, u64>,
    pub client_cpu_seconds: Option<f64>,
    pub client_cpu_us_per_booking: Option<f64>,
    /// Filled in by the caller when it knows the server's processes.
    pub server_cpu: Option<ServerCpu>,
    pub intervals: Vec<IntervalReport>,
}

/// Server-side CPU over the measured window, per completed booking.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerCpu {
    pub bookingd_us_per_booking: Option<f64>,
    pub postgres_us_per_booking: Option<f64>,
}

impl ServerCpu {
    pub fn total_us_per_booking(&self) -> Option<f64> {
        match (self.bookingd_us_per_booking, self.postgres_us_per_booking) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalReport {
    pub index: usize,
    pub start_seconds: f64,
    pub bookings: u64,
    pub bookings_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub calls: BTreeMap<String, u64>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn quantile_ms(interval: &Interval, q: f64) -> f64 {
    if interval.latency_us.is_empty() { f64::NAN } else { ms(interval.latency_us.value_at_quantile(q)) }
}

fn calls(interval: &Interval) -> BTreeMap<String, u64> {
    interval.calls.iter().map(|((method, code), n)| (format!("{method} {:?}", tonic::Code::from(*code)), *n)).collect()
}

/// `run` is the measured duration: the last interval may be cut short by it.
pub(super) fn interval(index: usize, width: Duration, run: Duration, interval: &Interval) -> IntervalReport {
    let start = width.as_secs_f64() * index as f64;
    let length = width.as_secs_f64().min(run.as_secs_f64() - start).max(f64::EPSILON);
    IntervalReport {
        index,
        start_seconds: start,
        bookings: interval.bookings,
        bookings_per_sec: interval.bookings as f64 / length,
        p50_ms: quantile_ms(interval, 0.5),
        p99_ms: quantile_ms(interval, 0.99),
        calls: calls(interval),
    }
}

pub(super) fn total(
    plan: &LoadPlan,
    measured: Duration,
    total: &Interval,
    intervals: &[Interval],
    client_cpu: Option<Duration>,
) -> LoadReport {
    let seconds = measured.as_secs_f64().max(f64::EPSILON);
    let per_booking = |cpu: Duration| (total.bookings > 0).then(|| cpu.as_secs_f64() * 1e6 / total.bookings as f64);
    LoadReport {
        workload: match plan.workload {
            Workload::Create => "create".into(),
            Workload::CreateCancel => "create-cancel".into(),
        },
        concurrency: plan.concurrency,
        tours: plan.tours.len(),
        seconds,
        bookings: total.bookings,
        bookings_per_sec: total.bookings as f64 / seconds,
        p50_ms: quantile_ms(total, 0.5),
        p99_ms: quantile_ms(total, 0.99),
        p999_ms: quantile_ms(total, 0.999),
        max_ms: if total.latency_us.is_empty() { f64::NAN } else { ms(total.latency_us.max()) },
        calls: calls(total),
        served_by: total.served_by.iter().map(|(path, n)| ((*path).to_owned(), *n)).collect(),
        client_cpu_seconds: client_cpu.map(|cpu| cpu.as_secs_f64()),
        client_cpu_us_per_booking: client_cpu.and_then(per_booking),
        server_cpu: None,
        intervals: intervals.iter().enumerate().map(|(i, iv)| interval(i, plan.interval, plan.duration, iv)).collect(),
    }
}

impl LoadReport {
    /// Human-readable summary (what `bookingctl bench` prints).
    pub fn render(&self) -> String {
        let mut text = format!(
            "{} bookings in {:.1}s ({}, {} callers, {} tour{}): {:.0} bookings/s\n\
             latency per booking: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n",
            self.bookings,
            self.seconds,
            self.workload,
            self.concurrency,
            self.tours,
            if self.tours == 1 { "" } else { "s" },
            self.bookings_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        );
        if let (Some(cpu), Some(per)) = (self.client_cpu_seconds, self.client_cpu_us_per_booking) {
            text.push_str(&format!("client CPU: {cpu:.2}s ({per:.0} µs per booking)\n"));
        }
        if let Some(server) = &self.server_cpu {
            let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0} µs"));
            text.push_str(&format!(
                "server CPU per booking: bookingd {}  postgresql {}  total {}\n",
                show(server.bookingd_us_per_booking),
                show(server.postgres_us_per_booking),
                show(server.total_us_per_booking()),
            ));
        }
        let served: Vec<String> = self.served_by.iter().map(|(path, n)| format!("{path} {n}")).collect();
        if !served.is_empty() {
            text.push_str(&format!("served by: {}\n", served.join(", ")));
        }
        text.push_str("calls by status:\n");
        for (call, n) in &self.calls {
            text.push_str(&format!("  {call:<40} {n:>10}\n"));
        }
        text
    }
}
