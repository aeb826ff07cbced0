//! Access: every RPC × every kind of caller through the real server, token
//! rotation without a restart, and principals in audit rows.
//!
//! The table below is checked against the methods the server's descriptors
//! declare: a new RPC without a row fails
//! `every_rpc_answers_each_kind_of_caller_as_its_role_table_says`.

use std::{collections::BTreeMap, os::unix::fs::PermissionsExt, time::Duration};

use bookingd::{
    auth::token::digest_hex,
    proto::v1::{GetFlagRequest, RepairAvailabilityRequest},
};
use prost::Message;
use tonic::{Code, metadata::MetadataValue};
use tonic_types::StatusExt;

use crate::helpers::{
    BearerToken, TEST_AUDITOR, TEST_AUDITOR_TOKEN, TEST_BOOKING_TOKEN, TEST_OPERATOR_TOKEN, TestApp, spawn_app,
    spawn_app_with, wait_until,
};

/// The kinds of caller, in the table's column order.
const CALLERS: [&str; 6] = ["none", "malformed", "unknown", "booking-client", "auditor", "operator"];

/// What a caller gets: refused before the handler, or admitted (the handler
/// then answers as it will, e.g. INVALID_ARGUMENT for an empty request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Unauthenticated,
    Denied,
    Admitted,
}
use Outcome::{Admitted as A, Denied as D, Unauthenticated as U};

const PUBLIC: [Outcome; 6] = [A, A, A, A, A, A];
const BOOKING: [Outcome; 6] = [U, U, U, A, D, A];
const AUDIT: [Outcome; 6] = [U, U, U, D, A, A];
const OPERATE: [Outcome; 6] = [U, U, U, D, D, A];

/// Expected outcome per method, per caller (columns as in [`CALLERS`]).
const EXPECTED: &[(&str, [Outcome; 6])] = &[
    ("/grpc.health.v1.Health/Check", PUBLIC),
    ("/grpc.health.v1.Health/Watch", PUBLIC),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", PUBLIC),
    ("/booking.v1.BookingService/CreateBooking", BOOKING),
    ("/booking.v1.BookingService/ConfirmBooking", BOOKING),
    ("/booking.v1.BookingService/CancelBooking", BOOKING),
    ("/booking.v1.BookingService/GetBooking", BOOKING),
    ("/booking.v1.BookingService/LookupJourney", BOOKING),
    ("/booking.v1.BookingService/ListTours", BOOKING),
    ("/booking.v1.IntegrityService/RunChecks", AUDIT),
    ("/booking.v1.IntegrityService/WatchChecks", AUDIT),
    ("/booking.v1.AdminService/GetFlag", AUDIT),
    ("/booking.v1.AdminService/ListFlagChanges", AUDIT),
    // a dry run (the empty request's default); applying is operator-only, tested below
    ("/booking.v1.AdminService/RepairAvailability", AUDIT),
    ("/booking.v1.AdminService/SetFlag", OPERATE),
    ("/booking.v1.AdminService/ClampNegativeAvailability", OPERATE),
    ("/booking.v1.AdminService/PauseBookings", OPERATE),
    ("/booking.v1.AdminService/ResumeBookings", OPERATE),
    ("/booking.v1.AdminService/DeployFunctions", OPERATE),
    ("/booking.v1.AdminService/RollbackFunctions", OPERATE),
];

struct Method {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every method of every service the server registers, from the same
/// descriptor sets it serves.
fn served_methods() -> Vec<Method> {
    let mut methods = Vec::new();
    for encoded in [
        bookingd::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded).expect("descriptor set");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push(Method {
                        path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    });
                }
            }
        }
    }
    methods
}

/// A request carrying the caller's credential (or deliberately broken ones).
fn credential<T>(caller: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    let header = match caller {
        "none" => return request,
        "malformed" => "Basic dGVzdDp0ZXN0".to_owned(),
        "unknown" => format!("Bearer {}", "u".repeat(40)),
        "booking-client" => format!("Bearer {TEST_BOOKING_TOKEN}"),
        "auditor" => format!("Bearer {TEST_AUDITOR_TOKEN}"),
        "operator" => format!("Bearer {TEST_OPERATOR_TOKEN}"),
        other => panic!("unknown caller kind {other}"),
    };
    request.metadata_mut().insert("authorization", MetadataValue::try_from(header).expect("ascii"));
    request
}

/// Calls `method` with an empty message; `Ok` when the call was answered
/// without error, else the status.
async fn call_empty(app: &TestApp, method: &Method, caller: &str) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let path: http::uri::PathAndQuery = method.path.parse().expect("path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    match (method.client_streaming, method.server_streaming) {
        (false, false) => grpc.unary(credential(caller, tonic::Request::new(())), path, codec).await.map(drop),
        (false, true) => {
            let mut stream =
                grpc.server_streaming(credential(caller, tonic::Request::new(())), path, codec).await?.into_inner();
            // the first message (or the end) shows the handler ran; then hang up
            stream.message().await.map(drop)
        }
        (true, _) => {
            let messages = tokio_stream::iter(vec![()]);
            let mut stream =
                grpc.streaming(credential(caller, tonic::Request::new(messages)), path, codec).await?.into_inner();
            stream.message().await.map(drop)
        }
    }
}

fn outcome_of(result: &Result<(), tonic::Status>) -> (Outcome, String) {
    match result {
        Ok(()) => (Outcome::Admitted, "OK".to_owned()),
        Err(status) => {
            let reason = status.get_error_details().error_info().map(|info| info.reason.clone()).unwrap_or_default();
            let outcome = match status.code() {
                Code::Unauthenticated => Outcome::Unauthenticated,
                Code::PermissionDenied => Outcome::Denied,
                _ => Outcome::Admitted,
            };
            (outcome, format!("{:?} {reason}", status.code()))
        }
    }
}

#[tokio::test]
async fn every_rpc_answers_each_kind_of_caller_as_its_role_table_says() {
    // Arrange
    let app = spawn_app().await;
    let methods = served_methods();
    let expected: BTreeMap<&str, [Outcome; 6]> = EXPECTED.iter().copied().collect();
    let missing: Vec<&str> =
        methods.iter().map(|m| m.path.as_str()).filter(|path| !expected.contains_key(path)).collect();
    let stale: Vec<&str> = expected.keys().copied().filter(|path| !methods.iter().any(|m| m.path == *path)).collect();
    assert!(missing.is_empty(), "RPCs without a row in the access table test: {missing:?}");
    assert!(stale.is_empty(), "rows for RPCs the server does not declare: {stale:?}");
    for method in &methods {
        assert!(bookingd::grpc::auth::access_for(&method.path).is_some(), "{} has no access rule", method.path);
    }

    // Act
    let mut table = Vec::new();
    for method in &methods {
        let mut row = Vec::new();
        for caller in CALLERS {
            let result = call_empty(&app, method, caller).await;
            row.push((caller, result));
        }
        table.push((method.path.clone(), row));
    }

    // Assert
    let mut report = String::from("method | none | malformed | unknown | booking-client | auditor | operator\n");
    let mut wrong = Vec::new();
    for (path, row) in &table {
        report.push_str(path);
        for (column, (caller, result)) in row.iter().enumerate() {
            let (outcome, shown) = outcome_of(result);
            report.push_str(&format!(" | {shown}"));
            if outcome != expected[path.as_str()][column] {
                wrong.push(format!("{path} as {caller}: expected {:?}, got {shown}", expected[path.as_str()][column]));
            }
            if let Err(status) = result {
                let reason = status.get_error_details().error_info().map(|info| info.reason.clone());
                let want = match (outcome, *caller) {
                    (Outcome::Unauthenticated, "none") => Some("CREDENTIAL_MISSING"),
                    (Outcome::Unauthenticated, "malformed") => Some("CREDENTIAL_MALFORMED"),
                    (Outcome::Unauthenticated, _) => Some("CREDENTIAL_UNKNOWN"),
                    (Outcome::Denied, _) => Some("ROLE_NOT_PERMITTED"),
                    (Outcome::Admitted, _) => None,
                };
                if want.is_some() && reason.as_deref() != want {
                    wrong.push(format!("{path} as {caller}: reason {reason:?}, expected {want:?}"));
                }
                assert_ne!(status.code(), Code::Unimplemented, "{path} as {caller} is not served: {status:?}");
            }
        }
        report.push('\n');
    }
    println!("{report}");
    assert!(wrong.is_empty(), "{}\n\n{report}", wrong.join("\n"));
    // empty requests change nothing, whoever sends them; the two admitted dry
    // runs leave their preview row under the caller's name
    let audit: Vec<(String, String)> =
        sqlx::query_as("select action, actor from audit_logs where actor <> 'bookingd' order by id")
            .fetch_all(&app.pool)
            .await
            .expect("audit rows");
    let previewed = |actor: &str| ("availability_repair_previewed".to_owned(), actor.to_owned());
    assert_eq!(audit, vec![previewed(TEST_AUDITOR), previewed(crate::helpers::TEST_OPERATOR)]);
    app.stop().await;
}

#[tokio::test]
async fn an_auditor_may_dry_run_a_repair_but_not_apply_it() {
    // Arrange
    let app = spawn_app().await;
    let mut auditor = app.admin_as(TEST_AUDITOR_TOKEN);

    // Act
    let dry = auditor.repair_availability(RepairAvailabilityRequest::default()).await;
    let apply = auditor
        .repair_availability(RepairAvailabilityRequest {
            apply: true,
            tour_ids: vec![],
            reason: "auditor tries to apply".into(),
        })
        .await
        .expect_err("applying needs an operator");

    // Assert
    assert!(dry.is_ok(), "{dry:?}");
    assert_eq!(apply.code(), Code::PermissionDenied);
    let info = apply.get_error_details().error_info().cloned().expect("error info");
    assert_eq!(info.reason, "ROLE_NOT_PERMITTED");
    assert_eq!(info.metadata.get("principal").map(String::as_str), Some(TEST_AUDITOR));
    app.stop().await;
}

fn private_file(path: &std::path::Path, text: &str) {
    // write then rename, as editors and config managers do
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write");
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::fs::rename(&temporary, path).expect("rename");
}

fn principal_entry(name: &str, role: &str, tokens: &[&str]) -> String {
    let hashes: Vec<String> = tokens.iter().map(|t| format!("\"{}\"", digest_hex(t))).collect();
    format!("[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = [{}]\n\n", hashes.join(", "))
}

async fn get_flag_as(app: &TestApp, token: &str) -> Result<(), tonic::Status> {
    app.admin_as(token).get_flag(GetFlagRequest::default()).await.map(drop)
}

#[tokio::test]
async fn a_token_added_to_the_file_works_without_a_restart_and_a_removed_one_stops_within_a_second() {
    // Arrange
    let dir = std::env::temp_dir().join(format!("bookingd-rotation-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("principals.toml");
    let (old, new) = ("old-token-of-the-auditor-0123456789ab", "new-token-of-the-auditor-0123456789ab");
    private_file(&file, &principal_entry("rotating-auditor", "auditor", &[old]));
    let app = spawn_app_with(|settings| {
        settings.principals = None;
        settings.principals_file = Some(file.clone());
    })
    .await;
    let before_new = get_flag_as(&app, new).await;

    // Act 1: add the new token beside the old one
    private_file(&file, &principal_entry("rotating-auditor", "auditor", &[old, new]));
    wait_until("the added token is accepted", Duration::from_secs(5), || async {
        get_flag_as(&app, new).await.is_ok()
    })
    .await;
    let old_still = get_flag_as(&app, old).await;

    // Act 2: remove the old token
    private_file(&file, &principal_entry("rotating-auditor", "auditor", &[new]));
    let removed = std::time::Instant::now();
    wait_until("the removed token is refused", Duration::from_secs(1), || async {
        get_flag_as(&app, old).await.is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await;
    println!("removed token refused after {:?}", removed.elapsed());

    // Act 3: a broken file keeps the last good set in force
    private_file(&file, "[[principal]]\nname = \"half-written");
    let during_broken = get_flag_as(&app, new).await;

    // Assert
    assert_eq!(before_new.expect_err("not yet configured").code(), Code::Unauthenticated);
    assert!(old_still.is_ok(), "both tokens work during the rollover: {old_still:?}");
    assert!(get_flag_as(&app, new).await.is_ok());
    assert!(during_broken.is_ok(), "{during_broken:?}");
    app.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_server_refuses_to_start_with_a_world_readable_principals_file_or_a_short_token() {
    // Arrange
    let dir = std::env::temp_dir().join(format!("bookingd-refusal-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("principals.toml");
    private_file(&file, &principal_entry("ops", "operator", &[TEST_OPERATOR_TOKEN]));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let short = dir.join("short-token");
    private_file(&short, "too-short\n");
    let database_url = crate::helpers::create_test_database().await;

    // Act
    let mut readable = bookingd::config::Settings::for_database(&database_url);
    readable.principals_file = Some(file.clone());
    let readable = bookingd::startup::Application::build(readable).await.err().expect("refused");
    let mut short_token = bookingd::config::Settings::for_database(&database_url);
    short_token.token_files.push(bookingd::auth::TokenFileSource {
        name: "ops".into(),
        role: bookingd::auth::Role::Operator,
        path: short.clone(),
    });
    let short_token = bookingd::startup::Application::build(short_token).await.err().expect("refused");

    // Assert
    assert!(readable.to_string().contains("readable"), "{readable}");
    assert!(short_token.to_string().contains("at least 32"), "{short_token}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_bearer_token_with_a_different_principal_is_recorded_by_name_in_the_audit_trail() {
    // Arrange
    let second_operator = "second-operator-token-0123456789abcdef";
    let app = spawn_app_with(|settings| {
        let mine = format!("night-shift:operator:{}", digest_hex(second_operator));
        settings.principals = Some(format!("{},{mine}", crate::helpers::test_principals()));
    })
    .await;

    // Act
    app.admin_as(second_operator)
        .set_flag(bookingd::proto::v1::SetFlagRequest {
            key: String::new(),
            enabled: true,
            reason: "night drill".into(),
        })
        .await
        .expect("set flag");
    let unchanged = app.admin_as(TEST_OPERATOR_TOKEN).get_flag(GetFlagRequest::default()).await.expect("get");

    // Assert
    let changed_by: String = sqlx::query_scalar("select changed_by from feature_flag_changes")
        .fetch_one(&app.pool)
        .await
        .expect("one change");
    assert_eq!(changed_by, "night-shift");
    assert_eq!(unchanged.into_inner().updated_by, "night-shift");
    app.stop().await;
}

#[tokio::test]
async fn the_bearer_helper_sends_the_token_it_was_given() {
    // Arrange
    // a guard on the harness itself: a client built with a token is that principal
    let app = spawn_app().await;
    let mut booking = bookingd::proto::v1::booking_service_client::BookingServiceClient::with_interceptor(
        app.channel.clone(),
        BearerToken::new(TEST_AUDITOR_TOKEN),
    );

    // Act
    let refused = booking.list_tours(bookingd::proto::v1::ListToursRequest::default()).await.expect_err("auditor");
    let allowed = app.booking().list_tours(bookingd::proto::v1::ListToursRequest::default()).await;

    // Assert
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(allowed.is_ok(), "{allowed:?}");
    app.stop().await;
}
