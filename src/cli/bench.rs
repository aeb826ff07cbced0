//! `bookingctl bench`: drive a bookingd at a fixed concurrency for a fixed
//! time and report bookings/s, latency percentiles, the client's own CPU
//! and (when the server's processes are local) server CPU per booking.

use std::{process::ExitCode, time::Duration};

use tonic::transport::Channel;

use super::{
    Cli,
    check::parse_interval,
    load::{self, LoadPlan, LoadReport, ServerCpu, Workload, procfs},
};
use crate::proto::v1::{GetFlagRequest, SetFlagRequest};

#[derive(Debug, clap::Args)]
#[command(
    about = "Load-test a bookingd: fixed callers for a fixed time, HDR latency percentiles, CPU per booking",
    long_about = "Load-test a bookingd through its gRPC API: --concurrency callers each make one booking after \
                  another for --duration (after --warmup, which is not counted), on --tours tours (or one with \
                  --hot, or the ones named with --tour), creating only or creating and cancelling. Prints \
                  bookings/s, p50/p99/p99.9 latency per booking (HDR histogram), every call counted by gRPC \
                  status, which path served the bookings, the client's own CPU, and — when the server runs on \
                  this machine — bookingd's and PostgreSQL's CPU per booking from /proc.\n\n\
                  Bookings made by a bench are real bookings (customer \"Load Test\"); point it at a staging \
                  or benchmark database, never at production. With create-cancel every booking is cancelled \
                  again, so the tours' availability ends where it started.",
    after_long_help = "Examples:\n  \
                       bookingctl bench --concurrency 16 --duration 30s\n  \
                       bookingctl bench --hot --concurrency 64 --workload create-cancel --path legacy\n  \
                       bookingctl --addr http://10.0.0.5:50051 bench --tours 500 --json"
)]
pub struct BenchArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// Measured time, e.g. 10s, 2m.
    #[arg(long, value_parser = parse_interval, default_value = "10s")]
    pub duration: Duration,

    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// Pin the booking path for the run through SetFlag (operator token), restoring the flag afterwards;
    /// default: whatever the server's flag says.
    #[arg(long, value_enum)]
    pub path: Option<BookingPath>,
}

/// What `bench` and `soak` share: who calls, on which tours, how.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Callers making bookings at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,

    /// HTTP/2 connections the callers share [default: one per 8 callers, at most 8].
    #[arg(long)]
    pub connections: Option<usize>,

    /// Not-counted time before measuring (connections, caches, plans warm up).
    #[arg(long, value_parser = parse_warmup, default_value = "2s")]
    pub warmup: Duration,

    /// What each caller does per booking.
    #[arg(long, value_enum, default_value = "create-cancel")]
    pub workload: Workload,

    /// Spread over this many tours: the bookable ones with the most room (ListTours).
    #[arg(long, default_value_t = 100, conflicts_with_all = ["hot", "tour"])]
    pub tours: usize,

    /// Every caller on one tour (the one with the most room): the flash-sale case.
    #[arg(long)]
    pub hot: bool,

    /// Book these tours (repeat); instead of --tours/--hot.
    #[arg(long, value_name = "TOUR_ID")]
    pub tour: Vec<String>,

    /// Adults per booking.
    #[arg(long, default_value_t = 2)]
    pub seats: i32,

    /// Deadline of each call.
    #[arg(long, value_parser = parse_interval, default_value = "10s")]
    pub timeout: Duration,

    /// bookingd's pid for server CPU/RSS [default: the process listening on --addr's port, if local].
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// The PostgreSQL postmaster's pid: adds the cluster's CPU per booking (all its processes)
    /// [default: bookingd's embedded PostgreSQL when there is one].
    #[arg(long)]
    pub postgres_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BookingPath {
    Atomic,
    Legacy,
}

fn parse_warmup(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" { Ok(Duration::ZERO) } else { parse_interval(text) }
}

impl LoadArgs {
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err("--concurrency must be between 1 and 10000".into());
        }
        if self.connections == Some(0) {
            return Err("--connections must be at least 1".into());
        }
        if self.tours == 0 {
            return Err("--tours must be at least 1".into());
        }
        if !(1..=1000).contains(&self.seats) {
            return Err("--seats must be between 1 and 1000".into());
        }
        Ok(())
    }

    pub fn plan(&self, duration: Duration, interval: Duration, tours: Vec<String>) -> LoadPlan {
        LoadPlan {
            concurrency: self.concurrency,
            connections: self.connections(),
            warmup: self.warmup,
            duration,
            interval,
            workload: self.workload,
            tours,
            seats: self.seats,
            call_timeout: self.timeout,
        }
    }

    fn connections(&self) -> usize {
        self.connections.unwrap_or(self.concurrency.div_ceil(8).min(8)).min(self.concurrency)
    }

    /// The tours to book, from the flags or from ListTours.
    pub async fn tours(&self, cli: &Cli) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        if !self.tour.is_empty() {
            return Ok(self.tour.clone());
        }
        let wanted = if self.hot { 1 } else { self.tours };
        let tours = load::pick_tours(cli.channel().await?, cli.load_credential()?, wanted).await?;
        if tours.is_empty() {
            return Err("the server lists no bookable tour with seats left (use --tour to name one)".into());
        }
        if tours.len() < wanted {
            eprintln!("bookingctl: only {} bookable tours found, spreading over those", tours.len());
        }
        Ok(tours)
    }

    /// Separate connections, so callers are not all behind one HTTP/2 stream window.
    pub async fn channels(&self, cli: &Cli) -> Result<Vec<Channel>, Box<dyn std::error::Error>> {
        let mut channels = Vec::new();
        for _ in 0..self.connections() {
            channels.push(cli.channel().await?);
        }
        Ok(channels)
    }

    /// The postmaster: given, or the embedded one under bookingd.
    pub fn postgres_pid(&self, server_pid: Option<u32>) -> Option<u32> {
        self.postgres_pid.or_else(|| procfs::child_named(server_pid?, "postgres"))
    }

    /// bookingd's pid: given, or found listening on the port when the address is local.
    pub fn server_pid(&self, cli: &Cli) -> Option<u32> {
        self.server_pid.or_else(|| {
            let port = local_port(&cli.addr)?;
            procfs::pid_listening_on(port)
        })
    }
}

/// The port of `addr` when it names this machine.
pub fn local_port(addr: &str) -> Option<u16> {
    let uri: http::Uri = addr.parse().ok()?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    is_loopback_host(uri.host()?).then_some(port)
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// CPU of bookingd and of the PostgreSQL cluster, sampled at the run's two boundaries.
pub struct CpuSampler {
    server_pid: Option<u32>,
    postgres_pid: Option<u32>,
    samples: Vec<(Option<Duration>, Option<Duration>)>,
}

impl CpuSampler {
    pub fn new(server_pid: Option<u32>, postgres_pid: Option<u32>) -> Self {
        CpuSampler { server_pid, postgres_pid, samples: Vec::new() }
    }

    pub fn sample(&mut self) {
        self.samples
            .push((self.server_pid.and_then(procfs::process_cpu), self.postgres_pid.and_then(procfs::cluster_cpu)));
    }

    pub fn per_booking(&self, bookings: u64) -> Option<ServerCpu> {
        let [(server_a, pg_a), (server_b, pg_b)] = self.samples[..] else { return None };
        if bookings == 0 || (self.server_pid.is_none() && self.postgres_pid.is_none()) {
            return None;
        }
        let per = |a: Option<Duration>, b: Option<Duration>| {
            a.zip(b).map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6 / bookings as f64)
        };
        Some(ServerCpu { bookingd_us_per_booking: per(server_a, server_b), postgres_us_per_booking: per(pg_a, pg_b) })
    }
}

pub async fn run(cli: &Cli, args: &BenchArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.load.validate()?;
    let tours = args.load.tours(cli).await?;
    let channels = args.load.channels(cli).await?;
    let restore = match args.path {
        Some(path) => pin_path(cli, path).await?,
        None => None,
    };

    let plan = args.load.plan(args.duration, args.duration, tours);
    let server_pid = args.load.server_pid(cli);
    let mut cpu = CpuSampler::new(server_pid, args.load.postgres_pid(server_pid));
    let running = load::start(&plan, &channels, cli.load_credential()?);
    let mut report: LoadReport = running.finish(|| cpu.sample()).await;
    report.server_cpu = cpu.per_booking(report.bookings);

    if let Some(previous) = restore {
        set_flag(cli, previous, "bookingctl bench: restoring the flag after the run").await?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(if report.bookings > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Sets the booking-path flag for the run; returns the value to restore, if it changed.
async fn pin_path(cli: &Cli, path: BookingPath) -> Result<Option<bool>, Box<dyn std::error::Error>> {
    let legacy = path == BookingPath::Legacy;
    let mut admin = cli.admin_client().await?;
    let flag = admin.get_flag(GetFlagRequest { key: String::new() }).await?.into_inner();
    if flag.enabled == legacy {
        return Ok(None);
    }
    set_flag(cli, legacy, "bookingctl bench --path").await?;
    Ok(Some(flag.enabled))
}

async fn set_flag(cli: &Cli, legacy: bool, reason: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut admin = cli.admin_client().await?;
    let request = SetFlagRequest { key: String::new(), enabled: legacy, reason: reason.to_owned() };
    match admin.set_flag(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => Err(format!(
            "the server pins the booking path ({}); restart it without USE_LEGACY_BOOKING_SERVICE or drop --path",
            status.message()
        )
        .into()),
        Err(status) => Err(status.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_local() {
        assert_eq!(local_port("http://127.0.0.1:50051"), Some(50051));
        assert_eq!(local_port("http://localhost:7000/"), Some(7000));
        assert_eq!(local_port("http://[::1]:7001"), Some(7001));
        assert_eq!(local_port("http://10.1.2.3:50051"), None);
        assert_eq!(local_port("https://bookingd.example.com"), None);
        assert_eq!(local_port("https://localhost"), Some(443));
    }
}
