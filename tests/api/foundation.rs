//! Foundation: health, reflection, migrations and seed, unknown RPCs, and the
//! health service following the database.

use std::time::Duration;

use bookingd::{db, proto};
use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::helpers::{assert_healthy, spawn_app, spawn_app_on, start_test_server, wait_until};

async fn health_of(app: &crate::helpers::TestApp, service: &str) -> Result<ServingStatus, tonic::Status> {
    let response = app.health().check(HealthCheckRequest { service: service.to_owned() }).await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_each_service() {
    let app = spawn_app().await;

    for service in ["", proto::BOOKING_SERVICE, proto::INTEGRITY_SERVICE, proto::ADMIN_SERVICE] {
        assert_eq!(health_of(&app, service).await.expect("health check"), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health_of(&app, "no.such.Service").await.expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn reflection_lists_the_three_booking_services() {
    // Arrange
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());

    // Act
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::once(request)).await.expect("reflection").into_inner();
    let response = responses.next().await.expect("one response").expect("ok response");

    // Assert
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list, got {:?}", response.message_response);
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [proto::BOOKING_SERVICE, proto::INTEGRITY_SERVICE, proto::ADMIN_SERVICE, "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test]
async fn migrations_and_the_demo_seed_are_idempotent() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let first = db::seed::seed_demo_catalog(&app.pool).await.expect("first seed");
    let counts = || async {
        sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "select (select count(*) from operators), (select count(*) from tours),
                    (select count(*) from schedules), (select count(*) from bookings)",
        )
        .fetch_one(&app.pool)
        .await
        .expect("counts")
    };
    let after_first = counts().await;
    db::migrate(&app.pool).await.expect("second migration run");
    let second = db::seed::seed_demo_catalog(&app.pool).await.expect("second seed");
    let after_second = counts().await;

    // Assert
    assert!(first, "the first seed loads the catalog");
    assert!(!second, "the second seed loads nothing");
    assert_eq!(after_first, after_second);
    assert!(after_first.0 >= 3 && after_first.1 > 3 && after_first.2 > 0, "catalog is not empty: {after_first:?}");
    let nearly_sold_out: i64 =
        sqlx::query_scalar("select count(*) from tours where not is_template and available_spots between 1 and 2")
            .fetch_one(&app.pool)
            .await
            .expect("nearly sold out");
    assert!(nearly_sold_out >= 1, "the demo has a nearly sold-out tour");
    assert_healthy(&app.pool).await;
}

#[tokio::test]
async fn the_database_functions_are_deployed_on_first_start_only() {
    // Arrange
    let app = spawn_app().await;
    assert!(db::functions::state(&app.pool).await.expect("state").complete());

    // Act
    db::functions::rollback(&app.pool, "test", "operator rolled back").await.expect("rollback");
    let again = db::functions::deploy_on_first_start(&app.pool, Default::default()).await.expect("second start");

    // Assert
    assert!(!again, "a restart after a rollback must not redeploy");
    let state = db::functions::state(&app.pool).await.expect("state");
    assert!(!state.atomic_function && !state.restore_function && !state.trigger, "{state:?}");
}

#[tokio::test]
async fn an_unknown_method_answers_unimplemented() {
    // Arrange
    let app = spawn_app().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");

    // Act
    let path = http::uri::PathAndQuery::from_static("/booking.v1.BookingService/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<proto::v1::GetBookingRequest, proto::v1::GetBookingResponse>::default();
    let status = grpc
        .unary(tonic::Request::new(proto::v1::GetBookingRequest::default()), path, codec)
        .await
        .expect_err("unknown method");

    // Assert
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn health_goes_not_serving_while_the_database_is_down_and_recovers() {
    // a private server for this test: stopping the shared one would break the others
    let data_dir = std::env::temp_dir().join(format!(
        "bookingd-test-{}-health-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut server = start_test_server(data_dir.clone()).expect("private postgres");
    let app = spawn_app_on(&server.url("postgres"), |_| {}).await;
    assert_eq!(health_of(&app, "").await.expect("health"), ServingStatus::Serving);

    server.stop();
    wait_until("health NOT_SERVING", Duration::from_secs(15), || async {
        health_of(&app, "").await.ok() == Some(ServingStatus::NotServing)
            && health_of(&app, proto::BOOKING_SERVICE).await.ok() == Some(ServingStatus::NotServing)
    })
    .await;

    server.restart().expect("restart postgres");
    wait_until("health SERVING again", Duration::from_secs(30), || async {
        health_of(&app, "").await.ok() == Some(ServingStatus::Serving)
    })
    .await;

    app.stop().await;
    drop(server);
    let _ = std::fs::remove_dir_all(data_dir);
}
