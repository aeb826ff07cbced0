//! `bookingctl soak`: a long, bounded create+cancel load on a local bookingd
//! (the load tool of `bench`), reporting per interval, following the
//! server's memory, and checking the seat invariant at the end.

use std::{process::ExitCode, sync::Arc, time::Duration};

use tokio::time::Instant;

use tonic::service::interceptor::InterceptedService;

use super::{
    Bearer, Cli,
    bench::{CpuSampler, LoadArgs, is_loopback_host},
    check::parse_interval,
    load::{self, IntervalReport, Recorder, Workload, procfs},
    token_from_file,
};
use crate::proto::v1::{CheckStatus, RunChecksRequest, integrity_service_client::IntegrityServiceClient};

#[derive(Debug, clap::Args)]
#[command(
    about = "Soak-test a local bookingd: bounded create+cancel load, per-minute figures, RSS, invariant at the end",
    long_about = "Soak-test a bookingd on this machine (loopback addresses only): the load of `bookingctl bench` \
                  with create-cancel bookings (the tours' availability ends where it started) for --duration. \
                  Every --interval it prints calls by gRPC status, bookings/s, p50/p99 and the server's resident \
                  memory; at the end, the RSS growth after the first interval (the warm-up) and the integrity \
                  checks (the seat invariant and the runbook's monitors) through IntegrityService. The load \
                  presents the credential of `bench` (the embedded default's booking-client token); the checks \
                  that of `check` (the operator's or an auditor's token), or --check-token-file.\n\n\
                  Exit status 1 when the invariant check fails, a call came back INTERNAL or UNKNOWN, or RSS \
                  grew by more than --max-rss-growth percent after warm-up.",
    after_long_help = "Example:\n  bookingctl soak --duration 10m --concurrency 16"
)]
pub struct SoakArgs {
    #[command(flatten)]
    pub load: LoadArgs,

    /// How long to soak, e.g. 10m, 1h (at most 24h).
    #[arg(long, value_parser = parse_interval, default_value = "10m")]
    pub duration: Duration,

    /// Width of one reporting row.
    #[arg(long, value_parser = parse_interval, default_value = "1m")]
    pub interval: Duration,

    /// How often the server's RSS is sampled.
    #[arg(long, value_parser = parse_interval, default_value = "5s")]
    pub rss_every: Duration,

    /// Fail when RSS grew more than this (percent) from the end of the first interval to the end.
    #[arg(long, default_value_t = 10.0)]
    pub max_rss_growth: f64,

    /// Print the final report as one JSON object (rows are still printed as they complete).
    #[arg(long)]
    pub json: bool,

    /// File holding the token (first line) the final integrity check presents: the operator's or an
    /// auditor's, when the load runs as a booking client [default: the token of `bookingctl check`:
    /// --token, --token-file or .bookingd/admin-token].
    #[arg(long, env = "BOOKINGD_CHECK_TOKEN_FILE")]
    pub check_token_file: Option<std::path::PathBuf>,
}

pub async fn run(cli: &Cli, args: &SoakArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    args.load.validate()?;
    let uri: http::Uri = cli.addr.parse()?;
    if !uri.host().is_some_and(is_loopback_host) {
        return Err(format!("soak runs against a local bookingd only (loopback --addr), not {}", cli.addr).into());
    }
    if args.duration > Duration::from_secs(24 * 3600) {
        return Err("--duration is at most 24h".into());
    }
    if args.load.workload != Workload::CreateCancel {
        return Err("soak always cancels what it books (--workload create-cancel), so it can run for long".into());
    }
    let server_pid = args.load.server_pid(cli);
    if server_pid.is_none() {
        eprintln!("bookingctl: bookingd's process not found (give --server-pid); RSS will not be reported");
    }

    let tours = args.load.tours(cli).await?;
    let channels = args.load.channels(cli).await?;
    let plan = args.load.plan(args.duration, args.interval, tours);
    let mut cpu = CpuSampler::new(server_pid, args.load.postgres_pid(server_pid));
    let running = load::start(&plan, &channels, cli.load_credential()?);

    let rss = Arc::new(std::sync::Mutex::new(Vec::<(Duration, u64)>::new()));
    let watcher = tokio::spawn(watch(running.recorder(), server_pid, rss.clone(), args.interval, args.rss_every));
    println!("{}", row_header());
    let mut report = running.finish(|| cpu.sample()).await;
    report.server_cpu = cpu.per_booking(report.bookings);
    watcher.abort();

    let rss = rss.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let growth = rss_growth(&rss, args.interval);
    let checks = invariant(cli, args).await;

    if args.json {
        let value = serde_json::json!({
            "report": report,
            "rss_samples": rss.iter().map(|(at, bytes)| serde_json::json!([at.as_secs_f64(), bytes])).collect::<Vec<_>>(),
            "rss_growth_percent": growth,
            "checks": checks.as_ref().map(|c| c.iter().map(|(n, s)| (n.clone(), status_name(*s))).collect::<Vec<_>>()).ok(),
        });
        println!("{value}");
    } else {
        println!("--- final rows (every call counted) ---");
        for row in &report.intervals {
            println!("{}", render_row(row, rss_at(&rss, row, args.interval)));
        }
        print!("{}", report.render());
    }

    let mut healthy = true;
    let broken: u64 = report
        .calls
        .iter()
        .filter(|(call, _)| call.ends_with(" Internal") || call.ends_with(" Unknown"))
        .map(|(_, n)| n)
        .sum();
    if broken > 0 {
        println!("FAIL: {broken} calls answered INTERNAL or UNKNOWN");
        healthy = false;
    }
    match growth {
        Some(growth) => {
            let verdict = if growth > args.max_rss_growth { "FAIL" } else { "ok" };
            println!("rss growth after the first interval: {growth:+.1}% ({verdict}, limit {}%)", args.max_rss_growth);
            healthy &= growth <= args.max_rss_growth;
        }
        None => println!("rss growth: not measured (no server pid, or the run was shorter than two intervals)"),
    }
    match checks {
        Ok(checks) => {
            for (name, status) in &checks {
                println!("check {name}: {}", status_name(*status));
            }
            let invariant_ok = checks
                .iter()
                .filter(|(name, _)| INVARIANT_CHECKS.contains(&name.as_str()))
                .all(|(_, status)| *status == CheckStatus::Pass);
            println!("seat invariant: {}", if invariant_ok { "holds" } else { "VIOLATED" });
            healthy &= invariant_ok;
        }
        Err(error) => {
            println!("FAIL: the integrity checks could not be run: {error}");
            healthy = false;
        }
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn status_name(status: CheckStatus) -> &'static str {
    let name = status.as_str_name();
    name.strip_prefix("CHECK_STATUS_").unwrap_or(name)
}

/// The checks that together are the seat invariant.
const INVARIANT_CHECKS: [&str; 2] = ["availability_consistency", "negative_available_spots"];

/// Prints each row shortly after its interval ends and samples the server's RSS.
async fn watch(
    recorder: Arc<Recorder>,
    server_pid: Option<u32>,
    rss: Arc<std::sync::Mutex<Vec<(Duration, u64)>>>,
    interval: Duration,
    every: Duration,
) {
    let start = Instant::from_std(recorder.measuring_since());
    tokio::time::sleep_until(start).await;
    let mut next_row = 0usize;
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let now = start.elapsed();
        if let Some(bytes) = server_pid.and_then(procfs::rss_bytes) {
            rss.lock().unwrap_or_else(|p| p.into_inner()).push((now, bytes));
        }
        // a row is printed a second after its interval, when its calls have answered
        while now >= interval * (next_row as u32 + 1) + Duration::from_secs(1) {
            if let Some(row) = recorder.interval_report(next_row) {
                let samples = rss.lock().unwrap_or_else(|p| p.into_inner()).clone();
                println!("{}", render_row(&row, rss_at(&samples, &row, interval)));
            }
            next_row += 1;
        }
    }
}

fn row_header() -> String {
    format!(
        "{:>7} {:>9} {:>10} {:>8} {:>8} {:>9}  calls by status",
        "from min", "bookings", "per sec", "p50 ms", "p99 ms", "rss MB"
    )
}

fn render_row(row: &IntervalReport, rss: Option<u64>) -> String {
    let calls: Vec<String> = row.calls.iter().map(|(call, n)| format!("{call}={n}")).collect();
    format!(
        "{:>7.1} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>9}  {}",
        row.start_seconds / 60.0,
        row.bookings,
        row.bookings_per_sec,
        row.p50_ms,
        row.p99_ms,
        rss.map_or("-".to_owned(), |b| format!("{:.1}", b as f64 / 1_048_576.0)),
        calls.join(" ")
    )
}

/// The last RSS sample inside the row's interval.
fn rss_at(samples: &[(Duration, u64)], row: &IntervalReport, interval: Duration) -> Option<u64> {
    let end = Duration::from_secs_f64(row.start_seconds) + interval;
    samples.iter().rev().find(|(at, _)| *at <= end).map(|(_, bytes)| *bytes)
}

/// Percent growth from the last sample of the first interval to the last sample.
fn rss_growth(samples: &[(Duration, u64)], interval: Duration) -> Option<f64> {
    let baseline = samples.iter().rev().find(|(at, _)| *at <= interval)?.1;
    let (last_at, last) = *samples.last()?;
    (last_at > interval && baseline > 0).then(|| (last as f64 - baseline as f64) * 100.0 / baseline as f64)
}

/// Runs every integrity check once through IntegrityService. The checks
/// need the operator or auditor role, which the load's credential (the
/// embedded default's booking-client token) does not have.
async fn invariant(cli: &Cli, args: &SoakArgs) -> Result<Vec<(String, CheckStatus)>, Box<dyn std::error::Error>> {
    let channel = match &args.check_token_file {
        Some(path) => InterceptedService::new(cli.channel().await?, Bearer::new(&token_from_file(path)?)?),
        None => cli.authorized_channel().await?,
    };
    let mut client = IntegrityServiceClient::new(channel);
    let mut stream = client.run_checks(RunChecksRequest { checks: Vec::new(), max_samples: 5 }).await?.into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await? {
        results.push((result.name.clone(), result.status()));
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_measured_from_the_end_of_the_first_interval() {
        let minute = Duration::from_secs(60);
        let samples = [(Duration::from_secs(5), 50), (Duration::from_secs(55), 100), (Duration::from_secs(170), 108)];
        let growth = rss_growth(&samples, minute).expect("two intervals");
        assert!((growth - 8.0).abs() < 1e-9, "{growth}");
        assert_eq!(rss_growth(&samples[..2], minute), None);
    }
}
