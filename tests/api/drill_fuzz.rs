//! Hostile input: refusals that echo huge caller input still fit in the
//! HTTP/2 headers, property-based requests to every RPC, and malformed
//! gRPC frames. The answer is always a clear status, never a reset or a
//! panic, and a refused request writes nothing.

use bookingd::proto::v1::{GetFlagRequest, PauseBookingsRequest, RunChecksRequest, SetFlagRequest};
use tonic::Code;

use crate::{
    fixtures::{error_metadata, reason, write_counts},
    helpers::{assert_healthy, spawn_app},
};

#[tokio::test]
async fn refusals_echoing_thousands_of_characters_arrive_as_statuses_not_resets() {
    // Arrange: each call echoes its input into the message and ErrorInfo
    // (a 5,000-character key was answered with an HTTP/2 PROTOCOL_ERROR)
    let app = spawn_app().await;
    let long_key = "k".repeat(5_000);
    let unicode_key = "é\u{7}🎟".repeat(2_000);
    let unknown_tours: Vec<String> = (0..500).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let unknown_checks: Vec<String> = (0..1_000).map(|n| format!("no_such_check_{n}")).collect();
    let before = write_counts(&app.pool).await;

    // Act
    let get = app.admin().get_flag(GetFlagRequest { key: long_key.clone() }).await.expect_err("unknown flag");
    let set = app
        .admin()
        .set_flag(SetFlagRequest { key: unicode_key, enabled: true, reason: "fuzz".into() })
        .await
        .expect_err("unknown flag");
    let pause = app
        .admin()
        .pause_bookings(PauseBookingsRequest { tour_ids: unknown_tours, reason: "fuzz".into() })
        .await
        .expect_err("unknown tours");
    let checks = app
        .integrity()
        .run_checks(RunChecksRequest { checks: unknown_checks, max_samples: 0 })
        .await
        .expect_err("unknown checks");

    // Assert
    for (status, code, expected) in [
        (&get, Code::NotFound, "FLAG_NOT_FOUND"),
        (&set, Code::NotFound, "FLAG_NOT_FOUND"),
        (&pause, Code::NotFound, "TOUR_NOT_FOUND"),
        (&checks, Code::InvalidArgument, "UNKNOWN_CHECK"),
    ] {
        assert_eq!((status.code(), reason(status).as_str()), (code, expected), "{status:?}");
    }
    let echoed = error_metadata(&get, "key").expect("the key is echoed");
    assert!(echoed.ends_with('…') && long_key.starts_with(echoed.trim_end_matches('…')), "{echoed}");
    assert_eq!(write_counts(&app.pool).await, before, "a refusal wrote nothing");
    assert_healthy(&app.pool).await;
    app.stop().await;
}
