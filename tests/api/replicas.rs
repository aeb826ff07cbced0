//! Several bookingd processes on one PostgreSQL, as a deployment runs them:
//! the real `bookingd` binary, started and killed by the test, on loopback.
//! A storm spread over three replicas, a flag flip seen by the others, a
//! replica killed mid-storm with clients retrying elsewhere, and three
//! replicas started at once against an empty database.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use bookingd::proto::v1::{GetFlagRequest, SetFlagRequest, booking_service_client::BookingServiceClient};
use futures::future::join_all;
use sqlx::PgPool;
use tokio::process::Command;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::health_check_response::ServingStatus;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, available_spots, booking_request, create_tour, reason},
    helpers::{BearerToken, TEST_BOOKING_TOKEN, assert_healthy, create_test_database, wait_until},
    process::{Replica, Starting, migrated_database},
};

async fn three_replicas(database_url: &str, extra_env: &[(&str, &str)]) -> Vec<Replica> {
    join_all((0..3).map(|_| Replica::start(database_url, extra_env))).await
}

/// What a storm of one-seat bookings spread over the replicas produced:
/// per request, its key and its final answer.
#[derive(Default)]
struct Answers {
    booked: Vec<(String, bookingd::proto::v1::Booking)>,
    sold_out: usize,
    retried: usize,
    other: Vec<tonic::Status>,
}

/// `requests` one-seat CreateBookings from `callers` concurrent callers;
/// caller `c` starts on replica `c % n`. A call that fails in transport
/// (the replica is gone) is retried on the next replica with the same
/// `request_id`, as a client behind a load balancer would.
async fn spread_storm(
    replicas: &[String],
    tour_id: Uuid,
    requests: usize,
    callers: usize,
    done: &AtomicUsize,
) -> Answers {
    let next = AtomicUsize::new(0);
    let channels: Vec<Channel> =
        replicas.iter().map(|addr| Endpoint::from_shared(addr.clone()).expect("endpoint").connect_lazy()).collect();
    let results = join_all((0..callers).map(|caller| {
        let (next, channels) = (&next, &channels);
        async move {
            let mut mine = Answers::default();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= requests {
                    return mine;
                }
                let request = booking_request(tour_id);
                let mut target = (caller + index) % channels.len();
                let mut attempts = 0;
                let answer = loop {
                    let mut client = BookingServiceClient::with_interceptor(
                        channels[target].clone(),
                        BearerToken::new(TEST_BOOKING_TOKEN),
                    );
                    let result = tokio::time::timeout(Duration::from_secs(30), client.create_booking(request.clone()))
                        .await
                        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test timeout")));
                    match result {
                        Err(status) if is_transport_failure(&status) && attempts < 2 * channels.len() => {
                            attempts += 1;
                            mine.retried += 1;
                            target = (target + 1) % channels.len();
                        }
                        other => break other,
                    }
                };
                match answer {
                    Ok(response) => {
                        mine.booked.push((request.request_id.clone(), response.into_inner().booking.expect("booking")))
                    }
                    Err(status) if reason(&status) == "SOLD_OUT" => mine.sold_out += 1,
                    Err(status) => mine.other.push(status),
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
    }))
    .await;
    let mut all = Answers::default();
    for part in results {
        all.booked.extend(part.booked);
        all.sold_out += part.sold_out;
        all.retried += part.retried;
        all.other.extend(part.other);
    }
    all
}

/// The call never got an answer from a live server: the connection was
/// refused or broke. (A booking it started may or may not have committed;
/// the same request_id settles that.)
fn is_transport_failure(status: &tonic::Status) -> bool {
    matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled)
        && reason(status) != "DATABASE_UNAVAILABLE"
}

/// Every booked key once, every booking stored once, seats as the database
/// counts them.
async fn assert_no_loss_or_double(pool: &PgPool, tour_id: Uuid, answers: &Answers) {
    let mut keys: Vec<&str> = answers.booked.iter().map(|(key, _)| key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), answers.booked.len(), "one answer per request");
    let mut ids: Vec<&str> = answers.booked.iter().map(|(_, b)| b.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), answers.booked.len(), "two requests never got the same booking");
    let stored: Vec<(String, String)> =
        sqlx::query_as("select id::text, request_id from bookings where tour_id = $1 and booking_status = 'pending'")
            .bind(tour_id)
            .fetch_all(pool)
            .await
            .expect("stored bookings");
    let mut stored_ids: Vec<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    stored_ids.sort_unstable();
    assert_eq!(stored_ids, ids, "the database holds exactly the bookings the clients were told about");
    for (key, booking) in &answers.booked {
        assert!(stored.iter().any(|(id, request_id)| id == &booking.id && request_id.ends_with(key.as_str())));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_spread_over_three_replicas_sells_exactly_the_capacity() {
    // Arrange
    let (url, pool) = migrated_database().await;
    let replicas = three_replicas(&url, &[]).await;
    let tour = create_tour(&pool, TourSpec { capacity: 60, ..TourSpec::default() }).await;
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();

    // Act
    let answers = spread_storm(&addrs, tour.tour_id, 240, 48, &AtomicUsize::new(0)).await;

    // Assert
    assert!(answers.other.is_empty(), "unexpected errors: {:?}", answers.other);
    assert_eq!(answers.retried, 0, "no replica failed");
    assert_eq!(answers.booked.len(), 60, "exactly the capacity sold");
    assert_eq!(answers.sold_out, 180, "every other request refused as sold out");
    assert_eq!(available_spots(&pool, tour.tour_id).await, 0);
    assert_no_loss_or_double(&pool, tour.tour_id, &answers).await;
    for replica in &replicas {
        assert!(replica.logged("booking creation failed") == 0, "{}", replica.all_logs());
    }
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flag_flip_through_one_replica_is_seen_by_the_other_two_within_100_ms_at_the_median() {
    // Arrange: caches that trust a value for a minute, so only the
    // notification can carry a flip in time; the listener logs (at debug)
    // the moment a notification reaches the replica's cache
    let (url, pool) = migrated_database().await;
    let env = [("BOOKINGD_FLAG_CACHE_TTL", "60s"), ("RUST_LOG", "info,bookingd::flags::listener=debug")];
    let replicas = three_replicas(&url, &env).await;
    wait_until("three flag listeners", Duration::from_secs(30), || async {
        let listening: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database()
               and application_name = 'bookingd-flag-listener' and query ilike 'listen%'",
        )
        .fetch_one(&pool)
        .await
        .expect("count listeners");
        listening == 3
    })
    .await;

    let mut notified_after = Vec::new();
    let mut served_after = Vec::new();
    for (flip, enabled) in [true, false, true, false, true, false].into_iter().enumerate() {
        let via = flip % 3;
        let others: Vec<&Replica> = replicas.iter().enumerate().filter(|(i, _)| *i != via).map(|(_, r)| r).collect();
        let heard_before: Vec<usize> = others.iter().map(|r| r.logged(NOTIFIED)).collect();

        // Act: flip through one replica
        let sent_at = chrono::Utc::now();
        let started = Instant::now();
        let request = SetFlagRequest { key: String::new(), enabled, reason: format!("replica test flip {flip}") };
        replicas[via].admin().set_flag(request).await.expect("set flag");

        // Assert: both others were notified, and serve the new value
        let served = join_all(others.iter().map(|replica| async move {
            let mut admin = replica.admin();
            loop {
                let flag = admin.get_flag(GetFlagRequest { key: String::new() }).await.expect("get flag").into_inner();
                if flag.enabled == enabled {
                    return started.elapsed();
                }
                assert!(started.elapsed() < Duration::from_secs(5), "flip {flip} never reached a replica");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }))
        .await;
        served_after.push(served.into_iter().max().expect("two replicas"));
        let mut slowest = Duration::ZERO;
        for (replica, before) in others.iter().zip(heard_before) {
            wait_until("the notification logged", Duration::from_secs(5), || async {
                replica.logged(NOTIFIED) > before
            })
            .await;
            let heard_at = replica.last_timestamp_of(NOTIFIED);
            slowest = slowest.max((heard_at - sent_at).to_std().unwrap_or(Duration::ZERO));
        }
        notified_after.push(slowest);
    }
    let ms =
        |all: &[Duration]| all.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ");
    println!(
        "flag flip through one replica, reached both others after (ms, from SetFlag sent): notified {}; \
         GetFlag polls showed it after {}",
        ms(&notified_after),
        ms(&served_after)
    );
    // The median, not every flip: on a loaded 2-core CI machine one flip
    // can lose a scheduling slice; the 5 s bound above still fails a lost one.
    let mut sorted = notified_after.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(median < Duration::from_millis(100), "median flip took {median:?} to reach the other replicas");
}

/// The flag listener's debug line for a notification it applied.
const NOTIFIED: &str = "feature flag change notified";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_storm_loses_and_doubles_no_booking() {
    // Arrange
    let (url, pool) = migrated_database().await;
    let mut replicas = three_replicas(&url, &[]).await;
    let tour = create_tour(&pool, TourSpec { capacity: 200, ..TourSpec::default() }).await;
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.clone()).collect();
    let done = AtomicUsize::new(0);

    // Act: kill replica 0 once a third of the storm has answered
    let storm = spread_storm(&addrs, tour.tour_id, 300, 30, &done);
    let killer = async {
        wait_until("a third of the storm answered", Duration::from_secs(60), || async {
            done.load(Ordering::SeqCst) >= 100
        })
        .await;
        replicas[0].kill().await;
    };
    let (answers, ()) = tokio::join!(storm, killer);

    // Assert
    assert!(answers.other.is_empty(), "unexpected errors: {:?}", answers.other);
    assert_eq!(answers.booked.len() + answers.sold_out, 300, "every request got a final answer");
    assert_eq!(answers.booked.len(), 200, "capacity sold, no more");
    assert!(answers.retried > 0, "some calls were cut off by the kill and retried elsewhere");
    println!("killed one of three replicas mid-storm: {} calls retried on another replica", answers.retried);
    assert_no_loss_or_double(&pool, tour.tour_id, &answers).await;
    assert_eq!(available_spots(&pool, tour.tour_id).await, 0);
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_started_at_once_on_an_empty_database_migrate_once_and_all_serve() {
    // Arrange: a database with no schema at all
    let url = create_test_database().await;

    // Act
    let replicas = three_replicas(&url, &[]).await;

    // Assert
    let pool = PgPool::connect(&url).await.expect("connect");
    for replica in &replicas {
        wait_until("every replica SERVING", Duration::from_secs(10), || async {
            replica.health().await == Some(ServingStatus::Serving)
        })
        .await;
    }
    let migrated: usize = replicas.iter().map(|r| r.logged("applied schema migrations")).sum();
    let current: usize = replicas.iter().map(|r| r.logged("schema already current")).sum();
    assert_eq!((migrated, current), (1, 2), "one replica migrated, two found it done");
    let deployed: i64 = sqlx::query_scalar("select count(*) from audit_logs where action = 'functions_deployed'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(deployed, 1, "the database functions were deployed once");
    for replica in &replicas {
        assert!(!replica.all_logs().contains("\"level\":\"ERROR\""), "{}", replica.all_logs());
        let tour_list = replica.booking().list_tours(bookingd::proto::v1::ListToursRequest::default()).await;
        assert!(tour_list.is_ok(), "{tour_list:?}");
    }
    assert_healthy(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn servers_that_do_not_migrate_wait_for_bookingd_migrate_run_three_times_at_once() {
    // Arrange: an empty database; two servers told not to migrate are waiting
    let url = create_test_database().await;
    let waiting: Vec<Starting> =
        (0..2).map(|_| Starting::spawn(&url, &[("BOOKINGD_MIGRATE_ON_START", "false")])).collect();
    wait_until("both servers wait for the schema", Duration::from_secs(60), || async {
        waiting.iter().all(|s| s.logged("schema not current yet; waiting for `bookingd migrate`") == 1)
    })
    .await;

    // Act: three `bookingd migrate` at once
    let outputs = join_all((0..3).map(|_| {
        Command::new(env!("CARGO_BIN_EXE_bookingd"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .env("BOOKINGD_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .output()
    }))
    .await;
    let servers = join_all(waiting.into_iter().map(Starting::ready)).await;

    // Assert
    let outputs: Vec<_> = outputs.into_iter().map(|o| o.expect("run bookingd migrate")).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let said = |message: &str| {
        outputs
            .iter()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("\"message\":\"{message}\"")))
            .count()
    };
    assert_eq!((said("applied schema migrations"), said("schema already current")), (1, 2));
    for server in &servers {
        assert_eq!(server.logged("applied schema migrations"), 0, "a non-migrating server migrated");
        wait_until("the waiting server SERVING", Duration::from_secs(10), || async {
            server.health().await == Some(ServingStatus::Serving)
        })
        .await;
    }
    let pool = PgPool::connect(&url).await.expect("connect");
    assert_healthy(&pool).await;
}
