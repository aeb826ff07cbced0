//! `grpc.health.v1`: the server ("") and each service follow the database
//! (NOT_SERVING while it is unreachable); the atomic booking path has its
//! own name so a missing DB function shows without taking the service down.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{db, proto};

/// Health name of the atomic booking path (DB function + trigger present).
pub const ATOMIC_PATH: &str = "booking.v1.BookingService/atomic";

/// Liveness: SERVING for as long as the process serves, whatever the
/// database does (a Kubernetes liveness probe on `""` would restart every pod
/// during a database outage, and during a drain).
pub const LIVENESS: &str = "grpc.health.v1.Health";

/// Names that follow the database probe.
pub const DATABASE_BACKED: &[&str] = &["", proto::BOOKING_SERVICE, proto::INTEGRITY_SERVICE, proto::ADMIN_SERVICE];

#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    pub fn new(reporter: HealthReporter) -> Self {
        Health { reporter }
    }

    pub async fn set(&self, name: &str, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status(name, status).await;
    }

    async fn set_database_backed(&self, serving: bool) {
        for name in DATABASE_BACKED {
            self.set(name, serving).await;
        }
    }

    /// The process is stopping: every name a load balancer routes by
    /// (readiness) goes NOT_SERVING for good, so traffic moves to other
    /// replicas before the listener closes. The liveness name stays SERVING:
    /// a stopping process is not a broken one, and restarting it would cut
    /// its grace period short.
    pub async fn stop_serving(&self) {
        self.set_database_backed(false).await;
        self.set(ATOMIC_PATH, false).await;
    }

    /// Probes the database every `interval` until cancelled, flipping the
    /// database-backed names on each change (and logging it once).
    pub async fn watch_database(self, pool: PgPool, interval: Duration, stop: CancellationToken) {
        let last = std::sync::atomic::AtomicBool::new(true);
        crate::periodic::every(interval, stop, || async {
            let up = db::ping(&pool, interval.max(Duration::from_millis(500))).await;
            if last.swap(up, std::sync::atomic::Ordering::Relaxed) != up {
                if up {
                    tracing::info!("database reachable again, serving");
                } else {
                    tracing::error!("database unreachable, reporting NOT_SERVING");
                }
                self.set_database_backed(up).await;
            }
        })
        .await
    }
}
