//! Load benchmark: bookingd driven by the out-of-process load tool
//! (`bookingctl bench`), beside pgbench calling the same SQL directly
//! (`-M prepared`) against the same PostgreSQL in the same run.
//!
//! Every process is separate: PostgreSQL, one bookingd per configuration
//! (release build, path pinned by USE_LEGACY_BOOKING_SERVICE), the load
//! client, pgbench. Server-side CPU per booking comes from /proc: bookingd's
//! own, and the PostgreSQL cluster's (postmaster + backends + reaped
//! children), sampled around each measured window.
//!
//! Run: `cargo bench --bench booking_load`. Knobs (env):
//! - BENCH_SECONDS per cell (default 4), BENCH_TOURS spread width (1000),
//! - BENCH_WORKLOAD `create` (default) or `create-cancel`,
//! - BENCH_CONCURRENCY e.g. `1,16,64` (default), BENCH_SPREAD `spread,hot`,
//! - BENCH_SERVICES e.g. `atomic,atomic+batch,legacy` (default: all three;
//!   `atomic` and `legacy` with batching off, `atomic+batch` with it on),
//! - BENCH_REPEAT rounds of the whole table (default 1),
//! - BENCH_BOOKINGD the bookingd binary to start (default: this tree's
//!   release build), to compare another build against the same pgbench,
//! - BENCH_SETUP_SQL SQL run on the bench database once its catalog is made,
//!   before any measuring (an experiment on the schema, seen by the service
//!   and pgbench alike).
//!
//! Any `BOOKINGD_*` variable in the benchmark's environment is passed to every
//! bookingd it starts (e.g. `BOOKINGD_BATCH_LANES=2`), except the batching
//! switch, which each configuration sets itself.

use std::{
    io::BufRead,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bookingd::{
    cli::load::{LoadReport, procfs},
    embedded_pg::{EmbeddedPgOptions, EmbeddedPostgres, free_port},
};
use hdrhistogram::Histogram;
use sqlx::{Connection, Executor, PgConnection};

/// One bookingd configuration under test.
struct ServiceConfig {
    name: &'static str,
    legacy: bool,
    env: &'static [(&'static str, &'static str)],
}

const SERVICES: [ServiceConfig; 3] = [
    ServiceConfig { name: "atomic", legacy: false, env: &[("BOOKINGD_BATCH_BOOKINGS", "false")] },
    // group commit (the default)
    ServiceConfig { name: "atomic+batch", legacy: false, env: &[("BOOKINGD_BATCH_BOOKINGS", "true")] },
    ServiceConfig { name: "legacy", legacy: true, env: &[("BOOKINGD_BATCH_BOOKINGS", "false")] },
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Spread {
    Spread,
    Hot,
}

impl Spread {
    fn name(self) -> &'static str {
        match self {
            Spread::Spread => "spread",
            Spread::Hot => "hot",
        }
    }
}

/// What pgbench measured for one cell.
struct PgbenchCell {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    postgres_us_per_booking: f64,
}

struct Knobs {
    seconds: u64,
    tours: usize,
    workload: String,
    concurrency: Vec<usize>,
    spreads: Vec<Spread>,
    services: Vec<&'static ServiceConfig>,
    repeat: usize,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Knobs {
    fn from_env() -> Knobs {
        let list = |name: &str, default: &str| -> Vec<String> {
            env_or(name, default).split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        let services: Vec<&'static ServiceConfig> = list("BENCH_SERVICES", "")
            .iter()
            .map(|n| SERVICES.iter().find(|s| s.name == n).unwrap_or_else(|| panic!("unknown BENCH_SERVICES {n}")))
            .collect();
        Knobs {
            seconds: env_or("BENCH_SECONDS", "4").parse().expect("BENCH_SECONDS"),
            tours: env_or("BENCH_TOURS", "1000").parse().expect("BENCH_TOURS"),
            workload: env_or("BENCH_WORKLOAD", "create"),
            concurrency: list("BENCH_CONCURRENCY", "1,16,64").iter().map(|c| c.parse().expect("concurrency")).collect(),
            spreads: list("BENCH_SPREAD", "spread,hot")
                .iter()
                .map(|s| match s.as_str() {
                    "spread" => Spread::Spread,
                    "hot" => Spread::Hot,
                    other => panic!("unknown BENCH_SPREAD {other}"),
                })
                .collect(),
            services: if services.is_empty() { SERVICES.iter().collect() } else { services },
            repeat: env_or("BENCH_REPEAT", "1").parse().expect("BENCH_REPEAT"),
        }
    }
}

fn main() {
    let knobs = Knobs::from_env();
    assert!(matches!(knobs.workload.as_str(), "create" | "create-cancel"), "BENCH_WORKLOAD: create or create-cancel");
    let data_dir = std::env::temp_dir().join(format!("bookingd-bench-{}", std::process::id()));
    let server = EmbeddedPostgres::start(EmbeddedPgOptions {
        data_dir: data_dir.clone(),
        port: free_port().expect("free port"),
        bin_dir: None,
        ephemeral: true,
        max_connections: 300,
    })
    .expect("start postgres");
    let postmaster = postmaster_pid(&data_dir);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let url = server.url("bookingd_bench");
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&server.url("postgres")).await.expect("connect");
        admin.execute("create database bookingd_bench").await.expect("create database");
    });

    let mut services: Vec<Service> = Vec::new();
    for config in &knobs.services {
        // one at a time: the first start migrates and deploys the functions
        services.push(Service::start(config, &url));
    }
    let tour_ids = runtime.block_on(prepare_catalog(&url, knobs.tours));
    if let Ok(sql) = std::env::var("BENCH_SETUP_SQL") {
        runtime.block_on(async {
            let mut conn = PgConnection::connect(&url).await.expect("connect");
            // the operator running the benchmark wrote it, on a throwaway database
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&mut conn).await.expect("BENCH_SETUP_SQL");
        });
        println!("BENCH_SETUP_SQL ran: {sql}");
    }
    let scripts = write_pgbench_scripts(&data_dir, knobs.tours, &knobs.workload);

    println!(
        "bookingd load benchmark: {}s cells (+1s warm-up), {} spread tours, workload {} (booking = {}), \
         separate processes: load client `bookingctl bench`, bookingd (release), pgbench -M prepared",
        knobs.seconds,
        knobs.tours,
        knobs.workload,
        if knobs.workload == "create" { "CreateBooking" } else { "CreateBooking + CancelBooking" },
    );
    println!("CPU columns: µs of CPU per booking (bkd = bookingd, pg = PostgreSQL cluster, cli = load client)");
    for round in 1..=knobs.repeat {
        if knobs.repeat > 1 {
            println!("round {round}/{}", knobs.repeat);
        }
        println!(
            "{:<12} {:<6} {:>4} | {:>9} {:>7} {:>7} {:>8} | {:>5} {:>5} {:>5} {:>5} | {:>9} {:>7} {:>7} {:>5} | {:>5} {:>5}",
            "service",
            "tours",
            "conc",
            "bookings/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "bkd",
            "pg",
            "total",
            "cli",
            "pgbench/s",
            "p50 ms",
            "p99 ms",
            "pg",
            "ratio",
            "cpu×"
        );
        for service in &services {
            for &spread in &knobs.spreads {
                for &concurrency in &knobs.concurrency {
                    let tours = match spread {
                        Spread::Spread => tour_ids.clone(),
                        Spread::Hot => vec![tour_uuid(0)],
                    };
                    let report = service.drive(&tours, concurrency, knobs.seconds, &knobs.workload, postmaster);
                    let script = &scripts[(service.config.legacy as usize) * 2 + (spread == Spread::Hot) as usize];
                    let pgbench = run_pgbench(&server, &url, script, concurrency, knobs.seconds, postmaster, &data_dir);
                    print_row(service.config.name, spread, concurrency, &report, &pgbench);
                }
            }
        }
    }
    for service in services {
        service.stop();
    }
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir);
}

fn print_row(name: &str, spread: Spread, concurrency: usize, report: &LoadReport, pgbench: &PgbenchCell) {
    let cpu = report.server_cpu.clone().unwrap_or_default();
    let num = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    let total = cpu.total_us_per_booking();
    let failed: u64 = report.calls.iter().filter(|(call, _)| !call.ends_with(" Ok")).map(|(_, n)| n).sum();
    println!(
        "{:<12} {:<6} {:>4} | {:>9.0} {:>7.2} {:>7.2} {:>8.2} | {:>5} {:>5} {:>5} {:>5} | {:>9.0} {:>7.2} {:>7.2} {:>5.0} | {:>5.2} {:>5}{}",
        name,
        spread.name(),
        concurrency,
        report.bookings_per_sec,
        report.p50_ms,
        report.p99_ms,
        report.p999_ms,
        num(cpu.bookingd_us_per_booking),
        num(cpu.postgres_us_per_booking),
        num(total),
        num(report.client_cpu_us_per_booking),
        pgbench.per_sec,
        pgbench.p50_ms,
        pgbench.p99_ms,
        pgbench.postgres_us_per_booking,
        report.bookings_per_sec / pgbench.per_sec,
        // whole service's CPU per booking against PostgreSQL's alone under pgbench
        total.map_or("-".to_owned(), |t| format!("{:.2}", t / pgbench.postgres_us_per_booking)),
        if failed > 0 { format!("  ({failed} calls not OK: {:?})", report.calls) } else { String::new() },
    );
}

/// The token the benchmark's servers accept (an operator: the load tool
/// may also pin the path).
const BENCH_TOKEN: &str = "bench-operator-token-0123456789abcdef";

/// A bookingd process under test.
struct Service {
    config: &'static ServiceConfig,
    child: Child,
    addr: String,
}

impl Service {
    fn start(config: &'static ServiceConfig, url: &str) -> Service {
        let port = free_port().expect("free port");
        // another build of bookingd (an A/B of two commits against the same pgbench)
        let binary = std::env::var_os("BENCH_BOOKINGD").unwrap_or_else(|| env!("CARGO_BIN_EXE_bookingd").into());
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .env("BOOKINGD_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("USE_LEGACY_BOOKING_SERVICE", config.legacy.to_string())
            .env("BOOKINGD_SEED_DEMO", "false")
            .env("BOOKINGD_CONCURRENCY_LIMIT", "4096")
            .env("BOOKINGD_PRINCIPALS", format!("bench:operator:{}", bookingd::auth::token::digest_hex(BENCH_TOKEN)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command.envs(std::env::vars().filter(|(name, _)| name.starts_with("BOOKINGD_")));
        for (name, value) in config.env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start bookingd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "bookingd {} did not listen within 60s", config.name);
            std::thread::sleep(Duration::from_millis(50));
        }
        Service { config, child, addr: format!("http://127.0.0.1:{port}") }
    }

    /// One cell through the load tool; its JSON report.
    fn drive(&self, tours: &[String], concurrency: usize, seconds: u64, workload: &str, postmaster: u32) -> LoadReport {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bookingctl"));
        command
            .args(["--addr", &self.addr, "--token", BENCH_TOKEN, "bench", "--json", "--warmup", "1s"])
            .args(["--duration", &format!("{seconds}s"), "--concurrency", &concurrency.to_string()])
            .args(["--workload", workload, "--server-pid", &self.child.id().to_string()])
            .args(["--postgres-pid", &postmaster.to_string()]);
        for tour in tours {
            command.args(["--tour", tour]);
        }
        let output = command.output().expect("run bookingctl bench");
        assert!(
            output.status.success(),
            "bookingctl bench failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        serde_json::from_slice(&output.stdout).expect("bench JSON report")
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn postmaster_pid(data_dir: &Path) -> u32 {
    let file = std::fs::File::open(data_dir.join("postmaster.pid")).expect("postmaster.pid");
    let first = std::io::BufReader::new(file).lines().next().expect("pid line").expect("read pid");
    first.trim().parse().expect("postmaster pid")
}

/// Deterministic tour ids, so pgbench can name a tour without a lookup:
/// tour n = 00000000-0000-4000-8000-<n, 12 digits>; tour 0 is the hot one.
fn tour_uuid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Tours with room for any number of bookings (tour 0 is the hot one).
async fn prepare_catalog(url: &str, tours: usize) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    conn.execute("insert into operators (company_name, commission_rate) values ('Bench Tours', 12.5)")
        .await
        .expect("operator");
    sqlx::query(
        "insert into tours (id, operator_id, tour_name, tour_date, time_slot, max_capacity, available_spots,
                            adult_price_cents, child_price_cents, commission_rate)
         select ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
                (select id from operators limit 1), 'Bench tour ' || g, current_date + 1, '10:00',
                100000000, 100000000, 4500, 2250, 12.5
         from generate_series(0, $1) g",
    )
    .bind(tours as i32)
    .execute(&mut conn)
    .await
    .expect("tours");
    (1..=tours).map(tour_uuid).collect()
}

/// The SQL each path issues per booking, without the service around it.
/// Index: legacy * 2 + hot.
fn write_pgbench_scripts(dir: &Path, tours: usize, workload: &str) -> Vec<PathBuf> {
    let cancel = workload == "create-cancel";
    let pick = |hot: bool| {
        if hot { "\\set t 0\n".to_owned() } else { format!("\\set t random(1, {tours})\n") }
    };
    // with -M prepared every :variable is a bound parameter
    let tour = "('00000000-0000-4000-8000-' || lpad(:t::text, 12, '0'))::uuid";
    let atomic = format!(
        "SELECT id AS booking_id FROM create_booking_atomic(jsonb_build_object('id', gen_random_uuid(), \
         'booking_reference', 'PB-' || md5(random()::text), 'request_id', 'pgbench-' || gen_random_uuid(), \
         'request_fingerprint', 'pgbench', 'tour_id', {tour}, 'num_adults', 2, 'num_children', 0, \
         'customer_name', 'Bench Guest', 'customer_email', 'bench@example.com', \
         'hold_expires_at', now() + interval '30 minutes'), NULL) \\gset\n{}",
        if cancel {
            "UPDATE bookings SET booking_status = 'cancelled', cancelled_at = now(), updated_at = now() \
             WHERE id = :booking_id::uuid;\n"
        } else {
            ""
        }
    );
    let legacy = format!(
        "BEGIN;
SELECT available_spots, origin_schedule_id, operator_id, adult_price_cents, commission_rate FROM tours WHERE id = {tour} FOR UPDATE;
SELECT id FROM bookings WHERE request_id = 'none';
UPDATE tours SET available_spots = available_spots - 2, updated_at = now() WHERE id = {tour} AND available_spots >= 2;
INSERT INTO bookings (booking_reference, request_id, request_fingerprint, tour_id, operator_id, customer_name, customer_email, num_adults, num_children, subtotal, commission_amount, total_amount, applied_commission_rate, booking_status, code_path, hold_expires_at) SELECT 'PB-' || md5(random()::text), 'pgbench-' || gen_random_uuid(), 'pgbench', id, operator_id, 'Bench Guest', 'bench@example.com', 2, 0, 9000, 1125, 9000, 12.5, 'pending', 'legacy', now() + interval '30 minutes' FROM tours WHERE id = {tour} RETURNING id AS booking_id \\gset
COMMIT;
{}",
        if cancel {
            "BEGIN;
SELECT booking_status FROM bookings WHERE id = :booking_id::uuid FOR UPDATE;
UPDATE bookings SET booking_status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE id = :booking_id::uuid RETURNING seats_released_at;
COMMIT;
"
        } else {
            ""
        }
    );
    let mut files = Vec::new();
    for (name, body) in [("atomic", &atomic), ("legacy", &legacy)] {
        for hot in [false, true] {
            let file = dir.join(format!("pgbench-{name}-{}.sql", if hot { "hot" } else { "spread" }));
            std::fs::write(&file, format!("{}{body}", pick(hot))).expect("write script");
            files.push(file);
        }
    }
    files
}

fn run_pgbench(
    server: &EmbeddedPostgres,
    url: &str,
    script: &Path,
    concurrency: usize,
    seconds: u64,
    postmaster: u32,
    dir: &Path,
) -> PgbenchCell {
    let log_dir = dir.join(format!("pgbench-log-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let before = procfs::cluster_cpu(postmaster);
    let output = Command::new(server.bin_dir().join("pgbench"))
        .args(["-n", "-M", "prepared", "-c", &concurrency.to_string(), "-j", &concurrency.min(2).to_string()])
        .args(["-T", &seconds.to_string(), "-l", "--log-prefix"])
        .arg(log_dir.join("tx"))
        .arg("-f")
        .arg(script)
        .arg(url)
        .output()
        .expect("run pgbench");
    let after = procfs::cluster_cpu(postmaster);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pgbench failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let transactions = number_after("number of transactions actually processed: ");
    // per-transaction log: "client_id transaction_no time_us script_no epoch epoch_us"
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    for entry in std::fs::read_dir(&log_dir).expect("read logs").flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse::<u64>().ok()) {
                latency_us.saturating_record(us.max(1));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&log_dir);
    let cpu = before.zip(after).map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6).unwrap_or(f64::NAN);
    PgbenchCell {
        per_sec: number_after("tps = "),
        p50_ms: latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        postgres_us_per_booking: cpu / transactions,
    }
}
