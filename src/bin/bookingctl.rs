//! bookingctl: the operator CLI (see `bookingd::cli`).

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigHandler, Signal, signal};

#[tokio::main]
async fn main() -> ExitCode {
    // `bookingctl repair | head` should end quietly, not panic on a closed pipe
    // SAFETY: restores the default disposition of SIGPIPE (no handler of
    // ours is replaced), before anything writes to stdout.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let cli = bookingd::cli::Cli::parse();
    match bookingd::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bookingctl: error: {error}");
            ExitCode::FAILURE
        }
    }
}
