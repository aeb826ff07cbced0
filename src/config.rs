//! One typed `Settings`, read from command-line flags and environment
//! variables (flags win), validated before anything starts.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
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

    /// Load the demo catalog if the database has no tours yet (default: on for the embedded database).
    #[arg(long, env = "BOOKINGD_SEED_DEMO")]
    pub seed_demo: Option<bool>,

    /// Pins the booking path: true = legacy, false = atomic. Unset: the feature_flags table decides.
    #[arg(long, env = "USE_LEGACY_BOOKING_SERVICE")]
    pub use_legacy_booking_service: Option<bool>,

    /// How long the flag cache trusts a value before rereading it (NOTIFY usually beats it).
    #[arg(long, env = "BOOKINGD_FLAG_CACHE_TTL_MS", default_value_t = 1000)]
    pub flag_cache_ttl_ms: u64,

    /// Most seats (adults + children) one booking may take.
    #[arg(long, env = "BOOKINGD_MAX_SEATS_PER_BOOKING", default_value_t = 20)]
    pub max_seats_per_booking: i32,

    /// How long a pending booking holds its seats before it expires.
    #[arg(long, env = "BOOKINGD_HOLD_SECONDS", default_value_t = 1800)]
    pub hold_seconds: u32,

    /// How often expired holds are swept.
    #[arg(long, env = "BOOKINGD_HOLD_SWEEP_INTERVAL_MS", default_value_t = 5000)]
    pub hold_sweep_interval_ms: u64,

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
    #[arg(long, env = "BOOKINGD_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,

    /// Requests served at once; beyond it callers get RESOURCE_EXHAUSTED.
    #[arg(long, env = "BOOKINGD_CONCURRENCY_LIMIT", default_value_t = 512)]
    pub concurrency_limit: usize,

    /// How often the database is probed for the health service.
    #[arg(long, env = "BOOKINGD_HEALTH_PROBE_INTERVAL_MS", default_value_t = 1000)]
    pub health_probe_interval_ms: u64,

    /// Log format.
    #[arg(long, env = "BOOKINGD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// statement_timeout of each integrity check's query (SET LOCAL in its read-only transaction).
    #[arg(long, env = "BOOKINGD_CHECK_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub check_statement_timeout_ms: u64,

    /// lock_timeout of each integrity check: how long a check may wait behind a lock (e.g. DDL).
    #[arg(long, env = "BOOKINGD_CHECK_LOCK_TIMEOUT_MS", default_value_t = 1000)]
    pub check_lock_timeout_ms: u64,

    /// Integrity checks running at once in this process, across all requests.
    #[arg(long, env = "BOOKINGD_CHECK_CONCURRENCY", default_value_t = 4)]
    pub check_concurrency: usize,
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

    pub fn validate(&self) -> Result<(), String> {
        self.check_transport()?;
        if self.max_seats_per_booking < 1 {
            return Err("max seats per booking must be at least 1".into());
        }
        if self.hold_seconds < 1 {
            return Err("hold seconds must be at least 1".into());
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
        if self.check_statement_timeout_ms < 1 || self.check_lock_timeout_ms < 1 {
            return Err("check statement and lock timeouts must be at least 1 ms (0 would mean no timeout)".into());
        }
        Ok(())
    }

    /// Settings for tests and embedding: defaults, no environment.
    pub fn for_database(database_url: &str) -> Self {
        let mut settings = Settings::parse_from(["bookingd"]);
        settings.database_url = Some(SecretString::from(database_url.to_owned()));
        settings.listen_addr = "127.0.0.1:0".parse().expect("valid literal address");
        settings.seed_demo = Some(false);
        settings.use_legacy_booking_service = None;
        settings.principals_file = None;
        settings.principals = None;
        settings
    }

    pub fn flag_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.flag_cache_ttl_ms)
    }

    pub fn hold_duration(&self) -> Duration {
        Duration::from_secs(self.hold_seconds.into())
    }

    pub fn hold_sweep_interval(&self) -> Duration {
        Duration::from_millis(self.hold_sweep_interval_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn check_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.check_statement_timeout_ms)
    }

    pub fn check_lock_timeout(&self) -> Duration {
        Duration::from_millis(self.check_lock_timeout_ms)
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms)
    }
}
