//! The booking-path flag: resolution, propagation between processes, the
//! audit trail, refusals, and the last known value during an outage.

use std::{process::ExitCode, time::Duration};

use bookingd::{
    db,
    flags::{FlagSource as DomainSource, Flags, USE_LEGACY_BOOKING_SERVICE},
    proto::v1::{FlagSource, GetFlagRequest, GetFlagResponse, ListFlagChangesRequest, SetFlagRequest},
};
use clap::Parser;
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{
    fixtures::reason,
    helpers::{
        TEST_ADMIN_TOKEN, TestApp, create_test_database, spawn_app_on, spawn_app_with, start_test_server, wait_until,
    },
};

/// A long TTL: within a test, only a SetFlag or a notification can change
/// what a process serves.
const LONG_TTL: Duration = Duration::from_secs(60);

async fn get_flag(app: &TestApp) -> Result<GetFlagResponse, tonic::Status> {
    Ok(app.admin().get_flag(GetFlagRequest { key: String::new() }).await?.into_inner())
}

async fn set_flag(app: &TestApp, enabled: bool, reason: &str) -> Result<bool, tonic::Status> {
    let request = SetFlagRequest { key: USE_LEGACY_BOOKING_SERVICE.to_owned(), enabled, reason: reason.to_owned() };
    let response = app.admin().set_flag(request).await?.into_inner();
    Ok(response.previous)
}

async fn change_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from feature_flag_changes").fetch_one(pool).await.expect("count changes")
}

/// Flag listeners LISTENing on the app's database (one per bookingd process).
async fn listeners_on(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where datname = current_database()
           and application_name = 'bookingd-flag-listener'
           and query ilike 'listen%'",
    )
    .fetch_one(pool)
    .await
    .expect("count listeners")
}

async fn migrated_database() -> (String, PgPool) {
    let url = create_test_database().await;
    let pool = PgPool::connect(&url).await.expect("connect");
    db::migrate(&pool).await.expect("migrate");
    (url, pool)
}

#[tokio::test]
async fn an_unset_flag_defaults_to_the_atomic_path() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;

    // Act
    let flag = get_flag(&app).await.expect("get flag");

    // Assert
    assert_eq!(flag.key, USE_LEGACY_BOOKING_SERVICE);
    assert!(!flag.enabled);
    assert_eq!(flag.source(), FlagSource::Default);
    assert!(flag.atomic_path_available, "{}", flag.atomic_path_detail);
    app.stop().await;
}

#[tokio::test]
async fn set_flag_takes_effect_at_once_in_the_process_that_made_it() {
    // Arrange
    let app = spawn_app_with(|settings| settings.flag_cache_ttl = LONG_TTL).await;
    assert!(!app.flags.use_legacy_booking_service().await.enabled);

    // Act
    let previous = set_flag(&app, true, "atomic function failing in production").await.expect("set flag");

    // Assert: no waiting, the very next evaluation answers with the new value
    let evaluated = app.flags.use_legacy_booking_service().await;
    let flag = get_flag(&app).await.expect("get flag");
    assert!(!previous);
    assert!(evaluated.enabled);
    assert!(flag.enabled);
    assert_eq!(flag.source(), FlagSource::Database);
    assert_eq!(flag.updated_by, crate::helpers::TEST_OPERATOR);
    assert!(flag.updated_at.is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_set_updates_the_resolvers_own_cache_without_rereading_the_database() {
    // Arrange: a resolver with no listener, so no notification can help it
    let (_url, pool) = migrated_database().await;
    let flags = Flags::new(pool.clone(), None, LONG_TTL);
    assert!(!flags.use_legacy_booking_service().await.enabled);

    // Act
    flags.set(USE_LEGACY_BOOKING_SERVICE, true, "operator", "drill").await.expect("set");
    let reads_after_set = flags.database_reads();
    let value = flags.use_legacy_booking_service().await;

    // Assert
    assert!(value.enabled);
    assert_eq!(value.source, DomainSource::Database);
    assert!(value.from_cache);
    assert_eq!(flags.database_reads(), reads_after_set, "the new value came from the cache");
}

#[tokio::test]
async fn another_process_on_the_same_database_sees_a_flip_within_one_second() {
    // Arrange: two bookingd processes, each trusting its cache for a minute,
    // so only the notification can carry the flip in time
    let first = spawn_app_with(|settings| settings.flag_cache_ttl = LONG_TTL).await;
    let second = spawn_app_on(&first.database_url, |settings| settings.flag_cache_ttl = LONG_TTL).await;
    wait_until("both flag listeners are listening", Duration::from_secs(15), || async {
        listeners_on(&first.pool).await == 2
    })
    .await;
    assert!(!get_flag(&second).await.expect("second process's flag").enabled, "cached before the flip");

    for enabled in [true, false] {
        // Act
        set_flag(&first, enabled, "moving traffic between paths").await.expect("set flag");

        // Assert
        wait_until("the second process serves the flip", Duration::from_secs(1), || async {
            second.flags.use_legacy_booking_service().await.enabled == enabled
        })
        .await;
        assert_eq!(get_flag(&second).await.expect("second process's flag").source(), FlagSource::Database);
    }
    second.stop().await;
    first.stop().await;
}

#[tokio::test]
async fn a_flip_written_with_plain_sql_reaches_the_cache_through_the_notification() {
    // Arrange
    let app = spawn_app_with(|settings| settings.flag_cache_ttl = LONG_TTL).await;
    wait_until("the flag listener is listening", Duration::from_secs(15), || async {
        listeners_on(&app.pool).await == 1
    })
    .await;
    assert!(!app.flags.use_legacy_booking_service().await.enabled);
    let reads_before = app.flags.database_reads();

    // Act: what an operator pasting the runbook's SQL would do
    sqlx::query("insert into feature_flags (key, enabled, updated_by) values ($1, true, 'psql')")
        .bind(USE_LEGACY_BOOKING_SERVICE)
        .execute(&app.pool)
        .await
        .expect("insert flag row");

    // Assert
    wait_until("the process serves the new row", Duration::from_secs(1), || async {
        app.flags.use_legacy_booking_service().await.enabled
    })
    .await;
    assert!(app.flags.database_reads() > reads_before, "the change was read from the database");
    assert_eq!(get_flag(&app).await.expect("get flag").updated_by, "psql");
    app.stop().await;
}

#[tokio::test]
async fn steady_state_evaluations_issue_no_database_query() {
    // Arrange: the listener's first read is done before counting starts
    let app = spawn_app_with(|settings| settings.flag_cache_ttl = LONG_TTL).await;
    wait_until("the flag listener has read the flags", Duration::from_secs(15), || async {
        listeners_on(&app.pool).await == 1 && app.flags.database_reads() >= 1
    })
    .await;
    app.flags.use_legacy_booking_service().await;
    let reads_before = app.flags.database_reads();

    // Act
    let mut from_cache = 0;
    for _ in 0..200 {
        if app.flags.use_legacy_booking_service().await.from_cache {
            from_cache += 1;
        }
    }

    // Assert
    assert_eq!(app.flags.database_reads(), reads_before, "200 evaluations read the database");
    assert_eq!(from_cache, 200);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_evaluations_after_expiry_share_one_database_read() {
    // Arrange
    let (_url, pool) = migrated_database().await;
    let ttl = Duration::from_millis(200);
    let flags = Flags::new(pool, None, ttl);
    flags.use_legacy_booking_service().await;
    // lets the cached value expire: the TTL is a fixed bound, not a guess
    tokio::time::sleep(ttl * 2).await;
    let reads_before = flags.database_reads();

    // Act
    let values = futures::future::join_all((0..200).map(|_| flags.use_legacy_booking_service())).await;

    // Assert
    assert_eq!(flags.database_reads(), reads_before + 1, "one read for 200 concurrent evaluations");
    assert!(values.iter().all(|value| value.source == DomainSource::Default && !value.enabled));
}

#[tokio::test]
async fn an_environment_pin_wins_over_the_database_and_set_flag_names_the_variable() {
    // Arrange
    let app = spawn_app_with(|settings| settings.use_legacy_booking_service = Some(true)).await;
    sqlx::query("insert into feature_flags (key, enabled) values ($1, false)")
        .bind(USE_LEGACY_BOOKING_SERVICE)
        .execute(&app.pool)
        .await
        .expect("insert flag row");

    // Act
    let flag = get_flag(&app).await.expect("get flag");
    let refused = set_flag(&app, false, "back to atomic").await.expect_err("pinned");

    // Assert
    assert!(flag.enabled);
    assert_eq!(flag.source(), FlagSource::Environment);
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "FLAG_PINNED_BY_ENVIRONMENT");
    assert!(refused.message().contains("USE_LEGACY_BOOKING_SERVICE"), "{}", refused.message());
    assert_eq!(change_count(&app.pool).await, 0, "a refused flip records nothing");
    app.stop().await;
}

#[tokio::test]
async fn set_flag_without_a_reason_is_invalid_and_changes_nothing() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;

    for reason in ["", "   \n "] {
        // Act
        let refused = set_flag(&app, true, reason).await.expect_err("no reason");

        // Assert
        assert_eq!(refused.code(), Code::InvalidArgument, "{reason:?}");
        let details = refused.get_error_details();
        assert_eq!(details.bad_request().expect("field violations").field_violations[0].field, "reason");
    }
    assert_eq!(change_count(&app.pool).await, 0);
    assert!(!get_flag(&app).await.expect("get flag").enabled);
    app.stop().await;
}

#[tokio::test]
async fn unknown_flags_are_not_found_and_cannot_be_created() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let key = "use_legacy_booking_servic".to_owned();

    // Act
    let get = app.admin().get_flag(GetFlagRequest { key: key.clone() }).await.expect_err("unknown");
    let set = app
        .admin()
        .set_flag(SetFlagRequest { key: key.clone(), enabled: true, reason: "typo".into() })
        .await
        .expect_err("unknown");
    let list = app
        .admin()
        .list_flag_changes(ListFlagChangesRequest { key, page_size: 0, page_token: String::new() })
        .await
        .expect_err("unknown");

    // Assert
    for status in [get, set, list] {
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(reason(&status), "FLAG_NOT_FOUND");
    }
    let rows: i64 = sqlx::query_scalar("select count(*) from feature_flags").fetch_one(&app.pool).await.expect("count");
    assert_eq!(rows, 0);
    assert_eq!(change_count(&app.pool).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn every_flip_is_recorded_and_listed_newest_first_page_by_page() {
    // Arrange: setting the value the flag already has is recorded too (old = new)
    let app = spawn_app_with(|_| {}).await;
    let flips = [true, false, false, true, true, false, true];
    for (n, enabled) in flips.iter().enumerate() {
        set_flag(&app, *enabled, &format!("flip {n}")).await.expect("set flag");
    }

    // Act
    let mut page_sizes = Vec::new();
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let request = ListFlagChangesRequest {
            key: USE_LEGACY_BOOKING_SERVICE.to_owned(),
            page_size: 3,
            page_token: token.clone(),
        };
        let page = app.admin().list_flag_changes(request).await.expect("list changes").into_inner();
        page_sizes.push(page.changes.len());
        paged.extend(page.changes);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let all = app
        .admin()
        .list_flag_changes(ListFlagChangesRequest { key: String::new(), page_size: 0, page_token: String::new() })
        .await
        .expect("list all")
        .into_inner();

    // Assert
    assert_eq!(page_sizes, vec![3, 3, 1]);
    assert_eq!(paged, all.changes, "the pages add up to the whole trail");
    assert!(all.next_page_token.is_empty());
    let mut expected_old = false;
    let mut expected: Vec<(bool, bool, String)> = Vec::new();
    for (n, new) in flips.iter().enumerate() {
        expected.push((expected_old, *new, format!("flip {n}")));
        expected_old = *new;
    }
    expected.reverse();
    let listed: Vec<(bool, bool, String)> =
        all.changes.iter().map(|c| (c.old_value, c.new_value, c.reason.clone())).collect();
    assert_eq!(listed, expected);
    assert!(all.changes.windows(2).all(|pair| pair[0].id > pair[1].id), "newest first");
    assert!(all.changes.iter().all(|c| c.changed_by == crate::helpers::TEST_OPERATOR && c.changed_at.is_some()));
    app.stop().await;
}

#[tokio::test]
async fn a_page_token_this_server_did_not_issue_is_refused() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;

    // Act
    let refused = app
        .admin()
        .list_flag_changes(ListFlagChangesRequest { key: String::new(), page_size: 10, page_token: "1 or 1=1".into() })
        .await
        .expect_err("foreign token");

    // Assert
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.get_error_details().bad_request().expect("violations").field_violations[0].field, "page_token");
    app.stop().await;
}

#[tokio::test]
async fn admin_flag_calls_without_a_token_are_unauthenticated() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let mut client = app.admin_without_token();

    // Act
    let get = client.get_flag(GetFlagRequest::default()).await.expect_err("no token");
    let set = client
        .set_flag(SetFlagRequest { key: String::new(), enabled: true, reason: "no token".into() })
        .await
        .expect_err("no token");
    let list = client.list_flag_changes(ListFlagChangesRequest::default()).await.expect_err("no token");

    // Assert
    for status in [get, set, list] {
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(change_count(&app.pool).await, 0);
    assert!(!app.flags.use_legacy_booking_service().await.enabled);
    app.stop().await;
}

#[tokio::test]
async fn get_flag_serves_the_last_known_value_while_the_database_is_down() {
    // Arrange: a private server, since stopping the shared one would break other tests
    let data_dir = std::env::temp_dir().join(format!(
        "bookingd-test-{}-flags-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut server = start_test_server(data_dir.clone()).expect("private postgres");
    let app =
        spawn_app_on(&server.url("postgres"), |settings| settings.flag_cache_ttl = Duration::from_millis(200)).await;
    set_flag(&app, true, "before the outage").await.expect("set flag");

    // Act
    server.stop();

    // Assert: once the cached value expires, the last value read answers
    wait_until("GetFlag answers LAST_KNOWN", Duration::from_secs(20), || async {
        get_flag(&app).await.is_ok_and(|flag| flag.source() == FlagSource::LastKnown && flag.enabled)
    })
    .await;
    let evaluated = app.flags.use_legacy_booking_service().await;
    assert!(evaluated.enabled);
    assert_eq!(evaluated.source, DomainSource::LastKnown);
    wait_until("GetFlag reports the atomic path unconfirmed", Duration::from_secs(20), || async {
        get_flag(&app)
            .await
            .is_ok_and(|flag| !flag.atomic_path_available && flag.atomic_path_detail.starts_with("unknown"))
    })
    .await;

    server.restart().expect("restart postgres");
    wait_until("GetFlag answers from the database again", Duration::from_secs(30), || async {
        get_flag(&app).await.is_ok_and(|flag| flag.source() == FlagSource::Database && flag.enabled)
    })
    .await;
    app.stop().await;
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir);
}

#[tokio::test]
async fn bookingctl_flag_set_flips_the_flag_and_records_the_operator_and_reason() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let cli = bookingd::cli::Cli::try_parse_from([
        "bookingctl",
        "--addr",
        &app.addr,
        "--token",
        TEST_ADMIN_TOKEN,
        "flag",
        "set",
        "true",
        "--reason",
        "runbook scenario 2",
    ])
    .expect("arguments parse");

    // Act
    let exit = bookingd::cli::run(cli).await.expect("bookingctl ran");

    // Assert
    assert_eq!(exit, ExitCode::SUCCESS);
    assert!(get_flag(&app).await.expect("get flag").enabled);
    let (changed_by, reason, new_value): (String, String, bool) =
        sqlx::query_as("select changed_by, reason, new_value from feature_flag_changes")
            .fetch_one(&app.pool)
            .await
            .expect("one change");
    assert_eq!(
        (changed_by.as_str(), reason.as_str(), new_value),
        (crate::helpers::TEST_OPERATOR, "runbook scenario 2", true)
    );
    app.stop().await;
}

#[tokio::test]
async fn bookingctl_refuses_a_wrong_token() {
    // Arrange
    let app = spawn_app_with(|_| {}).await;
    let cli =
        bookingd::cli::Cli::try_parse_from(["bookingctl", "--addr", &app.addr, "--token", "wrong", "flag", "get"])
            .expect("arguments parse");

    // Act
    let error = bookingd::cli::run(cli).await.expect_err("refused");

    // Assert
    assert!(error.to_string().contains("Unauthenticated"), "{error}");
    app.stop().await;
}

#[tokio::test]
async fn a_flip_made_while_the_listener_reconnects_is_not_lost() {
    // Arrange
    let app = spawn_app_with(|settings| settings.flag_cache_ttl = LONG_TTL).await;
    wait_until("the flag listener is listening", Duration::from_secs(15), || async {
        listeners_on(&app.pool).await == 1
    })
    .await;
    assert!(!app.flags.use_legacy_booking_service().await.enabled);

    // Act: cut the listener's connection, then flip while it is (most
    // likely) still reconnecting, so that its notification goes nowhere
    let old: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity
         where datname = current_database() and application_name = 'bookingd-flag-listener'",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the listener's backend");
    sqlx::query("select pg_terminate_backend(pid) from unnest($1::int[]) as pid")
        .bind(&old)
        .execute(&app.pool)
        .await
        .expect("terminate the listener");
    // the old backend's pid, not a count: on a loaded machine the new
    // session can connect before the old one has exited
    wait_until("the old listener session is gone", Duration::from_secs(20), || async {
        let left: i64 = sqlx::query_scalar("select count(*) from pg_stat_activity where pid = any($1)")
            .bind(&old)
            .fetch_one(&app.pool)
            .await
            .expect("old backend");
        left == 0
    })
    .await;
    sqlx::query("insert into feature_flags (key, enabled, updated_by) values ($1, true, 'psql')")
        .bind(USE_LEGACY_BOOKING_SERVICE)
        .execute(&app.pool)
        .await
        .expect("insert flag row");

    // Assert: the reconnection rereads what it may have missed. The deadline
    // covers the reconnect backoff on a loaded machine and stays far below
    // LONG_TTL, so only the reread can pass it.
    wait_until("the process serves the flip", Duration::from_secs(5), || async {
        app.flags.use_legacy_booking_service().await.enabled
    })
    .await;
    app.stop().await;
}
