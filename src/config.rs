//! One typed `Settings`, read from command-line flags and environment
//! variables (flags win), validated before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum, parser::ValueSource};
use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "bookingd", version, about = "gRPC booking service for a tour marketplace")]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(long, env = "BOOKINGD_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,

    /// PostgreSQL to use. Unset: start the embedded server in --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Where the embedded PostgreSQL keeps its data (and the generated admin token).
    #[arg(long, env = "BOOKINGD_DATA_DIR", default_value = ".bookingd")]
    pub data_dir: PathBuf,

    /// Directory with the PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin).
    #[arg(long, env = "BOOKINGD_PG_BIN_DIR")]
    pub pg_bin_dir: Option<PathBuf>,

    /// Port of the embedded PostgreSQL (loopback only).
    #[arg(long, env = "BOOKINGD_PG_PORT", default_value_t = 54329)]
    pub pg_port: u16,

    /// Maximum connections in the database pool.
    #[arg(long, env = "BOOKINGD_DB_MAX_CONNECTIONS", default_value_t = 20)]
    pub db_max_connections: u32,

    /// Migrate the schema (and deploy the database functions) at start, under an advisory lock; false: wait
    /// up to 2 minutes for `bookingd migrate` to have done it.
    #[arg(long, env = "BOOKINGD_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,

    /// Load the demo catalog if the database has no tours yet (default: on for the embedded database).
    #[arg(long, env = "BOOKINGD_SEED_DEMO")]
    pub seed_demo: Option<bool>,

    /// Pins the booking path: true = legacy, false = atomic. Unset: the feature_flags table decides.
    #[arg(long, env = "USE_LEGACY_BOOKING_SERVICE")]
    pub use_legacy_booking_service: Option<bool>,

    /// How long the flag cache trusts a value before rereading it (NOTIFY usually beats it).
    #[arg(long, env = "BOOKINGD_FLAG_CACHE_TTL", default_value = "1s", value_parser = parse_duration)]
    pub flag_cache_ttl: Duration,

    /// Most seats (adults + children) one booking may take.
    #[arg(long, env = "BOOKINGD_MAX_SEATS_PER_BOOKING", default_value_t = 20)]
    pub max_seats_per_booking: i32,

    /// How long a pending booking holds its seats before it expires.
    #[arg(long, env = "BOOKINGD_HOLD_DURATION", default_value = "30m", value_parser = parse_duration)]
    pub hold_duration: Duration,

    /// How often expired holds are swept.
    #[arg(long, env = "BOOKINGD_HOLD_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub hold_sweep_interval: Duration,

    /// TOML file of principals (name, role, token sha-256s, certificate names); reloaded on change and SIGHUP.
    #[arg(long, env = "BOOKINGD_PRINCIPALS_FILE")]
    pub principals_file: Option<PathBuf>,

    /// Principals for the simple case: `name:role:sha256hex[:sha256hex…]`, comma-separated.
    #[arg(long, env = "BOOKINGD_PRINCIPALS")]
    pub principals: Option<String>,

    /// Serve gRPC reflection (public, like health).
    #[arg(long, env = "BOOKINGD_REFLECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub reflection: bool,

    /// PEM certificate chain to serve gRPC over TLS (with --tls-key). Unset: plaintext.
    #[arg(long, env = "BOOKINGD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (refused if other users can read it).
    #[arg(long, env = "BOOKINGD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s) for mutual TLS: clients must present a certificate it signed; the certificate's
    /// DNS name or subject CN stands for the principal listing it under `certificate_names`.
    #[arg(long, env = "BOOKINGD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: also accept clients without a certificate (they then need a bearer token).
    #[arg(long, env = "BOOKINGD_TLS_CLIENT_AUTH_OPTIONAL")]
    pub tls_client_auth_optional: bool,

    /// Serve plaintext on a non-loopback address (refused otherwise).
    #[arg(long, env = "BOOKINGD_ALLOW_INSECURE_PLAINTEXT")]
    pub allow_insecure_plaintext: bool,

    /// Raw-token files standing for principals: the embedded default's generated tokens.
    #[arg(skip)]
    pub token_files: Vec<crate::auth::TokenFileSource>,

    /// Deadline for one unary RPC.
    #[arg(long, env = "BOOKINGD_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Requests served at once; beyond it callers get RESOURCE_EXHAUSTED.
    #[arg(long, env = "BOOKINGD_CONCURRENCY_LIMIT", default_value_t = 512)]
    pub concurrency_limit: usize,

    /// Calls waiting for a booking on one tour (holding no connection yet) beyond which more are refused
    /// with RESOURCE_EXHAUSTED `TOUR_BUSY`: one hot tour cannot queue the whole server behind its row lock.
    #[arg(long, env = "BOOKINGD_TOUR_MAX_WAITING", default_value_t = 64)]
    pub tour_max_waiting: usize,

    /// Bookings of one tour holding a database connection at once (unset: a quarter of the pool, at least 1);
    /// the others wait for their turn without a connection, so other tours always find one.
    #[arg(long, env = "BOOKINGD_TOUR_MAX_IN_DATABASE")]
    pub tour_max_in_database: Option<usize>,

    /// Largest request message accepted (bytes); larger ones are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "BOOKINGD_MAX_REQUEST_BYTES", default_value_t = 256 * 1024)]
    pub max_request_bytes: usize,

    /// Largest response message sent (bytes).
    #[arg(long, env = "BOOKINGD_MAX_RESPONSE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_response_bytes: usize,

    /// HTTP/2 keepalive: how often an idle connection is pinged.
    #[arg(long, env = "BOOKINGD_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub http2_keepalive_interval: Duration,

    /// HTTP/2 keepalive: how long a ping may go unanswered before the connection is closed.
    #[arg(long, env = "BOOKINGD_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http2_keepalive_timeout: Duration,

    /// `statement_timeout` of every pooled database session (below the request timeout, so no statement
    /// outlives the call that started it).
    #[arg(long, env = "BOOKINGD_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,

    /// `lock_timeout` of every pooled database session: how long a statement may wait for a row or table lock.
    #[arg(long, env = "BOOKINGD_DB_LOCK_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub db_lock_timeout: Duration,

    /// `idle_in_transaction_session_timeout` of every pooled session: a transaction left open by a stalled
    /// task is ended by the database and its locks released.
    #[arg(long, env = "BOOKINGD_DB_IDLE_IN_TRANSACTION_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_idle_in_transaction_timeout: Duration,

    /// How pooled sessions get the three database timeouts: `startup-parameters` (the `options` startup
    /// parameter, no round trip) or `set` (a SET batch after connecting; for poolers that refuse `options`,
    /// e.g. PgBouncer 1.18 in session mode).
    #[arg(long, env = "BOOKINGD_DB_TIMEOUTS_VIA", value_enum, default_value = "startup-parameters")]
    pub db_timeouts_via: crate::db::TimeoutsVia,

    /// On SIGTERM: how long in-flight calls may take to finish after the server stops accepting; then open
    /// streams are ended and the process exits.
    #[arg(long, env = "BOOKINGD_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How often the database is probed for the health service.
    #[arg(long, env = "BOOKINGD_HEALTH_PROBE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub health_probe_interval: Duration,

    /// Log format.
    #[arg(long, env = "BOOKINGD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// statement_timeout of each integrity check's query (SET LOCAL in its read-only transaction).
    #[arg(long, env = "BOOKINGD_CHECK_STATEMENT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub check_statement_timeout: Duration,

    /// lock_timeout of each integrity check: how long a check may wait behind a lock (e.g. DDL).
    #[arg(long, env = "BOOKINGD_CHECK_LOCK_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub check_lock_timeout: Duration,

    /// Integrity checks running at once in this process, across all requests.
    #[arg(long, env = "BOOKINGD_CHECK_CONCURRENCY", default_value_t = 4)]
    pub check_concurrency: usize,

    /// Group commit: atomic-path bookings that arrive while a booking call is in flight share one database
    /// call and one commit (false: one call per booking).
    #[arg(long, env = "BOOKINGD_BATCH_BOOKINGS", default_value_t = true, action = clap::ArgAction::Set)]
    pub batch_bookings: bool,

    /// Most bookings in one batch (1 to 64).
    #[arg(long, env = "BOOKINGD_BATCH_MAX_SIZE", default_value_t = 64)]
    pub batch_max_size: usize,

    /// Batches in flight at once, each on its own connection; a tour always uses the same lane.
    #[arg(long, env = "BOOKINGD_BATCH_LANES", default_value_t = 2)]
    pub batch_lanes: usize,

    /// The integer settings these durations replaced, accepted for one release.
    #[command(flatten)]
    pub deprecated: DeprecatedSettings,

    /// One line per deprecated setting that was given, for the log.
    #[arg(skip)]
    pub deprecations: Vec<Deprecation>,
}

/// The `*_MS` / `*_SECONDS` integers of the previous release (flags and
/// variables), hidden from `--help`. A given one is used when its
/// replacement is not set, and logged as deprecated either way.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeprecatedSettings {
    #[arg(long = "flag-cache-ttl-ms", env = "BOOKINGD_FLAG_CACHE_TTL_MS", hide = true)]
    flag_cache_ttl_ms: Option<u64>,
    #[arg(long = "hold-seconds", env = "BOOKINGD_HOLD_SECONDS", hide = true)]
    hold_seconds: Option<u64>,
    #[arg(long = "hold-sweep-interval-ms", env = "BOOKINGD_HOLD_SWEEP_INTERVAL_MS", hide = true)]
    hold_sweep_interval_ms: Option<u64>,
    #[arg(long = "request-timeout-ms", env = "BOOKINGD_REQUEST_TIMEOUT_MS", hide = true)]
    request_timeout_ms: Option<u64>,
    #[arg(long = "health-probe-interval-ms", env = "BOOKINGD_HEALTH_PROBE_INTERVAL_MS", hide = true)]
    health_probe_interval_ms: Option<u64>,
    #[arg(long = "check-statement-timeout-ms", env = "BOOKINGD_CHECK_STATEMENT_TIMEOUT_MS", hide = true)]
    check_statement_timeout_ms: Option<u64>,
    #[arg(long = "check-lock-timeout-ms", env = "BOOKINGD_CHECK_LOCK_TIMEOUT_MS", hide = true)]
    check_lock_timeout_ms: Option<u64>,
}

/// A deprecated setting that was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecation {
    /// The old variable (its flag is the same name in kebab case).
    pub old: &'static str,
    pub new: &'static str,
    /// The value it stood for, as the new setting writes it (`1s`, `250ms`).
    pub value: String,
    /// The new setting was given too, so the old one was ignored.
    pub ignored: bool,
}

/// One deprecated integer folded into its replacement: the value given (if
/// any), its unit, the old variable, the new field's id and variable, the
/// new field.
type Fold<'a> = (Option<u64>, fn(u64) -> Duration, &'static str, &'static str, &'static str, &'a mut Duration);

/// A human duration: `250ms`, `5s`, `30m`, `1h 30m`.
fn parse_duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

impl Settings {
    /// The transport rules: TLS needs a certificate and its key, mTLS needs
    /// TLS, and plaintext stays on loopback unless explicitly allowed.
    pub fn check_transport(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                return Err("--tls-cert and --tls-key go together".into());
            }
            (None, None) if self.tls_client_ca.is_some() => {
                return Err("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)".into());
            }
            (None, None) if !self.listen_addr.ip().is_loopback() && !self.allow_insecure_plaintext => {
                return Err(format!(
                    "refusing to serve plaintext on {}, which is not a loopback address: set --tls-cert and \
                     --tls-key, or pass --allow-insecure-plaintext",
                    self.listen_addr
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Flags and environment (flags win), with the deprecated names folded
    /// in. Exits with clap's message on a bad flag or value.
    pub fn load() -> Self {
        Self::load_from(std::env::args_os())
    }

    pub fn load_from<I, T>(args: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Settings::from_matches(&Settings::command().get_matches_from(args))
    }

    /// The settings in `matches` of a command that flattens `Settings` (as
    /// `bookingd` does, to add its `migrate` subcommand), with the
    /// deprecated names folded in.
    pub fn from_matches(matches: &ArgMatches) -> Self {
        let mut settings = Settings::from_arg_matches(matches).unwrap_or_else(|error| error.exit());
        settings.apply_deprecated(matches);
        settings
    }

    fn apply_deprecated(&mut self, matches: &ArgMatches) {
        let millis: fn(u64) -> Duration = Duration::from_millis;
        let seconds: fn(u64) -> Duration = Duration::from_secs;
        let old = self.deprecated.clone();
        let table: [Fold<'_>; 7] = [
            (
                old.flag_cache_ttl_ms,
                millis,
                "BOOKINGD_FLAG_CACHE_TTL_MS",
                "flag_cache_ttl",
                "BOOKINGD_FLAG_CACHE_TTL",
                &mut self.flag_cache_ttl,
            ),
            (
                old.hold_seconds,
                seconds,
                "BOOKINGD_HOLD_SECONDS",
                "hold_duration",
                "BOOKINGD_HOLD_DURATION",
                &mut self.hold_duration,
            ),
            (
                old.hold_sweep_interval_ms,
                millis,
                "BOOKINGD_HOLD_SWEEP_INTERVAL_MS",
                "hold_sweep_interval",
                "BOOKINGD_HOLD_SWEEP_INTERVAL",
                &mut self.hold_sweep_interval,
            ),
            (
                old.request_timeout_ms,
                millis,
                "BOOKINGD_REQUEST_TIMEOUT_MS",
                "request_timeout",
                "BOOKINGD_REQUEST_TIMEOUT",
                &mut self.request_timeout,
            ),
            (
                old.health_probe_interval_ms,
                millis,
                "BOOKINGD_HEALTH_PROBE_INTERVAL_MS",
                "health_probe_interval",
                "BOOKINGD_HEALTH_PROBE_INTERVAL",
                &mut self.health_probe_interval,
            ),
            (
                old.check_statement_timeout_ms,
                millis,
                "BOOKINGD_CHECK_STATEMENT_TIMEOUT_MS",
                "check_statement_timeout",
                "BOOKINGD_CHECK_STATEMENT_TIMEOUT",
                &mut self.check_statement_timeout,
            ),
            (
                old.check_lock_timeout_ms,
                millis,
                "BOOKINGD_CHECK_LOCK_TIMEOUT_MS",
                "check_lock_timeout",
                "BOOKINGD_CHECK_LOCK_TIMEOUT",
                &mut self.check_lock_timeout,
            ),
        ];
        for (given, unit, old_name, new_id, new_name, field) in table {
            let Some(given) = given else { continue };
            let value = unit(given);
            let ignored = matches.value_source(new_id) != Some(ValueSource::DefaultValue);
            if !ignored {
                *field = value;
            }
            let value = humantime::format_duration(value).to_string();
            self.deprecations.push(Deprecation { old: old_name, new: new_name, value, ignored });
        }
    }

    /// One warning per deprecated setting given (call once logging is up).
    pub fn log_deprecations(&self) {
        for d in &self.deprecations {
            if d.ignored {
                tracing::warn!(old = d.old, new = d.new, "deprecated setting ignored: its replacement is set too");
            } else {
                tracing::warn!(old = d.old, new = d.new, value = %d.value, "deprecated setting used; set the replacement instead (the old name goes in the next release)");
            }
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check_transport()?;
        if !(1..=crate::booking::batch::MAX_BATCH_SIZE).contains(&self.batch_max_size) {
            return Err(format!("batch max size must be between 1 and {}", crate::booking::batch::MAX_BATCH_SIZE));
        }
        if self.batch_lanes < 1 || self.batch_lanes as u32 >= self.db_max_connections {
            return Err("batch lanes must be at least 1 and fewer than the database pool's connections".into());
        }
        // every lane holds one of the booking paths' connections while it
        // has work: bookings booked alone (a short deadline, a collision)
        // need one left over
        if self.batch_bookings && self.batch_lanes >= self.booking_connections() {
            return Err(format!(
                "batch lanes must be fewer than the connections the booking paths may hold (half the pool: {})",
                self.booking_connections()
            ));
        }
        if self.max_seats_per_booking < 1 {
            return Err("max seats per booking must be at least 1".into());
        }
        if self.hold_duration < Duration::from_secs(1) {
            return Err("the hold duration must be at least 1s".into());
        }
        if self.db_max_connections < 2 {
            return Err("the database pool needs at least 2 connections".into());
        }
        if self.concurrency_limit < 1 {
            return Err("concurrency limit must be at least 1".into());
        }
        if self.check_concurrency < 1 {
            return Err("check concurrency must be at least 1".into());
        }
        if self.check_statement_timeout < Duration::from_millis(1) || self.check_lock_timeout < Duration::from_millis(1)
        {
            return Err("check statement and lock timeouts must be at least 1ms (0 would mean no timeout)".into());
        }
        if self.tour_max_waiting < 1 || self.tour_max_in_database == Some(0) {
            return Err("tour max waiting and tour max in database must be at least 1".into());
        }
        if self.max_request_bytes < 1024 || self.max_response_bytes < 1024 {
            return Err("max request and response bytes must be at least 1024".into());
        }
        // a statement must end (and roll back) before the call that started it
        // is answered DEADLINE_EXCEEDED, or the caller is told "failed" about
        // a booking that then commits
        if self.db_statement_timeout >= self.request_timeout || self.db_lock_timeout > self.db_statement_timeout {
            return Err(format!(
                "the database timeouts must be below the request timeout ({}): lock timeout <= statement timeout < \
                 request timeout",
                humantime::format_duration(self.request_timeout)
            ));
        }
        for (name, value) in [
            ("the db statement timeout", self.db_statement_timeout),
            ("the db lock timeout", self.db_lock_timeout),
            ("the db idle-in-transaction timeout", self.db_idle_in_transaction_timeout),
            ("the http2 keepalive interval", self.http2_keepalive_interval),
            ("the http2 keepalive timeout", self.http2_keepalive_timeout),
            ("the request timeout", self.request_timeout),
            ("the flag cache ttl", self.flag_cache_ttl),
            ("the hold sweep interval", self.hold_sweep_interval),
            ("the health probe interval", self.health_probe_interval),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be more than 0"));
            }
        }
        Ok(())
    }

    /// Connections the booking paths (batch lanes included) may hold at
    /// once, kept warm between bookings (`db::warm`): half the pool, so
    /// confirmations, checks and admin work always find one.
    pub fn booking_connections(&self) -> usize {
        (self.db_max_connections as usize / 2).max(1)
    }

    /// Bookings of one tour that may hold a database connection at once.
    pub fn tour_max_in_database(&self) -> usize {
        self.tour_max_in_database.unwrap_or((self.db_max_connections as usize / 4).max(1))
    }

    /// Settings for tests and embedding: no flags (the environment still
    /// applies, as clap reads it), this database, port 0, no seed, no token.
    pub fn for_database(database_url: &str) -> Self {
        let mut settings = Settings::load_from(["bookingd"]);
        settings.database_url = Some(SecretString::from(database_url.to_owned()));
        settings.listen_addr = "127.0.0.1:0".parse().expect("valid literal address");
        settings.seed_demo = Some(false);
        settings.use_legacy_booking_service = None;
        settings.principals_file = None;
        settings.principals = None;
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_as_people_write_them() {
        let settings = Settings::load_from(["bookingd", "--hold-duration", "90s", "--request-timeout", "250ms"]);
        assert_eq!(settings.hold_duration, Duration::from_secs(90));
        assert_eq!(settings.request_timeout, Duration::from_millis(250));
        assert!(settings.deprecations.is_empty());
    }

    #[test]
    fn an_old_integer_setting_still_works_and_is_reported() {
        let settings = Settings::load_from(["bookingd", "--hold-seconds", "60", "--flag-cache-ttl-ms", "250"]);
        assert_eq!(settings.hold_duration, Duration::from_secs(60));
        assert_eq!(settings.flag_cache_ttl, Duration::from_millis(250));
        let old: Vec<_> = settings.deprecations.iter().map(|d| (d.old, d.value.as_str(), d.ignored)).collect();
        assert_eq!(old, [("BOOKINGD_FLAG_CACHE_TTL_MS", "250ms", false), ("BOOKINGD_HOLD_SECONDS", "1m", false)]);
    }

    #[test]
    fn the_new_setting_wins_over_the_old_one() {
        let settings = Settings::load_from(["bookingd", "--hold-seconds", "60", "--hold-duration", "2m"]);
        assert_eq!(settings.hold_duration, Duration::from_secs(120));
        assert!(settings.deprecations.iter().all(|d| d.ignored), "{:?}", settings.deprecations);
    }

    #[test]
    fn batch_lanes_leave_the_booking_paths_a_connection_of_their_own() {
        let settings = Settings::load_from(["bookingd", "--db-max-connections", "6", "--batch-lanes", "2"]);
        assert_eq!(settings.booking_connections(), 3);
        assert_eq!(settings.validate(), Ok(()));
        let settings = Settings::load_from(["bookingd", "--db-max-connections", "4", "--batch-lanes", "2"]);
        assert!(settings.validate().unwrap_err().contains("half the pool: 2"));
        // without group commit the lanes are not started
        let settings = Settings::load_from([
            "bookingd",
            "--db-max-connections",
            "4",
            "--batch-lanes",
            "2",
            "--batch-bookings",
            "false",
        ]);
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn a_zero_interval_is_refused() {
        let mut settings = Settings::load_from(["bookingd"]);
        assert_eq!(settings.validate(), Ok(()));
        settings.health_probe_interval = Duration::ZERO;
        assert!(settings.validate().is_err());
    }
}
