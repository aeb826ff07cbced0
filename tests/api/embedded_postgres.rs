//! The embedded PostgreSQL trusts nobody: a connection without the
//! generated password is refused, and a data directory from the trust days
//! is upgraded in place on its next start, bookings kept.

use std::path::PathBuf;

use bookingd::{
    db::url::split_password,
    embedded_pg::{EmbeddedPgOptions, PASSWORD_FILE, PostgresThread, free_port},
};
use sqlx::{Connection, PgConnection};

use crate::helpers::test_server_url;

/// SQLSTATE invalid_password.
const INVALID_PASSWORD: &str = "28P01";

async fn refusal_without_password(url: &str) -> Option<String> {
    let (without, _) = split_password(url);
    match PgConnection::connect(&without).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(error)) => error.code().map(|c| c.into_owned()),
        Err(other) => Some(other.to_string()),
    }
}

fn options(data_dir: PathBuf) -> EmbeddedPgOptions {
    EmbeddedPgOptions {
        data_dir,
        port: free_port().expect("free port"),
        bin_dir: std::env::var_os("BOOKINGD_PG_BIN_DIR").map(PathBuf::from),
        ephemeral: true,
        max_connections: 20,
    }
}

#[tokio::test]
async fn a_connection_without_the_password_is_refused() {
    // the run's own server is an embedded one
    if std::env::var_os("TEST_DATABASE_URL").is_some() {
        return; // an outside server: its authentication is not ours to test
    }

    let refused = refusal_without_password(test_server_url()).await;
    let with_password = PgConnection::connect(test_server_url()).await;

    assert_eq!(refused.as_deref(), Some(INVALID_PASSWORD));
    assert!(with_password.is_ok(), "{:?}", with_password.err());
}

#[tokio::test]
async fn an_old_trust_data_directory_is_upgraded_in_place_and_keeps_its_bookings() {
    // Arrange: a data directory as the trust days left it, with a booking in it
    let data_dir = std::env::temp_dir().join(format!("bookingd-trust-upgrade-{}", uuid::Uuid::new_v4().simple()));
    let first = PostgresThread::start_async("pg-before-upgrade", options(data_dir.clone())).await.expect("start");
    let first_url = first.url("postgres");
    let app = crate::helpers::spawn_app_on(&first_url, |_| {}).await;
    let tour = crate::fixtures::create_tour(&app.pool, crate::fixtures::TourSpec::default()).await;
    let booked = crate::fixtures::create_ok(&app, crate::fixtures::booking_request(tour.tour_id)).await;
    app.stop().await;
    first.shutdown().await;
    std::fs::write(
        data_dir.join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n",
    )
    .expect("the old pg_hba.conf");
    std::fs::remove_file(data_dir.join(PASSWORD_FILE)).expect("no password file in the trust days");

    // Act
    let upgraded = PostgresThread::start_async("pg-after-upgrade", options(data_dir.clone())).await.expect("restart");
    let url = upgraded.url("postgres");

    // Assert
    assert_ne!(url, first_url, "a fresh password was generated");
    assert_eq!(refusal_without_password(&url).await.as_deref(), Some(INVALID_PASSWORD));
    let mut conn = PgConnection::connect(&url).await.expect("the new password works");
    let kept: String = sqlx::query_scalar("select booking_reference from bookings where id = $1::uuid")
        .bind(&booked.id)
        .fetch_one(&mut conn)
        .await
        .expect("the booking survived");
    assert_eq!(kept, booked.booking_reference);
    let hba = std::fs::read_to_string(data_dir.join("pg_hba.conf")).expect("pg_hba.conf");
    assert!(!hba.contains("trust") && hba.contains("scram-sha-256"), "{hba}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(data_dir.join(PASSWORD_FILE)).expect("password file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let _ = conn.close().await;
    upgraded.shutdown().await;
    let _ = std::fs::remove_dir_all(data_dir);
}
