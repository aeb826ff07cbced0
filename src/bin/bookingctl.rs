//! bookingctl: the operator CLI (see `bookingd::cli`).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // `bookingctl repair | head` should end quietly, not panic on a closed pipe
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // writes to stdout.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = bookingd::cli::Cli::parse();
    match bookingd::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("bookingctl: error: {error}");
            ExitCode::FAILURE
        }
    }
}
