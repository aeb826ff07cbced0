//! bookingctl: the operator CLI. Parses arguments and calls bookingd's gRPC API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[derive(Debug, Parser)]
#[command(name = "bookingctl", version, about = "Operate a bookingd server")]
struct Cli {
    /// bookingd's gRPC address.
    #[arg(long, env = "BOOKINGD_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ask the health service whether bookingd (or one service) is serving.
    Health {
        /// Service name; empty for the whole server.
        #[arg(default_value = "")]
        service: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bookingctl: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Health { service } => {
            let channel = tonic::transport::Endpoint::from_shared(cli.addr.clone())?.connect().await?;
            let mut client = HealthClient::new(channel);
            let status = client.check(HealthCheckRequest { service: service.clone() }).await?.into_inner().status();
            println!("{}: {}", if service.is_empty() { "server" } else { &service }, status.as_str_name());
            Ok(if status == tonic_health::pb::health_check_response::ServingStatus::Serving {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
