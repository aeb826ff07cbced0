//! bookingctl: the operator CLI (see `bookingd::cli`).

use std::process::ExitCode;

use clap::Parser;
use nix::sys::signal::{SigHandler, Signal, signal};

// the load generator allocates per call like the server does (see main.rs)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// one thread: an operator CLI needs no more, and as a load generator
// (`bench`, `soak`) it should take as little as possible of the machine it
// measures (measured: less client CPU per booking than two workers waking
// each other)
#[tokio::main(flavor = "current_thread")]
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
