//! AdminService: operator auth, repair (also while bookings flow), clamp,
//! pause/resume, deploy/rollback of the atomic path, and the audit trail.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bookingd::proto::v1::{
    ClampNegativeAvailabilityRequest, DeployFunctionsRequest, PauseBookingsRequest, RepairAvailabilityRequest,
    ResumeBookingsRequest, RollbackFunctionsRequest, admin_service_client::AdminServiceClient,
};
use serde_json::Value;
use sqlx::{PgPool, postgres::PgPoolOptions};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::{
    fixtures::{
        available_spots, book_like_legacy, id_strings, insert_booking, insert_operator, insert_tour, last_audit,
        lock_tour, reason, sessions_waiting_on_locks, status_of,
    },
    helpers::{BearerToken, TestApp, assert_healthy, spawn_app, wait_until},
};

// ---------------------------------------------------------------- auth

/// Every admin RPC this branch serves, called with `$client`: the errors.
macro_rules! call_every_admin_rpc {
    ($client:expr) => {{
        let mut client = $client;
        let reason = || "should never run".to_owned();
        vec![
            client
                .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: reason() })
                .await
                .err(),
            client.clamp_negative_availability(ClampNegativeAvailabilityRequest { reason: reason() }).await.err(),
            client.pause_bookings(PauseBookingsRequest { tour_ids: vec![], reason: reason() }).await.err(),
            client.resume_bookings(ResumeBookingsRequest { reason: reason(), ..Default::default() }).await.err(),
            client.deploy_functions(DeployFunctionsRequest { reason: reason() }).await.err(),
            client.rollback_functions(RollbackFunctionsRequest { reason: reason() }).await.err(),
        ]
    }};
}

#[tokio::test]
async fn admin_calls_without_a_token_or_with_a_wrong_token_are_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    insert_tour(&app.pool, operator, 10, "active").await;

    // Act
    let without = call_every_admin_rpc!(app.admin_without_token());
    let wrong = call_every_admin_rpc!(AdminServiceClient::with_interceptor(
        app.channel.clone(),
        BearerToken::new("not-the-token")
    ));

    // Assert
    for (name, results) in [("no token", without), ("wrong token", wrong)] {
        for (index, error) in results.into_iter().enumerate() {
            let error = error.unwrap_or_else(|| panic!("{name}: call {index} was accepted"));
            assert_eq!(error.code(), Code::Unauthenticated, "{name}: call {index}: {error:?}");
        }
    }
    let audit_rows: i64 = sqlx::query_scalar("select count(*) from audit_logs where actor <> 'bookingd'")
        .fetch_one(&app.pool)
        .await
        .expect("audit count");
    assert_eq!(audit_rows, 0, "refused calls change nothing and audit nothing");
    let functions = bookingd::db::functions::state(&app.pool).await.expect("state");
    assert!(functions.complete(), "the refused rollback dropped nothing");
}

// ---------------------------------------------------------------- repair

/// A tour with 3 + 2 seats booked whose available_spots was then corrupted
/// by direct SQL to `corrupted`.
async fn drifted_tour(app: &TestApp, corrupted: i32) -> Uuid {
    let operator = insert_operator(&app.pool).await;
    let tour = insert_tour(&app.pool, operator, 20, "active").await;
    book_like_legacy(&app.pool, tour, 3).await.expect("seats");
    book_like_legacy(&app.pool, tour, 2).await.expect("seats");
    sqlx::query("update tours set available_spots = $2 where id = $1")
        .bind(tour)
        .bind(corrupted)
        .execute(&app.pool)
        .await
        .expect("corrupt");
    tour
}

#[tokio::test]
async fn a_dry_run_repair_reports_the_drift_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tour = drifted_tour(&app, 18).await;

    // Act
    let response = app
        .admin()
        .repair_availability(RepairAvailabilityRequest { apply: false, tour_ids: vec![], reason: String::new() })
        .await
        .expect("dry run")
        .into_inner();

    // Assert
    assert!(!response.applied);
    assert_eq!(response.changes.len(), 1, "{:?}", response.changes);
    let change = &response.changes[0];
    assert_eq!(change.tour_id, tour.to_string());
    assert_eq!((change.available_spots_before, change.available_spots_after, change.live_seats), (18, 15, 5));
    assert_eq!(available_spots(&app.pool, tour).await, 18, "a dry run writes nothing");
    let (actor, details) = last_audit(&app.pool, "availability_repair_previewed").await;
    assert_eq!(actor, crate::helpers::TEST_OPERATOR);
    assert_eq!(details["changes"][0]["available_spots_after"], 15);
}

#[tokio::test]
async fn an_applied_repair_fixes_the_drift_returns_before_and_after_and_is_audited() {
    // Arrange
    let app = spawn_app().await;
    let tour = drifted_tour(&app, 19).await;
    let operator = insert_operator(&app.pool).await;
    let untouched = insert_tour(&app.pool, operator, 8, "maintenance").await;
    sqlx::query("update tours set available_spots = 2 where id = $1")
        .bind(untouched)
        .execute(&app.pool)
        .await
        .expect("corrupt");

    // Act
    let response = app
        .admin()
        .repair_availability(RepairAvailabilityRequest {
            apply: true,
            tour_ids: vec![tour.to_string()],
            reason: "drift seen by the consistency monitor".into(),
        })
        .await
        .expect("repair")
        .into_inner();

    // Assert
    assert!(response.applied);
    assert_eq!(response.tours_examined, 1);
    assert_eq!(response.changes.len(), 1);
    assert_eq!((response.changes[0].available_spots_before, response.changes[0].available_spots_after), (19, 15));
    assert_eq!(available_spots(&app.pool, tour).await, 15);
    assert_eq!(available_spots(&app.pool, untouched).await, 2, "tours outside the selection are not touched");
    let (actor, details) = last_audit(&app.pool, "availability_repaired").await;
    assert_eq!(actor, crate::helpers::TEST_OPERATOR);
    assert_eq!(details["reason"], "drift seen by the consistency monitor");
    assert_eq!(details["changes"][0]["tour_id"], tour.to_string());
    assert_eq!(details["changes"][0]["available_spots_before"], 19);

    // the rest of the catalog, then everything is healthy
    app.admin()
        .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "all tours".into() })
        .await
        .expect("repair all");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn repair_refuses_bad_requests_with_stable_reasons() {
    // Arrange
    let app = spawn_app().await;
    let mut admin = app.admin();

    // Act
    let no_reason = admin
        .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "  ".into() })
        .await
        .expect_err("reason required");
    let bad_id = admin
        .repair_availability(RepairAvailabilityRequest {
            apply: false,
            tour_ids: vec!["tour-1".into()],
            reason: String::new(),
        })
        .await
        .expect_err("bad id");
    let unknown = admin
        .repair_availability(RepairAvailabilityRequest {
            apply: true,
            tour_ids: vec![Uuid::new_v4().to_string()],
            reason: "x".into(),
        })
        .await
        .expect_err("unknown tour");

    // Assert
    assert_eq!((no_reason.code(), reason(&no_reason).as_str()), (Code::InvalidArgument, "REASON_REQUIRED"));
    let violations = no_reason.get_error_details().bad_request().expect("field violations").field_violations.clone();
    assert_eq!(violations[0].field, "reason");
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert_eq!(bad_id.get_error_details().bad_request().expect("violations").field_violations[0].field, "tour_ids[0]");
    assert_eq!((unknown.code(), reason(&unknown).as_str()), (Code::NotFound, "TOUR_NOT_FOUND"));
}

#[tokio::test]
async fn an_overbooked_tour_is_set_to_zero_and_recorded_as_an_incident() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    let tour = insert_tour(&app.pool, operator, 4, "active").await;
    // six seats sold on a four-seat tour (what a lost update can leave behind)
    let mut conn = app.pool.acquire().await.expect("conn");
    insert_booking(&mut conn, tour, 4, "confirmed").await;
    let extra = insert_booking(&mut conn, tour, 2, "confirmed").await;
    drop(conn);

    // Act
    let response = app
        .admin()
        .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "nightly".into() })
        .await
        .expect("repair")
        .into_inner();

    // Assert
    assert_eq!(response.overbooked_tour_ids, vec![tour.to_string()]);
    assert_eq!((response.changes[0].available_spots_before, response.changes[0].available_spots_after), (4, 0));
    assert_eq!(available_spots(&app.pool, tour).await, 0);
    let (kind, details): (String, sqlx::types::Json<Value>) =
        sqlx::query_as("select type, details from incident_log where id = $1")
            .bind(response.incident_id)
            .fetch_one(&app.pool)
            .await
            .expect("incident");
    assert_eq!(kind, "overbooked_tours");
    assert_eq!(details.0["affected_tours"][0]["tour_id"], tour.to_string());
    assert_eq!(details.0["affected_tours"][0]["live_seats"], 6);
    assert_eq!(details.0["affected_tours"][0]["max_capacity"], 4);

    // Act + Assert
    // a human resolves it by cancelling the extra booking (the trigger gives
    // its seats back), then repairs again
    sqlx::query("update bookings set booking_status = 'cancelled', cancelled_at = now() where id = $1")
        .bind(extra)
        .execute(&app.pool)
        .await
        .expect("cancel");
    let second = app
        .admin()
        .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "after cancel".into() })
        .await
        .expect("repair")
        .into_inner();
    assert!(second.overbooked_tour_ids.is_empty());
    assert_eq!(second.incident_id, 0);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_booking_in_flight_when_a_repair_starts_is_not_lost() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    let tour = insert_tour(&app.pool, operator, 10, "active").await;
    book_like_legacy(&app.pool, tour, 2).await.expect("seats");
    sqlx::query("update tours set available_spots = 6 where id = $1")
        .bind(tour)
        .execute(&app.pool)
        .await
        .expect("drift");
    // a legacy booking holds the tour lock, has inserted and decremented, and
    // has not committed yet
    let mut in_flight = lock_tour(&app.pool, tour).await;
    insert_booking(&mut in_flight, tour, 3, "confirmed").await;
    sqlx::query("update tours set available_spots = available_spots - 3 where id = $1")
        .bind(tour)
        .execute(&mut *in_flight)
        .await
        .expect("decrement");

    // Act
    // Act: a repair starts, and must wait for that booking
    let mut admin = app.admin();
    let repair = tokio::spawn(async move {
        admin
            .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "race".into() })
            .await
    });
    wait_until("the repair waits on the tour lock", Duration::from_secs(10), || async {
        sessions_waiting_on_locks(&app.pool).await > 0
    })
    .await;
    in_flight.commit().await.expect("the booking commits");
    let response = repair.await.expect("task").expect("repair").into_inner();

    // Assert
    // Assert: the repair waited, then saw the booking; its decrement survived
    assert_eq!(response.changes.len(), 1, "{:?}", response.changes);
    assert_eq!((response.changes[0].available_spots_before, response.changes[0].available_spots_after), (3, 5));
    assert_eq!(available_spots(&app.pool, tour).await, 5);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn repair_while_bookings_flow_loses_no_seat_change() {
    // Arrange
    let app = spawn_app().await;
    // its own, larger pool: the booking workers run side by side
    let load_pool = PgPoolOptions::new().max_connections(12).connect(&app.database_url).await.expect("load pool");
    let operator = insert_operator(&app.pool).await;
    let mut tours = Vec::new();
    for _ in 0..3 {
        tours.push(insert_tour(&app.pool, operator, 2000, "active").await);
    }
    let tours = Arc::new(tours);
    let stop = Arc::new(AtomicBool::new(false));

    // 8 workers book (legacy-style, under the tour lock) and cancel (the
    // trigger gives the seats back) until told to stop
    let mut workers = Vec::new();
    for worker in 0..8u32 {
        let (pool, tours, stop) = (load_pool.clone(), Arc::clone(&tours), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut mine: Vec<Uuid> = Vec::new();
            let mut booked = 0u32;
            let mut attempt = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let tour = tours[((worker + attempt) % 3) as usize];
                if let Some(id) = book_like_legacy(&pool, tour, (attempt % 3 + 1) as i32).await {
                    booked += 1;
                    mine.push(id);
                }
                if attempt % 4 == 3
                    && let Some(id) = mine.pop()
                {
                    sqlx::query("update bookings set booking_status = 'cancelled', cancelled_at = now() where id = $1")
                        .bind(id)
                        .execute(&pool)
                        .await
                        .expect("cancel");
                }
                attempt += 1;
            }
            booked
        }));
    }
    wait_until("the workers are booking", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("select count(*) from bookings").fetch_one(&app.pool).await.expect("count") >= 20
    })
    .await;

    // Act: while the workers run, drift one tour by a seat with direct SQL,
    // then repair; forty times
    let mut admin = app.admin();
    let mut found = Vec::new();
    for round in 0..40 {
        let drifted = tours[round % 3];
        sqlx::query("update tours set available_spots = available_spots - 1 where id = $1")
            .bind(drifted)
            .execute(&app.pool)
            .await
            .expect("drift");
        let response = admin
            .repair_availability(RepairAvailabilityRequest {
                apply: true,
                tour_ids: vec![],
                reason: "under load".into(),
            })
            .await
            .expect("repair under load")
            .into_inner();
        found.push((drifted, response.changes));
    }
    stop.store(true, Ordering::Relaxed);
    let mut booked = 0;
    for worker in workers {
        booked += worker.await.expect("worker");
    }

    // Assert: each repair fixed exactly the seat drifted before it, however
    // the workers moved the numbers meanwhile; a repair that lost a
    // concurrent booking's change would leave extra drift for the next one
    // (or for the final check, which runs with no repair after the load)
    for (round, (drifted, changes)) in found.iter().enumerate() {
        let fixed: Vec<(String, i32)> =
            changes.iter().map(|c| (c.tour_id.clone(), c.available_spots_after - c.available_spots_before)).collect();
        assert_eq!(fixed, vec![(drifted.to_string(), 1)], "repair {round}");
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from bookings").fetch_one(&app.pool).await.expect("count");
    assert_eq!(rows, i64::from(booked));
    assert_healthy(&app.pool).await;
}

// ---------------------------------------------------------------- clamp

/// The schema's CHECK constraint makes negative availability impossible, so
/// a test of the emergency clamp has to recreate the corrupted database it
/// exists for: drop the constraint in this test's own database first.
async fn allow_negative_availability(pool: &PgPool) {
    sqlx::query("alter table tours drop constraint tours_available_spots_non_negative")
        .execute(pool)
        .await
        .expect("drop constraint");
}

#[tokio::test]
async fn clamp_records_the_negative_tours_in_an_incident_before_clamping_them() {
    // Arrange
    let app = spawn_app().await;
    allow_negative_availability(&app.pool).await;
    let operator = insert_operator(&app.pool).await;
    let a = insert_tour(&app.pool, operator, 10, "active").await;
    let b = insert_tour(&app.pool, operator, 6, "active").await;
    let fine = insert_tour(&app.pool, operator, 6, "active").await;
    for (tour, value) in [(a, -3), (b, -1)] {
        sqlx::query("update tours set available_spots = $2 where id = $1")
            .bind(tour)
            .bind(value)
            .execute(&app.pool)
            .await
            .expect("corrupt");
    }

    // Act
    let response = app
        .admin()
        .clamp_negative_availability(ClampNegativeAvailabilityRequest { reason: "monitor fired".into() })
        .await
        .expect("clamp")
        .into_inner();

    // Assert
    assert_ne!(response.incident_id, 0);
    let mut changes: Vec<(String, i32, i32)> = response
        .changes
        .iter()
        .map(|c| (c.tour_id.clone(), c.available_spots_before, c.available_spots_after))
        .collect();
    changes.sort();
    let mut expected = vec![(a.to_string(), -3, 0), (b.to_string(), -1, 0)];
    expected.sort();
    assert_eq!(changes, expected);
    let (kind, details): (String, sqlx::types::Json<Value>) =
        sqlx::query_as("select type, details from incident_log where id = $1")
            .bind(response.incident_id)
            .fetch_one(&app.pool)
            .await
            .expect("incident");
    assert_eq!(kind, "negative_availability");
    let mut logged: Vec<(String, i64)> = details.0["affected_tours"]
        .as_array()
        .expect("affected tours listed")
        .iter()
        .map(|t| (t["tour_id"].as_str().expect("id").to_owned(), t["available_spots"].as_i64().expect("value")))
        .collect();
    logged.sort();
    let mut wanted = vec![(a.to_string(), -3), (b.to_string(), -1)];
    wanted.sort();
    assert_eq!(logged, wanted, "the incident holds the values from before the clamp");
    assert_eq!((available_spots(&app.pool, a).await, available_spots(&app.pool, b).await), (0, 0));
    assert_eq!(available_spots(&app.pool, fine).await, 6);
    let (actor, audit) = last_audit(&app.pool, "negative_availability_clamped").await;
    assert_eq!(
        (actor.as_str(), audit["incident_id"].as_i64()),
        (crate::helpers::TEST_OPERATOR, Some(response.incident_id))
    );

    // Act + Assert
    // nothing negative left: a second clamp records no incident
    let again = app
        .admin()
        .clamp_negative_availability(ClampNegativeAvailabilityRequest { reason: "again".into() })
        .await
        .expect("clamp")
        .into_inner();
    assert_eq!((again.incident_id, again.changes.len()), (0, 0));
    let incidents: i64 = sqlx::query_scalar("select count(*) from incident_log").fetch_one(&app.pool).await.expect("n");
    assert_eq!(incidents, 1);

    // Act + Assert
    // clamping is not reconciling: repair brings the tours back to the truth
    app.admin()
        .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: "after clamp".into() })
        .await
        .expect("repair");
    assert_healthy(&app.pool).await;
}

// ---------------------------------------------------------------- pause / resume

#[tokio::test]
async fn resume_reactivates_exactly_the_tours_the_pause_took() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    let active_a = insert_tour(&app.pool, operator, 10, "active").await;
    let active_b = insert_tour(&app.pool, operator, 10, "active").await;
    let in_maintenance = insert_tour(&app.pool, operator, 10, "maintenance").await;
    let inactive = insert_tour(&app.pool, operator, 10, "inactive").await;

    let pause = app
        .admin()
        .pause_bookings(PauseBookingsRequest { tour_ids: vec![], reason: "data repair".into() })
        .await
        .expect("pause")
        .into_inner();
    let mut paused = pause.paused_tour_ids.clone();
    paused.sort();
    let mut expected = id_strings(&[active_a, active_b]);
    expected.sort();
    assert_eq!(paused, expected, "only active tours are paused");
    for tour in [active_a, active_b, in_maintenance] {
        assert_eq!(status_of(&app.pool, tour).await, "maintenance");
    }

    // Act
    let resumed = app
        .admin()
        .resume_bookings(ResumeBookingsRequest {
            pause_id: String::new(),
            tour_ids: vec![],
            reason: "repair done".into(),
        })
        .await
        .expect("resume")
        .into_inner();

    // Assert
    let mut resumed_ids = resumed.resumed_tour_ids.clone();
    resumed_ids.sort();
    assert_eq!(resumed_ids, expected);
    assert_eq!(status_of(&app.pool, active_a).await, "active");
    assert_eq!(status_of(&app.pool, active_b).await, "active");
    assert_eq!(status_of(&app.pool, in_maintenance).await, "maintenance", "in maintenance for its own reasons");
    assert_eq!(status_of(&app.pool, inactive).await, "inactive");
    let (actor, details) = last_audit(&app.pool, "bookings_paused").await;
    assert_eq!(
        (actor.as_str(), details["pause_id"].as_str()),
        (crate::helpers::TEST_OPERATOR, Some(pause.pause_id.as_str()))
    );
    let (actor, details) = last_audit(&app.pool, "bookings_resumed").await;
    assert_eq!((actor.as_str(), details["reason"].as_str()), (crate::helpers::TEST_OPERATOR, Some("repair done")));
}

#[tokio::test]
async fn resume_by_pause_id_and_tour_leaves_the_rest_paused_and_respects_hand_changes() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    let a = insert_tour(&app.pool, operator, 10, "active").await;
    let b = insert_tour(&app.pool, operator, 10, "active").await;
    let c = insert_tour(&app.pool, operator, 10, "active").await;
    let other = insert_tour(&app.pool, operator, 10, "active").await;
    let mut admin = app.admin();
    let pause = admin
        .pause_bookings(PauseBookingsRequest { tour_ids: id_strings(&[a, b, c]), reason: "inspection".into() })
        .await
        .expect("pause")
        .into_inner();
    assert_eq!(status_of(&app.pool, other).await, "active", "unlisted tours are not paused");
    // someone retires tour c by hand while it is paused
    sqlx::query("update tours set status = 'inactive' where id = $1").bind(c).execute(&app.pool).await.expect("retire");

    // Act + Assert
    let only_a = admin
        .resume_bookings(ResumeBookingsRequest {
            pause_id: pause.pause_id.clone(),
            tour_ids: id_strings(&[a]),
            reason: "a passed".into(),
        })
        .await
        .expect("resume a")
        .into_inner();
    assert_eq!(only_a.resumed_tour_ids, id_strings(&[a]));
    assert_eq!(status_of(&app.pool, b).await, "maintenance", "b is still paused");

    // Act + Assert
    let rest = admin
        .resume_bookings(ResumeBookingsRequest {
            pause_id: pause.pause_id.clone(),
            tour_ids: vec![],
            reason: "all passed".into(),
        })
        .await
        .expect("resume the rest")
        .into_inner();
    assert_eq!(rest.resumed_tour_ids, id_strings(&[b]));
    assert_eq!(rest.left_alone_tour_ids, id_strings(&[c]));
    assert_eq!(status_of(&app.pool, c).await, "inactive", "a hand change survives the resume");

    // Act + Assert
    let again = admin
        .resume_bookings(ResumeBookingsRequest {
            pause_id: pause.pause_id.clone(),
            tour_ids: vec![],
            reason: "again".into(),
        })
        .await
        .expect_err("already resumed");
    assert_eq!((again.code(), reason(&again).as_str()), (Code::FailedPrecondition, "PAUSE_ALREADY_RESUMED"));
    let unknown = admin
        .resume_bookings(ResumeBookingsRequest {
            pause_id: Uuid::new_v4().to_string(),
            tour_ids: vec![],
            reason: "x".into(),
        })
        .await
        .expect_err("unknown pause");
    assert_eq!((unknown.code(), reason(&unknown).as_str()), (Code::NotFound, "PAUSE_NOT_FOUND"));
    let no_reason = admin
        .resume_bookings(ResumeBookingsRequest { pause_id: String::new(), tour_ids: vec![], reason: String::new() })
        .await
        .expect_err("reason required");
    assert_eq!(no_reason.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn pausing_when_nothing_is_active_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    insert_tour(&app.pool, operator, 10, "maintenance").await;

    // Act
    let refused = app
        .admin()
        .pause_bookings(PauseBookingsRequest { tour_ids: vec![], reason: "x".into() })
        .await
        .expect_err("nothing to pause");

    // Assert
    assert_eq!((refused.code(), reason(&refused).as_str()), (Code::FailedPrecondition, "NOTHING_TO_PAUSE"));
}

// ---------------------------------------------------------------- functions

#[tokio::test]
async fn rollback_and_deploy_return_the_post_deployment_checks_and_the_catalogs_agree() {
    // Arrange
    let app = spawn_app().await;
    let catalogs = || async {
        sqlx::query_as::<_, (bool, bool)>(
            "select exists (select 1 from information_schema.routines where routine_name = 'create_booking_atomic'),
                    exists (select 1 from information_schema.triggers where trigger_name = 'restore_availability_trigger')",
        )
        .fetch_one(&app.pool)
        .await
        .expect("catalogs")
    };
    let check = |checks: &[bookingd::proto::v1::DeploymentCheck], name: &str| {
        checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} missing from {checks:?}")).clone()
    };

    // Act + Assert
    let rolled_back = app
        .admin()
        .rollback_functions(RollbackFunctionsRequest { reason: "atomic path misbehaving".into() })
        .await
        .expect("rollback")
        .into_inner()
        .checks;
    assert_eq!(catalogs().await, (false, false));
    let atomic = check(&rolled_back, "atomic_function_check");
    assert_eq!((atomic.passed, atomic.detail.as_str()), (false, "FAIL: atomic function missing"));
    assert!(!check(&rolled_back, "trigger_check").passed);
    let (actor, details) = last_audit(&app.pool, "functions_rolled_back").await;
    assert_eq!(
        (actor.as_str(), details["reason"].as_str()),
        (crate::helpers::TEST_OPERATOR, Some("atomic path misbehaving"))
    );

    // Act + Assert
    let deployed = app
        .admin()
        .deploy_functions(DeployFunctionsRequest { reason: "fixed".into() })
        .await
        .expect("deploy")
        .into_inner()
        .checks;
    assert_eq!(catalogs().await, (true, true));
    assert_eq!(check(&deployed, "atomic_function_check").detail, "PASS: atomic function deployed");
    assert_eq!(check(&deployed, "trigger_check").detail, "PASS: restoration trigger active");
    assert!(deployed.iter().all(|c| c.passed), "{deployed:?}");
    let (actor, _) = last_audit(&app.pool, "functions_deployed").await;
    assert_eq!(actor, crate::helpers::TEST_OPERATOR);

    // Act + Assert
    let no_reason =
        app.admin().deploy_functions(DeployFunctionsRequest { reason: String::new() }).await.expect_err("reason");
    assert_eq!(no_reason.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn bookingctl_runs_admin_commands_with_the_token_and_fails_clearly_without_it() {
    // Arrange
    let app = spawn_app().await;
    let operator = insert_operator(&app.pool).await;
    let tour = insert_tour(&app.pool, operator, 10, "active").await;
    sqlx::query("update tours set available_spots = 7 where id = $1")
        .bind(tour)
        .execute(&app.pool)
        .await
        .expect("drift");
    // a directory of its own, so no .bookingd/admin-token of a local run is found
    let cwd = std::env::temp_dir().join(format!("bookingctl-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).expect("cwd");
    let bookingctl = |args: &[&str], token: Option<&str>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_bookingctl"));
        command.current_dir(&cwd).env_remove("BOOKINGD_ADMIN_TOKEN").env_remove("BOOKINGD_ADMIN_TOKEN_FILE");
        command.arg("--addr").arg(&app.addr).args(args);
        if let Some(token) = token {
            command.env("BOOKINGD_ADMIN_TOKEN", token);
        }
        command.output()
    };

    // Act
    let dry = bookingctl(&["repair"], Some(crate::helpers::TEST_ADMIN_TOKEN)).await.expect("run bookingctl");
    let refused = bookingctl(&["repair"], None).await.expect("run bookingctl");
    let wrong = bookingctl(&["repair"], Some("wrong")).await.expect("run bookingctl");

    // Assert
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&dry.stderr));
    assert!(stdout.contains(&tour.to_string()) && stdout.contains("would change"), "{stdout}");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("operator token"), "{refused:?}");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("CREDENTIAL_UNKNOWN"), "{wrong:?}");
    assert_eq!(available_spots(&app.pool, tour).await, 7);
    let _ = std::fs::remove_dir_all(cwd);
}
