//! Wiring: settings in, a bound server out. `Application::build` does every
//! fallible step (database, migrations, listener) so that errors surface
//! before the first request; `run_until_stopped` serves until the shutdown
//! future resolves, then stops in a fixed order (see there) that answers
//! in-flight calls, ends open streams and exits within the grace period.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::{
    auth::{Authenticator, PrincipalConfigError, Sources},
    booking::{
        self, AtomicPathStatus, Bookings,
        batch::{BatchSettings, Batcher},
        tour_gate::TourGate,
        types::BookingRules,
    },
    config::Settings,
    db::{self, DbSetupError, warm::WarmConnections},
    flags::Flags,
    grpc::{
        admin::AdminApi,
        auth::AuthLayer,
        booking::BookingApi,
        health::{ATOMIC_PATH, Health},
        integrity::IntegrityApi,
        limits::{LoadShed, MessageLimitLayer},
        shutdown::EndStreamsLayer,
    },
    integrity::{IntegrityRunner, RunnerSettings},
    proto::{
        self,
        v1::{
            admin_service_server::AdminServiceServer, booking_service_server::BookingServiceServer,
            integrity_service_server::IntegrityServiceServer,
        },
    },
    telemetry::RpcTraceLayer,
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("no DATABASE_URL given (main starts the embedded database and passes its URL)")]
    NoDatabase,
    #[error(transparent)]
    Database(#[from] DbSetupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Principals(#[from] PrincipalConfigError),
    #[error("{0}")]
    Transport(String),
    #[error("gRPC reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// The message size limits (BOOKINGD_MAX_REQUEST_BYTES, _RESPONSE_BYTES) on
/// one generated server: each has them as its own methods, with no trait in
/// common. A larger request is refused RESOURCE_EXHAUSTED before its handler
/// runs.
macro_rules! with_message_limits {
    ($server:expr, $settings:expr) => {
        $server
            .max_decoding_message_size($settings.max_request_bytes)
            .max_encoding_message_size($settings.max_response_bytes)
    };
}

/// How long a server started with `--migrate-on-start false` waits for the
/// schema to become current before giving up.
const MIGRATION_WAIT: Duration = Duration::from_secs(120);

/// After in-flight calls and open streams were ended: how long connections
/// get to close, background tasks to stop, and the pool to close, each.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type ServeFuture = Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

pub struct Application {
    local_addr: SocketAddr,
    pool: PgPool,
    flags: Flags,
    health: Health,
    /// Cancelled when shutdown begins: the server stops accepting (GOAWAY)
    /// and health stops following the database.
    stopping: CancellationToken,
    /// Cancelled once in-flight calls are done or the grace period is over:
    /// open streams end with SHUTTING_DOWN.
    end_streams: CancellationToken,
    /// Cancelled last: background tasks (sweeper, probes, batch lanes).
    stop: CancellationToken,
    shutdown_grace: Duration,
    server: ServeFuture,
    background: JoinSet<()>,
    /// The concurrency limit; shutdown waits on it for in-flight calls.
    load_shed: LoadShed,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // before the database: a refused transport should fail in a second
        settings.check_transport().map_err(StartupError::Transport)?;
        let tls = server_tls(&settings)?;
        let url = settings.database_url.as_ref().ok_or(StartupError::NoDatabase)?;
        let timeouts = db::SessionTimeouts {
            statement: Some(settings.db_statement_timeout),
            lock: Some(settings.db_lock_timeout),
            idle_in_transaction: Some(settings.db_idle_in_transaction_timeout),
            via: settings.db_timeouts_via,
        };
        let pool =
            db::connect(url.expose_secret(), settings.db_max_connections, Duration::from_secs(15), timeouts).await?;
        // one process at a time (advisory lock), or wait for `bookingd migrate`
        if settings.migrate_on_start {
            db::schema::prepare(&pool, settings.seed_demo.unwrap_or(false)).await?;
        } else {
            db::schema::wait_until_current(&pool, MIGRATION_WAIT).await?;
        }

        let authenticator = authenticator(&settings)?;

        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .map_err(|source| StartupError::Bind { addr: settings.listen_addr, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| StartupError::Bind { addr: settings.listen_addr, source })?;

        let stopping = CancellationToken::new();
        let end_streams = CancellationToken::new();
        let stop = CancellationToken::new();
        let mut background = JoinSet::new();

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let health = Health::new(health_reporter);
        health.set(crate::grpc::health::LIVENESS, true).await;
        for name in crate::grpc::health::DATABASE_BACKED {
            health.set(name, true).await;
        }
        // stops at shutdown, so that a database probe cannot report SERVING
        // again while the process is stopping
        background.spawn(health.clone().watch_database(pool.clone(), settings.health_probe_interval, stopping.clone()));

        // one resolver for the whole process: every service that asks for a
        // flag must share its cache, so a SetFlag is seen by all at once
        let flags = Flags::new(pool.clone(), settings.use_legacy_booking_service, settings.flag_cache_ttl);
        background.spawn(flags.clone().listen(stop.clone()));
        let bookings = start_bookings(&settings, &pool, flags.clone(), &health, &stop, &mut background).await;

        let reflection = if settings.reflection {
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                    .build_v1()?,
            )
        } else {
            None
        };
        background.spawn(authenticator.clone().run_reloader(PRINCIPALS_RELOAD_INTERVAL, stop.clone()));

        background.spawn(crate::telemetry::metrics::sample_db_pool(
            pool.clone(),
            settings.db_max_connections,
            Duration::from_secs(10),
            stop.clone(),
        ));

        let load_shed = LoadShed::new(settings.concurrency_limit);
        // keepalive: a peer that vanished without a FIN (a crashed client, a
        // dropped NAT entry) is noticed and its connection and streams closed
        let mut builder = Server::builder()
            .http2_keepalive_interval(Some(settings.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(settings.http2_keepalive_timeout));
        if let Some(tls) = tls {
            builder =
                builder.tls_config(tls).map_err(|e| StartupError::Transport(format!("TLS configuration: {e}")))?;
        }
        let router = builder
            .timeout(settings.request_timeout)
            .layer(RpcTraceLayer::new())
            .layer(EndStreamsLayer::new(end_streams.clone()))
            // inside the trace layer, so shed calls have a span and a status;
            // before access, so a shed call costs no token check
            .layer(load_shed.layer())
            // inside the trace layer: refused calls get their span, admitted ones its enduser.id
            .layer(AuthLayer::new(authenticator))
            .layer(MessageLimitLayer::new(settings.max_request_bytes))
            // the call's deadline reaches its transactions (db::deadline)
            .layer(crate::grpc::deadline::DeadlineLayer::new(settings.request_timeout, settings.db_statement_timeout))
            .add_service(with_message_limits!(health_service, settings))
            .add_optional_service(reflection.map(|reflection| with_message_limits!(reflection, settings)))
            .add_service(with_message_limits!(BookingServiceServer::new(BookingApi::new(bookings.clone())), settings))
            .add_service(with_message_limits!(
                IntegrityServiceServer::new(IntegrityApi::new(integrity_runner(&settings, &pool), end_streams.clone())),
                settings
            ))
            .add_service(with_message_limits!(
                AdminServiceServer::new(AdminApi::new(
                    pool.clone(),
                    flags.clone(),
                    bookings.atomic_path_status().clone()
                )),
                settings
            ));

        let server =
            Box::pin(router.serve_with_incoming_shutdown(incoming(listener), stopping.clone().cancelled_owned()));

        Ok(Application {
            local_addr,
            pool,
            flags,
            health,
            stopping,
            end_streams,
            stop,
            shutdown_grace: settings.shutdown_grace,
            server,
            background,
            load_shed,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The process's flag resolver (the instance the services use).
    pub fn flags(&self) -> &Flags {
        &self.flags
    }

    /// The concurrency limit: calls in flight, and a wait for them to drain.
    pub fn load_shed(&self) -> &LoadShed {
        &self.load_shed
    }

    /// Serves until `shutdown` resolves, then stops in this order:
    /// 1. health NOT_SERVING (readiness: load balancers stop sending), the
    ///    liveness name stays SERVING (the process is not broken);
    /// 2. no new connections; clients get GOAWAY and reconnect elsewhere;
    /// 3. in-flight calls finish, for at most the grace period (it ends
    ///    early once the last admitted unary call is answered: the
    ///    concurrency limit's [`LoadShed::drained`]);
    /// 4. open streams (health Watch, WatchChecks, reflection) end with
    ///    UNAVAILABLE `SHUTTING_DOWN`; connections still open
    ///    [`CLOSE_WAIT`] later are closed;
    /// 5. background tasks stop and the pool closes (each bounded).
    ///
    /// Whatever clients hold open, this returns within grace + about
    /// 3 × [`CLOSE_WAIT`]. A call cut off at step 4 was one statement or one
    /// transaction: the database commits it whole or not at all, and a retry
    /// with the same `request_id` finds out which.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Application {
            pool,
            health,
            stopping,
            end_streams,
            stop,
            shutdown_grace,
            mut server,
            mut background,
            load_shed,
            ..
        } = self;
        let served = tokio::select! {
            served = &mut server => Some(served),
            _ = shutdown => None,
        };
        let served = match served {
            // the server failed by itself: nothing left to drain
            Some(served) => served,
            None => {
                tracing::info!(grace = %humantime::format_duration(shutdown_grace), "stopping: health NOT_SERVING, no new connections, in-flight calls have the grace period");
                health.stop_serving().await;
                stopping.cancel();
                // a stream holds no permit, so once the unary calls are
                // answered only streams are left, and nothing is gained by
                // waiting out the grace period for them
                let finished = tokio::time::timeout(shutdown_grace, async {
                    tokio::select! {
                        served = &mut server => Some(served),
                        () = load_shed.drained() => None,
                    }
                })
                .await;
                match finished {
                    Ok(Some(served)) => served,
                    unfinished => {
                        if unfinished.is_err() {
                            tracing::warn!("grace period over: ending open streams");
                        } else {
                            tracing::info!("in-flight calls answered: ending open streams");
                        }
                        end_streams.cancel();
                        match tokio::time::timeout(CLOSE_WAIT, &mut server).await {
                            Ok(served) => served,
                            Err(_) => {
                                tracing::warn!("connections still open after the grace period; closing them");
                                Ok(())
                            }
                        }
                    }
                }
            }
        };
        // dropping the server closes what is left of its connections
        drop(server);
        stopping.cancel();
        end_streams.cancel();
        stop.cancel();
        if tokio::time::timeout(CLOSE_WAIT, async { while background.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!("background tasks did not stop in time; aborting them");
            background.shutdown().await;
        }
        // close() waits for checked-out connections; one stuck behind a lock
        // would hold the exit until its statement timeout
        if tokio::time::timeout(CLOSE_WAIT, pool.close()).await.is_err() {
            tracing::warn!("database pool did not close in time; exiting anyway");
        }
        served.map_err(StartupError::from)
    }
}

/// The booking service and its background tasks: the hold sweeper, the
/// atomic-path probe, and the mirror of the atomic path's status into health
/// (`ATOMIC_PATH` NOT_SERVING while the functions are missing; the overall
/// service stays SERVING because the legacy path takes over).
async fn start_bookings(
    settings: &Settings,
    pool: &PgPool,
    flags: Flags,
    health: &Health,
    stop: &CancellationToken,
    background: &mut JoinSet<()>,
) -> Bookings {
    let rules = BookingRules { max_seats_per_booking: settings.max_seats_per_booking, hold: settings.hold_duration };
    let atomic_path = AtomicPathStatus::new();
    // know the truth before the first request, not a probe interval later
    atomic_path.probe(pool).await;
    let warm = WarmConnections::new(pool.clone(), settings.booking_connections());
    let warm_stop = stop.clone();
    let warm_closer = warm.clone();
    background.spawn(async move {
        // before the pool closes (it waits for checked-out connections)
        warm_stop.cancelled().await;
        warm_closer.close();
    });
    let batcher = settings.batch_bookings.then(|| {
        let batch = BatchSettings { max_size: settings.batch_max_size, lanes: settings.batch_lanes };
        Batcher::start(warm.clone(), batch, stop.clone(), background)
    });
    let tour_gate = TourGate::new(settings.tour_max_in_database(), settings.tour_max_waiting);
    let bookings = Bookings::new(warm, flags, rules, atomic_path.clone(), batcher, tour_gate);

    let mut changes = atomic_path.subscribe();
    let available_now = changes.borrow_and_update().available;
    health.set(ATOMIC_PATH, available_now).await;
    let mirror = health.clone();
    let mirror_stop = stop.clone();
    background.spawn(async move {
        loop {
            tokio::select! {
                _ = mirror_stop.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let available = changes.borrow_and_update().available;
                    mirror.set(ATOMIC_PATH, available).await;
                }
            }
        }
    });
    background.spawn(atomic_path.run_probe(pool.clone(), booking::path_status::PROBE_INTERVAL, stop.clone()));
    background.spawn(booking::holds::run_sweeper(bookings.clone(), settings.hold_sweep_interval, stop.clone()));
    bookings
}

fn integrity_runner(settings: &Settings, pool: &sqlx::PgPool) -> IntegrityRunner {
    IntegrityRunner::new(
        pool.clone(),
        RunnerSettings {
            statement_timeout: settings.check_statement_timeout,
            lock_timeout: settings.check_lock_timeout,
            concurrency: settings.check_concurrency,
            legacy_pin: settings.use_legacy_booking_service,
        },
    )
}

/// The TLS side of the server from --tls-cert/--tls-key, and mutual TLS from
/// --tls-client-ca (client certificates required unless
/// --tls-client-auth-optional).
fn server_tls(settings: &Settings) -> Result<Option<tonic::transport::ServerTlsConfig>, StartupError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else { return Ok(None) };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| StartupError::Transport(format!("cannot read the {what} {}: {e}", path.display())))
    };
    crate::auth::token::check_private(key).map_err(StartupError::Transport)?;
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(read(cert, "TLS certificate")?, read(key, "TLS key")?));
    if let Some(ca) = &settings.tls_client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca, "client CA")?))
            .client_auth_optional(settings.tls_client_auth_optional);
    }
    Ok(Some(tls))
}

/// How often the principals' files are reread: a removed token stops
/// working well within a second.
const PRINCIPALS_RELOAD_INTERVAL: Duration = Duration::from_millis(250);

/// The principals of `--principals-file`, `--principals` and the generated
/// token files; none at all leaves only health and reflection open.
fn authenticator(settings: &Settings) -> Result<Authenticator, StartupError> {
    let sources = Sources {
        file: settings.principals_file.clone(),
        inline: settings.principals.clone(),
        token_files: settings.token_files.clone(),
    };
    if sources.is_empty() {
        tracing::warn!(
            "no principals configured (BOOKINGD_PRINCIPALS_FILE, BOOKINGD_PRINCIPALS): every call except health \
             and reflection will be refused"
        );
    }
    let authenticator = Authenticator::new(sources)?;
    tracing::info!(principals = authenticator.current().principal_count(), "principals loaded");
    Ok(authenticator)
}

/// Accepted connections with Nagle off: the builder's `tcp_nodelay` only
/// applies to listeners tonic binds itself, and with Nagle on, small gRPC
/// frames wait for delayed ACKs (~40 ms per call on loopback).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
