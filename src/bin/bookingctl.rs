//! bookingctl: the operator CLI (see `bookingd::cli`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = bookingd::cli::Cli::parse();
    match bookingd::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bookingctl: error: {error}");
            ExitCode::FAILURE
        }
    }
}
