//! Bad input is refused before anything is written; SQL metacharacters are
//! data, never SQL; refusals leave no `creation_failed` audit row (only real
//! failures do, see `drill_failures`).

use bookingd::proto::v1::{
    CancelBookingRequest, ConfirmBookingRequest, CreateBookingRequest, GetBookingRequest, ListToursRequest,
    LookupJourneyRequest, get_booking_request::Key,
};
use tonic::Code;
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, booking_request, create_ok, create_tour, get_booking, reason, violated_fields, write_counts},
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_on, spawn_app_with},
};

/// A field far beyond every rule yet under the 256 KiB request limit
/// (BOOKINGD_MAX_REQUEST_BYTES), so validation refuses it, not the transport
/// (drill_overload has the request over the limit).
const HUGE_FIELD: usize = 200 * 1024;

type Mutation = Box<dyn Fn(&mut CreateBookingRequest)>;

/// (what, how the valid request is spoiled, expected code, field expected in BadRequest)
fn bad_create_requests(template_id: Uuid) -> Vec<(&'static str, Mutation, Code, Option<&'static str>)> {
    let big = "x".repeat(HUGE_FIELD);
    let case = |f: fn(&mut CreateBookingRequest)| -> Mutation { Box::new(f) };
    vec![
        ("negative adults", case(|r| r.num_adults = -1), Code::InvalidArgument, Some("num_adults")),
        ("negative children", case(|r| r.num_children = -5), Code::InvalidArgument, Some("num_children")),
        ("zero seats", case(|r| r.num_adults = 0), Code::InvalidArgument, Some("num_adults")),
        ("i32::MAX adults", case(|r| r.num_adults = i32::MAX), Code::InvalidArgument, Some("num_adults")),
        (
            "i32::MAX adults and children",
            case(|r| {
                r.num_adults = i32::MAX;
                r.num_children = i32::MAX
            }),
            Code::InvalidArgument,
            Some("num_adults"),
        ),
        ("i32::MIN children", case(|r| r.num_children = i32::MIN), Code::InvalidArgument, Some("num_children")),
        (
            "more seats than one booking may take",
            case(|r| r.num_adults = 21),
            Code::InvalidArgument,
            Some("num_adults"),
        ),
        ("empty tour id", case(|r| r.tour_id.clear()), Code::InvalidArgument, Some("tour_id")),
        ("malformed tour id", case(|r| r.tour_id = "not-a-uuid".into()), Code::InvalidArgument, Some("tour_id")),
        (
            "tour id one digit short",
            case(|r| r.tour_id = "123e4567-e89b-12d3-a456-42661417400".into()),
            Code::InvalidArgument,
            Some("tour_id"),
        ),
        (
            "sql in the tour id",
            case(|r| r.tour_id = "'; update tours set available_spots = 0; --".into()),
            Code::InvalidArgument,
            Some("tour_id"),
        ),
        ("nul in the tour id", case(|r| r.tour_id.push('\0')), Code::InvalidArgument, Some("tour_id")),
        ("unknown tour", case(|r| r.tour_id = Uuid::new_v4().to_string()), Code::NotFound, None),
        ("empty request id", case(|r| r.request_id.clear()), Code::InvalidArgument, Some("request_id")),
        ("nul in the request id", case(|r| r.request_id.push('\0')), Code::InvalidArgument, Some("request_id")),
        ("newline in the request id", case(|r| r.request_id.push('\n')), Code::InvalidArgument, Some("request_id")),
        ("empty name", case(|r| r.customer_name = "   ".into()), Code::InvalidArgument, Some("customer_name")),
        ("nul in the name", case(|r| r.customer_name.push('\0')), Code::InvalidArgument, Some("customer_name")),
        (
            "control character in the name",
            case(|r| r.customer_name.push('\u{7}')),
            Code::InvalidArgument,
            Some("customer_name"),
        ),
        (
            "201-character name",
            case(|r| r.customer_name = "n".repeat(201)),
            Code::InvalidArgument,
            Some("customer_name"),
        ),
        (
            "no contact at all",
            case(|r| {
                r.customer_email.clear();
                r.customer_whatsapp.clear()
            }),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "email without a domain",
            case(|r| r.customer_email = "ada@".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "email without a dot",
            case(|r| r.customer_email = "ada@localhost".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "email with two ats",
            case(|r| r.customer_email = "a@@example.com".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "email with a space",
            case(|r| r.customer_email = "ada lovelace@example.com".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "sql in the email",
            case(|r| r.customer_email = "ada@example.com'; delete from bookings; --".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "postgrest filter in the email",
            case(|r| r.customer_email = "ada@example.com,customer_email.neq.x".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "nul in the email",
            case(|r| r.customer_email = "ada\0@example.com".into()),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "255-character email",
            case(|r| r.customer_email = format!("{}@example.com", "a".repeat(243))),
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "whatsapp without plus",
            case(|r| r.customer_whatsapp = "4915112345678".into()),
            Code::InvalidArgument,
            Some("customer_whatsapp"),
        ),
        (
            "whatsapp with spaces",
            case(|r| r.customer_whatsapp = "+49 151 1234567".into()),
            Code::InvalidArgument,
            Some("customer_whatsapp"),
        ),
        (
            "sql in the whatsapp",
            case(|r| r.customer_whatsapp = "+4915112345678' or '1'='1".into()),
            Code::InvalidArgument,
            Some("customer_whatsapp"),
        ),
        (
            "nul in the whatsapp",
            case(|r| r.customer_whatsapp = "+49151\u{0}12345678".into()),
            Code::InvalidArgument,
            Some("customer_whatsapp"),
        ),
        ("zero hold", case(|r| r.hold_seconds = Some(0)), Code::InvalidArgument, Some("hold_seconds")),
        ("negative hold", case(|r| r.hold_seconds = Some(-30)), Code::InvalidArgument, Some("hold_seconds")),
        ("malformed user id", case(|r| r.user_id = Some("user-1".into())), Code::InvalidArgument, Some("user_id")),
        ("nul in the user id", case(|r| r.user_id = Some("\0".into())), Code::InvalidArgument, Some("user_id")),
        (
            "200 KiB request id",
            {
                let big = big.clone();
                Box::new(move |r: &mut CreateBookingRequest| r.request_id = big.clone())
            },
            Code::InvalidArgument,
            Some("request_id"),
        ),
        (
            "200 KiB tour id",
            {
                let big = big.clone();
                Box::new(move |r: &mut CreateBookingRequest| r.tour_id = big.clone())
            },
            Code::InvalidArgument,
            Some("tour_id"),
        ),
        (
            "200 KiB name",
            {
                let big = big.clone();
                Box::new(move |r: &mut CreateBookingRequest| r.customer_name = big.clone())
            },
            Code::InvalidArgument,
            Some("customer_name"),
        ),
        (
            "200 KiB email",
            {
                let big = big.clone();
                Box::new(move |r: &mut CreateBookingRequest| r.customer_email = format!("{big}@example.com"))
            },
            Code::InvalidArgument,
            Some("customer_email"),
        ),
        (
            "200 KiB whatsapp",
            Box::new(|r: &mut CreateBookingRequest| r.customer_whatsapp = format!("+49{}", "1".repeat(HUGE_FIELD))),
            Code::InvalidArgument,
            Some("customer_whatsapp"),
        ),
        (
            "200 KiB user id",
            Box::new(move |r: &mut CreateBookingRequest| r.user_id = Some(big.clone())),
            Code::InvalidArgument,
            Some("user_id"),
        ),
        (
            "a template instead of a dated tour id, with a negative count",
            Box::new(move |r: &mut CreateBookingRequest| {
                r.tour_id = template_id.to_string();
                r.num_children = -1
            }),
            Code::InvalidArgument,
            Some("num_children"),
        ),
    ]
}

async fn assert_bad_create_requests_write_nothing(app: &TestApp) {
    let tour = create_tour(&app.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;
    let template_id = tour.template_id.expect("template");
    let before = write_counts(&app.pool).await;

    for (what, spoil, code, field) in bad_create_requests(template_id) {
        let mut request = booking_request(tour.tour_id);
        spoil(&mut request);
        let refusal = app.booking().create_booking(request).await.expect_err(what);
        assert_eq!(refusal.code(), code, "{what}: {refusal:?}");
        if let Some(field) = field {
            assert!(violated_fields(&refusal).iter().any(|f| f == field), "{what}: {:?}", violated_fields(&refusal));
            assert_eq!(reason(&refusal), "INVALID_ARGUMENT", "{what}");
            assert!(refusal.message().len() < 1000, "{what}: the refusal does not echo the input");
        }
    }

    assert_eq!(write_counts(&app.pool).await, before, "nothing written");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn bad_create_requests_are_refused_with_the_right_code_and_nothing_written_on_the_atomic_path() {
    let app = spawn_app().await;
    assert_bad_create_requests_write_nothing(&app).await;
}

#[tokio::test]
async fn bad_create_requests_are_refused_with_the_right_code_and_nothing_written_on_the_legacy_path() {
    let app = spawn_app_with(|s| s.use_legacy_booking_service = Some(true)).await;
    assert_bad_create_requests_write_nothing(&app).await;
}

#[tokio::test]
async fn bad_input_to_the_other_rpcs_is_refused_and_nothing_written() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let booking = create_ok(&app, booking_request(tour.tour_id)).await;
    let before = write_counts(&app.pool).await;
    let big = "x".repeat(HUGE_FIELD);
    let mut client = app.booking();

    // Act
    for (what, id, code) in [
        ("malformed id", "nope".to_owned(), Code::InvalidArgument),
        ("empty id", String::new(), Code::InvalidArgument),
        ("nul id", format!("{}\0", booking.id), Code::InvalidArgument),
        ("sql id", "' or 1=1 --".to_owned(), Code::InvalidArgument),
        ("200 KiB id", big.clone(), Code::InvalidArgument),
        ("unknown id", Uuid::new_v4().to_string(), Code::NotFound),
    ] {
        let confirm = client.confirm_booking(ConfirmBookingRequest { booking_id: id.clone() }).await;
        assert_eq!(confirm.expect_err(what).code(), code, "confirm: {what}");
        let cancel =
            client.cancel_booking(CancelBookingRequest { booking_id: id.clone(), reason: String::new() }).await;
        assert_eq!(cancel.expect_err(what).code(), code, "cancel: {what}");
        let get = client.get_booking(GetBookingRequest { key: Some(Key::BookingId(id)) }).await;
        assert_eq!(get.expect_err(what).code(), code, "get: {what}");
    }
    for (what, reference, code) in [
        ("empty", String::new(), Code::InvalidArgument),
        ("nul", "BK-\0".to_owned(), Code::InvalidArgument),
        ("200 KiB", big.clone(), Code::InvalidArgument),
        ("sql", "x' or '1'='1".to_owned(), Code::InvalidArgument),
        ("unknown", "BK-ZZZZZZZZ".to_owned(), Code::NotFound),
    ] {
        let get = client.get_booking(GetBookingRequest { key: Some(Key::BookingReference(reference)) }).await;
        assert_eq!(get.expect_err(what).code(), code, "get by reference: {what}");
    }
    let no_key = client.get_booking(GetBookingRequest { key: None }).await.expect_err("no key");
    assert_eq!(no_key.code(), Code::InvalidArgument);
    for (what, reason) in [("nul", "changed\0mind".to_owned()), ("200 KiB", big.clone())] {
        let cancel = client.cancel_booking(CancelBookingRequest { booking_id: booking.id.clone(), reason }).await;
        assert_eq!(cancel.expect_err(what).code(), Code::InvalidArgument, "cancel reason: {what}");
    }
    for (what, email, whatsapp, page_size, page_token) in [
        ("no contact", "", "", 0, ""),
        ("bad email", "ada", "", 0, ""),
        ("injected filter", "", "+4915112345678,customer_email.neq.x", 0, ""),
        ("nul email", "ada\0@example.com", "", 0, ""),
        ("negative page size", "ada@example.com", "", -1, ""),
        ("forged page token", "ada@example.com", "", 0, "deadbeef"),
        ("200 KiB email", big.as_str(), "", 0, ""),
    ] {
        let lookup = client
            .lookup_journey(LookupJourneyRequest {
                customer_email: email.to_owned(),
                customer_whatsapp: whatsapp.to_owned(),
                page_size,
                page_token: page_token.to_owned(),
            })
            .await;
        assert_eq!(lookup.expect_err(what).code(), Code::InvalidArgument, "lookup: {what}");
    }
    for (what, request) in [
        ("bad from date", ListToursRequest { from_date: "26.11.2026".into(), ..Default::default() }),
        ("impossible date", ListToursRequest { to_date: "2026-02-30".into(), ..Default::default() }),
        (
            "reversed range",
            ListToursRequest { from_date: "2026-12-01".into(), to_date: "2026-11-01".into(), ..Default::default() },
        ),
        ("bad template id", ListToursRequest { template_id: "' or 1=1".into(), ..Default::default() }),
        ("negative page size", ListToursRequest { page_size: -3, ..Default::default() }),
        ("forged page token", ListToursRequest { page_token: "00".into(), ..Default::default() }),
    ] {
        let list = client.list_tours(request).await;
        assert_eq!(list.expect_err(what).code(), Code::InvalidArgument, "list tours: {what}");
    }

    // Assert
    assert_eq!(write_counts(&app.pool).await, before, "nothing written");
    assert_eq!(get_booking(&app, &booking.id).await.status(), bookingd::proto::v1::BookingStatus::Pending);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn sql_metacharacters_in_valid_fields_are_stored_verbatim_on_both_paths() {
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let tour = create_tour(&atomic.pool, TourSpec::default()).await;

    for (app, suffix) in [(&atomic, "a"), (&legacy, "l")] {
        let mut request = booking_request(tour.tour_id);
        request.request_id = format!("'; delete from tours; -- {suffix}");
        request.customer_name = "Robert'); DROP TABLE bookings;-- \"Bobby\" \\ %_".into();
        request.customer_email = "o'brien+%_@example.com".into();

        let booking = create_ok(app, request.clone()).await;

        let stored: (String, String, String) =
            sqlx::query_as("select request_id, customer_name, customer_email from bookings where id = $1::uuid")
                .bind(&booking.id)
                .fetch_one(&atomic.pool)
                .await
                .expect("stored booking");
        assert_eq!(stored, (request.request_id, request.customer_name, request.customer_email));
    }
    let tours: i64 = sqlx::query_scalar("select count(*) from tours").fetch_one(&atomic.pool).await.expect("tours");
    assert_eq!(tours, 1, "the tours table is intact");
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn refused_creations_write_nothing_to_audit_logs_on_either_path() {
    let atomic = spawn_app().await;
    let legacy = spawn_app_on(&atomic.database_url, |s| s.use_legacy_booking_service = Some(true)).await;
    let one_seat = create_tour(&atomic.pool, TourSpec { capacity: 1, ..TourSpec::default() }).await;
    let maintenance = create_tour(&atomic.pool, TourSpec { status: "maintenance", ..TourSpec::default() }).await;
    let instance = create_tour(&atomic.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;
    let template_id = instance.template_id.expect("template");
    let taken = create_ok(&atomic, booking_request(one_seat.tour_id)).await;
    let mut personal = booking_request(one_seat.tour_id);
    personal.customer_name = "Grace Hopper".into();
    personal.customer_email = "grace@navy.example".into();
    personal.customer_whatsapp = "+15551234567".into();

    let mut expected = Vec::new();
    for (app, path) in [(&atomic, "atomic"), (&legacy, "legacy")] {
        let sold_out = app.booking().create_booking(personal.clone()).await.expect_err("sold out");
        let mut request = personal.clone();
        request.tour_id = maintenance.tour_id.to_string();
        let not_active = app.booking().create_booking(request).await.expect_err("maintenance");
        let mut request = personal.clone();
        request.tour_id = template_id.to_string();
        let template = app.booking().create_booking(request).await.expect_err("template");
        let mut request = personal.clone();
        request.request_id = taken.request_id.clone();
        let reused = app.booking().create_booking(request).await.expect_err("key reused");
        // refused before a real tour was involved: not audited
        let mut request = personal.clone();
        request.num_adults = -1;
        app.booking().create_booking(request).await.expect_err("invalid");
        let mut request = personal.clone();
        request.tour_id = Uuid::new_v4().to_string();
        app.booking().create_booking(request).await.expect_err("unknown tour");

        assert_eq!(not_active.code(), Code::FailedPrecondition);
        assert_eq!(reason(&not_active), "TOUR_NOT_ACTIVE");
        assert!(not_active.message().contains("maintenance"), "{}", not_active.message());
        assert_eq!(template.code(), Code::FailedPrecondition);
        for (status, tour) in [
            (&sold_out, one_seat.tour_id),
            (&not_active, maintenance.tour_id),
            (&template, template_id),
            (&reused, one_seat.tour_id),
        ] {
            expected.push((reason(status), tour.to_string(), path.to_owned()));
        }
    }

    // every refusal above really was one (not a failure in disguise)
    let reasons: Vec<&str> = expected.iter().map(|(reason, _, _)| reason.as_str()).collect();
    assert_eq!(
        reasons,
        ["SOLD_OUT", "TOUR_NOT_ACTIVE", "TOUR_NOT_BOOKABLE", "IDEMPOTENCY_KEY_REUSED"].repeat(2),
        "{expected:?}"
    );
    let recorded: i64 = sqlx::query_scalar(
        "select count(*) from audit_logs where table_name = 'bookings' and action = 'creation_failed'",
    )
    .fetch_one(&atomic.pool)
    .await
    .expect("audit rows");
    assert_eq!(recorded, 0, "refusals are counted in metrics, not written on the request path");
    assert_healthy(&atomic.pool).await;
}

#[tokio::test]
async fn a_failing_audit_write_does_not_hide_the_real_failure() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 1, ..TourSpec::default() }).await;
    sqlx::raw_sql(
        "create or replace function create_booking_atomic(p_booking jsonb, p_user_id uuid)
         returns bookings language plpgsql as $$
         begin raise exception 'injected function error'; end $$;
         create function refuse_audit() returns trigger language plpgsql as $$
         begin raise exception 'audit table unwritable'; end $$;
         create trigger refuse_creation_failed before insert on audit_logs
         for each row when (new.action = 'creation_failed') execute function refuse_audit();",
    )
    .execute(&app.pool)
    .await
    .expect("break audit writes");

    // Act
    let failure = app.booking().create_booking(booking_request(tour.tour_id)).await.expect_err("function error");

    // Assert
    assert_eq!(failure.code(), Code::Internal);
    assert_eq!(reason(&failure), "INTERNAL");
    assert_healthy(&app.pool).await;
}
