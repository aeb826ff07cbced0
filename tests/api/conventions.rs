//! Rules that hold across every service: one rule for a reason, one for
//! page tokens (a token this service did not issue for this list is
//! INVALID_ARGUMENT, never INTERNAL, and reaches no query).

use bookingd::proto::v1::{
    CancelBookingRequest, ListFlagChangesRequest, ListToursRequest, LookupJourneyRequest, RepairAvailabilityRequest,
    SetFlagRequest,
};
use tonic::{Code, Status};

use crate::{
    fixtures::{TourSpec, booking_request, create_ok, create_tour, reason, violated_fields},
    helpers::{TestApp, assert_healthy, spawn_app},
};

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, Status>, reason_code: &str, field: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!((status.code(), reason(&status).as_str()), (Code::InvalidArgument, reason_code), "{what}: {status:?}");
    assert_eq!(violated_fields(&status), [field], "{what}");
}

#[tokio::test]
async fn every_service_refuses_an_overlong_or_unprintable_reason_alike() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await.tour_id;
    let booking = create_ok(&app, booking_request(tour)).await;
    let too_long = "x".repeat(501);

    for (text, code) in [(too_long.as_str(), "REASON_TOO_LONG"), ("changed\0mind", "REASON_NOT_PRINTABLE")] {
        // Act
        let repair = app
            .admin()
            .repair_availability(RepairAvailabilityRequest { apply: true, tour_ids: vec![], reason: text.to_owned() })
            .await;
        let set_flag =
            app.admin().set_flag(SetFlagRequest { key: String::new(), enabled: true, reason: text.to_owned() }).await;
        let cancel = app
            .booking()
            .cancel_booking(CancelBookingRequest { booking_id: booking.id.clone(), reason: text.to_owned() })
            .await;

        // Assert
        assert_refused(repair, code, "reason", "RepairAvailability");
        assert_refused(set_flag, code, "reason", "SetFlag");
        assert_refused(cancel, code, "reason", "CancelBooking");
    }
    let still_pending: String =
        sqlx::query_scalar("select booking_status from bookings").fetch_one(&app.pool).await.expect("booking status");
    assert_eq!(still_pending, "pending", "a refused cancellation changes nothing");
    assert_healthy(&app.pool).await;
    app.stop().await;
}

/// The first page's token, with one character of its signed cursor changed.
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[0] = if bytes[0] == b'7' { b'6' } else { b'7' };
    String::from_utf8(bytes).expect("hex stays ascii")
}

async fn tour_page(app: &TestApp, page_token: &str) -> Result<(usize, String), Status> {
    let request = ListToursRequest { page_size: 1, page_token: page_token.to_owned(), ..Default::default() };
    let page = app.booking().list_tours(request).await?.into_inner();
    Ok((page.tours.len(), page.next_page_token))
}

#[tokio::test]
async fn page_tokens_work_across_pages_and_a_tampered_or_forged_one_is_invalid_argument_on_every_list() {
    // Arrange: two of everything, one per page
    let app = spawn_app().await;
    let first = create_tour(&app.pool, TourSpec::default()).await.tour_id;
    create_tour(&app.pool, TourSpec { days_ahead: 9, ..TourSpec::default() }).await;
    create_ok(&app, booking_request(first)).await;
    create_ok(&app, booking_request(first)).await;
    for reason in ["one", "two"] {
        app.admin()
            .set_flag(SetFlagRequest { key: String::new(), enabled: false, reason: reason.into() })
            .await
            .expect("set flag");
    }
    let (_, tours_token) = tour_page(&app, "").await.expect("first tour page");
    let journey = |page_token: String| LookupJourneyRequest {
        customer_email: "ada@example.com".into(),
        page_size: 1,
        page_token,
        ..Default::default()
    };
    let journey_token =
        app.booking().lookup_journey(journey(String::new())).await.expect("first journey page").into_inner();
    let changes = |page_token: String| ListFlagChangesRequest { key: String::new(), page_size: 1, page_token };
    let changes_token =
        app.admin().list_flag_changes(changes(String::new())).await.expect("first changes page").into_inner();
    // a cursor with a NUL in it, as a hand-made token would carry it to the query
    let forged = format!(
        "{}.{}",
        hex::encode(br#"{"d":"2026-01-01","s":"\u0000","i":"00000000-0000-0000-0000-000000000000"}"#),
        "00".repeat(16)
    );

    // Act + Assert: issued tokens lead to the second page
    assert_eq!(tour_page(&app, &tours_token).await.expect("second tour page").0, 1);
    let second = app.booking().lookup_journey(journey(journey_token.next_page_token.clone())).await;
    assert_eq!(second.expect("second journey page").into_inner().entries.len(), 1);
    let second = app.admin().list_flag_changes(changes(changes_token.next_page_token.clone())).await;
    assert_eq!(second.expect("second changes page").into_inner().changes.len(), 1);

    // Act + Assert: anything else is the caller's mistake, on every list
    for (what, token) in [
        ("tampered", tampered(&tours_token)),
        ("forged with a NUL", forged.clone()),
        ("another list's", changes_token.next_page_token.clone()),
    ] {
        assert_refused(tour_page(&app, &token).await, "INVALID_ARGUMENT", "page_token", &format!("ListTours {what}"));
    }
    for token in [tampered(&journey_token.next_page_token), forged.clone(), tours_token.clone()] {
        assert_refused(app.booking().lookup_journey(journey(token)).await, "INVALID_ARGUMENT", "page_token", "journey");
    }
    for token in [tampered(&changes_token.next_page_token), forged, "before:42".to_owned()] {
        let refused = app.admin().list_flag_changes(changes(token)).await;
        assert_refused(refused, "INVALID_ARGUMENT", "page_token", "ListFlagChanges");
    }
    assert_healthy(&app.pool).await;
    app.stop().await;
}
