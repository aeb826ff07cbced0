//! Load benchmark: create + cancel through bookingd at 1, 16 and 64 concurrent
//! callers, on the atomic and on the legacy path, spread over many tours and
//! on one hot tour — beside pgbench running the same SQL directly against the
//! same PostgreSQL in the same run. Prints bookings/s, p50, p99 and the ratio
//! service ÷ pgbench.
//!
//! Run: `cargo bench --bench booking_load` (BENCH_SECONDS per cell, default 5;
//! BENCH_TOURS spread width, default 200).

use std::{
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bookingd::{
    cli::{AuthorizedChannel, Bearer},
    config::Settings,
    embedded_pg::{EmbeddedPgOptions, EmbeddedPostgres, free_port},
    proto::v1::{CancelBookingRequest, CreateBookingRequest, booking_service_client::BookingServiceClient},
    startup::Application,
};
use sqlx::{Connection, Executor, PgConnection};
use tonic::transport::Endpoint;

const CONCURRENCY: [usize; 3] = [1, 16, 64];

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Spread {
    Spread,
    Hot,
}

struct Cell {
    bookings_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let tours: usize = std::env::var("BENCH_TOURS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let duration = Duration::from_secs(seconds);

    let data_dir = std::env::temp_dir().join(format!("bookingd-bench-{}", std::process::id()));
    let server = EmbeddedPostgres::start(EmbeddedPgOptions {
        data_dir: data_dir.clone(),
        port: free_port().expect("free port"),
        bin_dir: None,
        ephemeral: true,
        max_connections: 300,
    })
    .expect("start postgres");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(run(&server, tours, duration));
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir);
}

async fn run(server: &EmbeddedPostgres, tours: usize, duration: Duration) {
    let url = server.url("bookingd_bench");
    let mut admin = PgConnection::connect(&server.url("postgres")).await.expect("connect");
    admin.execute("create database bookingd_bench").await.expect("create database");

    let atomic = start_app(&url, false).await;
    let legacy = start_app(&url, true).await;
    let hot_tour = prepare_catalog(&url, tours).await;
    let scripts = write_pgbench_scripts(tours);

    println!(
        "bookingd load benchmark: {}s per cell, {tours} spread tours; one booking = create + cancel (2 seats)",
        duration.as_secs()
    );
    println!(
        "{:<7} {:<7} {:>4} | {:>10} {:>8} {:>8} | {:>10} {:>8} | {:>6}",
        "path", "tours", "conc", "service/s", "p50 ms", "p99 ms", "pgbench/s", "avg ms", "ratio"
    );
    for (path, channel) in [("atomic", &atomic), ("legacy", &legacy)] {
        for spread in [Spread::Spread, Spread::Hot] {
            for concurrency in CONCURRENCY {
                let tour_ids = tour_ids(&url, spread, hot_tour, tours).await;
                let service = drive_service(channel.clone(), Arc::new(tour_ids), concurrency, duration).await;
                let script = &scripts[&(path, spread)];
                let pgbench = run_pgbench(server, &url, script, concurrency, duration);
                println!(
                    "{:<7} {:<7} {:>4} | {:>10.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} | {:>6.2}",
                    path,
                    if spread == Spread::Spread { "spread" } else { "hot" },
                    concurrency,
                    service.bookings_per_sec,
                    service.p50_ms,
                    service.p99_ms,
                    pgbench.bookings_per_sec,
                    pgbench.p50_ms,
                    service.bookings_per_sec / pgbench.bookings_per_sec,
                );
            }
        }
    }
}

/// The booking-client token the benchmark's servers accept.
const BENCH_TOKEN: &str = "bench-booking-client-token-0123456789";

async fn start_app(url: &str, legacy: bool) -> AuthorizedChannel {
    let mut settings = Settings::for_database(url);
    settings.principals = Some(format!("bench:booking-client:{}", bookingd::auth::token::digest_hex(BENCH_TOKEN)));
    settings.use_legacy_booking_service = Some(legacy);
    settings.db_max_connections = 80;
    settings.concurrency_limit = 4096;
    let app = Application::build(settings).await.expect("build app");
    let addr = format!("http://{}", app.local_addr());
    tokio::spawn(async move {
        let _ = app.run_until_stopped(std::future::pending()).await;
    });
    let channel = Endpoint::from_shared(addr).expect("endpoint").connect().await.expect("connect to bookingd");
    let bearer = Bearer::new(&BENCH_TOKEN.to_owned().into()).expect("ascii token");
    AuthorizedChannel::new(channel, bearer)
}

/// Tours with room for any number of create+cancel cycles; returns the hot one.
async fn prepare_catalog(url: &str, tours: usize) -> uuid::Uuid {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    conn.execute(
        "insert into operators (company_name, commission_rate) values ('Bench Tours', 12.5);
         create table bench_tours (n integer primary key, id uuid not null);",
    )
    .await
    .expect("operator");
    sqlx::query(
        "with made as (
             insert into tours (operator_id, tour_name, tour_date, time_slot, max_capacity, available_spots,
                                adult_price_cents, child_price_cents, commission_rate)
             select (select id from operators limit 1), 'Bench tour ' || g, current_date + 1, '10:00',
                    1000000, 1000000, 4500, 2250, 12.5
             from generate_series(1, $1) g
             returning id)
         insert into bench_tours (n, id) select row_number() over (order by id), id from made",
    )
    .bind(tours as i32 + 1)
    .execute(&mut conn)
    .await
    .expect("tours");
    sqlx::query_scalar("select id from bench_tours where n = $1")
        .bind(tours as i32 + 1)
        .fetch_one(&mut conn)
        .await
        .expect("hot tour")
}

async fn tour_ids(url: &str, spread: Spread, hot: uuid::Uuid, tours: usize) -> Vec<String> {
    match spread {
        Spread::Hot => vec![hot.to_string()],
        Spread::Spread => {
            let mut conn = PgConnection::connect(url).await.expect("connect");
            let ids: Vec<uuid::Uuid> = sqlx::query_scalar("select id from bench_tours where n <= $1 order by n")
                .bind(tours as i32)
                .fetch_all(&mut conn)
                .await
                .expect("tour ids");
            ids.into_iter().map(|id| id.to_string()).collect()
        }
    }
}

async fn drive_service(
    channel: AuthorizedChannel,
    tours: Arc<Vec<String>>,
    concurrency: usize,
    duration: Duration,
) -> Cell {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let mut client = BookingServiceClient::new(channel.clone());
        let tours = tours.clone();
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut n = worker;
            while Instant::now() < deadline {
                let tour_id = tours[n % tours.len()].clone();
                n += concurrency;
                let begin = Instant::now();
                let created = client
                    .create_booking(CreateBookingRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        tour_id,
                        num_adults: 2,
                        num_children: 0,
                        customer_name: "Bench Guest".into(),
                        customer_email: "bench@example.com".into(),
                        ..Default::default()
                    })
                    .await
                    .expect("create booking")
                    .into_inner();
                let booking = created.booking.expect("booking");
                client
                    .cancel_booking(CancelBookingRequest { booking_id: booking.id, reason: "bench".into() })
                    .await
                    .expect("cancel booking");
                latencies.push(begin.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.expect("worker"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Cell { bookings_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(), p50_ms: pick(0.5), p99_ms: pick(0.99) }
}

fn write_pgbench_scripts(tours: usize) -> std::collections::HashMap<(&'static str, Spread), PathBuf> {
    let dir = std::env::temp_dir().join(format!("bookingd-bench-scripts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("script dir");
    let pick = |spread: Spread| match spread {
        Spread::Spread => format!("\\set t random(1, {tours})\n"),
        Spread::Hot => format!("\\set t {}\n", tours + 1),
    };
    // The same statements the two paths issue, without the service around them.
    let atomic = "SELECT id AS tour_id FROM bench_tours WHERE n = :t \\gset
SELECT id AS booking_id FROM create_booking_atomic(jsonb_build_object('id', gen_random_uuid(), 'booking_reference', 'PB-' || md5(random()::text), 'request_id', 'pgbench-' || gen_random_uuid(), 'request_fingerprint', 'pgbench', 'tour_id', ':tour_id', 'num_adults', 2, 'num_children', 0, 'customer_name', 'Bench Guest', 'customer_email', 'bench@example.com', 'hold_expires_at', now() + interval '30 minutes'), NULL) \\gset
UPDATE bookings SET booking_status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE id = ':booking_id';
";
    let legacy = "SELECT id AS tour_id FROM bench_tours WHERE n = :t \\gset
BEGIN;
SELECT available_spots, origin_schedule_id, operator_id, adult_price_cents, commission_rate FROM tours WHERE id = ':tour_id' FOR UPDATE;
SELECT id FROM bookings WHERE request_id = 'none';
UPDATE tours SET available_spots = available_spots - 2, updated_at = now() WHERE id = ':tour_id' AND available_spots >= 2;
INSERT INTO bookings (booking_reference, request_id, request_fingerprint, tour_id, operator_id, customer_name, customer_email, num_adults, num_children, subtotal, commission_amount, total_amount, applied_commission_rate, booking_status, code_path, hold_expires_at) SELECT 'PB-' || md5(random()::text), 'pgbench-' || gen_random_uuid(), 'pgbench', id, operator_id, 'Bench Guest', 'bench@example.com', 2, 0, 9000, 1125, 9000, 12.5, 'pending', 'legacy', now() + interval '30 minutes' FROM tours WHERE id = ':tour_id' RETURNING id AS booking_id \\gset
COMMIT;
BEGIN;
SELECT booking_status FROM bookings WHERE id = ':booking_id' FOR UPDATE;
UPDATE bookings SET booking_status = 'cancelled', cancelled_at = now(), updated_at = now() WHERE id = ':booking_id' RETURNING seats_released_at;
COMMIT;
";
    let mut scripts = std::collections::HashMap::new();
    for (path, body) in [("atomic", atomic), ("legacy", legacy)] {
        for spread in [Spread::Spread, Spread::Hot] {
            let file = dir.join(format!("{path}-{spread:?}.sql"));
            std::fs::write(&file, format!("{}{body}", pick(spread))).expect("write script");
            scripts.insert((path, spread), file);
        }
    }
    scripts
}

fn run_pgbench(server: &EmbeddedPostgres, url: &str, script: &PathBuf, concurrency: usize, duration: Duration) -> Cell {
    let output = Command::new(server.bin_dir().join("pgbench"))
        .args(["-n", "-c", &concurrency.to_string(), "-j", &concurrency.min(4).to_string()])
        .args(["-T", &duration.as_secs().to_string(), "-f"])
        .arg(script)
        .arg(url)
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!("pgbench failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    }
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Cell { bookings_per_sec: number_after("tps = "), p50_ms: number_after("latency average = "), p99_ms: f64::NAN }
}
