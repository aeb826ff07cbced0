//! bookingd: parse settings, start the embedded database if no
//! DATABASE_URL is given, serve until SIGINT/SIGTERM, stop cleanly.
//! `bookingd migrate` only prepares the database (see `db::schema`) and exits.

use std::process::ExitCode;

use bookingd::{
    config::Settings,
    embedded_pg::{EmbeddedPgOptions, EmbeddedPostgres},
    startup::Application,
    telemetry,
};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Parser)]
#[command(name = "bookingd", version, about = "gRPC booking service for a tour marketplace")]
struct Cli {
    /// Settings (flags before the subcommand, or environment variables).
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the schema migrations, deploy the database functions on the database's first start and (with
    /// --seed-demo true) load the demo catalog, then exit. Needs DATABASE_URL. Safe to run from several
    /// replicas at once: an advisory lock lets one migrate while the others wait.
    Migrate,
}

/// How long `bookingd migrate` retries reaching a database that is still starting.
const MIGRATE_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

// mimalloc: about a fifth of bookingd's CPU per booking was glibc's malloc
// and free (HTTP/2 frames, protobuf, rows, JSON); with mimalloc bookingd
// spends 8-12 % less CPU per booking (docs/scaling.md)
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let command = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit()).command;
    let mut settings = Settings::from_matches(&matches);
    // Kept until after the server and the database have stopped: dropping it
    // flushes the last spans and metrics.
    let _telemetry = match telemetry::init(settings.log_format) {
        Ok(guard) => guard,
        Err(problem) => {
            eprintln!("bookingd: invalid telemetry configuration: {problem}");
            return ExitCode::from(2);
        }
    };
    settings.log_deprecations();
    if let Err(problem) = settings.validate() {
        eprintln!("bookingd: invalid configuration: {problem}");
        return ExitCode::from(2);
    }
    let outcome = match command {
        Some(Command::Migrate) => migrate(&settings).await,
        None => run(&mut settings).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bookingd: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: &mut Settings) -> Result<(), Box<dyn std::error::Error>> {
    // a taken gRPC port should fail in a second, not after starting a database
    std::net::TcpListener::bind(settings.listen_addr)
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen_addr))?;
    let mut embedded = None;
    if settings.database_url.is_none() {
        // Started from the main thread on purpose: the server's parent-death
        // signal is tied to the thread that spawned it, and this one lives
        // as long as the process.
        let server = EmbeddedPostgres::start(EmbeddedPgOptions {
            data_dir: settings.data_dir.join("pgdata"),
            port: settings.pg_port,
            bin_dir: settings.pg_bin_dir.clone(),
            ephemeral: false,
            max_connections: 100,
        })?;
        tracing::info!(port = server.port(), data_dir = %settings.data_dir.display(), "embedded postgresql started");
        settings.database_url = Some(SecretString::from(server.url("postgres")));
        settings.seed_demo.get_or_insert(true);
        embedded = Some(server);
        if settings.principals_file.is_none() && settings.principals.is_none() {
            generate_default_tokens(settings)?;
        }
    }

    let stop_requested = shutdown_signal();
    let app = Application::build(settings.clone()).await?;
    let addr = app.local_addr();
    tracing::info!(
        %addr,
        "bookingd serving; try: grpcurl -plaintext {addr} list   or   bookingctl --addr http://{addr} health"
    );
    let result = app.run_until_stopped(stop_requested).await;
    tracing::info!("grpc server stopped");
    if let Some(mut server) = embedded {
        server.stop();
        tracing::info!("embedded postgresql stopped");
    }
    Ok(result?)
}

async fn migrate(settings: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let url = settings
        .database_url
        .as_ref()
        .ok_or("migrate needs DATABASE_URL (the embedded default migrates when it starts)")?;
    let pool = bookingd::db::connect(
        url.expose_secret(),
        2,
        MIGRATE_CONNECT_WAIT,
        // a migration may take long; the server's request timeouts do not apply
        bookingd::db::SessionTimeouts::NONE,
    )
    .await?;
    bookingd::db::schema::prepare(&pool, settings.seed_demo.unwrap_or(false)).await?;
    pool.close().await;
    Ok(())
}

/// The embedded default's two principals, `operator` and `booking-client`,
/// each with a generated token in a 0600 file of the data directory
/// (bookingctl reads the operator's from there). Paths are logged, tokens never.
fn generate_default_tokens(settings: &mut Settings) -> Result<(), String> {
    use bookingd::auth::{Role, TokenFileSource, token};
    for (name, role, file) in [
        ("operator", Role::Operator, token::OPERATOR_TOKEN_FILE),
        ("booking-client", Role::BookingClient, token::BOOKING_CLIENT_TOKEN_FILE),
    ] {
        let (path, created) = token::ensure_token_file(&settings.data_dir, file)
            .map_err(|e| format!("cannot create the {name} token in {}: {e}", settings.data_dir.display()))?;
        tracing::info!(principal = name, role = %role, path = %path.display(), created, "generated principal token file");
        settings.token_files.push(TokenFileSource { name: name.to_owned(), role, path });
    }
    Ok(())
}

/// SIGTERM or ctrl-c. The handlers are installed when this is called, not
/// when the future is first polled: a SIGTERM that arrives right after the
/// server said it serves must start the orderly stop, not kill the process
/// with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                _ = interrupt.recv() => tracing::info!("ctrl-c received, shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            },
            (term, interrupt) => {
                let error = term.err().or(interrupt.err()).map(|e| e.to_string()).unwrap_or_default();
                tracing::error!(%error, "cannot listen for SIGTERM/SIGINT; only ctrl-c stops bookingd");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
