//! Idempotency keys are per principal: the same `request_id` from two booking
//! clients makes two bookings, each replays only its own, on both paths; and
//! the migration that scoped the key kept every existing row.

use bookingd::{
    auth::token::digest_hex,
    proto::v1::{CreateBookingRequest, booking_service_client::BookingServiceClient},
};
use sqlx::{Connection, PgConnection};
use tonic::Code;

use crate::{
    fixtures::{TourSpec, available_spots, booking_request, create_tour, reason},
    helpers::{
        Authed, TEST_BOOKING_CLIENT, TestApp, assert_healthy, create_test_database, spawn_app_on, spawn_app_with,
        test_principals,
    },
};

const PARTNER_TOKEN: &str = "partner-backend-token-0123456789abcdef";

/// The test server with a second booking client, `partner-backend`.
async fn spawn_with_partner(legacy: bool) -> TestApp {
    spawn_app_with(|settings| {
        settings.use_legacy_booking_service = Some(legacy);
        settings.principals =
            Some(format!("{},partner-backend:booking-client:{}", test_principals(), digest_hex(PARTNER_TOKEN)));
    })
    .await
}

fn partner(app: &TestApp) -> BookingServiceClient<Authed> {
    BookingServiceClient::new(app.channel_with(PARTNER_TOKEN))
}

async fn create(
    client: &mut BookingServiceClient<Authed>,
    request: &CreateBookingRequest,
) -> Result<(String, bool), Code> {
    client
        .create_booking(request.clone())
        .await
        .map(|r| {
            let r = r.into_inner();
            (r.booking.expect("booking").id, r.replayed)
        })
        .map_err(|s| s.code())
}

async fn same_key_from_two_principals(legacy: bool) {
    // Arrange
    let app = spawn_with_partner(legacy).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let request = booking_request(tour.tour_id);
    let (mut site, mut partner) = (app.booking(), partner(&app));

    // Act
    let site_first = create(&mut site, &request).await.expect("site books");
    let partner_first = create(&mut partner, &request).await.expect("partner books under the same key");
    let site_again = create(&mut site, &request).await.expect("site replays");
    let partner_again = create(&mut partner, &request).await.expect("partner replays");
    let changed = CreateBookingRequest { num_adults: 2, ..request.clone() };
    let partner_reused = partner.create_booking(changed).await.expect_err("partner reuses its key");

    // Assert
    assert!(!site_first.1 && !partner_first.1, "two new bookings");
    assert_ne!(site_first.0, partner_first.0, "the partner never receives the site's booking");
    assert_eq!(site_again, (site_first.0.clone(), true));
    assert_eq!(partner_again, (partner_first.0.clone(), true));
    assert_eq!(partner_reused.code(), Code::AlreadyExists);
    assert_eq!(reason(&partner_reused), "IDEMPOTENCY_KEY_REUSED");
    let owners: Vec<(String, String)> =
        sqlx::query_as("select id::text, created_by from bookings where request_id = $1 order by created_by")
            .bind(&request.request_id)
            .fetch_all(&app.pool)
            .await
            .expect("bookings");
    assert_eq!(
        owners,
        [(partner_first.0, "partner-backend".to_owned()), (site_first.0, TEST_BOOKING_CLIENT.to_owned())]
    );
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 8);
    assert_healthy(&app.pool).await;
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_from_two_principals_makes_two_bookings_on_the_atomic_path() {
    same_key_from_two_principals(false).await;
}

#[tokio::test]
async fn the_same_key_from_two_principals_makes_two_bookings_on_the_legacy_path() {
    same_key_from_two_principals(true).await;
}

#[tokio::test]
async fn a_racing_replay_stays_with_its_principal_across_paths() {
    // Arrange: the site books on the atomic path, then the flag pins legacy
    let app = spawn_with_partner(false).await;
    let tour = create_tour(&app.pool, TourSpec { capacity: 10, ..TourSpec::default() }).await;
    let request = booking_request(tour.tour_id);
    let site_first = create(&mut app.booking(), &request).await.expect("site books");
    let legacy = spawn_app_on(&app.database_url, |settings| {
        settings.use_legacy_booking_service = Some(true);
        settings.principals =
            Some(format!("{},partner-backend:booking-client:{}", test_principals(), digest_hex(PARTNER_TOKEN)));
    })
    .await;

    // Act: concurrent first attempts by the partner, and the site's replay, on the legacy path
    let mut partners = Vec::new();
    for _ in 0..8 {
        let mut client = partner(&legacy);
        let request = request.clone();
        partners.push(tokio::spawn(async move { create(&mut client, &request).await }));
    }
    let site_replay = create(&mut legacy.booking(), &request).await.expect("site replays on legacy");
    let mut partner_ids = Vec::new();
    for handle in partners {
        partner_ids.push(handle.await.expect("task").expect("partner books or replays"));
    }

    // Assert
    assert_eq!(site_replay, (site_first.0.clone(), true));
    let first: Vec<_> = partner_ids.iter().filter(|(_, replayed)| !replayed).collect();
    assert_eq!(first.len(), 1, "exactly one new partner booking among racing retries: {partner_ids:?}");
    assert!(partner_ids.iter().all(|(id, _)| *id == first[0].0 && *id != site_first.0));
    assert_eq!(available_spots(&app.pool, tour.tour_id).await, 8);
    assert_healthy(&app.pool).await;
    legacy.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn scoping_the_key_by_principal_keeps_every_existing_booking_and_its_replay() {
    // Arrange: a database at the migration before this one, with a booking in it
    let database_url = create_test_database().await;
    let dir = std::env::temp_dir().join(format!("bookingd-migrations-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if path.is_file() && name.as_str() < "20261201110000" {
            std::fs::copy(&path, dir.join(&name)).expect("copy");
        }
    }
    let mut db = PgConnection::connect(&database_url).await.expect("connect");
    sqlx::migrate::Migrator::new(dir.as_path()).await.expect("older migrations").run(&mut db).await.expect("migrate");
    let operator: uuid::Uuid =
        sqlx::query_scalar("insert into operators (company_name, commission_rate) values ('Old', 10) returning id")
            .fetch_one(&mut db)
            .await
            .expect("operator");
    let tour: uuid::Uuid = sqlx::query_scalar(
        "insert into tours (operator_id, tour_name, tour_date, time_slot, max_capacity, available_spots,
                            adult_price_cents, child_price_cents, commission_rate, status)
         values ($1, 'Old tour', current_date + 3, '10:00', 10, 9, 4500, 2250, 12.5, 'active') returning id",
    )
    .bind(operator)
    .fetch_one(&mut db)
    .await
    .expect("tour");
    let request = booking_request(tour);
    // the fingerprint the service computes for this request, from the domain's own function
    let input = bookingd::booking::types::CreateBookingInput {
        request_id: request.request_id.clone(),
        tour_id: request.tour_id.clone(),
        num_adults: request.num_adults,
        num_children: request.num_children,
        customer_name: request.customer_name.clone(),
        customer_email: request.customer_email.clone(),
        ..Default::default()
    };
    let rules = bookingd::booking::types::BookingRules {
        max_seats_per_booking: 20,
        hold: std::time::Duration::from_secs(1800),
    };
    let fingerprint =
        bookingd::booking::types::BookingRequest::parse(&input, &rules).expect("valid request").fingerprint();
    let old_booking: uuid::Uuid = sqlx::query_scalar(
        "insert into bookings (booking_reference, request_id, request_fingerprint, tour_id, operator_id,
                               customer_name, customer_email, num_adults, num_children, subtotal,
                               commission_amount, total_amount, applied_commission_rate, code_path,
                               hold_expires_at)
         values ('BK-OLDROW01', $1, $2, $3, $4, 'Ada Lovelace', 'ada@example.com', 1, 0, 4500, 563, 4500, 12.5,
                 'atomic', now() + interval '30 minutes')
         returning id",
    )
    .bind(&request.request_id)
    .bind(&fingerprint)
    .bind(tour)
    .bind(operator)
    .fetch_one(&mut db)
    .await
    .expect("old booking");
    db.close().await.expect("close");

    // Act: the current server migrates; the embedded default's booking client replays
    let app = spawn_app_on(&database_url, |settings| {
        settings.principals =
            Some(format!("{},booking-client:booking-client:{}", test_principals(), digest_hex(PARTNER_TOKEN)));
    })
    .await;
    let replay = create(&mut partner(&app), &request).await.expect("replay after the migration");
    let other = create(&mut app.booking(), &request).await.expect("another principal books anew");

    // Assert
    assert_eq!(replay, (old_booking.to_string(), true), "the old row is the default booking client's");
    assert_ne!(other.0, old_booking.to_string());
    assert!(!other.1);
    let rows: i64 = sqlx::query_scalar("select count(*) from bookings").fetch_one(&app.pool).await.expect("count");
    assert_eq!(rows, 2);
    assert_healthy(&app.pool).await;
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
