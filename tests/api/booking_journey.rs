//! LookupJourney (the enhanced view, its base-table fallback, pagination)
//! and ListTours (filters, pagination).

use std::collections::HashSet;

use bookingd::proto::v1::{
    CreateBookingRequest, JourneyEntry, ListToursRequest, LookupJourneyRequest, LookupJourneyResponse, Tour,
};
use uuid::Uuid;

use crate::{
    fixtures::{TourSpec, booking_request, create_ok, create_operator, create_tour, create_tour_for},
    helpers::{TestApp, assert_healthy, spawn_app},
};

async fn lookup(app: &TestApp, email: &str, whatsapp: &str, page_size: i32, page_token: &str) -> LookupJourneyResponse {
    app.booking()
        .lookup_journey(LookupJourneyRequest {
            customer_email: email.to_owned(),
            customer_whatsapp: whatsapp.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        })
        .await
        .expect("lookup journey")
        .into_inner()
}

/// What a journey shows, without the booking's volatile fields.
fn shown(entry: &JourneyEntry) -> (String, String, Option<String>, String, String, String, Option<String>) {
    (
        entry.booking.as_ref().expect("booking").id.clone(),
        entry.tour_name.clone(),
        entry.template_name.clone(),
        entry.tour_date.clone(),
        entry.time_slot.clone(),
        entry.operator_company.clone(),
        entry.schedule_id.clone(),
    )
}

struct Journeys {
    /// Ada's bookings, newest first.
    ada: Vec<String>,
    instance_schedule: Uuid,
}

/// Ada books three times (two by email on a template instance, one by
/// WhatsApp only on a stand-alone tour); Grace books once.
async fn arrange_journeys(app: &TestApp) -> Journeys {
    let instance = create_tour(&app.pool, TourSpec { from_template: true, ..TourSpec::default() }).await;
    let standalone = create_tour(&app.pool, TourSpec::default()).await;
    let by_email =
        || CreateBookingRequest { customer_email: "Ada@Example.com".into(), ..booking_request(instance.tour_id) };
    let first = create_ok(app, by_email()).await;
    create_ok(
        app,
        CreateBookingRequest {
            customer_email: "grace@example.com".into(),
            customer_whatsapp: "+15550001111".into(),
            ..booking_request(instance.tour_id)
        },
    )
    .await;
    let second = create_ok(app, by_email()).await;
    let third = create_ok(
        app,
        CreateBookingRequest {
            customer_email: String::new(),
            customer_whatsapp: "+4915112345678".into(),
            ..booking_request(standalone.tour_id)
        },
    )
    .await;
    Journeys { ada: vec![third.id, second.id, first.id], instance_schedule: instance.schedule_id.expect("schedule") }
}

#[tokio::test]
async fn a_journey_lists_a_customers_bookings_newest_first_with_tour_and_template_data() {
    // Arrange
    let app = spawn_app().await;
    let journeys = arrange_journeys(&app).await;

    // Act
    let both = lookup(&app, "ada@example.com", "+4915112345678", 0, "").await;
    let by_email = lookup(&app, "ADA@EXAMPLE.COM", "", 0, "").await;
    let by_whatsapp = lookup(&app, "", "+4915112345678", 0, "").await;

    // Assert
    let ids = |r: &LookupJourneyResponse| -> Vec<String> { r.entries.iter().map(|e| shown(e).0).collect() };
    assert_eq!(ids(&both), journeys.ada);
    assert_eq!(ids(&by_email), journeys.ada[1..]);
    assert_eq!(ids(&by_whatsapp), journeys.ada[..1]);
    assert!(!both.used_fallback);
    assert!(both.next_page_token.is_empty());
    let instance_entry = &both.entries[1];
    assert_eq!(instance_entry.template_name.as_deref(), Some("Harbour Cruise (template)"));
    assert_eq!(instance_entry.schedule_id.as_deref(), Some(journeys.instance_schedule.to_string().as_str()));
    assert_eq!(instance_entry.time_slot, "10:00");
    assert!(!instance_entry.tour_date.is_empty() && instance_entry.operator_company.starts_with("Operator "));
    let standalone_entry = &both.entries[0];
    assert_eq!(standalone_entry.template_name, None);
    assert_eq!(standalone_entry.tour_name, "Lighthouse Walk");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_journey_falls_back_to_base_tables_when_the_view_is_missing() {
    // Arrange
    let app = spawn_app().await;
    arrange_journeys(&app).await;
    let through_view = lookup(&app, "ada@example.com", "+4915112345678", 0, "").await;

    // Act
    sqlx::query("drop view active_tours_with_operators").execute(&app.pool).await.expect("drop view");
    let through_tables = lookup(&app, "ada@example.com", "+4915112345678", 0, "").await;

    // Assert
    assert!(!through_view.used_fallback);
    assert!(through_tables.used_fallback);
    assert_eq!(
        through_tables.entries.iter().map(shown).collect::<Vec<_>>(),
        through_view.entries.iter().map(shown).collect::<Vec<_>>()
    );
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_journey_falls_back_when_the_view_loses_template_names() {
    // Arrange
    let app = spawn_app().await;
    arrange_journeys(&app).await;
    let through_view = lookup(&app, "ada@example.com", "", 0, "").await;
    // the runbook's scenario 3: the view answers, but without template data
    let definition: String = sqlx::query_scalar("select pg_get_viewdef('active_tours_with_operators'::regclass)")
        .fetch_one(&app.pool)
        .await
        .expect("view definition");
    let broken = definition.replace("tpl.tour_name AS template_name", "NULL::text AS template_name");
    assert_ne!(broken, definition, "the view definition names template_name as expected");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create or replace view active_tours_with_operators as {broken}")))
        .execute(&app.pool)
        .await
        .expect("break the view");

    // Act
    let through_tables = lookup(&app, "ada@example.com", "", 0, "").await;

    // Assert
    assert!(through_tables.used_fallback);
    assert!(through_tables.entries.iter().all(|e| e.template_name.as_deref() == Some("Harbour Cruise (template)")));
    assert_eq!(
        through_tables.entries.iter().map(shown).collect::<Vec<_>>(),
        through_view.entries.iter().map(shown).collect::<Vec<_>>()
    );
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_long_journey_is_paged_without_gaps_or_repeats() {
    // Arrange
    let app = spawn_app().await;
    let tour = create_tour(&app.pool, TourSpec::default()).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(create_ok(&app, booking_request(tour.tour_id)).await.id);
    }
    made.reverse();

    // Act
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = lookup(&app, "ada@example.com", "", 2, &token).await;
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.iter().map(|e| shown(e).0));
        pages += 1;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 10, "paging does not end");
    }

    // Assert
    assert_eq!(seen, made, "newest first, each once");
    assert_eq!(pages, 3);
    assert_healthy(&app.pool).await;
}

async fn list(app: &TestApp, request: ListToursRequest) -> (Vec<Tour>, String) {
    let response = app.booking().list_tours(request).await.expect("list tours").into_inner();
    (response.tours, response.next_page_token)
}

#[tokio::test]
async fn tours_are_listed_by_date_with_filters_and_pages() {
    let app = spawn_app().await;
    let operator = create_operator(&app.pool, "Harbour Lights").await;
    let spec = |days_ahead, time_slot| TourSpec { days_ahead, time_slot, ..TourSpec::default() };
    let in_3_days = create_tour_for(&app.pool, operator, spec(3, "17:30")).await;
    let in_3_days_early = create_tour_for(&app.pool, operator, spec(3, "09:00")).await;
    let in_5_days = create_tour_for(&app.pool, operator, TourSpec { from_template: true, ..spec(5, "10:00") }).await;
    let in_9_days = create_tour_for(&app.pool, operator, spec(9, "10:00")).await;
    let maintenance =
        create_tour_for(&app.pool, operator, TourSpec { status: "maintenance", ..spec(4, "10:00") }).await;
    let inactive = create_tour_for(&app.pool, operator, TourSpec { status: "inactive", ..spec(4, "11:00") }).await;
    let sold_out = create_tour_for(&app.pool, operator, TourSpec { capacity: 1, ..spec(6, "10:00") }).await;
    create_ok(&app, booking_request(sold_out.tour_id)).await;
    let today = chrono::Utc::now().date_naive();
    let day = |n: i64| (today + chrono::Duration::days(n)).format("%Y-%m-%d").to_string();

    let (all, _) = list(&app, ListToursRequest::default()).await;
    let (window, _) = list(&app, ListToursRequest { from_date: day(4), to_date: day(6), ..Default::default() }).await;
    let (of_template, _) = list(
        &app,
        ListToursRequest { template_id: in_5_days.template_id.expect("template").to_string(), ..Default::default() },
    )
    .await;
    let (available, _) = list(&app, ListToursRequest { only_available: true, ..Default::default() }).await;

    let ids = |tours: &[Tour]| -> Vec<String> { tours.iter().map(|t| t.id.clone()).collect() };
    let id = |t: crate::fixtures::TourIds| t.tour_id.to_string();
    assert_eq!(
        ids(&all),
        [id(in_3_days_early), id(in_3_days), id(maintenance), id(in_5_days), id(sold_out), id(in_9_days)],
        "dated tours by date and slot; no templates, nothing inactive ({})",
        id(inactive)
    );
    assert_eq!(ids(&window), [id(maintenance), id(in_5_days), id(sold_out)]);
    assert_eq!(ids(&of_template), [id(in_5_days)]);
    assert_eq!(ids(&available), [id(in_3_days_early), id(in_3_days), id(in_5_days), id(in_9_days)]);
    let listed = &all[3];
    assert_eq!(listed.template_name.as_deref(), Some("Harbour Cruise (template)"));
    assert_eq!((listed.adult_price_cents, listed.child_price_cents), (4500, 2250));
    assert_eq!(listed.commission_rate, "12.50");
    assert_eq!(listed.operator_company, "Harbour Lights");
    assert_eq!(all[4].available_spots, 0);

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let (tours, next) =
            list(&app, ListToursRequest { page_size: 4, page_token: token, ..Default::default() }).await;
        paged.extend(ids(&tours));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(paged, ids(&all));
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), paged.len());
    assert_healthy(&app.pool).await;
}
