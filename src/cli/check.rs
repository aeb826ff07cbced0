//! `bookingctl check`: runs (or watches) the integrity checks and renders the
//! results as they stream in.

use std::{process::ExitCode, time::Duration};

use crate::{
    grpc::integrity::struct_to_json,
    integrity::CHECKS,
    proto::v1::{
        CheckResult, CheckStatus, RunChecksRequest, WatchChecksRequest,
        integrity_service_client::IntegrityServiceClient,
    },
};

use super::Cli;

#[derive(Debug, clap::Args)]
#[command(
    about = "Run the data-integrity checks (the runbook's monitors) and report each as it finishes",
    long_about = "Run the data-integrity checks (the runbook's monitors) on the server's database and print \
                  one line per check as each finishes. Each check runs in its own short read-only snapshot with \
                  a statement timeout, so running them while bookings flow is safe.\n\n\
                  Statuses: PASS (as it should be), WARN (worth a look), FAIL (a violation: the sample rows \
                  name the culprits), ERROR (the check itself could not run, e.g. it timed out).\n\n\
                  Exit status: 0 when no check FAILed or ERRORed, 1 otherwise (also when the checks could not \
                  be run at all), so `bookingctl check` can gate a deployment or page from cron. With --watch, \
                  the exit status (after Ctrl-C) reflects the most recent round.",
    after_long_help = manual()
)]
pub struct CheckArgs {
    /// Run only this check (repeat for several); default: every check.
    #[arg(long = "check", short = 'c', value_name = "NAME")]
    pub checks: Vec<String>,

    /// Print one JSON object per result (one per line) instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Rerun the checks every --interval until interrupted (Ctrl-C).
    #[arg(long)]
    pub watch: bool,

    /// Time between watch rounds, e.g. 30s, 5m, 1h, 1500ms (at least 1s).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, default_value = "60s")]
    pub interval: Duration,

    /// Sample violations per check (at most 100); the table shows them under WARN/FAIL lines.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_samples: i32,
}

/// The per-check part of the manual, from the same catalogue the server runs.
fn manual() -> String {
    let mut text = String::from("Checks:\n");
    for check in CHECKS {
        text.push_str(&format!(
            "  {}\n      {}.\n      Threshold: {}.\n",
            check.name, check.description, check.threshold
        ));
    }
    text.push_str(
        "\nExamples:\n  \
         bookingctl check\n  \
         bookingctl check --check availability_consistency --check negative_available_spots\n  \
         bookingctl check --json | jq 'select(.status != \"PASS\")'\n  \
         bookingctl check --watch --interval 30s\n  \
         */5 * * * * bookingctl --addr http://bookingd:50051 check --json >> /var/log/bookingd-checks.jsonl || alert\n",
    );
    text
}

/// `30s`, `5m`, `1h`, `1500ms`, or a bare number of seconds.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 1500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    let interval = Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) {
        return Err("the interval must be at least 1s".into());
    }
    Ok(interval)
}

pub async fn run(cli: &Cli, args: &CheckArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut client = IntegrityServiceClient::new(cli.authorized_channel().await?);
    let mut stream = if args.watch {
        let interval = prost_types::Duration::try_from(args.interval)?;
        let request =
            WatchChecksRequest { checks: args.checks.clone(), max_samples: args.max_samples, interval: Some(interval) };
        client.watch_checks(request).await?.into_inner()
    } else {
        let request = RunChecksRequest { checks: args.checks.clone(), max_samples: args.max_samples };
        client.run_checks(request).await?.into_inner()
    };

    let mut tally = Tally::default();
    if !args.json {
        println!("{}", table_header(args.watch));
    }
    loop {
        let next = tokio::select! {
            next = stream.message() => next?,
            _ = tokio::signal::ctrl_c(), if args.watch => None,
        };
        let Some(result) = next else { break };
        tally.add(&result);
        if args.json {
            println!("{}", json_line(&result));
        } else {
            print!("{}", table_row(&result, args.watch));
        }
    }
    if !args.json {
        println!("{}", tally.summary());
    }
    Ok(if tally.all_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Statuses of the most recent round.
#[derive(Debug, Default)]
struct Tally {
    round: i64,
    counts: [usize; 5],
}

impl Tally {
    fn add(&mut self, result: &CheckResult) {
        if result.round != self.round {
            self.round = result.round;
            self.counts = [0; 5];
        }
        self.counts[result.status() as usize] += 1;
    }

    fn all_ok(&self) -> bool {
        self.counts[CheckStatus::Fail as usize] == 0
            && self.counts[CheckStatus::Error as usize] == 0
            && self.counts[CheckStatus::Unspecified as usize] == 0
    }

    fn summary(&self) -> String {
        let total: usize = self.counts.iter().sum();
        format!(
            "{total} check(s){}: {} pass, {} warn, {} fail, {} error",
            if self.round > 1 { format!(" in round {}", self.round) } else { String::new() },
            self.counts[CheckStatus::Pass as usize],
            self.counts[CheckStatus::Warn as usize],
            self.counts[CheckStatus::Fail as usize],
            self.counts[CheckStatus::Error as usize],
        )
    }
}

fn status_name(result: &CheckResult) -> &'static str {
    match result.status() {
        CheckStatus::Pass => "PASS",
        CheckStatus::Warn => "WARN",
        CheckStatus::Fail => "FAIL",
        CheckStatus::Error => "ERROR",
        CheckStatus::Unspecified => "UNKNOWN",
    }
}

fn duration_ms(result: &CheckResult) -> f64 {
    result.duration.map_or(0.0, |d| d.seconds as f64 * 1000.0 + f64::from(d.nanos) / 1e6)
}

fn table_header(watch: bool) -> String {
    let round = if watch { format!("{:<6}", "ROUND") } else { String::new() };
    format!("{round}{:<30} {:<6} {:>10} {:>12} {:>10}  MESSAGE", "CHECK", "STATUS", "VIOLATIONS", "OBSERVED", "TIME")
}

fn table_row(result: &CheckResult, watch: bool) -> String {
    let round = if watch { format!("{:<6}", result.round) } else { String::new() };
    let observed = result.observed_value.map_or("-".to_owned(), |v| format!("{v:.2}"));
    let mut row = format!(
        "{round}{:<30} {:<6} {:>10} {:>12} {:>8.1}ms  {}\n",
        result.name,
        status_name(result),
        result.violation_count,
        observed,
        duration_ms(result),
        result.message
    );
    if matches!(result.status(), CheckStatus::Warn | CheckStatus::Fail) {
        for sample in &result.samples {
            row.push_str(&format!("{:indent$}  {}\n", "", struct_to_json(sample), indent = round.len()));
        }
    }
    row
}

fn json_line(result: &CheckResult) -> serde_json::Value {
    let finished_at = result
        .finished_at
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339());
    serde_json::json!({
        "round": result.round,
        "name": result.name,
        "status": status_name(result),
        "violation_count": result.violation_count,
        "observed_value": result.observed_value,
        "threshold": result.threshold,
        "message": result.message,
        "duration_ms": duration_ms(result),
        "finished_at": finished_at,
        "description": result.description,
        "samples": result.samples.iter().map(struct_to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_like_people_write_them() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(parse_interval("500ms").is_err());
        assert!(parse_interval("10 parsecs").is_err());
    }

    #[test]
    fn failures_and_errors_make_the_run_fail_but_warnings_do_not() {
        let result = |status: CheckStatus, round| CheckResult { status: status.into(), round, ..Default::default() };
        let mut tally = Tally::default();
        tally.add(&result(CheckStatus::Pass, 1));
        tally.add(&result(CheckStatus::Warn, 1));
        assert!(tally.all_ok());
        tally.add(&result(CheckStatus::Error, 1));
        assert!(!tally.all_ok());
        tally.add(&result(CheckStatus::Pass, 2));
        assert!(tally.all_ok(), "a watch is judged on its latest round");
    }
}
