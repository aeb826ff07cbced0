//! Backups: the drill (bookings → backup → verify → drop the database →
//! restore → identical counts and checksums, monitors clean), bookingctl's
//! backup commands, damage detection, and a backup taken while bookings flow.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bookingd::{
    backup::{self, PgTools, Scratch},
    db::url::with_database,
};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    fixtures::{book_like_legacy, insert_operator, insert_tour},
    helpers::{TEST_OPERATOR, assert_healthy, spawn_app, test_server_url, wait_until},
};

fn quiet(_: &str) {}

/// A plain restore (no --force) by the test operator.
fn restore_as_operator() -> backup::RestoreOptions {
    backup::RestoreOptions { principal: TEST_OPERATOR.to_owned(), ..Default::default() }
}

/// Sessions of a bookingd server on the database at `url`.
async fn bookingd_sessions(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database() and application_name like 'bookingd%'",
    )
    .fetch_one(pool)
    .await
    .expect("pg_stat_activity")
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bookingd-backup-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The demo catalog plus bookings made and cancelled like the legacy path.
async fn bookings_to_back_up(pool: &PgPool) {
    bookingd::db::seed::seed_demo_catalog(pool).await.expect("seed");
    let operator = insert_operator(pool).await;
    let tour = insert_tour(pool, operator, 30, "active").await;
    let mut made = Vec::new();
    for seats in [1, 2, 3, 4] {
        made.push(book_like_legacy(pool, tour, seats).await.expect("seats"));
    }
    sqlx::query("update bookings set booking_status = 'cancelled', cancelled_at = now() where id = $1")
        .bind(made[1])
        .execute(pool)
        .await
        .expect("cancel");
}

async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let mut server = PgConnection::connect(test_server_url()).await.expect("server");
    server
        .execute(sqlx::AssertSqlSafe(format!(r#"drop database "{name}" with (force)"#)))
        .await
        .expect("drop database");
}

async fn database_exists(url: &str) -> bool {
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let mut server = PgConnection::connect(test_server_url()).await.expect("server");
    sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&mut server)
        .await
        .expect("pg_database")
}

#[tokio::test]
async fn backup_drill_restores_identical_data_after_the_database_is_dropped() {
    // Arrange: bookings in a live database
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let out = scratch_dir();
    let tools = PgTools::new(None);

    // Act: backup, verify, lose the database, restore
    let (dir, manifest) = backup::create(&app.database_url, &out, &tools, &quiet).await.expect("backup");
    let verified =
        backup::verify(&dir, Scratch::Server(test_server_url().to_owned()), &tools, &quiet).await.expect("verify");
    let database_url = app.database_url.clone();
    app.pool.close().await;
    app.stop().await;
    drop_database(&database_url).await;
    let restored =
        backup::restore(&dir, &database_url, &restore_as_operator(), &tools, &quiet).await.expect("restore").comparison;

    // Assert: one timestamp names every file, the archives and manifest agree,
    // and the restored database is the one we backed up
    let ts = &manifest.timestamp;
    assert!(dir.ends_with(format!("bookingd_backup_{ts}")), "{}", dir.display());
    for file in std::iter::once(&manifest.archive).chain(&manifest.table_archives).chain([&manifest.schema_file]) {
        assert!(file.file.contains(ts.as_str()), "{} lacks the run's timestamp {ts}", file.file);
    }
    let archived: Vec<_> = manifest.table_archives.iter().filter_map(|a| a.table.clone()).collect();
    assert_eq!(archived, ["bookings", "tours", "operators", "schedules"]);
    let rows_of = |name: &str| manifest.tables.iter().find(|t| t.name == name).map(|t| t.rows);
    assert_eq!(rows_of("bookings"), Some(6), "2 demo + 4 test bookings");
    assert!(rows_of("tours").is_some_and(|n| n > 4) && rows_of("audit_logs").is_some_and(|n| n > 0));
    assert!(verified.matches(), "verify: {:?}", verified.mismatches().collect::<Vec<_>>());
    assert!(restored.matches(), "restore: {:?}", restored.mismatches().collect::<Vec<_>>());
    assert_eq!(restored.tables.len(), manifest.tables.len());

    let pool = PgPool::connect(&database_url).await.expect("restored database");
    let counts: (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from bookings), (select count(*) from bookings where booking_status = 'cancelled'),
                (select count(*) from audit_logs where action = 'spots_restored')",
    )
    .fetch_one(&pool)
    .await
    .expect("counts");
    assert_eq!(counts, (6, 1, 1));
    let functions = bookingd::db::functions::state(&pool).await.expect("functions");
    assert!(functions.complete(), "the atomic path's functions come back with the data: {functions:?}");
    assert_healthy(&pool).await;
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn verify_leaves_no_scratch_database_behind() {
    // Arrange
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let out = scratch_dir();
    let tools = PgTools::new(None);
    let (dir, manifest) = backup::create(&app.database_url, &out, &tools, &quiet).await.expect("backup");

    // Act
    backup::verify(&dir, Scratch::Server(test_server_url().to_owned()), &tools, &quiet).await.expect("verify");

    // Assert
    let mut server = PgConnection::connect(test_server_url()).await.expect("server");
    let left: i64 = sqlx::query_scalar("select count(*) from pg_database where datname like $1")
        .bind(format!("bookingd\\_verify\\_{}\\_%", manifest.timestamp))
        .fetch_one(&mut server)
        .await
        .expect("pg_database");
    assert_eq!(left, 0);
    assert_healthy(&app.pool).await;
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn a_damaged_archive_fails_verification_and_restore() {
    // Arrange
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let out = scratch_dir();
    let tools = PgTools::new(None);
    let (dir, manifest) = backup::create(&app.database_url, &out, &tools, &quiet).await.expect("backup");
    let archive = dir.join(&manifest.archive.file);
    let mut bytes = std::fs::read(&archive).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, bytes).expect("damage");

    // Act
    let verify = backup::verify(&dir, Scratch::Server(test_server_url().to_owned()), &tools, &quiet).await;
    let target = with_database(test_server_url(), &format!("restore_target_{}", Uuid::new_v4().simple()));
    let restore = backup::restore(&dir, &target, &restore_as_operator(), &tools, &quiet).await.map(|r| r.comparison);

    // Assert
    assert!(
        matches!(verify, Err(bookingd::backup::BackupError::FileCorrupt { ref file, .. }) if *file == manifest.archive.file),
        "{verify:?}"
    );
    assert!(matches!(restore, Err(bookingd::backup::BackupError::FileCorrupt { .. })), "{restore:?}");
    assert!(!database_exists(&target).await, "nothing was created for a damaged backup");
    assert_healthy(&app.pool).await;
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn a_backup_taken_while_bookings_flow_matches_its_own_manifest() {
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let operator = insert_operator(&app.pool).await;
    let tour = insert_tour(&app.pool, operator, 5000, "active").await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (pool, stop) = (app.pool.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut made = 0u32;
            while !stop.load(Ordering::Relaxed) {
                book_like_legacy(&pool, tour, 1).await.expect("seats");
                made += 1;
            }
            made
        })
    };
    wait_until("bookings are flowing", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("select count(*) from bookings where tour_id = $1")
            .bind(tour)
            .fetch_one(&app.pool)
            .await
            .expect("count")
            >= 5
    })
    .await;
    let out = scratch_dir();
    let tools = PgTools::new(None);

    // Act: back up mid-storm, then keep booking until it has been verified
    let (dir, manifest) = backup::create(&app.database_url, &out, &tools, &quiet).await.expect("backup");
    let during: i64 = sqlx::query_scalar("select count(*) from bookings").fetch_one(&app.pool).await.expect("count");
    let verified =
        backup::verify(&dir, Scratch::Server(test_server_url().to_owned()), &tools, &quiet).await.expect("verify");
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load");

    // Assert: the archive and the manifest describe the same snapshot, even
    // though the database moved on while the dumps ran
    assert!(verified.matches(), "{:?}", verified.mismatches().collect::<Vec<_>>());
    let backed_up = manifest.tables.iter().find(|t| t.name == "bookings").expect("bookings").rows;
    assert!(backed_up >= 11 && (backed_up as i64) <= during, "backed up {backed_up}, {during} after the backup");
    assert_healthy(&app.pool).await;
    let _ = std::fs::remove_dir_all(out);
}

async fn bookingctl(cwd: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_bookingctl"))
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("BOOKINGD_SCRATCH_URL")
        .args(args)
        .output()
        .await
        .expect("run bookingctl")
}

#[tokio::test]
async fn bookingctl_backs_up_verifies_on_a_scratch_server_and_restores_only_with_force_over_data() {
    // Arrange
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let out = scratch_dir();
    let occupied = spawn_app().await; // a migrated database: not empty
    let occupied_pool = occupied.pool.clone();
    let occupied_url = occupied.database_url.clone();
    occupied.stop().await; // a forced restore refuses a database bookingd is using
    wait_until("the stopped server's sessions are gone", Duration::from_secs(20), || async {
        bookingd_sessions(&occupied_pool).await == 0
    })
    .await;

    // Act
    let created = bookingctl(&out, &["backup", "create", "--database-url", &app.database_url, "--out", "."]).await;
    let created_stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    assert!(created.status.success(), "{created_stdout}\n{}", String::from_utf8_lossy(&created.stderr));
    let dir = out.join(created_stdout.lines().next().expect("the backup directory"));
    let dir_arg = dir.to_str().expect("utf-8 path");
    // no --scratch-url: verify starts its own throwaway PostgreSQL
    let verified = bookingctl(&out, &["backup", "verify", dir_arg]).await;
    let refused = bookingctl(&out, &["backup", "restore", dir_arg, "--target-url", &occupied_url]).await;
    let safety = out.join("safety");
    let forced = bookingctl(
        &out,
        &[
            "backup",
            "restore",
            dir_arg,
            "--target-url",
            &occupied_url,
            "--force",
            "--reason",
            "drill",
            "--principal",
            "night-operator",
            "--safety-dir",
            safety.to_str().expect("utf-8"),
        ],
    )
    .await;

    // Assert
    let progress = String::from_utf8_lossy(&created.stderr);
    assert!(progress.contains("checksummed public.bookings") && progress.contains("wrote backup_"), "{progress}");
    assert!(
        verified.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stderr).contains("scratch postgresql server stopped"));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"), "{refused:?}");
    assert!(
        forced.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&forced.stdout),
        String::from_utf8_lossy(&forced.stderr)
    );
    assert!(String::from_utf8_lossy(&forced.stdout).contains("counts and checksums match"));
    let bookings: i64 =
        sqlx::query_scalar("select count(*) from bookings").fetch_one(&occupied_pool).await.expect("count");
    assert_eq!(bookings, 6);
    let (actor, details): (String, serde_json::Value) =
        sqlx::query_as("select actor, details from audit_logs where action = 'backup_restored'")
            .fetch_one(&occupied_pool)
            .await
            .expect("the restore is audited in the restored database");
    assert_eq!((actor.as_str(), details["reason"].as_str()), ("night-operator", Some("drill")));
    let safety_backup = details["safety_backup"].as_str().expect("a safety backup was taken");
    assert!(Path::new(safety_backup).join(backup::MANIFEST_FILE).exists(), "{safety_backup}");
    assert!(Path::new(safety_backup).starts_with(&safety));
    assert_healthy(&occupied_pool).await;
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn verify_reports_a_table_whose_data_disagrees_with_the_manifest() {
    // Arrange
    let app = spawn_app().await;
    bookings_to_back_up(&app.pool).await;
    let out = scratch_dir();
    let tools = PgTools::new(None);
    let (dir, mut manifest) = backup::create(&app.database_url, &out, &tools, &quiet).await.expect("backup");
    // the manifest claims one more booking and other content than the archive holds
    let bookings = manifest.tables.iter_mut().find(|t| t.name == "bookings").expect("bookings");
    bookings.rows += 1;
    bookings.sha256 = "0".repeat(64);
    std::fs::write(dir.join(backup::MANIFEST_FILE), serde_json::to_vec(&manifest).expect("json")).expect("write");

    // Act
    let verified =
        backup::verify(&dir, Scratch::Server(test_server_url().to_owned()), &tools, &quiet).await.expect("verify");

    // Assert
    let mismatches: Vec<_> = verified.mismatches().collect();
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert_eq!(mismatches[0].table, "public.bookings");
    assert_eq!((mismatches[0].expected_rows, mismatches[0].actual_rows), (7, Some(6)));
    assert!(!mismatches[0].checksum_matches);
    assert_healthy(&app.pool).await;
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn a_forced_restore_over_a_database_with_a_live_bookingd_is_refused_and_changes_nothing() {
    // Arrange: a backup of one database; another with a running bookingd and bookings of its own
    let source = spawn_app().await;
    bookings_to_back_up(&source.pool).await;
    let out = scratch_dir();
    let tools = PgTools::new(None);
    let (dir, _) = backup::create(&source.database_url, &out, &tools, &quiet).await.expect("backup");
    let live = spawn_app().await;
    let operator = insert_operator(&live.pool).await;
    let tour = insert_tour(&live.pool, operator, 10, "active").await;
    book_like_legacy(&live.pool, tour, 3).await.expect("a booking of the live database");
    wait_until("bookingd's sessions are visible", Duration::from_secs(10), || async {
        bookingd_sessions(&live.pool).await > 0
    })
    .await;
    let before: (i64, i64) =
        sqlx::query_as("select (select count(*) from bookings), (select count(*) from audit_logs)")
            .fetch_one(&live.pool)
            .await
            .expect("counts");
    let forced = backup::RestoreOptions {
        force: true,
        reason: Some("restore drill".into()),
        safety_dir: Some(out.join("safety")),
        ..restore_as_operator()
    };

    // Act
    let refused = backup::restore(&dir, &live.database_url, &forced, &tools, &quiet).await;
    let unforced = backup::restore(&dir, &live.database_url, &restore_as_operator(), &tools, &quiet).await;
    let after: (i64, i64) = sqlx::query_as("select (select count(*) from bookings), (select count(*) from audit_logs)")
        .fetch_one(&live.pool)
        .await
        .expect("counts");
    let safety_after_refusal = out.join("safety").exists();
    let allowed = backup::RestoreOptions { allow_live_sessions: true, ..forced.clone() };
    let restored = backup::restore(&dir, &live.database_url, &allowed, &tools, &quiet).await.expect("told explicitly");

    // Assert
    assert!(
        matches!(refused, Err(backup::BackupError::TargetInUse { sessions, ref names }) if sessions > 0 && names.contains("bookingd")),
        "{:?}",
        refused.as_ref().err()
    );
    assert!(matches!(unforced, Err(backup::BackupError::TargetNotEmpty { .. })), "{:?}", unforced.as_ref().err());
    assert_eq!(after, before, "a refused restore changes nothing");
    assert!(!safety_after_refusal, "no safety backup for a refused restore");
    assert!(restored.comparison.matches());
    let safety = restored.safety_backup.expect("safety backup");
    let safety_manifest: backup::Manifest =
        serde_json::from_slice(&std::fs::read(safety.join(backup::MANIFEST_FILE)).expect("manifest")).expect("json");
    let safety_bookings = safety_manifest.tables.iter().find(|t| t.name == "bookings").map(|t| t.rows);
    assert_eq!(safety_bookings, Some(1), "the safety backup holds the target as it was");
    let (actor, details): (String, serde_json::Value) =
        sqlx::query_as("select actor, details from audit_logs where action = 'backup_restored'")
            .fetch_one(&live.pool)
            .await
            .expect("audited");
    assert_eq!(actor, TEST_OPERATOR);
    assert_eq!(details["reason"], "restore drill");
    assert_eq!(details["live_sessions_allowed"], true);
    live.stop().await;
    let _ = std::fs::remove_dir_all(out);
}
