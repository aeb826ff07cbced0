//! Test harness: one throwaway PostgreSQL per test run (or
//! TEST_DATABASE_URL), a fresh database per test, and the real server on an
//! ephemeral port, with clients that carry each role's token. A server that
//! fails or panics fails its test ([`TestApp::stop`], and on drop). Shared
//! arrangements (tours, bookings, request builders) are in `fixtures.rs`.

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use bookingd::{
    config::Settings,
    db::url::with_database,
    embedded_pg::{EmbeddedPgOptions, EmbeddedPostgres, PostgresThread, free_port},
    proto::v1::{
        admin_service_client::AdminServiceClient, booking_service_client::BookingServiceClient,
        integrity_service_client::IntegrityServiceClient,
    },
    startup::{Application, StartupError},
};
use rust_decimal::Decimal;
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use tokio::sync::oneshot;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};
use tonic_health::pb::health_client::HealthClient;

/// URL of the run's PostgreSQL server (its `postgres` database).
pub fn test_server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    // Never dropped: the server's thread lives until the test process exits,
    // and its parent-death signal stops the server then.
    static SERVER: OnceLock<PostgresThread> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
            return url;
        }
        remove_stale_data_dirs();
        let server = PostgresThread::start("test-postgres", test_server_options(data_dir_for(std::process::id())))
            .unwrap_or_else(|e| panic!("starting test postgres: {e}"));
        SERVER.get_or_init(|| server).url("postgres")
    })
}

/// A private server of a test's own (one it stops and restarts).
pub fn start_test_server(data_dir: PathBuf) -> Result<EmbeddedPostgres, bookingd::embedded_pg::EmbeddedPgError> {
    EmbeddedPostgres::start(test_server_options(data_dir))
}

fn test_server_options(data_dir: PathBuf) -> EmbeddedPgOptions {
    EmbeddedPgOptions {
        data_dir,
        port: free_port().expect("free port"),
        bin_dir: std::env::var_os("BOOKINGD_PG_BIN_DIR").map(PathBuf::from),
        ephemeral: true,
        max_connections: 500,
    }
}

fn data_dir_for(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("bookingd-test-{pid}"))
}

/// Earlier runs' data directories whose process is gone.
fn remove_stale_data_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) =
            name.to_str().and_then(|n| n.strip_prefix("bookingd-test-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A fresh, empty database on the run's server.
pub async fn create_test_database() -> String {
    let name = format!("bookingd_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(test_server_url()).await.expect("connect to the test server");
    admin.execute(sqlx::AssertSqlSafe(format!(r#"create database "{name}""#))).await.expect("create test database");
    with_database(test_server_url(), &name)
}

/// Tokens of the three principals every test server knows (one per role).
pub const TEST_OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdef";
pub const TEST_AUDITOR_TOKEN: &str = "test-auditor-token-0123456789abcdef";
pub const TEST_BOOKING_TOKEN: &str = "test-booking-client-token-0123456789";
/// The operator token (the name older tests use).
pub const TEST_ADMIN_TOKEN: &str = TEST_OPERATOR_TOKEN;
/// Principal names the test server records in audit rows and spans.
pub const TEST_OPERATOR: &str = "test-operator";
pub const TEST_AUDITOR: &str = "test-auditor";
pub const TEST_BOOKING_CLIENT: &str = "test-booking-client";

/// `--principals` for the three test principals.
pub fn test_principals() -> String {
    use bookingd::auth::token::digest_hex;
    format!(
        "{TEST_OPERATOR}:operator:{},{TEST_AUDITOR}:auditor:{},{TEST_BOOKING_CLIENT}:booking-client:{}",
        digest_hex(TEST_OPERATOR_TOKEN),
        digest_hex(TEST_AUDITOR_TOKEN),
        digest_hex(TEST_BOOKING_TOKEN)
    )
}

/// A channel whose every call presents `token`.
pub type Authed = InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    pub fn new(token: &str) -> Self {
        BearerToken(format!("Bearer {token}").parse().expect("ascii token"))
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub struct TestApp {
    pub addr: String,
    pub database_url: String,
    /// A pool of the test's own, for arranging and asserting.
    pub pool: PgPool,
    pub channel: Channel,
    /// The server's own flag resolver (the instance its services use).
    pub flags: bookingd::flags::Flags,
    /// The server's concurrency limit (calls in flight).
    pub load_shed: bookingd::grpc::limits::LoadShed,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<ServerTask>,
}

/// The server's task: what `run_until_stopped` returned, or its panic.
type ServerTask = tokio::task::JoinHandle<Result<(), StartupError>>;

/// Fails the test (panics) if the server errored or panicked.
fn check_server_outcome(outcome: Result<Result<(), StartupError>, tokio::task::JoinError>) {
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("the server failed during the test: {error}"),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("the server task ended abnormally: {join}"),
    }
}

impl TestApp {
    /// The shared connection presenting `token` on every call.
    pub fn channel_with(&self, token: &str) -> Authed {
        InterceptedService::new(self.channel.clone(), BearerToken::new(token))
    }

    /// Booking client presenting the booking-client principal's token.
    pub fn booking(&self) -> BookingServiceClient<Authed> {
        BookingServiceClient::new(self.channel_with(TEST_BOOKING_TOKEN))
    }

    /// Integrity client presenting the auditor's token.
    pub fn integrity(&self) -> IntegrityServiceClient<Authed> {
        IntegrityServiceClient::new(self.channel_with(TEST_AUDITOR_TOKEN))
    }

    /// Admin client presenting the operator token.
    pub fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::new(self.channel_with(TEST_OPERATOR_TOKEN))
    }

    /// Admin client presenting `token`.
    pub fn admin_as(&self, token: &str) -> AdminServiceClient<Authed> {
        AdminServiceClient::new(self.channel_with(token))
    }

    /// Admin client presenting no token at all.
    pub fn admin_without_token(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// Stops the server and waits until it has drained; fails the test if
    /// the server errored or panicked at any point.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            check_server_outcome(server.await);
        }
    }
}

/// A test that ends without [`TestApp::stop`] still fails if the server has
/// already errored or panicked (a server still running is told to stop; the
/// runtime ends it with the test).
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let Some(server) = self.server.take() else { return };
        if std::thread::panicking() || !server.is_finished() {
            return;
        }
        if let Some(outcome) = futures::FutureExt::now_or_never(server) {
            check_server_outcome(outcome);
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A fresh database and the real server on port 0, with settings adjusted by
/// `configure`.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = create_test_database().await;
    spawn_app_on(&database_url, configure).await
}

/// The real server against an existing database.
pub async fn spawn_app_on(database_url: &str, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::for_database(database_url);
    settings.health_probe_interval = Duration::from_millis(100);
    settings.principals = Some(test_principals());
    configure(&mut settings);
    let app = Application::build(settings).await.expect("build the application");
    let addr = format!("http://{}", app.local_addr());
    let flags = app.flags().clone();
    let load_shed = app.load_shed().clone();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let channel = Endpoint::from_shared(addr.clone()).expect("endpoint").connect_lazy();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(5).connect(database_url).await.expect("test pool");
    TestApp {
        addr,
        database_url: database_url.to_owned(),
        pool,
        channel,
        flags,
        load_shed,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// Polls `condition` until it holds or `deadline` passes (then panics with
/// `what`): waiting on a condition, never sleeping and hoping.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The seat invariant on every tour (not only active ones), then the
/// runbook's monitor queries, unchanged: all must return 0 rows. Every
/// scenario ends here.
pub async fn assert_healthy(pool: &PgPool) {
    let broken: Vec<(uuid::Uuid, i32, i32, i64)> = sqlx::query_as(
        "select t.id, t.max_capacity, t.available_spots,
                coalesce((select sum(b.num_adults + b.num_children) from bookings b
                          where b.tour_id = t.id and b.booking_status in ('pending', 'confirmed')), 0)::bigint
         from tours t
         where t.available_spots <> t.max_capacity - coalesce((select sum(b.num_adults + b.num_children) from bookings b
                          where b.tour_id = t.id and b.booking_status in ('pending', 'confirmed')), 0)
            or t.available_spots < 0",
    )
    .fetch_all(pool)
    .await
    .expect("invariant query");
    assert!(broken.is_empty(), "seat invariant broken (id, capacity, available, booked): {broken:?}");

    for statement in include_str!("runbook_monitors.sql").split("-- @@") {
        let rows = sqlx::raw_sql(statement).fetch_all(pool).await.expect("runbook monitor runs");
        assert!(rows.is_empty(), "runbook monitor returned {} row(s):\n{statement}", rows.len());
    }

    let template_bookings: i64 = sqlx::query_scalar(
        "select count(*) from bookings b join tours t on b.tour_id = t.id
         where t.parent_template_id is not null and b.created_at > now() - interval '24 hours'",
    )
    .fetch_one(pool)
    .await
    .expect("template booking count");
    if template_bookings > 0 {
        let row = sqlx::raw_sql(include_str!("runbook_capture_rate.sql")).fetch_one(pool).await.expect("capture rate");
        let rate: Decimal = row.get("capture_rate_percent");
        assert_eq!(rate, Decimal::new(10000, 2), "schedule_id capture rate must be 100%");
    }
}

#[tokio::test]
async fn a_server_that_failed_or_panicked_fails_the_test_that_ran_it() {
    // Arrange: server tasks that ended each way
    let failed: ServerTask = tokio::spawn(async { Err(StartupError::NoDatabase) });
    let panicked: ServerTask = tokio::spawn(async { panic!("the server blew up") });
    let fine: ServerTask = tokio::spawn(async { Ok(()) });

    // Act
    let outcomes = [failed.await, panicked.await, fine.await]
        .map(|outcome| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_server_outcome(outcome))));

    // Assert
    assert!(outcomes[0].is_err(), "an error from run_until_stopped fails the test");
    assert!(outcomes[1].is_err(), "a panic in the server fails the test");
    assert!(outcomes[2].is_ok(), "a clean stop passes");
}
