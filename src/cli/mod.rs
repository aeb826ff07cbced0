//! bookingctl, the operator CLI: argument parsing and rendering only; every
//! operation is a call to bookingd's gRPC API (or, for backups, to
//! pg_dump/pg_restore). One file per area; add a variant to [`Command`] and
//! an arm to [`run`].

mod check;
mod flag;
mod health;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::proto::v1::admin_service_client::AdminServiceClient;

#[derive(Debug, Parser)]
#[command(
    name = "bookingctl",
    version,
    about = "Operate a bookingd server",
    long_about = "Operate a bookingd server: health, the booking-path flag, integrity checks, repairs, \
                  maintenance pauses, database function deployment and backups.\n\n\
                  Every command talks to bookingd over gRPC (--addr); admin commands present the \
                  operator token (--token or BOOKINGD_ADMIN_TOKEN)."
)]
pub struct Cli {
    /// bookingd's gRPC address.
    #[arg(long, env = "BOOKINGD_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,

    /// Operator bearer token for admin commands.
    #[arg(long, env = "BOOKINGD_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<SecretString>,

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
}

impl Cli {
    pub async fn channel(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        Ok(Endpoint::from_shared(self.addr.clone())?.connect().await?)
    }

    /// AdminService client presenting the operator token.
    pub async fn admin_client(&self) -> Result<AdminClient, Box<dyn std::error::Error>> {
        let token =
            self.token.as_ref().ok_or("admin commands need the operator token: --token or BOOKINGD_ADMIN_TOKEN")?;
        let header: MetadataValue<Ascii> = format!("Bearer {}", token.expose_secret().trim())
            .parse()
            .map_err(|_| "the operator token must be printable ASCII")?;
        Ok(AdminServiceClient::with_interceptor(self.channel().await?, BearerToken(header)))
    }
}

pub type AdminClient = AdminServiceClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` to every admin request.
#[derive(Clone)]
pub struct BearerToken(MetadataValue<Ascii>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Runs one command; the exit code tells scripts whether it succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match &cli.command {
        Command::Health(args) => health::run(&cli, args).await,
        Command::Flag(args) => flag::run(&cli, args).await,
        Command::Check(args) => check::run(&cli, args).await,
    }
}
