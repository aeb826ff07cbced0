//! The booking lifecycle: confirm, cancel, refused transitions, lookups by
//! id and reference, and holds that expire (by the sweeper or at confirm
//! time) releasing their seats exactly once.

use std::time::Duration;

use bookingd::{
    db,
    proto::v1::{
        BookingStatus, CodePath, ConfirmBookingRequest, CreateBookingRequest, GetBookingRequest,
        get_booking_request::Key,
    },
};
use futures::future::join_all;
use tonic::Code;

use crate::{
    fixtures::{
        TourSpec, available_spots, booking_request, cancel, create_ok, create_tour, get_booking, reason, releases_of,
    },
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_with, wait_until},
};

async fn confirm(app: &TestApp, id: &str) -> Result<bookingd::proto::v1::Booking, tonic::Status> {
    let response = app.booking().confirm_booking(ConfirmBookingRequest { booking_id: id.to_owned() }).await?;
    Ok(response.into_inner().booking.expect("booking"))
}

/// Waits until the database clock has passed the booking's hold.
async fn wait_for_hold_to_lapse(app: &TestApp, id: &str) {
    wait_until("the hold to lapse by the database clock", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>("select hold_expires_at <= now() from bookings where id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("hold check")
    })
    .await;
}

#[tokio::test]
async fn a_booking_goes_from_pending_to_confirmed_to_cancelled() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let created = create_ok(&app, CreateBookingRequest { num_adults: 2, ..booking_request(tour.tour_id) }).await;

    // Act
    let confirmed = confirm(&app, &created.id).await.expect("confirm");
    let confirmed_again = confirm(&app, &created.id).await.expect("a retried confirm gets the same answer");
    let cancelled = cancel(&app, &created.id).await;
    let confirm_cancelled = confirm(&app, &created.id).await.expect_err("cannot confirm a cancelled booking");

    // Assert
    assert_eq!(created.status(), BookingStatus::Pending);
    assert_eq!(confirmed.status(), BookingStatus::Confirmed);
    assert!(confirmed.confirmed_at.is_some());
    assert_eq!(confirmed_again.confirmed_at, confirmed.confirmed_at);
    assert!(cancelled.seats_released);
    let cancelled = cancelled.booking.expect("booking");
    assert_eq!(cancelled.status(), BookingStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    assert_eq!(confirm_cancelled.code(), Code::FailedPrecondition);
    assert_eq!(reason(&confirm_cancelled), "INVALID_TRANSITION");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 50);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_booking_is_found_by_id_and_by_its_reference_in_any_case() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let created = create_ok(&app, booking_request(tour.tour_id)).await;

    // Act
    let by_id = get_booking(&app, &created.id).await;
    let by_reference = app
        .booking()
        .get_booking(GetBookingRequest {
            key: Some(Key::BookingReference(created.booking_reference.to_ascii_lowercase())),
        })
        .await
        .expect("by reference")
        .into_inner()
        .booking
        .expect("booking");

    // Assert
    assert_eq!(by_id, created);
    assert_eq!(by_reference, created);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn the_hold_defaults_to_the_configured_one_and_a_longer_request_is_capped() {
    // Arrange
    let app = spawn_app_with(|s| s.hold_duration = Duration::from_secs(60)).await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;

    // Act
    let default_hold = create_ok(&app, booking_request(tour.tour_id)).await;
    let asked_more =
        create_ok(&app, CreateBookingRequest { hold_seconds: Some(i32::MAX), ..booking_request(tour.tour_id) }).await;
    let asked_less =
        create_ok(&app, CreateBookingRequest { hold_seconds: Some(10), ..booking_request(tour.tour_id) }).await;

    // Assert
    let hold = |b: &bookingd::proto::v1::Booking| {
        b.hold_expires_at.as_ref().expect("hold").seconds - b.created_at.as_ref().expect("created").seconds
    };
    // the hold is computed before the row is written: a second of slack either way
    assert!((59..=61).contains(&hold(&default_hold)), "{}", hold(&default_hold));
    assert!((59..=61).contains(&hold(&asked_more)), "{}", hold(&asked_more));
    assert!((9..=11).contains(&hold(&asked_less)), "{}", hold(&asked_less));
    assert_healthy(&app.pool).await;
}

async fn assert_sweeper_expires_holds_once(functions_present: bool) {
    let app = spawn_app_with(|s| s.hold_sweep_interval = Duration::from_millis(100)).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let short =
        |adults| CreateBookingRequest { num_adults: adults, hold_seconds: Some(1), ..booking_request(tour.tour_id) };
    let held = create_ok(&app, short(3)).await;
    if !functions_present {
        db::functions::rollback(&app.pool, "test", "sweep without the trigger").await.expect("rollback");
    }
    let also_held = create_ok(&app, short(2)).await;
    let confirmed = create_ok(&app, booking_request(tour.tour_id)).await;
    confirm(&app, &confirmed.id).await.expect("confirmed before the hold lapses");
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 4);

    wait_until("the sweeper expired both holds", Duration::from_secs(15), || async {
        get_booking(&app, &held.id).await.status() == BookingStatus::Expired
            && get_booking(&app, &also_held.id).await.status() == BookingStatus::Expired
    })
    .await;

    let released_by = if functions_present { "trigger" } else { "application" };
    assert_eq!(releases_of(&app.pool, &held.id).await, [released_by]);
    assert_eq!(releases_of(&app.pool, &also_held.id).await, [released_by]);
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 9, "the confirmed seat stays taken");
    assert_eq!(get_booking(&app, &confirmed.id).await.status(), BookingStatus::Confirmed);
    let refused = confirm(&app, &held.id).await.expect_err("expired");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "HOLD_EXPIRED");
    let cancelled = cancel(&app, &held.id).await;
    assert!(!cancelled.seats_released);
    assert_eq!(cancelled.booking.expect("booking").status(), BookingStatus::Expired);
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 9);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn the_sweeper_expires_lapsed_holds_and_the_trigger_releases_their_seats_once() {
    assert_sweeper_expires_holds_once(true).await;
}

#[tokio::test]
async fn the_sweeper_releases_seats_itself_once_when_the_trigger_is_gone() {
    assert_sweeper_expires_holds_once(false).await;
}

#[tokio::test]
async fn confirming_a_lapsed_hold_is_refused_and_expires_it_on_both_paths() {
    // a sweeper that never gets to it: the confirm-time check must act alone
    let app = spawn_app_with(|s| s.hold_sweep_interval = Duration::from_secs(3600)).await;
    let legacy = crate::helpers::spawn_app_on(&app.database_url, |s| {
        s.hold_sweep_interval = Duration::from_secs(3600);
        s.use_legacy_booking_service = Some(true)
    })
    .await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let short = || CreateBookingRequest { num_adults: 2, hold_seconds: Some(1), ..booking_request(tour.tour_id) };
    let on_atomic = create_ok(&app, short()).await;
    let on_legacy = create_ok(&legacy, short()).await;
    assert_eq!((on_atomic.code_path(), on_legacy.code_path()), (CodePath::Atomic, CodePath::Legacy));
    db::functions::rollback(&app.pool, "test", "confirm-time expiry without the trigger").await.expect("rollback");
    wait_for_hold_to_lapse(&app, &on_atomic.id).await;
    wait_for_hold_to_lapse(&app, &on_legacy.id).await;

    for (booking, server) in [(&on_atomic, &legacy), (&on_legacy, &app)] {
        let refused = confirm(server, &booking.id).await.expect_err("lapsed");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(reason(&refused), "HOLD_EXPIRED");
        assert_eq!(get_booking(server, &booking.id).await.status(), BookingStatus::Expired);
        assert_eq!(releases_of(&app.pool, &booking.id).await, ["application"]);
        let again = confirm(server, &booking.id).await.expect_err("still expired");
        assert_eq!(reason(&again), "HOLD_EXPIRED");
    }
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 10);
    assert_healthy(&app.pool).await;
}

/// Cancels of one booking racing each other, with the restore trigger and
/// after the runbook's rollback: one of them releases the seats, every one
/// answers with the booking as it is now (cancelled, never the live state a
/// racing cancel saw before it waited), and one `booking_cancelled` is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_cancels_of_one_booking_release_once_and_all_answer_cancelled() {
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 20, ..TourSpec::default() }).await;
    for (phase, released_by) in [("trigger present", "trigger"), ("trigger absent", "application")] {
        if released_by == "application" {
            db::functions::rollback(&app.pool, "test", "racing cancels").await.expect("rollback");
        }
        let mut bookings = Vec::new();
        for _ in 0..10 {
            bookings.push(create_ok(&app, booking_request(tour.tour_id)).await);
        }
        let answers = join_all(bookings.iter().flat_map(|b| std::iter::repeat_n(b.id.clone(), 6)).map(|id| {
            let app = &app;
            async move { (id.clone(), cancel(app, &id).await) }
        }))
        .await;
        for booking in &bookings {
            let mine: Vec<_> = answers.iter().filter(|(id, _)| *id == booking.id).map(|(_, a)| a).collect();
            assert_eq!(mine.iter().filter(|a| a.seats_released).count(), 1, "{phase}: {}", booking.id);
            for answer in &mine {
                assert_eq!(answer.booking.as_ref().expect("booking").status(), BookingStatus::Cancelled, "{phase}");
            }
            assert_eq!(releases_of(&app.pool, &booking.id).await, [released_by], "{phase}");
            let audited: i64 = sqlx::query_scalar(
                "select count(*) from audit_logs where action = 'booking_cancelled' and record_id = $1::uuid",
            )
            .bind(&booking.id)
            .fetch_one(&app.pool)
            .await
            .expect("audit count");
            assert_eq!(audited, 1, "{phase}: {}", booking.id);
        }
        assert_eq!(available_spots(&app.pool, tour.tour_id).await, 20, "{phase}");
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_racing_the_sweeper_release_every_seat_exactly_once() {
    let app = spawn_app_with(|s| s.hold_sweep_interval = Duration::from_millis(20)).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 40, ..TourSpec::default() }).await;
    let mut held = Vec::new();
    for _ in 0..40 {
        held.push(
            create_ok(&app, CreateBookingRequest { hold_seconds: Some(1), ..booking_request(tour.tour_id) }).await,
        );
    }
    wait_for_hold_to_lapse(&app, &held.last().expect("bookings").id).await;

    // the sweeper is expiring them right now; cancel all of them twice at once
    let answers = join_all(held.iter().flat_map(|b| [b.id.clone(), b.id.clone()]).map(|id| {
        let app = &app;
        async move { cancel(app, &id).await }
    }))
    .await;

    wait_until("every hold ended", Duration::from_secs(10), || async {
        let live: i64 = sqlx::query_scalar(
            "select count(*) from bookings where tour_id = $1 and booking_status in ('pending', 'confirmed')",
        )
        .bind(tour.tour_id)
        .fetch_one(&app.pool)
        .await
        .expect("live count");
        live == 0
    })
    .await;
    for booking in &held {
        assert_eq!(releases_of(&app.pool, &booking.id).await.len(), 1, "{}", booking.id);
    }
    assert!(answers.iter().filter(|a| a.seats_released).count() <= held.len());
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 40);
    assert_healthy(&app.pool).await;
}
