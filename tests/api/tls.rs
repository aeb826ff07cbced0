//! Transport: TLS with a test CA, mutual TLS where a verified client
//! certificate stands for a principal, plaintext refused off loopback, and
//! bookingctl over TLS. Certificates are generated here with rcgen.

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::ExitCode};

use bookingd::proto::v1::{GetFlagRequest, ListToursRequest, booking_service_client::BookingServiceClient};
use clap::Parser;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_types::StatusExt;

use crate::helpers::{BearerToken, TEST_BOOKING_TOKEN, TestApp, spawn_app_with, test_principals};

/// A CA and files of certificates it signed, in a private temporary directory.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("bookingd-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca");
        let pki = Pki { dir, ca };
        pki.write("ca.pem", &pki.ca.pem());
        pki
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        path
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A leaf certificate for `names` (its SANs; the first is also its CN), as (cert, key) files.
    fn issue(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        (self.write(&format!("{file}.pem"), &cert.pem()), self.write(&format!("{file}-key.pem"), &key.serialize_pem()))
    }

    fn identity(&self, file: &str, names: &[&str]) -> Identity {
        let (cert, key) = self.issue(file, names, ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(std::fs::read(cert).expect("cert"), std::fs::read(key).expect("key"))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test server over TLS with `pki`'s server certificate; `client_ca`
/// turns on mutual TLS.
async fn spawn_tls_app(pki: &Pki, client_ca: Option<PathBuf>, principals_file: Option<PathBuf>) -> (TestApp, String) {
    let (cert, key) = pki.issue("server", &["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let app = spawn_app_with(|settings| {
        settings.tls_cert = Some(cert);
        settings.tls_key = Some(key);
        settings.tls_client_ca = client_ca;
        settings.principals_file = principals_file;
    })
    .await;
    let https = app.addr.replace("http://", "https://");
    (app, https)
}

async fn tls_channel(pki: &Pki, addr: &str, identity: Option<Identity>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pki.ca_pem())).domain_name("localhost");
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(addr.to_owned()).expect("endpoint").tls_config(tls)?.connect().await
}

/// Whether a call over `channel` got past the handshake and the access check.
async fn list_tours(channel: Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    match token {
        Some(token) => BookingServiceClient::with_interceptor(channel, BearerToken::new(token))
            .list_tours(ListToursRequest::default())
            .await
            .map(drop),
        None => BookingServiceClient::new(channel).list_tours(ListToursRequest::default()).await.map(drop),
    }
}

/// A call that never reached the service: the connection or the handshake
/// failed (tonic reports a broken transport as UNAVAILABLE or UNKNOWN), as
/// opposed to an answer such as UNAUTHENTICATED.
fn not_served(result: Result<(), Code>) -> bool {
    matches!(result, Err(Code::Unavailable | Code::Unknown))
}

#[tokio::test]
async fn a_client_trusting_the_test_ca_books_over_tls_and_a_plaintext_client_gets_nothing() {
    // Arrange
    let pki = Pki::new("bookingd test CA");
    let (app, https) = spawn_tls_app(&pki, None, None).await;

    // Act
    let over_tls =
        list_tours(tls_channel(&pki, &https, None).await.expect("handshake"), Some(TEST_BOOKING_TOKEN)).await;
    let plaintext = list_tours(app.channel.clone(), Some(TEST_BOOKING_TOKEN)).await;
    let other_ca = Pki::new("some other CA");
    let untrusted = tls_channel(&other_ca, &https, None).await;

    // Assert
    assert!(over_tls.is_ok(), "{over_tls:?}");
    assert!(not_served(plaintext.map_err(|s| s.code())), "a plaintext client must not be served by a TLS server");
    assert!(untrusted.is_err(), "a client that does not trust the server's CA must not connect");
    app.stop().await;
}

#[tokio::test]
async fn under_mutual_tls_a_certificate_stands_for_its_principal_and_no_certificate_is_refused() {
    // Arrange
    let pki = Pki::new("bookingd test CA");
    let principals = pki.write(
        "principals.toml",
        "[[principal]]\nname = \"partner-backend\"\nrole = \"booking-client\"\ncertificate_names = [\"partner.test\"]\n",
    );
    let (app, https) = spawn_tls_app(&pki, Some(pki.ca_path()), Some(principals)).await;
    let partner = pki.identity("partner", &["partner.test"]);
    let stranger = pki.identity("stranger", &["stranger.test"]);
    let foreign_ca = Pki::new("a CA bookingd does not trust");
    let foreign = foreign_ca.identity("foreign", &["partner.test"]);

    // Act
    let as_partner = tls_channel(&pki, &https, Some(partner)).await.expect("handshake with a certificate");
    let booked = list_tours(as_partner.clone(), None).await;
    let admin = bookingd::proto::v1::admin_service_client::AdminServiceClient::new(as_partner)
        .get_flag(GetFlagRequest::default())
        .await;
    let as_stranger = list_tours(tls_channel(&pki, &https, Some(stranger)).await.expect("handshake"), None).await;
    let without_certificate = match tls_channel(&pki, &https, None).await {
        Ok(channel) => list_tours(channel, Some(TEST_BOOKING_TOKEN)).await.map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };
    let with_foreign_certificate = match tls_channel(&pki, &https, Some(foreign)).await {
        Ok(channel) => list_tours(channel, None).await.map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };

    // Assert
    assert!(booked.is_ok(), "the partner's certificate makes it a booking client: {booked:?}");
    let denied = admin.expect_err("a booking client may not read flags");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let info = denied.get_error_details().error_info().cloned().expect("error info");
    assert_eq!(info.metadata.get("principal").map(String::as_str), Some("partner-backend"));
    let stranger = as_stranger.expect_err("a certificate nobody is configured for");
    assert_eq!(stranger.code(), Code::Unauthenticated);
    assert_eq!(
        stranger.get_error_details().error_info().map(|i| i.reason.clone()).as_deref(),
        Some("CREDENTIAL_UNKNOWN")
    );
    assert!(not_served(without_certificate), "mTLS refuses a client without a certificate");
    assert!(not_served(with_foreign_certificate), "a certificate from another CA fails the handshake");
    app.stop().await;
}

#[tokio::test]
async fn plaintext_on_a_non_loopback_address_is_refused_unless_explicitly_allowed() {
    // Arrange
    let database_url = crate::helpers::create_test_database().await;
    let mut refused = bookingd::config::Settings::for_database(&database_url);
    refused.listen_addr = "0.0.0.0:0".parse().expect("address");
    let mut allowed = refused.clone();
    allowed.allow_insecure_plaintext = true;
    allowed.principals = Some(test_principals());

    // Act
    let error = bookingd::startup::Application::build(refused).await.err().expect("refused");
    let app = bookingd::startup::Application::build(allowed).await;

    // Assert
    let line = error.to_string();
    assert!(line.contains("0.0.0.0:0") && line.contains("--allow-insecure-plaintext"), "{line}");
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(app.is_ok(), "--allow-insecure-plaintext lets it start: {:?}", app.err());
}

const OPS_TOKEN: &str = "ops-token-of-the-tls-test-0123456789";

#[tokio::test]
async fn bookingctl_speaks_tls_with_a_ca_file_and_a_client_certificate() {
    // Arrange
    let pki = Pki::new("bookingd test CA");
    let principals = pki.write(
        "principals.toml",
        &format!(
            "[[principal]]\nname = \"ops-laptop\"\nrole = \"operator\"\ncertificate_names = [\"ops.test\"]\n\n\
             [[principal]]\nname = \"ops-token\"\nrole = \"operator\"\ntoken_sha256 = [\"{}\"]\n",
            bookingd::auth::token::digest_hex(OPS_TOKEN)
        ),
    );
    let (app, https) = spawn_tls_app(&pki, Some(pki.ca_path()), Some(principals)).await;
    let (cert, key) = pki.issue("ops", &["ops.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let ca = pki.ca_path();
    let args = |extra: &[&str], enabled: &str| {
        let mut args: Vec<String> =
            ["bookingctl", "--addr", &https, "--ca-cert", ca.to_str().expect("utf-8")].map(String::from).to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["flag", "set", enabled, "--reason", "over mtls"].map(String::from));
        bookingd::cli::Cli::try_parse_from(args).expect("arguments parse")
    };

    let (cert, key) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));

    // Act
    let by_certificate = bookingd::cli::run(args(&["--client-cert", cert, "--client-key", key], "true")).await;
    let by_token_too =
        bookingd::cli::run(args(&["--client-cert", cert, "--client-key", key, "--token", OPS_TOKEN], "false")).await;
    let without_certificate = bookingd::cli::run(args(&["--token", OPS_TOKEN], "true")).await;

    // Assert
    assert_eq!(by_certificate.expect("bookingctl over mTLS"), ExitCode::SUCCESS);
    assert_eq!(by_token_too.expect("bookingctl over mTLS with a token"), ExitCode::SUCCESS);
    assert!(without_certificate.is_err(), "mTLS refuses bookingctl without a certificate");
    let changed_by: Vec<String> = sqlx::query_scalar("select changed_by from feature_flag_changes order by id")
        .fetch_all(&app.pool)
        .await
        .expect("changes");
    // the certificate alone is the principal; a token, being explicit, wins over it
    assert_eq!(changed_by, ["ops-laptop", "ops-token"]);
    app.stop().await;
}
