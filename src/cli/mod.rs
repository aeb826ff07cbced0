//! bookingctl, the operator CLI: argument parsing and rendering only; every
//! operation is a call to bookingd's gRPC API (or, for backups, to
//! pg_dump/pg_restore). One file per area; add a variant to [`Command`] and
//! an arm to [`run`].

mod check;
mod health;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tonic::transport::{Channel, Endpoint};

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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ask the health service whether bookingd (or one service) is serving.
    Health(health::HealthArgs),
    // about and manual: on CheckArgs
    Check(check::CheckArgs),
}

impl Cli {
    pub async fn channel(&self) -> Result<Channel, Box<dyn std::error::Error>> {
        Ok(Endpoint::from_shared(self.addr.clone())?.connect().await?)
    }
}

/// Runs one command; the exit code tells scripts whether it succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match &cli.command {
        Command::Health(args) => health::run(&cli, args).await,
        Command::Check(args) => check::run(&cli, args).await,
    }
}
