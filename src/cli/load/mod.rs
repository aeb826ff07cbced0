//! The load generator behind `bookingctl bench` and `bookingctl soak`: a
//! thin client over the generated BookingService stubs, in its own process
//! so it never shares a runtime (or a profile) with the server it measures.
//!
//! A fixed number of callers each run one booking after another for a fixed
//! time: create, or create then cancel (which gives the seats back, so a
//! long run never sells a tour out). Latency goes into HDR histograms (µs)
//! per reporting interval; every call's gRPC code is counted.

pub mod procfs;
mod report;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::{Code, service::interceptor::InterceptedService, transport::Channel};

pub use report::{IntervalReport, LoadReport, ServerCpu};

use super::Bearer;
use crate::proto::v1::{
    CancelBookingRequest, CodePath, CreateBookingRequest, ListToursRequest,
    booking_service_client::BookingServiceClient,
};

/// What one caller does per booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// CreateBooking only (tours fill up: give them room).
    Create,
    /// CreateBooking then CancelBooking of the booking it made.
    CreateCancel,
}

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub concurrency: usize,
    /// HTTP/2 connections the callers share (round robin).
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Width of one reporting interval (the whole run for `bench`).
    pub interval: Duration,
    pub workload: Workload,
    pub tours: Vec<String>,
    pub seats: i32,
    /// Deadline of each call.
    pub call_timeout: Duration,
}

/// One histogram per interval and the call counts.
#[derive(Debug)]
struct Interval {
    latency_us: Histogram<u64>,
    bookings: u64,
    calls: BTreeMap<(&'static str, i32), u64>,
    served_by: BTreeMap<&'static str, u64>,
}

impl Interval {
    fn new() -> Self {
        Interval {
            // 1 µs .. 10 min at 3 significant digits
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds"),
            bookings: 0,
            calls: BTreeMap::new(),
            served_by: BTreeMap::new(),
        }
    }

    fn add(&mut self, other: &Interval) {
        self.latency_us.add(&other.latency_us).expect("histograms with the same bounds");
        self.bookings += other.bookings;
        for (key, n) in &other.calls {
            *self.calls.entry(*key).or_default() += n;
        }
        for (key, n) in &other.served_by {
            *self.served_by.entry(key).or_default() += n;
        }
    }
}

/// The result of one booking attempt as the caller saw it.
struct Outcome {
    calls: Vec<(&'static str, Code)>,
    booked: bool,
    served_by: Option<&'static str>,
}

pub type LoadClient = BookingServiceClient<InterceptedService<Channel, Bearer>>;

/// Shared between the callers and whoever watches the run (soak's reporter).
pub struct Recorder {
    measure_from: Instant,
    interval: Duration,
    duration: Duration,
    intervals: Mutex<Vec<Interval>>,
}

impl Recorder {
    fn new(plan: &LoadPlan) -> Self {
        Recorder {
            measure_from: Instant::now() + plan.warmup,
            interval: plan.interval.max(Duration::from_millis(1)),
            duration: plan.duration,
            intervals: Mutex::new(Vec::new()),
        }
    }

    /// Counts a booking by the time it started; warm-up is not counted.
    fn record(&self, began: Instant, latency: Duration, outcome: Outcome) {
        let Some(since) = began.checked_duration_since(self.measure_from) else { return };
        let index = (since.as_nanos() / self.interval.as_nanos()) as usize;
        let mut intervals = self.intervals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while intervals.len() <= index {
            intervals.push(Interval::new());
        }
        let slot = &mut intervals[index];
        for call in outcome.calls {
            *slot.calls.entry((call.0, call.1 as i32)).or_default() += 1;
        }
        if outcome.booked {
            slot.bookings += 1;
            slot.latency_us.saturating_record(latency.as_micros().max(1) as u64);
        }
        if let Some(path) = outcome.served_by {
            *slot.served_by.entry(path).or_default() += 1;
        }
    }

    /// The report of interval `index` as recorded so far.
    pub fn interval_report(&self, index: usize) -> Option<IntervalReport> {
        let intervals = self.intervals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        intervals.get(index).map(|i| report::interval(index, self.interval, self.duration, i))
    }

    pub fn measuring_since(&self) -> Instant {
        self.measure_from
    }
}

/// A load run in progress: the callers are already calling.
pub struct Run {
    recorder: Arc<Recorder>,
    callers: tokio::task::JoinSet<()>,
    end: Instant,
    plan: LoadPlan,
}

/// Starts the callers (spread round robin over `channels`).
pub fn start(plan: &LoadPlan, channels: &[Channel], credential: Bearer) -> Run {
    assert!(!plan.tours.is_empty() && !channels.is_empty() && plan.concurrency > 0, "validated by the command");
    let recorder = Arc::new(Recorder::new(plan));
    let tours: Arc<Vec<String>> = Arc::new(plan.tours.clone());
    let end = recorder.measure_from + plan.duration;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..plan.concurrency {
        let mut client =
            BookingServiceClient::with_interceptor(channels[caller % channels.len()].clone(), credential.clone());
        let (recorder, tours, plan) = (recorder.clone(), tours.clone(), plan.clone());
        callers.spawn(async move {
            // callers start on different tours and step by the caller count,
            // so a spread run touches every tour evenly
            let mut next = caller;
            while Instant::now() < end {
                let tour_id = &tours[next % tours.len()];
                next += plan.concurrency;
                let began = Instant::now();
                let outcome = one_booking(&mut client, &plan, tour_id).await;
                recorder.record(began, began.elapsed(), outcome);
            }
        });
    }
    Run { recorder, callers, end, plan: plan.clone() }
}

impl Run {
    pub fn recorder(&self) -> Arc<Recorder> {
        self.recorder.clone()
    }

    /// Waits for the end of the run. `at_boundary` is called when
    /// measurement starts (after warm-up) and when it ends, for sampling the
    /// server's CPU over exactly the measured window.
    pub async fn finish(mut self, mut at_boundary: impl FnMut()) -> LoadReport {
        tokio::time::sleep_until(self.recorder.measure_from.into()).await;
        let cpu_before = procfs::own_cpu();
        at_boundary();
        tokio::time::sleep_until(self.end.into()).await;
        at_boundary();
        let cpu_after = procfs::own_cpu();
        let measured = self.recorder.measure_from.elapsed().min(self.plan.duration);
        // bookings started before the end still count: wait for them
        while self.callers.join_next().await.is_some() {}

        let intervals =
            std::mem::take(&mut *self.recorder.intervals.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let mut total = Interval::new();
        for interval in &intervals {
            total.add(interval);
        }
        let client_cpu = cpu_before.zip(cpu_after).map(|(before, after)| after.saturating_sub(before));
        report::total(&self.plan, measured, &total, &intervals, client_cpu)
    }
}

async fn one_booking(client: &mut LoadClient, plan: &LoadPlan, tour_id: &str) -> Outcome {
    let mut request = tonic::Request::new(CreateBookingRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        tour_id: tour_id.to_owned(),
        num_adults: plan.seats,
        num_children: 0,
        customer_name: "Load Test".into(),
        customer_email: "load@example.com".into(),
        ..Default::default()
    });
    request.set_timeout(plan.call_timeout);
    let created = match client.create_booking(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            return Outcome { calls: vec![("CreateBooking", status.code())], booked: false, served_by: None };
        }
    };
    let Some(booking) = created.booking else {
        return Outcome { calls: vec![("CreateBooking", Code::Internal)], booked: false, served_by: None };
    };
    let served_by = match booking.code_path() {
        CodePath::Atomic => "atomic",
        CodePath::Legacy => "legacy",
        CodePath::Unspecified => "unspecified",
    };
    let mut calls = vec![("CreateBooking", Code::Ok)];
    if plan.workload == Workload::CreateCancel {
        let mut cancel =
            tonic::Request::new(CancelBookingRequest { booking_id: booking.id, reason: "load test".into() });
        cancel.set_timeout(plan.call_timeout);
        let code = match client.cancel_booking(cancel).await {
            Ok(_) => Code::Ok,
            Err(status) => status.code(),
        };
        calls.push(("CancelBooking", code));
        if code != Code::Ok {
            return Outcome { calls, booked: false, served_by: Some(served_by) };
        }
    }
    Outcome { calls, booked: true, served_by: Some(served_by) }
}

/// Bookable tours with room for a run, most room first: ListTours pages
/// (`only_available`), dated, active.
pub async fn pick_tours(
    channel: Channel,
    credential: Bearer,
    count: usize,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut client = BookingServiceClient::with_interceptor(channel, credential);
    let mut found = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_tours(ListToursRequest { only_available: true, page_size: 100, page_token, ..Default::default() })
            .await?
            .into_inner();
        found.extend(
            page.tours
                .into_iter()
                .filter(|t| t.status == "active" && !t.tour_date.is_empty())
                .map(|t| (t.available_spots, t.id)),
        );
        if page.next_page_token.is_empty() || found.len() >= count.saturating_mul(20).max(1000) {
            break;
        }
        page_token = page.next_page_token;
    }
    found.sort_by_key(|t| std::cmp::Reverse(t.0));
    Ok(found.into_iter().take(count).map(|(_, id)| id).collect())
}
