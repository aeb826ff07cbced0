//! bookingctl's support-desk commands against the real server, as a
//! newcomer would type them from the README: list tours, book, find the
//! booking by reference and by e-mail, cancel it (audited with the
//! principal), and the refusals they print.

use std::process::Output;

use serde_json::Value;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, audit_count, available_spots, create_tour},
    helpers::{
        TEST_AUDITOR_TOKEN, TEST_BOOKING_CLIENT, TEST_BOOKING_TOKEN, TEST_OPERATOR, TEST_OPERATOR_TOKEN, TestApp,
        assert_healthy, spawn_app,
    },
};

/// Runs bookingctl against `app` as the principal of `token`, from an empty
/// directory (so no local `.bookingd/admin-token` is picked up).
async fn bookingctl(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let cwd = std::env::temp_dir().join(format!("bookingctl-support-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&cwd).expect("cwd");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bookingctl"))
        .current_dir(&cwd)
        .env_remove("BOOKINGD_ADMIN_TOKEN_FILE")
        .env("BOOKINGD_ADMIN_TOKEN", token)
        .arg("--addr")
        .arg(&app.addr)
        .args(args)
        .output()
        .await
        .expect("run bookingctl");
    let _ = std::fs::remove_dir_all(&cwd);
    output
}

fn json_of(output: &Output) -> Value {
    assert!(output.status.success(), "bookingctl failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(output)))
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_booking_is_made_seen_and_cancelled_with_bookingctl_alone() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let tour_id = tour.tour_id.to_string();

    // Act + Assert: the tour is listed with its seats
    let listed = json_of(&bookingctl(&app, TEST_OPERATOR_TOKEN, &["tours", "list", "--available", "--json"]).await);
    let row = listed["tours"].as_array().expect("tours").iter().find(|t| t["id"] == tour_id.as_str()).cloned();
    let row = row.unwrap_or_else(|| panic!("tour not listed: {listed}"));
    assert_eq!((row["available_spots"].as_i64(), row["max_capacity"].as_i64()), (Some(10), Some(10)));
    let table = text(&bookingctl(&app, TEST_OPERATOR_TOKEN, &["tours", "list"]).await);
    assert!(table.contains(&tour_id) && table.contains("10/10"), "{table}");

    // book 2 adults + 1 child as the booking site would
    let book = [
        "book",
        "--tour",
        &tour_id,
        "--adults",
        "2",
        "--children",
        "1",
        "--name",
        "Grace Hopper",
        "--email",
        "grace@example.com",
        "--request-id",
        "desk-1",
        "--json",
    ];
    let booked = json_of(&bookingctl(&app, TEST_BOOKING_TOKEN, &book).await);
    assert_eq!(booked["status"], "pending");
    assert_eq!(booked["replayed"], false);
    assert_eq!(booked["total_amount_cents"], 2 * 4500 + 2250);
    let reference = booked["booking_reference"].as_str().expect("reference").to_owned();
    let id = booked["id"].as_str().expect("id").to_owned();
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 7);

    // the same request id again is the same booking, not a second one
    let again = json_of(&bookingctl(&app, TEST_BOOKING_TOKEN, &book).await);
    assert_eq!((again["id"].as_str(), again["replayed"].as_bool()), (Some(id.as_str()), Some(true)));
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 7);

    // seen by reference, by id, and by the customer's e-mail
    let by_reference =
        json_of(&bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "get", &reference, "--json"]).await);
    assert_eq!(by_reference["id"], id.as_str());
    let by_id = text(&bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "get", &id]).await);
    assert!(by_id.contains(&reference) && by_id.contains("pending") && by_id.contains("112.50 EUR"), "{by_id}");
    let found = json_of(
        &bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "find", "--email", "grace@example.com", "--json"]).await,
    );
    let entries = found["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{found}");
    assert_eq!(entries[0]["booking"]["booking_reference"], reference.as_str());

    // cancelled on the customer's behalf, by reference: seats back, audited with the principal
    let cancelled = json_of(
        &bookingctl(
            &app,
            TEST_OPERATOR_TOKEN,
            &["bookings", "cancel", &reference, "--reason", "customer called the desk", "--json"],
        )
        .await,
    );
    assert_eq!((cancelled["status"].as_str(), cancelled["seats_released"].as_bool()), (Some("cancelled"), Some(true)));
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 10);
    let (actor, reason, seats): (String, String, i32) = sqlx::query_as(
        "select actor, details ->> 'reason', (details ->> 'seats')::int from audit_logs
          where action = 'booking_cancelled' and record_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("the cancellation's audit row");
    assert_eq!((actor.as_str(), reason.as_str(), seats), (TEST_OPERATOR, "customer called the desk", 3));

    // cancelling again releases nothing and records nothing
    let twice = bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "cancel", &id, "--reason", "again"]).await;
    assert!(twice.status.success(), "{}", String::from_utf8_lossy(&twice.stderr));
    assert!(text(&twice).contains("already cancelled"), "{}", text(&twice));
    assert_eq!(audit_count(&app.pool, "booking_cancelled").await, 1);
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 10);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_booking_client_cancels_under_its_own_name_and_confirm_works_by_reference() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let tour_id = tour.tour_id.to_string();
    let booked = json_of(
        &bookingctl(
            &app,
            TEST_BOOKING_TOKEN,
            &["book", "--tour", &tour_id, "--name", "Ada", "--whatsapp", "+15555550100", "--confirm", "--json"],
        )
        .await,
    );
    assert_eq!(booked["status"], "confirmed");
    let reference = booked["booking_reference"].as_str().expect("reference").to_owned();
    let found = json_of(
        &bookingctl(&app, TEST_BOOKING_TOKEN, &["bookings", "find", "--whatsapp", "+15555550100", "--json"]).await,
    );
    assert_eq!(found["entries"][0]["booking"]["booking_reference"], reference.as_str());

    let cancelled =
        bookingctl(&app, TEST_BOOKING_TOKEN, &["bookings", "cancel", &reference, "--reason", "plans changed"]).await;

    assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
    assert!(text(&cancelled).contains(&format!("cancelled {reference}: 1 seat(s) back")), "{}", text(&cancelled));
    let actor: String = sqlx::query_scalar("select actor from audit_logs where action = 'booking_cancelled'")
        .fetch_one(&app.pool)
        .await
        .expect("audit row");
    assert_eq!(actor, TEST_BOOKING_CLIENT);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn refusals_are_printed_with_their_reason_and_exit_non_zero() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 1, ..TourSpec::default() }).await;
    let tour_id = tour.tour_id.to_string();

    let unknown = bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "get", "BK-NOSUCH22"]).await;
    let too_many = bookingctl(
        &app,
        TEST_OPERATOR_TOKEN,
        &["book", "--tour", &tour_id, "--adults", "2", "--name", "X", "--email", "x@example.com"],
    )
    .await;
    let no_contact = bookingctl(&app, TEST_OPERATOR_TOKEN, &["book", "--tour", &tour_id, "--name", "X"]).await;
    let no_reason = bookingctl(&app, TEST_OPERATOR_TOKEN, &["bookings", "cancel", "BK-NOSUCH22"]).await;

    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("BOOKING_NOT_FOUND"), "{unknown:?}");
    assert!(!too_many.status.success());
    assert!(String::from_utf8_lossy(&too_many.stderr).contains("SOLD_OUT"), "{too_many:?}");
    assert!(!no_contact.status.success(), "clap requires --email or --whatsapp");
    assert!(!no_reason.status.success(), "clap requires --reason");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 1, "nothing booked by a refusal");
    assert_healthy(&app.pool).await;
}

/// Runs `bookingctl soak` briefly against `app` from `cwd`, with no token
/// in the environment: credentials come from `cwd` and `args` alone.
async fn short_soak(app: &TestApp, cwd: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_bookingctl"))
        .current_dir(cwd)
        .env_remove("BOOKINGD_ADMIN_TOKEN")
        .env_remove("BOOKINGD_ADMIN_TOKEN_FILE")
        .env_remove("BOOKINGD_CHECK_TOKEN_FILE")
        .args(["--addr", &app.addr, "soak", "--duration", "2s", "--interval", "1s", "--warmup", "0"])
        .args(["--concurrency", "2", "--max-rss-growth", "1000"])
        .args(args)
        .output()
        .await
        .expect("run bookingctl soak")
}

#[tokio::test]
async fn soak_books_as_the_booking_client_and_checks_the_invariant_with_the_operator_token() {
    // Arrange: the embedded default's token files (the load picks the
    // booking client's, which IntegrityService refuses), and a token file for
    // a run whose --token is the booking client's
    let app = spawn_app().await;
    create_tour(&app.pool, TourSpec { capacity: 50, ..TourSpec::default() }).await;
    let cwd = std::env::temp_dir().join(format!("bookingctl-soak-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(cwd.join(".bookingd")).expect("token dir");
    std::fs::write(cwd.join(".bookingd/admin-token"), TEST_OPERATOR_TOKEN).expect("operator token");
    std::fs::write(cwd.join(".bookingd/booking-client-token"), TEST_BOOKING_TOKEN).expect("booking token");
    let auditor_token = cwd.join("auditor-token");
    std::fs::write(&auditor_token, TEST_AUDITOR_TOKEN).expect("auditor token");

    // Act
    let embedded_default = short_soak(&app, &cwd, &[]).await;
    let explicit = short_soak(
        &app,
        &cwd,
        &["--token", TEST_BOOKING_TOKEN, "--check-token-file", auditor_token.to_str().expect("utf-8 path")],
    )
    .await;
    let _ = std::fs::remove_dir_all(&cwd);

    // Assert
    for run in [&embedded_default, &explicit] {
        assert!(run.status.success(), "soak failed:\n{}\n{}", text(run), String::from_utf8_lossy(&run.stderr));
        assert!(text(run).contains("seat invariant: holds"), "{}", text(run));
    }
    let booked_by: Vec<String> =
        sqlx::query_scalar("select distinct actor from audit_logs where action = 'booking_cancelled'")
            .fetch_all(&app.pool)
            .await
            .expect("cancellations");
    assert_eq!(booked_by, [TEST_BOOKING_CLIENT], "the load ran as the booking client");
    assert_healthy(&app.pool).await;
}
