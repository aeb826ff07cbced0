//! The database: pool (and its sessions' timeouts), the caller's deadline
//! carried into transactions, schema migrations, the deployable atomic-path
//! functions, the demo catalog, and database URLs.

pub mod deadline;
pub mod error;
pub mod functions;
pub mod schema;
pub mod seed;
pub mod url;
pub mod warm;

use std::time::{Duration, Instant};

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("invalid DATABASE_URL: {0}")]
    BadUrl(String),
    #[error("cannot reach the database at {target} within {waited:?}: {source}")]
    Unreachable { target: String, waited: Duration, source: sqlx::Error },
    #[error("migrating the schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the schema is not current: {pending} migration(s) still missing after waiting {waited:?} (run `bookingd migrate`)"
    )]
    NotMigrated { pending: usize, waited: Duration },
    #[error("database error while {action}: {source}")]
    Query { action: &'static str, source: sqlx::Error },
}

/// `application_name` of every bookingd session (the flag listener and the
/// integrity checks add to it): how `backup restore` recognises a live
/// bookingd in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "bookingd";

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The timeouts every session of a pool starts with, so no statement, lock
/// wait or forgotten transaction outlives the call that started it (the
/// request timeout only drops the future; the database would go on). `None`
/// leaves the server's default (normally: no timeout). Sent as startup
/// parameters by default, so a new connection pays no extra round trip;
/// `via` picks `SET` after connecting instead, for poolers that refuse the
/// `options` startup parameter (PgBouncer 1.18 answers "unsupported startup
/// parameter: options"; telling it to ignore `options` drops the timeouts
/// silently).
///
/// Work that must not have them sets its own: schema migrations turn them
/// off on their connection, the functions' DDL and the integrity checks and
/// admin repairs set `lock_timeout`/`statement_timeout` per transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTimeouts {
    pub statement: Option<Duration>,
    pub lock: Option<Duration>,
    pub idle_in_transaction: Option<Duration>,
    pub via: TimeoutsVia,
}

/// How a session gets its timeouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeoutsVia {
    /// The `options` startup parameter (`-c statement_timeout=…`): no round trip.
    #[default]
    StartupParameters,
    /// One `SET …` batch right after connecting: one round trip per new
    /// connection, through any pooler that keeps a client on one server
    /// connection (PgBouncer in session mode).
    Set,
}

impl SessionTimeouts {
    /// No timeouts: `bookingd migrate` and other long administrative work.
    pub const NONE: SessionTimeouts =
        SessionTimeouts { statement: None, lock: None, idle_in_transaction: None, via: TimeoutsVia::StartupParameters };

    fn startup_parameters(&self) -> Vec<(&'static str, String)> {
        match self.via {
            TimeoutsVia::StartupParameters => self.settings(),
            TimeoutsVia::Set => Vec::new(),
        }
    }

    /// The `SET` batch run on every new connection (`via = Set`), if any:
    /// simple protocol, so it needs no prepared statement.
    fn set_statements(&self) -> Option<String> {
        let settings = match self.via {
            TimeoutsVia::StartupParameters => return None,
            TimeoutsVia::Set => self.settings(),
        };
        // values are formatted here as `<n>ms`: nothing to quote
        (!settings.is_empty())
            .then(|| settings.iter().map(|(name, value)| format!("set {name} = '{value}';")).collect::<String>())
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        [
            ("statement_timeout", self.statement),
            ("lock_timeout", self.lock),
            ("idle_in_transaction_session_timeout", self.idle_in_transaction),
        ]
        .into_iter()
        // 0 would mean "no timeout": a configured one is at least 1ms
        .filter_map(|(name, value)| value.map(|v| (name, format!("{}ms", v.as_millis().max(1)))))
        .collect()
    }
}

/// Connects with retries until `wait` has passed: a database that is still
/// starting is normal, a wrong URL is not, and only the latter fails fast.
/// Every session of the pool starts with `timeouts`.
pub async fn connect(
    url: &str,
    max_connections: u32,
    wait: Duration,
    timeouts: SessionTimeouts,
) -> Result<PgPool, DbSetupError> {
    let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| DbSetupError::BadUrl(e.to_string()))?;
    let options = options.application_name(APPLICATION_NAME);
    let startup_parameters = timeouts.startup_parameters();
    // sqlx sends an `options` startup parameter (empty) once `.options()` is
    // called, even with nothing in it, and a pooler that refuses `options`
    // then refuses the connection: only call it with something to send
    let options = if startup_parameters.is_empty() { options } else { options.options(startup_parameters) };
    let set_statements = timeouts.set_statements();
    let target = format!("{}:{}/{}", options.get_host(), options.get_port(), options.get_database().unwrap_or(""));
    let deadline = Instant::now() + wait;
    loop {
        let set_statements = set_statements.clone();
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // no `select 1`-style ping before every checkout (a round trip on
            // every request): a connection that died is found by its next
            // query, which fails as unavailable, and sqlx pings it on release
            // anyway and discards it if broken
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                let set_statements = set_statements.clone();
                Box::pin(async move {
                    if let Some(sql) = set_statements {
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(error @ sqlx::Error::Database(_)) => {
                // the server answered and said no (unknown database, bad password)
                return Err(DbSetupError::Unreachable { target, waited: Duration::ZERO, source: error });
            }
            Err(error) if Instant::now() >= deadline => {
                return Err(DbSetupError::Unreachable { target, waited: wait, source: error });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub async fn migrate(pool: &PgPool) -> Result<(), DbSetupError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// `select 1` with a deadline: the health probe.
pub async fn ping(pool: &PgPool, timeout: Duration) -> bool {
    matches!(tokio::time::timeout(timeout, sqlx::query("select 1").execute(pool)).await, Ok(Ok(_)))
}

/// The key stored for `purpose`, storing `candidate` if there is none yet
/// (one statement, so processes starting together agree on one key).
pub async fn service_key(pool: &PgPool, purpose: &str, candidate: &[u8]) -> Result<Vec<u8>, sqlx::Error> {
    sqlx::query_scalar(
        "insert into service_keys (purpose, key) values ($1, $2)
         on conflict (purpose) do update set purpose = excluded.purpose
         returning key",
    )
    .bind(purpose)
    .bind(candidate)
    .fetch_one(pool)
    .await
}
