//! IntegrityService: one test per check (PASS on a healthy catalog, FAIL on a
//! violation made with direct SQL, samples naming the culprit), results
//! streamed as they finish, watches that stop their queries when cancelled.
//!
//! Data is written with direct SQL, consistent with the schema's constraints
//! (the booking RPCs are not used here).

use std::time::Duration;

use bookingd::{
    db,
    grpc::integrity::struct_to_json,
    proto::v1::{CheckResult, CheckStatus, RunChecksRequest, WatchChecksRequest},
};
use serde_json::Value;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::{
    fixtures::insert_booking_taking_seats,
    helpers::{TestApp, assert_healthy, spawn_app, spawn_app_with, wait_until},
};

/// A small marketplace in a healthy state: one operator, a template with a
/// schedule and one dated instance, one stand-alone tour, and bookings in
/// every status (the cancelled one cancelled through the restore trigger).
struct Catalog {
    template_id: Uuid,
    instance_id: Uuid,
    standalone_id: Uuid,
    instance_confirmed: Uuid,
    instance_pending: Uuid,
    standalone_confirmed: Uuid,
}

async fn healthy_catalog(pool: &PgPool) -> Catalog {
    let operator_id: Uuid = sqlx::query_scalar(
        "insert into operators (company_name, contact_email, commission_rate)
         values ('Integrity Test Tours', 'ops@integrity.example', 12.5) returning id",
    )
    .fetch_one(pool)
    .await
    .expect("operator");
    let template_id: Uuid = sqlx::query_scalar(
        "insert into tours (operator_id, is_template, tour_name, max_capacity, available_spots,
                            adult_price_cents, child_price_cents, commission_rate)
         values ($1, true, 'Harbour Cruise', 20, 20, 4999, 2500, 12.5) returning id",
    )
    .bind(operator_id)
    .fetch_one(pool)
    .await
    .expect("template");
    let schedule_id: Uuid = sqlx::query_scalar(
        "insert into schedules (template_id, operator_id, day_of_week, time_slot, capacity, valid_from)
         values ($1, $2, 1, '09:00', 20, current_date) returning id",
    )
    .bind(template_id)
    .bind(operator_id)
    .fetch_one(pool)
    .await
    .expect("schedule");
    let instance_id: Uuid = sqlx::query_scalar(
        "insert into tours (operator_id, parent_template_id, origin_schedule_id, tour_name, tour_date, time_slot,
                            max_capacity, available_spots, adult_price_cents, child_price_cents, commission_rate)
         values ($1, $2, $3, 'Harbour Cruise', current_date + 7, '09:00', 20, 20, 4999, 2500, 12.5)
         returning id",
    )
    .bind(operator_id)
    .bind(template_id)
    .bind(schedule_id)
    .fetch_one(pool)
    .await
    .expect("instance");
    let standalone_id: Uuid = sqlx::query_scalar(
        "insert into tours (operator_id, tour_name, tour_date, time_slot, max_capacity, available_spots,
                            adult_price_cents, child_price_cents, commission_rate)
         values ($1, 'Lighthouse Private Tour', current_date + 3, '11:00', 10, 10, 12000, 6000, 12.5)
         returning id",
    )
    .bind(operator_id)
    .fetch_one(pool)
    .await
    .expect("stand-alone tour");

    let instance_confirmed = insert_booking_taking_seats(pool, instance_id, "confirmed", 2, 1).await;
    let instance_pending = insert_booking_taking_seats(pool, instance_id, "pending", 1, 0).await;
    let to_cancel = insert_booking_taking_seats(pool, instance_id, "pending", 2, 0).await;
    let standalone_confirmed = insert_booking_taking_seats(pool, standalone_id, "confirmed", 3, 0).await;
    sqlx::query("update bookings set booking_status = 'cancelled', cancelled_at = now() where id = $1")
        .bind(to_cancel)
        .execute(pool)
        .await
        .expect("cancel through the trigger");

    Catalog { template_id, instance_id, standalone_id, instance_confirmed, instance_pending, standalone_confirmed }
}

async fn run_checks(app: &TestApp, checks: &[&str]) -> Vec<CheckResult> {
    let request = RunChecksRequest { checks: checks.iter().map(|c| (*c).to_owned()).collect(), max_samples: 0 };
    let mut stream = app.integrity().run_checks(request).await.expect("RunChecks accepted").into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.expect("stream item") {
        results.push(result);
    }
    results
}

async fn run_check(app: &TestApp, check: &str) -> CheckResult {
    let mut results = run_checks(app, &[check]).await;
    assert_eq!(results.len(), 1, "one result for {check}: {results:?}");
    results.remove(0)
}

fn samples(result: &CheckResult) -> Vec<Value> {
    result.samples.iter().map(struct_to_json).collect()
}

#[track_caller]
fn assert_status(result: &CheckResult, expected: CheckStatus) {
    assert_eq!(
        result.status(),
        expected,
        "{}: {} (violations {}, samples {:?})",
        result.name,
        result.message,
        result.violation_count,
        samples(result)
    );
}

fn sample_field<'a>(sample: &'a Value, field: &str) -> &'a str {
    sample[field].as_str().unwrap_or_else(|| panic!("sample has no string {field}: {sample}"))
}

/// A session of the test's own holding ACCESS EXCLUSIVE on `table` until
/// the transaction ends: every check reading the table waits behind it.
async fn lock_table(pool: &PgPool, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(sqlx::AssertSqlSafe(format!("lock table {table} in access exclusive mode")))
        .execute(&mut *tx)
        .await
        .expect("lock");
    tx
}

/// Check sessions of this database (tagged by the runner), optionally only
/// those waiting on a lock.
async fn check_sessions(pool: &PgPool, waiting_on_lock: bool) -> Vec<String> {
    sqlx::query_scalar(
        "select application_name from pg_stat_activity
         where datname = current_database() and application_name like 'bookingd check %'
           and (not $1 or wait_event_type = 'Lock')",
    )
    .bind(waiting_on_lock)
    .fetch_all(pool)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test]
async fn every_check_passes_on_a_healthy_database() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;

    // Act
    let results = run_checks(&app, &[]).await;

    // Assert
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(results.len(), bookingd::integrity::CHECKS.len(), "one result per check: {names:?}");
    for result in &results {
        assert_status(result, CheckStatus::Pass);
        assert_eq!(result.round, 1);
        assert!(result.duration.is_some() && result.finished_at.is_some(), "{result:?}");
        assert!(!result.threshold.is_empty() && !result.description.is_empty(), "{result:?}");
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn availability_consistency_fails_on_drift_even_on_a_tour_in_maintenance() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "availability_consistency").await, CheckStatus::Pass);

    // Act
    // two seats appear from nowhere on a paused tour: the runbook's query,
    // which looks at active tours only, would not see it
    sqlx::query("update tours set available_spots = available_spots + 2, status = 'maintenance' where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("drift");
    let drifted = run_check(&app, "availability_consistency").await;

    // Assert
    assert_status(&drifted, CheckStatus::Fail);
    assert_eq!(drifted.violation_count, 1);
    assert_eq!(drifted.observed_value, Some(2.0));
    let culprit = &samples(&drifted)[0];
    assert_eq!(sample_field(culprit, "tour_id"), catalog.standalone_id.to_string());
    assert_eq!(culprit["discrepancy"], 2, "booked seats exceed what the tour records");
    assert_eq!(culprit["status"], "maintenance");

    // Cleanup: undo the damage, then the shared health check
    sqlx::query("update tours set available_spots = available_spots - 2, status = 'active' where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("repair");
    assert_status(&run_check(&app, "availability_consistency").await, CheckStatus::Pass);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn schedule_id_capture_passes_on_an_empty_window_and_fails_when_a_template_booking_lacks_it() {
    // Arrange
    let app = spawn_app().await;
    let empty = run_check(&app, "schedule_id_capture").await;
    assert_status(&empty, CheckStatus::Pass);
    assert_eq!(empty.observed_value, None, "no rate without template bookings");

    let catalog = healthy_catalog(&app.pool).await;
    let healthy = run_check(&app, "schedule_id_capture").await;
    assert_status(&healthy, CheckStatus::Pass);
    assert_eq!(healthy.observed_value, Some(100.0));

    // Act
    sqlx::query("update bookings set schedule_id = null where id = $1")
        .bind(catalog.instance_pending)
        .execute(&app.pool)
        .await
        .expect("lose the schedule id");
    let missing = run_check(&app, "schedule_id_capture").await;

    // Assert
    assert_status(&missing, CheckStatus::Fail);
    assert_eq!(missing.violation_count, 1);
    assert_eq!(missing.observed_value, Some(66.67), "2 of 3 template bookings carry it");
    assert_eq!(sample_field(&samples(&missing)[0], "booking_id"), catalog.instance_pending.to_string());

    // Cleanup: undo the damage, then the shared health check
    sqlx::query(
        "update bookings b set schedule_id = t.origin_schedule_id from tours t where t.id = b.tour_id and b.id = $1",
    )
    .bind(catalog.instance_pending)
    .execute(&app.pool)
    .await
    .expect("repair");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn booking_reference_uniqueness_warns_without_its_constraint_and_fails_on_a_shared_reference() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "booking_reference_uniqueness").await, CheckStatus::Pass);

    // Act
    // The unique constraint makes duplicates impossible; the check exists for
    // databases where it went missing (a restore without constraints, a
    // hand-made migration), so the test removes it from its own database.
    sqlx::query("alter table bookings drop constraint bookings_booking_reference_key")
        .execute(&app.pool)
        .await
        .expect("drop the constraint");
    let unguarded = run_check(&app, "booking_reference_uniqueness").await;
    assert_status(&unguarded, CheckStatus::Warn);
    let original: String = sqlx::query_scalar(
        "update bookings b set booking_reference = other.booking_reference
         from bookings other, (select booking_reference from bookings where id = $1) previous
         where b.id = $1 and other.id = $2
         returning previous.booking_reference",
    )
    .bind(catalog.standalone_confirmed)
    .bind(catalog.instance_confirmed)
    .fetch_one(&app.pool)
    .await
    .expect("duplicate a reference");
    let duplicated = run_check(&app, "booking_reference_uniqueness").await;

    // Assert
    assert_status(&duplicated, CheckStatus::Fail);
    assert_eq!(duplicated.violation_count, 1);
    let culprit = &samples(&duplicated)[0];
    assert_eq!(culprit["bookings"], 2);
    let ids: Vec<&str> = culprit["booking_ids"].as_array().expect("ids").iter().filter_map(Value::as_str).collect();
    assert!(ids.contains(&catalog.standalone_confirmed.to_string().as_str()), "{culprit}");
    assert!(ids.contains(&catalog.instance_confirmed.to_string().as_str()), "{culprit}");

    // Act + Assert
    sqlx::query("update bookings set booking_reference = $2 where id = $1")
        .bind(catalog.standalone_confirmed)
        .bind(original)
        .execute(&app.pool)
        .await
        .expect("repair");
    sqlx::query("alter table bookings add constraint bookings_booking_reference_key unique (booking_reference)")
        .execute(&app.pool)
        .await
        .expect("restore the constraint");
    assert_status(&run_check(&app, "booking_reference_uniqueness").await, CheckStatus::Pass);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn commission_accuracy_tolerates_one_cent_and_fails_beyond() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "commission_accuracy").await, CheckStatus::Pass);

    // Act
    let shift = |cents: i64, id: Uuid| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("update bookings set commission_amount = commission_amount + $2 where id = $1")
                .bind(id)
                .bind(cents)
                .execute(&pool)
                .await
                .expect("shift commission");
        }
    };
    shift(1, catalog.instance_confirmed).await;
    assert_status(&run_check(&app, "commission_accuracy").await, CheckStatus::Pass);
    shift(2, catalog.standalone_confirmed).await;
    let wrong = run_check(&app, "commission_accuracy").await;

    // Assert
    assert_status(&wrong, CheckStatus::Fail);
    assert_eq!(wrong.violation_count, 1);
    let culprit = &samples(&wrong)[0];
    assert_eq!(sample_field(culprit, "booking_id"), catalog.standalone_confirmed.to_string());
    assert_eq!(culprit["commission_error"], 2);

    // Cleanup: undo the damage, then the shared health check
    shift(-1, catalog.instance_confirmed).await;
    shift(-2, catalog.standalone_confirmed).await;
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn negative_available_spots_fails_and_names_the_tour() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "negative_available_spots").await, CheckStatus::Pass);

    // Act
    // The schema refuses negative availability (tours_available_spots_non_negative).
    // To reproduce the runbook's corrupted database the test drops that
    // constraint in its own throwaway database.
    sqlx::query("alter table tours drop constraint tours_available_spots_non_negative")
        .execute(&app.pool)
        .await
        .expect("drop the constraint");
    sqlx::query("update tours set available_spots = -2 where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("oversell");
    let negative = run_check(&app, "negative_available_spots").await;

    // Assert
    assert_status(&negative, CheckStatus::Fail);
    assert_eq!(negative.violation_count, 1);
    assert_eq!(negative.observed_value, Some(-2.0));
    let culprit = &samples(&negative)[0];
    assert_eq!(sample_field(culprit, "tour_id"), catalog.standalone_id.to_string());
    assert_eq!(culprit["available_spots"], -2);

    // Cleanup: undo the damage, then the shared health check
    sqlx::query("update tours set available_spots = 7 where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("repair");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn creation_failure_rate_warns_on_a_few_failures_and_fails_above_five_an_hour() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;
    let record_failures = |count: i32, age: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query(
                "insert into audit_logs (table_name, record_id, action, details, created_at)
                 select 'bookings', gen_random_uuid(), 'creation_failed', jsonb_build_object('n', n),
                        now() - $2::interval
                 from generate_series(1, $1) n",
            )
            .bind(count)
            .bind(age)
            .execute(&pool)
            .await
            .expect("record failures");
        }
    };
    record_failures(10, "2 hours").await;
    assert_status(&run_check(&app, "creation_failure_rate").await, CheckStatus::Pass);

    // Act
    record_failures(5, "1 minute").await;
    let few = run_check(&app, "creation_failure_rate").await;
    assert_status(&few, CheckStatus::Warn);
    assert_eq!(few.violation_count, 5);

    // Assert
    record_failures(1, "0 seconds").await;
    let many = run_check(&app, "creation_failure_rate").await;
    assert_status(&many, CheckStatus::Fail);
    assert_eq!(many.violation_count, 6);
    assert_eq!(samples(&many).len(), 6);
    assert!(samples(&many).iter().all(|s| s["record_id"].is_string()), "{:?}", samples(&many));
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn sold_out_refusals_are_reported_but_do_not_count_as_creation_failures() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;
    sqlx::query(
        "insert into audit_logs (table_name, record_id, action, details)
         select 'bookings', null, 'creation_failed', jsonb_build_object('reason', 'SOLD_OUT', 'code_path', 'atomic')
         from generate_series(1, 20)",
    )
    .execute(&app.pool)
    .await
    .expect("record refusals");

    // Act
    let result = run_check(&app, "creation_failure_rate").await;

    // Assert
    assert_status(&result, CheckStatus::Pass);
    assert_eq!(result.violation_count, 0);
    sqlx::query(
        "insert into audit_logs (table_name, action, details)
         values ('bookings', 'creation_failed', jsonb_build_object('reason', 'INTERNAL', 'code_path', 'atomic'))",
    )
    .execute(&app.pool)
    .await
    .expect("record a failure");
    let with_failure = run_check(&app, "creation_failure_rate").await;
    assert_status(&with_failure, CheckStatus::Warn);
    assert_eq!(with_failure.violation_count, 1);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn journey_data_quality_fails_when_the_view_loses_a_template_booking_or_disappears() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "journey_data_quality").await, CheckStatus::Pass);

    // Act
    // The view as its runbook name suggests it (active tours only): a booking
    // on a tour put into maintenance vanishes from the customer's journey.
    sqlx::query(
        "create or replace view active_tours_with_operators as
         select t.id, t.tour_name, t.tour_date, t.time_slot, t.status, t.max_capacity, t.available_spots,
                t.adult_price_cents, t.child_price_cents, t.currency_code, t.commission_rate, t.operator_id,
                o.company_name, t.parent_template_id, tpl.tour_name as template_name, t.origin_schedule_id as schedule_id
         from tours t
         join operators o on o.id = t.operator_id
         left join tours tpl on tpl.id = t.parent_template_id
         where not t.is_template and t.status = 'active'",
    )
    .execute(&app.pool)
    .await
    .expect("narrow the view");
    sqlx::query("update tours set status = 'maintenance' where id = $1")
        .bind(catalog.instance_id)
        .execute(&app.pool)
        .await
        .expect("pause the instance");
    let hidden = run_check(&app, "journey_data_quality").await;

    // Assert
    assert_status(&hidden, CheckStatus::Fail);
    assert_eq!(hidden.violation_count, 3, "all three template bookings (any status) are hidden");
    for sample in samples(&hidden) {
        assert_eq!(sample_field(&sample, "tour_id"), catalog.instance_id.to_string());
        assert_eq!(sample_field(&sample, "parent_template_id"), catalog.template_id.to_string());
        assert_eq!(sample["view_row_missing"], true);
    }

    // Act + Assert
    sqlx::query("drop view active_tours_with_operators").execute(&app.pool).await.expect("drop the view");
    let gone = run_check(&app, "journey_data_quality").await;
    assert_status(&gone, CheckStatus::Fail);
    assert!(gone.message.contains("active_tours_with_operators is missing"), "{}", gone.message);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn pre_deployment_fails_without_template_instances_or_without_the_enhanced_view() {
    // Arrange
    let app = spawn_app().await;
    let empty = run_check(&app, "pre_deployment").await;
    assert_status(&empty, CheckStatus::Fail);
    assert_eq!(empty.violation_count, 1);
    assert_eq!(sample_field(&samples(&empty)[0], "checkpoint"), "template_instances");

    healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "pre_deployment").await, CheckStatus::Pass);

    // Act
    sqlx::query("drop view active_tours_with_operators").execute(&app.pool).await.expect("drop the view");
    let no_view = run_check(&app, "pre_deployment").await;

    // Assert
    assert_status(&no_view, CheckStatus::Fail);
    assert_eq!(no_view.violation_count, 1);
    let first = &samples(&no_view)[0];
    assert_eq!(sample_field(first, "checkpoint"), "enhanced_view");
    assert_eq!(first["passed"], false);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn post_deployment_fails_after_a_rollback_or_with_the_trigger_disabled() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "post_deployment").await, CheckStatus::Pass);

    // Act
    db::functions::rollback(&app.pool, "integrity-test", "post_deployment check").await.expect("rollback");
    let rolled_back = run_check(&app, "post_deployment").await;
    assert_status(&rolled_back, CheckStatus::Fail);
    assert_eq!(rolled_back.violation_count, 3);
    let missing: Vec<String> = samples(&rolled_back)
        .iter()
        .filter(|s| s["present"] == false)
        .map(|s| sample_field(s, "component").to_owned())
        .collect();
    assert!(missing.contains(&"create_booking_atomic".to_owned()), "{missing:?}");
    assert!(missing.contains(&"restore_availability_trigger".to_owned()), "{missing:?}");

    // Assert
    db::functions::deploy(&app.pool, "integrity-test", "post_deployment check").await.expect("redeploy");
    assert_status(&run_check(&app, "post_deployment").await, CheckStatus::Pass);
    sqlx::query("alter table bookings disable trigger restore_availability_trigger")
        .execute(&app.pool)
        .await
        .expect("disable the trigger");
    let disabled = run_check(&app, "post_deployment").await;
    assert_status(&disabled, CheckStatus::Fail);
    assert_eq!(sample_field(&samples(&disabled)[0], "component"), "restore_availability_trigger");
    assert!(disabled.message.contains("restore_availability_trigger"), "{}", disabled.message);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn booking_performance_warns_without_bookings_and_reports_bookings_per_hour() {
    // Arrange
    let app = spawn_app().await;
    assert_status(&run_check(&app, "booking_performance").await, CheckStatus::Warn);

    // Act
    healthy_catalog(&app.pool).await;
    let busy = run_check(&app, "booking_performance").await;

    // Assert
    assert_status(&busy, CheckStatus::Pass);
    let per_hour = busy.observed_value.expect("bookings per hour");
    assert!((per_hour - 4.0 / 24.0).abs() < 1e-9, "4 bookings over 24 h, got {per_hour}");
    let hours = samples(&busy);
    assert_eq!(hours.iter().map(|h| h["bookings_created"].as_i64().unwrap_or(0)).sum::<i64>(), 4, "{hours:?}");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn trigger_activity_reports_the_mean_interval_between_restorations() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;
    let one = run_check(&app, "trigger_activity").await;
    assert_status(&one, CheckStatus::Pass);
    assert_eq!(samples(&one).len(), 1, "the catalog's cancellation went through the trigger");
    assert_eq!(one.observed_value, None, "no interval with a single restoration");

    // Act
    // One statement, one now(): restorations 90 s, 60 s and 30 s ago (the
    // trigger's row moved to the last), and one older than the window.
    sqlx::query(
        "with moved as (
             update audit_logs set created_at = now() - interval '30 seconds'
             where table_name = 'bookings' and action = 'spots_restored'
         )
         insert into audit_logs (table_name, record_id, action, details, created_at) values
             ('bookings', gen_random_uuid(), 'spots_restored', '{\"seats\": 1}', now() - interval '90 seconds'),
             ('bookings', gen_random_uuid(), 'spots_restored', '{\"seats\": 1}', now() - interval '60 seconds'),
             ('bookings', gen_random_uuid(), 'spots_restored', '{\"seats\": 1}', now() - interval '25 hours')",
    )
    .execute(&app.pool)
    .await
    .expect("restorations");
    let three = run_check(&app, "trigger_activity").await;

    // Assert
    assert_status(&three, CheckStatus::Pass);
    assert_eq!(samples(&three).len(), 3);
    let mean = three.observed_value.expect("mean interval");
    assert!((mean - 30.0).abs() < 1e-6, "mean interval {mean}");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn flag_state_warns_when_the_atomic_path_is_selected_but_not_deployed() {
    // Arrange
    let app = spawn_app().await;
    healthy_catalog(&app.pool).await;
    let default = run_check(&app, "flag_state").await;
    assert_status(&default, CheckStatus::Pass);
    assert!(default.message.contains("atomic") && default.message.contains("default"), "{}", default.message);

    // Act
    sqlx::query(
        "insert into feature_flags (key, enabled, updated_by) values ('use_legacy_booking_service', false, 'test')",
    )
    .execute(&app.pool)
    .await
    .expect("flag row");
    db::functions::rollback(&app.pool, "integrity-test", "flag_state check").await.expect("rollback");
    let degraded = run_check(&app, "flag_state").await;

    // Assert
    assert_status(&degraded, CheckStatus::Warn);
    assert!(degraded.message.starts_with("degraded: legacy fallback in use"), "{}", degraded.message);
    let state = &samples(&degraded)[0];
    assert_eq!(state["stored_enabled"], false);
    assert_eq!(state["atomic_function"], false);

    // Act + Assert
    sqlx::query("update feature_flags set enabled = true where key = 'use_legacy_booking_service'")
        .execute(&app.pool)
        .await
        .expect("flip to legacy");
    let legacy = run_check(&app, "flag_state").await;
    assert_status(&legacy, CheckStatus::Pass);
    assert!(legacy.message.contains("legacy (flag from database)"), "{}", legacy.message);
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn results_stream_as_each_check_finishes() {
    // Arrange
    let app = spawn_app_with(|settings| {
        settings.check_lock_timeout = Duration::from_secs(60);
        settings.check_statement_timeout = Duration::from_secs(60);
    })
    .await;
    healthy_catalog(&app.pool).await;
    let lock = lock_table(&app.pool, "feature_flags").await;

    // Act
    let request =
        RunChecksRequest { checks: vec!["flag_state".into(), "booking_reference_uniqueness".into()], max_samples: 0 };
    let mut stream = app.integrity().run_checks(request).await.expect("RunChecks").into_inner();
    wait_until("flag_state waits for the lock", Duration::from_secs(10), || async {
        !check_sessions(&app.pool, true).await.is_empty()
    })
    .await;
    let first = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a result arrives while flag_state is still blocked")
        .expect("first item")
        .expect("a first result");

    // Assert
    assert_eq!(first.name, "booking_reference_uniqueness");
    assert_eq!(
        check_sessions(&app.pool, true).await,
        ["bookingd check flag_state"],
        "flag_state is still waiting for the lock when the first result arrives"
    );
    lock.rollback().await.expect("release the lock");
    let second = stream.message().await.expect("second item").expect("a second result");
    assert_eq!(second.name, "flag_state");
    assert_status(&second, CheckStatus::Pass);
    assert!(stream.message().await.expect("end").is_none(), "two checks, two results");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn cancelling_a_watch_cancels_its_query_on_the_database() {
    // Arrange
    let app = spawn_app_with(|settings| {
        settings.check_lock_timeout = Duration::from_secs(60);
        settings.check_statement_timeout = Duration::from_secs(60);
    })
    .await;
    healthy_catalog(&app.pool).await;
    let lock = lock_table(&app.pool, "feature_flags").await;
    let request = WatchChecksRequest {
        checks: vec!["flag_state".into()],
        max_samples: 0,
        interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    };
    let stream = app.integrity().watch_checks(request).await.expect("WatchChecks").into_inner();
    wait_until("the watch's check waits for the lock", Duration::from_secs(10), || async {
        !check_sessions(&app.pool, true).await.is_empty()
    })
    .await;

    // Act
    drop(stream);

    // Assert
    // The lock is still held, so the query cannot have finished by itself
    // (its timeouts are a minute): only a cancellation ends it this soon.
    wait_until("no check session is left on the database", Duration::from_secs(10), || async {
        check_sessions(&app.pool, false).await.is_empty()
    })
    .await;
    lock.rollback().await.expect("release the lock");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_check_that_cannot_run_reports_error_and_the_others_still_report() {
    // Arrange
    let app = spawn_app_with(|settings| settings.check_lock_timeout = Duration::from_millis(200)).await;
    healthy_catalog(&app.pool).await;
    let lock = lock_table(&app.pool, "feature_flags").await;

    // Act
    let results = run_checks(&app, &[]).await;
    lock.rollback().await.expect("release the lock");

    // Assert
    assert_eq!(results.len(), bookingd::integrity::CHECKS.len());
    for result in &results {
        if result.name == "flag_state" {
            assert_status(result, CheckStatus::Error);
            assert!(result.message.contains("lock timeout (200 ms)"), "{}", result.message);
        } else {
            assert_status(result, CheckStatus::Pass);
        }
    }
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn a_watch_reruns_its_checks_every_interval_and_numbers_the_rounds() {
    // Arrange
    // a request deadline shorter than the watch: it must not cut the stream
    let app = spawn_app_with(|settings| settings.request_timeout = Duration::from_millis(300)).await;
    let request = WatchChecksRequest {
        checks: vec!["negative_available_spots".into(), "flag_state".into()],
        max_samples: 0,
        interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    };
    let mut stream = app.integrity().watch_checks(request).await.expect("WatchChecks").into_inner();

    // Act
    let mut rounds = Vec::new();
    while rounds.len() < 6 {
        let result = stream.message().await.expect("stream item").expect("the watch goes on");
        rounds.push(result.round);
    }

    // Assert
    assert_eq!(rounds, [1, 1, 2, 2, 3, 3]);
}

#[tokio::test]
async fn stopping_the_server_ends_an_open_watch_with_unavailable() {
    // Arrange
    let app = spawn_app().await;
    let request = WatchChecksRequest { checks: vec!["flag_state".into()], max_samples: 0, interval: None };
    let mut stream = app.integrity().watch_checks(request).await.expect("WatchChecks").into_inner();
    stream.message().await.expect("first item").expect("first round");

    // Act
    tokio::time::timeout(Duration::from_secs(10), app.stop()).await.expect("shutdown is not held by the watch");
    let ended = stream.message().await.expect_err("the watch ends with a status");

    // Assert
    assert_eq!(ended.code(), Code::Unavailable);
}

#[tokio::test]
async fn unknown_check_names_are_refused_before_any_work() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let refused = app
        .integrity()
        .run_checks(RunChecksRequest {
            checks: vec!["availability_consistency".into(), "no_such_check".into()],
            max_samples: 0,
        })
        .await
        .expect_err("unknown check");

    // Assert
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("no_such_check"), "{}", refused.message());
    for valid in bookingd::integrity::checks::names() {
        assert!(refused.message().contains(valid), "{valid} missing from {}", refused.message());
    }
    let details = refused.get_error_details();
    assert_eq!(details.error_info().expect("error info").reason, "UNKNOWN_CHECK");
    assert_eq!(details.bad_request().expect("bad request").field_violations[0].field, "checks");

    // Act + Assert
    let too_fast = app
        .integrity()
        .watch_checks(WatchChecksRequest {
            checks: vec![],
            max_samples: 0,
            interval: Some(prost_types::Duration { seconds: 0, nanos: 500_000_000 }),
        })
        .await
        .expect_err("interval below a second");
    assert_eq!(too_fast.code(), Code::InvalidArgument);
    assert_eq!(too_fast.get_error_details().bad_request().expect("bad request").field_violations[0].field, "interval");
}

async fn bookingctl_check(app: &TestApp, extra: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bookingctl"))
        .args(["--addr", &app.addr, "--token", crate::helpers::TEST_AUDITOR_TOKEN, "check"])
        .args(extra)
        .output()
        .await
        .expect("run bookingctl");
    (output.status.code(), String::from_utf8(output.stdout).expect("utf-8 output"))
}

#[tokio::test]
async fn bookingctl_check_prints_one_json_line_per_check_and_exits_non_zero_on_a_failure() {
    // Arrange
    let app = spawn_app().await;
    let catalog = healthy_catalog(&app.pool).await;

    // Act + Assert
    let (healthy_code, healthy_output) = bookingctl_check(&app, &["--json"]).await;
    assert_eq!(healthy_code, Some(0), "{healthy_output}");
    let lines: Vec<Value> =
        healthy_output.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect();
    assert_eq!(lines.len(), bookingd::integrity::CHECKS.len());
    assert!(lines.iter().all(|line| line["status"] == "PASS"), "{healthy_output}");

    // Act
    sqlx::query("update tours set available_spots = available_spots + 1 where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("drift");
    let (failed_code, table) = bookingctl_check(&app, &["--check", "availability_consistency"]).await;

    // Assert
    assert_eq!(failed_code, Some(1), "{table}");
    let row = table.lines().find(|line| line.starts_with("availability_consistency")).expect("the check's row");
    assert!(row.contains("FAIL"), "{table}");
    assert!(table.contains(&catalog.standalone_id.to_string()), "the sample names the tour:\n{table}");

    // Cleanup: undo the damage, then the shared health check
    sqlx::query("update tours set available_spots = available_spots - 1 where id = $1")
        .bind(catalog.standalone_id)
        .execute(&app.pool)
        .await
        .expect("repair");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn expired_holds_fails_while_a_lapsed_hold_keeps_its_seats_and_passes_once_a_sweeper_releases_it() {
    // Arrange: a server whose sweeper does not come round during the test
    let app = spawn_app_with(|settings| settings.hold_sweep_interval = Duration::from_secs(3600)).await;
    let catalog = healthy_catalog(&app.pool).await;
    assert_status(&run_check(&app, "expired_holds").await, CheckStatus::Pass);
    let lapse = |booking: Uuid, ago: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("update bookings set hold_expires_at = now() - $2::interval where id = $1")
                .bind(booking)
                .bind(ago)
                .execute(&pool)
                .await
                .expect("lapse the hold");
        }
    };

    // Act + Assert: lapsed 30 s ago is within the sweeper's grace
    lapse(catalog.instance_pending, "30 seconds").await;
    assert_status(&run_check(&app, "expired_holds").await, CheckStatus::Pass);
    // lapsed 10 minutes ago and still holding its seats
    lapse(catalog.instance_pending, "10 minutes").await;
    let stuck = run_check(&app, "expired_holds").await;
    assert_status(&stuck, CheckStatus::Fail);
    assert_eq!(stuck.violation_count, 1);
    assert!(stuck.observed_value.expect("oldest lapse") >= 600.0, "{stuck:?}");
    assert_eq!(sample_field(&samples(&stuck)[0], "booking_id"), catalog.instance_pending.to_string());

    // Act + Assert: a replica with a working sweeper releases it, and the check passes
    let sweeping =
        crate::helpers::spawn_app_on(&app.database_url, |s| s.hold_sweep_interval = Duration::from_millis(100)).await;
    wait_until("the lapsed hold expired by the sweeper", Duration::from_secs(20), || async {
        run_check(&app, "expired_holds").await.status() == CheckStatus::Pass
    })
    .await;
    let status: String = sqlx::query_scalar("select booking_status from bookings where id = $1")
        .bind(catalog.instance_pending)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "expired");
    assert_healthy(&app.pool).await;
    sweeping.stop().await;
}
