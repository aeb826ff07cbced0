//! Deadline drills: the database's session timeouts are in force on the
//! service's pooled connections, and hold expiry is computed by the
//! database's clock.

use std::time::{Duration, Instant};

use bookingd::config::Settings;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::Code;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, booking_request, create_tour, reason},
    helpers::{TestApp, assert_healthy, spawn_app_with},
};

/// The three ways a booking reaches the database.
#[derive(Debug, Clone, Copy)]
enum Path {
    AtomicAlone,
    AtomicBatched,
    Legacy,
}

const PATHS: [Path; 3] = [Path::AtomicAlone, Path::AtomicBatched, Path::Legacy];

impl Path {
    fn configure(self, settings: &mut Settings) {
        match self {
            Path::AtomicAlone => settings.batch_bookings = false,
            Path::AtomicBatched => settings.batch_bookings = true,
            Path::Legacy => settings.use_legacy_booking_service = Some(true),
        }
    }
}

/// A transaction of the test's own holding the tour's row lock, as a
/// long-running writer would: every booking of the tour waits for it.
async fn lock_tour(pool: &PgPool, tour_id: Uuid) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin the blocker");
    sqlx::query("select 1 from tours where id = $1 for update")
        .bind(tour_id)
        .execute(&mut *tx)
        .await
        .expect("lock the tour row");
    tx
}

async fn bookings_with_request_id(pool: &PgPool, request_id: &str) -> i64 {
    sqlx::query_scalar("select count(*) from bookings where request_id = $1")
        .bind(request_id)
        .fetch_one(pool)
        .await
        .expect("count bookings")
}

#[tokio::test]
async fn a_lock_held_past_the_session_lock_timeout_fails_the_booking_fast_on_every_path() {
    for path in PATHS {
        // Arrange: a lock timeout far below the request timeout (10 s)
        let app: TestApp = spawn_app_with(|s| {
            path.configure(s);
            s.db_lock_timeout = Duration::from_millis(300);
        })
        .await;
        let tour = create_tour(&app.pool, TourSpec::default()).await;
        let blocker = lock_tour(&app.pool, tour.tour_id).await;
        let request = booking_request(tour.tour_id);

        // Act: no grpc-timeout, so only the session's lock_timeout can end the wait
        let started = Instant::now();
        let refused = app.booking().create_booking(request.clone()).await.expect_err("the tour is locked");
        let took = started.elapsed();
        blocker.rollback().await.expect("release the lock");

        // Assert: ABORTED LOCK_TIMEOUT from the database, long before the request timeout
        println!("{path:?}: lock held → {:?} {} after {took:?}", refused.code(), reason(&refused));
        assert_eq!(refused.code(), Code::Aborted, "{path:?}: {refused:?}");
        assert_eq!(reason(&refused), "LOCK_TIMEOUT", "{path:?}");
        assert!(took < Duration::from_secs(3), "{path:?}: the lock wait took {took:?}");
        assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 0, "{path:?}");
        // the same request, retried once the lock is gone, books
        app.booking().create_booking(request.clone()).await.expect("retry books");
        assert_eq!(bookings_with_request_id(&app.pool, &request.request_id).await, 1, "{path:?}");
        assert_healthy(&app.pool).await;
        app.stop().await;
    }
}
