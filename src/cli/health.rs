//! `bookingctl health`.

use std::process::ExitCode;

use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use super::Cli;

#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// Service name (e.g. booking.v1.BookingService); empty for the whole server.
    #[arg(default_value = "")]
    pub service: String,
}

pub async fn run(cli: &Cli, args: &HealthArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut client = HealthClient::new(cli.channel().await?);
    let status = client.check(HealthCheckRequest { service: args.service.clone() }).await?.into_inner().status();
    let name = if args.service.is_empty() { "server" } else { &args.service };
    println!("{name}: {}", status.as_str_name());
    Ok(if status == ServingStatus::Serving { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
