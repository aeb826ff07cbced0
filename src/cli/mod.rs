//! bookingctl, the operator CLI: argument parsing and rendering only; every
//! operation is a call to bookingd's gRPC API (or, for backups, to
//! pg_dump/pg_restore). One file per area; add a variant to [`Command`] and
//! an arm to [`run`].

mod admin;
mod backup;
mod bench;
mod bookings;
mod check;
mod flag;
mod health;
pub mod load;
mod soak;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::proto::v1::{admin_service_client::AdminServiceClient, booking_service_client::BookingServiceClient};

#[derive(Debug, Parser)]
#[command(
    name = "bookingctl",
    version,
    about = "Operate a bookingd server",
    long_about = "Operate a bookingd server: health, the booking-path flag, integrity checks, repairs, \
                  maintenance pauses, database function deployment and backups; and the support desk's \
                  tools: tours list, book, bookings get|find|confirm|cancel.\n\n\
                  Every command talks to bookingd over gRPC (--addr); every command but health presents \
                  a bearer token (--token or BOOKINGD_ADMIN_TOKEN, else --token-file, else \
                  .bookingd/admin-token: the operator token the embedded default run generates). \
                  Read-only commands (check, flag get/history, repair without --apply) also work with an \
                  auditor's token. Backups talk to \
                  PostgreSQL directly with pg_dump and pg_restore."
)]
pub struct Cli {
    /// bookingd's gRPC address.
    #[arg(long, env = "BOOKINGD_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,

    /// Bearer token of the principal bookingctl acts as (operator, or auditor for read-only commands).
    #[arg(long, env = "BOOKINGD_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<SecretString>,

    /// File holding the token (first line) [default: .bookingd/admin-token if it exists].
    #[arg(long, env = "BOOKINGD_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// PEM CA certificate to verify bookingd's TLS certificate (with an https:// --addr) [default: system roots].
    #[arg(long, env = "BOOKINGD_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --client-key).
    #[arg(long, env = "BOOKINGD_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,

    /// PEM private key of --client-cert.
    #[arg(long, env = "BOOKINGD_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask the health service whether bookingd (or one service) is serving.
    Health(health::HealthArgs),
    /// Read or flip the booking-path flag (use_legacy_booking_service) and its history.
    Flag(flag::FlagArgs),
    // about and manual: on CheckArgs
    Check(check::CheckArgs),
    Repair(admin::RepairArgs),
    Clamp(admin::ClampArgs),
    Pause(admin::PauseArgs),
    Resume(admin::ResumeArgs),
    Functions(admin::FunctionsArgs),
    Backup(backup::BackupArgs),
    // about and manual: on BenchArgs / SoakArgs
    Bench(bench::BenchArgs),
    Soak(soak::SoakArgs),
    /// Look a booking up (by id or reference, or a customer's by e-mail/WhatsApp), confirm or cancel it.
    Bookings(bookings::BookingsArgs),
    /// List bookable tours.
    Tours(bookings::ToursArgs),
    /// Make a booking (a seat hold; --confirm to confirm it at once).
    Book(bookings::BookArgs),
}

impl Cli {
    /// A connection to --addr: TLS for https:// (verified with --ca-cert or
    /// the system roots, presenting --client-cert when given), else plaintext.
    pub async fn channel(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        let mut endpoint = Endpoint::from_shared(self.addr.clone())?;
        let wants_tls = self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if self.addr.starts_with("https://") {
            endpoint = endpoint.tls_config(self.tls_config()?)?;
        } else if wants_tls {
            return Err("--ca-cert, --client-cert and --client-key need an https:// --addr".into());
        }
        Ok(endpoint.connect().await?)
    }

    fn tls_config(&self) -> Result<ClientTlsConfig, Box<dyn std::error::Error>> {
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
        let tls = match &self.ca_cert {
            Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(path)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Ok(tls.identity(Identity::from_pem(read(cert)?, read(key)?))),
            (None, None) => Ok(tls),
            _ => Err("--client-cert and --client-key go together".into()),
        }
    }

    /// The token: --token / BOOKINGD_ADMIN_TOKEN, else the first line of
    /// --token-file, else of `.bookingd/admin-token` when present.
    pub fn operator_token(&self) -> Result<SecretString, Box<dyn std::error::Error>> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let default = PathBuf::from(DEFAULT_TOKEN_FILE);
        let path = match &self.token_file {
            Some(path) => path.clone(),
            None if default.exists() => default,
            None => {
                return Err("this command needs a token (the operator token, or an auditor's for read-only \
                            commands): --token, BOOKINGD_ADMIN_TOKEN or --token-file (the embedded default \
                            writes .bookingd/admin-token)"
                    .into());
            }
        };
        token_from_file(&path)
    }

    /// The load tool's credential: --token / --token-file like every command,
    /// else the embedded default's booking-client token, else its operator token.
    pub fn load_credential(&self) -> Result<Bearer, Box<dyn std::error::Error>> {
        let booking_client = PathBuf::from(DEFAULT_BOOKING_CLIENT_TOKEN_FILE);
        if self.token.is_none() && self.token_file.is_none() && booking_client.exists() {
            return Bearer::new(&token_from_file(&booking_client)?);
        }
        Bearer::new(&self.operator_token()?)
    }

    /// A channel whose every call presents the token; under mutual TLS the
    /// client certificate alone may stand for the principal (no token needed,
    /// and the default token file is then not consulted).
    pub async fn authorized_channel(&self) -> Result<AuthorizedChannel, Box<dyn std::error::Error>> {
        let certificate_only = self.client_cert.is_some() && self.token.is_none() && self.token_file.is_none();
        let bearer = if certificate_only { Bearer::none() } else { Bearer::new(&self.operator_token()?)? };
        Ok(InterceptedService::new(self.channel().await?, bearer))
    }

    /// An AdminService client presenting the token.
    pub async fn admin_client(&self) -> Result<AdminClient, Box<dyn std::error::Error>> {
        Ok(AdminServiceClient::new(self.authorized_channel().await?))
    }

    /// A BookingService client presenting the token (an operator's, or a
    /// booking client's).
    pub async fn booking_client(&self) -> Result<BookingClient, Box<dyn std::error::Error>> {
        Ok(BookingServiceClient::new(self.authorized_channel().await?))
    }
}

pub type BookingClient = BookingServiceClient<AuthorizedChannel>;

/// The token on the first line of `path`.
pub fn token_from_file(path: &std::path::Path) -> Result<SecretString, Box<dyn std::error::Error>> {
    let token = crate::auth::token::read_token_file(path)
        .map_err(|e| format!("cannot read the token from {}: {e}", path.display()))?;
    Ok(SecretString::from(token))
}

const DEFAULT_TOKEN_FILE: &str = ".bookingd/admin-token";
const DEFAULT_BOOKING_CLIENT_TOKEN_FILE: &str = ".bookingd/booking-client-token";

pub type AuthorizedChannel = InterceptedService<Channel, Bearer>;
pub type AdminClient = AdminServiceClient<AuthorizedChannel>;

/// Adds `authorization: Bearer <token>` (marked sensitive) to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &SecretString) -> Result<Self, Box<dyn std::error::Error>> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret().trim())
            .parse()
            .map_err(|_| "the token must be printable ASCII")?;
        value.set_sensitive(true);
        Ok(Bearer(Some(value)))
    }

    /// Presents nothing: the connection's client certificate is the credential.
    pub fn none() -> Self {
        Bearer(None)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Runs one command; the exit code tells scripts whether it succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match &cli.command {
        Command::Health(args) => health::run(&cli, args).await,
        Command::Flag(args) => flag::run(&cli, args).await,
        Command::Check(args) => check::run(&cli, args).await,
        Command::Repair(args) => admin::repair(&cli, args).await,
        Command::Clamp(args) => admin::clamp(&cli, args).await,
        Command::Pause(args) => admin::pause(&cli, args).await,
        Command::Resume(args) => admin::resume(&cli, args).await,
        Command::Functions(args) => admin::functions(&cli, args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Bench(args) => bench::run(&cli, args).await,
        Command::Soak(args) => soak::run(&cli, args).await,
        Command::Bookings(args) => bookings::bookings(&cli, args).await,
        Command::Tours(args) => bookings::tours(&cli, args).await,
        Command::Book(args) => bookings::book(&cli, args).await,
    }
}
