//! Throughput with tracing at 100% sampling vs tracing off, side by side.
//!
//! Starts one throwaway PostgreSQL and two `bookingd` processes built from
//! this tree (the release binary, the real `telemetry::init` path): *traced*
//! exports every span (`OTEL_TRACES_SAMPLER=always_on`) and its metrics over
//! OTLP to a sink in this process (which counts bytes, does not decode); *plain* has no OTEL variables. Both log at
//! `info` to /dev/null. Load alternates between them in short rounds (ABBA
//! order) so machine noise hits both alike, then the totals and the ratio
//! traced/plain are printed. Goal: ratio >= 0.90.
//!
//! ```sh
//! cargo bench --bench tracing_overhead                    # defaults
//! cargo bench --bench tracing_overhead -- --rounds 20 --round-ms 3000 --concurrency 32
//! ```
//!
//! Workloads (`--workload`):
//! - `create-cancel` (default): CreateBooking of one seat on a large tour
//!   (atomic path), then CancelBooking of it; two RPCs, one "request" each,
//!   both writing through a transaction.
//! - `get-booking`: GetBooking of a random missing id (one indexed lookup);
//!   the smaller the handler's own cost, the larger tracing's share, so this
//!   is the harsh case.

use std::{
    convert::Infallible,
    future::Future,
    path::PathBuf,
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bookingd::{
    cli::{AuthorizedChannel, Bearer},
    embedded_pg::{EmbeddedPgOptions, EmbeddedPostgres, free_port},
    proto::v1::{
        CancelBookingRequest, CreateBookingRequest, GetBookingRequest, booking_service_client::BookingServiceClient,
        get_booking_request,
    },
};
use http_body::Body as _;
use prost::bytes::Bytes;
use sqlx::{Connection, Executor};
use tonic::{
    server::NamedService,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    CreateCancel,
    GetBooking,
}

struct Options {
    rounds: usize,
    round: Duration,
    concurrency: usize,
    workload: Workload,
}

impl Options {
    fn from_args() -> Options {
        let mut options = Options {
            rounds: 10,
            round: Duration::from_millis(2000),
            concurrency: 16,
            workload: Workload::CreateCancel,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = || args.next().and_then(|v| v.parse::<u64>().ok()).expect("a number after the flag");
            match arg.as_str() {
                "--rounds" => options.rounds = number() as usize,
                "--round-ms" => options.round = Duration::from_millis(number()),
                "--concurrency" => options.concurrency = number() as usize,
                "--workload" => {
                    options.workload = match args.next().as_deref() {
                        Some("create-cancel") => Workload::CreateCancel,
                        Some("get-booking") => Workload::GetBooking,
                        other => panic!("--workload create-cancel|get-booking, not {other:?}"),
                    }
                }
                // cargo bench passes --bench; ignore what is not ours
                _ => {}
            }
        }
        options
    }
}

/// An OTLP/gRPC receiver that counts the bytes it gets and answers OK
/// without decoding them: the collector's work is not bookingd's, and on a
/// shared machine a decoding sink would take its CPU from the server under
/// test.
#[derive(Clone, Default)]
struct Sink<const TRACES: bool> {
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl NamedService for Sink<true> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl NamedService for Sink<false> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<const TRACES: bool> tower::Service<http::Request<tonic::body::Body>> for Sink<TRACES> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (requests, bytes) = (self.requests.clone(), self.bytes.clone());
        Box::pin(async move {
            let mut body = request.into_body();
            while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                if let Some(data) = frame.ok().and_then(|frame| frame.into_data().ok()) {
                    bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            requests.fetch_add(1, Ordering::Relaxed);
            let response = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(tonic::body::Body::new(EmptyMessageOk::default()))
                .expect("static response");
            Ok(response)
        })
    }
}

/// A unary gRPC answer: one empty message, then `grpc-status: 0`.
#[derive(Default)]
struct EmptyMessageOk {
    sent: u8,
}

impl http_body::Body for EmptyMessageOk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.sent += 1;
        Poll::Ready(match self.sent {
            // uncompressed, zero-length message
            1 => Some(Ok(http_body::Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])))),
            2 => {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                Some(Ok(http_body::Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}

/// The booking-client token the benchmark's servers accept.
const BENCH_TOKEN: &str = "bench-booking-client-token-0123456789";

fn with_token(channel: Channel) -> AuthorizedChannel {
    AuthorizedChannel::new(channel, Bearer::new(&BENCH_TOKEN.to_owned().into()).expect("ascii token"))
}

/// A bookingd child process, stopped with SIGTERM on drop.
struct Server {
    name: &'static str,
    child: Child,
    addr: String,
    database_url: String,
}

impl Server {
    fn start(name: &'static str, database_url: &str, otlp: Option<&str>) -> Server {
        let port = free_port().expect("free port");
        let mut command = Command::new(env!("CARGO_BIN_EXE_bookingd"));
        for (key, _) in std::env::vars() {
            if key.starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        command
            .env("DATABASE_URL", database_url)
            .env("BOOKINGD_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("BOOKINGD_SEED_DEMO", "true")
            .env(
                "BOOKINGD_PRINCIPALS",
                format!("bench:booking-client:{}", bookingd::auth::token::digest_hex(BENCH_TOKEN)),
            )
            .env("BOOKINGD_LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(endpoint) = otlp {
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_TRACES_SAMPLER", "always_on")
                .env("OTEL_METRIC_EXPORT_INTERVAL", "5000");
        }
        let child = command.spawn().expect("start bookingd");
        Server { name, child, addr: format!("http://127.0.0.1:{port}"), database_url: database_url.to_owned() }
    }

    async fn wait_until_serving(&self) -> Channel {
        let channel = Endpoint::from_shared(self.addr.clone()).expect("endpoint").connect_lazy();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = HealthClient::new(channel.clone())
                .check(HealthCheckRequest { service: String::new() })
                .await
                .map(|r| r.into_inner().status());
            if matches!(status, Ok(ServingStatus::Serving)) {
                return channel;
            }
            assert!(Instant::now() < deadline, "{} did not become healthy: {status:?}", self.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A tour big enough that the create-cancel callers never sell it out.
async fn create_bench_tour(database_url: &str) -> uuid::Uuid {
    let mut db = sqlx::PgConnection::connect(database_url).await.expect("connect bench database");
    let operator: uuid::Uuid = sqlx::query_scalar(
        "insert into operators (company_name, commission_rate) values ('Bench Tours', 10) returning id",
    )
    .fetch_one(&mut db)
    .await
    .expect("insert operator");
    sqlx::query_scalar(
        "insert into tours (operator_id, is_template, tour_name, tour_date, time_slot, max_capacity,
                            available_spots, adult_price_cents, child_price_cents, commission_rate, status)
         values ($1, false, 'Bench Walk', current_date + 7, '10:00', 1000000, 1000000, 4500, 2250, 12.5, 'active')
         returning id",
    )
    .bind(operator)
    .fetch_one(&mut db)
    .await
    .expect("insert tour")
}

impl Drop for Server {
    fn drop(&mut self) {
        // our own child, not yet reaped: the pid cannot have been reused
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Drives `concurrency` callers against `addr` for `duration`; returns the
/// number of completed requests (answered as expected).
async fn round(addr: &str, workload: Workload, tour_id: uuid::Uuid, concurrency: usize, duration: Duration) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let channel = Endpoint::from_shared(addr.to_owned()).expect("endpoint").connect().await.expect("connect");
        let (done, stop) = (done.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut client = BookingServiceClient::new(with_token(channel));
            while !stop.load(Ordering::Relaxed) {
                let completed = match workload {
                    Workload::GetBooking => get_missing_booking(&mut client).await,
                    Workload::CreateCancel => create_and_cancel(&mut client, tour_id).await,
                };
                done.fetch_add(completed, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    done.load(Ordering::Relaxed)
}

async fn get_missing_booking(client: &mut BookingServiceClient<AuthorizedChannel>) -> u64 {
    let request =
        GetBookingRequest { key: Some(get_booking_request::Key::BookingId(uuid::Uuid::new_v4().to_string())) };
    let status = client.get_booking(request).await.expect_err("a random booking id does not exist");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
    1
}

async fn create_and_cancel(client: &mut BookingServiceClient<AuthorizedChannel>, tour_id: uuid::Uuid) -> u64 {
    let created = client
        .create_booking(CreateBookingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            tour_id: tour_id.to_string(),
            num_adults: 1,
            num_children: 0,
            customer_name: "Bench Caller".into(),
            customer_email: "bench@example.com".into(),
            customer_whatsapp: String::new(),
            hold_seconds: None,
            user_id: None,
        })
        .await
        .expect("booking created")
        .into_inner();
    let booking_id = created.booking.expect("a booking").id;
    client
        .cancel_booking(CancelBookingRequest { booking_id, reason: "bench".into() })
        .await
        .expect("booking cancelled");
    2
}

fn main() {
    let options = Options::from_args();
    let data_dir = std::env::temp_dir().join(format!("bookingd-bench-{}", std::process::id()));
    // started from the main thread: the server lives as long as it does
    let postgres = EmbeddedPostgres::start(EmbeddedPgOptions {
        data_dir: data_dir.clone(),
        port: free_port().expect("free port"),
        bin_dir: std::env::var_os("BOOKINGD_PG_BIN_DIR").map(PathBuf::from),
        ephemeral: true,
        max_connections: 200,
    })
    .expect("start postgres");

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut admin = sqlx::PgConnection::connect(&postgres.url("postgres")).await.expect("connect postgres");
        for database in ["bench_traced", "bench_plain"] {
            admin.execute(sqlx::AssertSqlSafe(format!("create database {database}"))).await.expect("create db");
        }

        let sink = Sink::<true>::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
        let sink_addr = format!("http://{}", listener.local_addr().expect("sink addr"));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(sink.clone())
                .add_service(Sink::<false>::default())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let traced = Server::start("traced", &postgres.url("bench_traced"), Some(&sink_addr));
        let plain = Server::start("plain", &postgres.url("bench_plain"), None);
        traced.wait_until_serving().await;
        plain.wait_until_serving().await;
        let traced_tour = create_bench_tour(&traced.database_url).await;
        let plain_tour = create_bench_tour(&plain.database_url).await;
        let tour_of = |server: &Server| if server.name == "traced" { traced_tour } else { plain_tour };

        // warm-up: connections, caches, the page cache of both databases
        for server in [&traced, &plain] {
            round(&server.addr, options.workload, tour_of(server), options.concurrency, Duration::from_millis(1000)).await;
        }

        println!(
            "tracing overhead: {} rounds x {:?} per configuration, {} concurrent callers, workload {:?}",
            options.rounds, options.round, options.concurrency, options.workload
        );
        println!("{:>5} {:>12} {:>12} {:>7}", "round", "traced req/s", "plain req/s", "ratio");
        let (mut traced_total, mut plain_total) = (0u64, 0u64);
        let mut ratios = Vec::new();
        for index in 0..options.rounds {
            // ABBA: alternate which configuration goes first
            let order: [&Server; 2] = if index % 2 == 0 { [&traced, &plain] } else { [&plain, &traced] };
            let mut counts = [0u64; 2];
            for server in order {
                let count =
                    round(&server.addr, options.workload, tour_of(server), options.concurrency, options.round).await;
                counts[usize::from(server.name == "plain")] = count;
            }
            traced_total += counts[0];
            plain_total += counts[1];
            let ratio = counts[0] as f64 / counts[1].max(1) as f64;
            ratios.push(ratio);
            let per_second = |count: u64| count as f64 / options.round.as_secs_f64();
            println!("{index:>5} {:>12.0} {:>12.0} {ratio:>7.3}", per_second(counts[0]), per_second(counts[1]));
        }

        let seconds = options.round.as_secs_f64() * options.rounds as f64;
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        let ratio = traced_total as f64 / plain_total.max(1) as f64;
        println!(
            "total: traced {:.0} req/s, plain {:.0} req/s, ratio {ratio:.3} (median of rounds {median:.3}); goal >= 0.90: {}",
            traced_total as f64 / seconds,
            plain_total as f64 / seconds,
            if ratio >= 0.9 { "met" } else { "NOT met" }
        );
        drop(traced);
        drop(plain);
        println!(
            "span exports received by the OTLP sink: {} requests, {} bytes ({:.0} bytes per traced request, warm-up included)",
            sink.requests.load(Ordering::Relaxed),
            sink.bytes.load(Ordering::Relaxed),
            sink.bytes.load(Ordering::Relaxed) as f64 / traced_total.max(1) as f64
        );
    });
    drop(postgres);
    let _ = std::fs::remove_dir_all(data_dir);
}
