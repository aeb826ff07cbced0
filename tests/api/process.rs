//! The real `bookingd` binary as a child process of a test, on loopback:
//! started against a database, its JSON log lines collected, and the address
//! it serves on read from its "bookingd serving" line. Used by the replica
//! tests and the shutdown drills.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use bookingd::proto::v1::{admin_service_client::AdminServiceClient, booking_service_client::BookingServiceClient};
use sqlx::PgPool;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::{
    Authed, BearerToken, TEST_BOOKING_TOKEN, TEST_OPERATOR_TOKEN, create_test_database, test_principals,
};

/// One `bookingd` process. Killed when dropped.
pub(crate) struct Replica {
    pub(crate) child: Child,
    pub(crate) addr: String,
    logs: Arc<Mutex<Vec<String>>>,
}

/// A `bookingd` process that has not said where it serves yet.
pub(crate) struct Starting {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: tokio::sync::oneshot::Receiver<String>,
}

impl Starting {
    /// Spawns `bookingd` on 127.0.0.1:0 against `database_url`, collecting
    /// its log lines.
    pub(crate) fn spawn(database_url: &str, extra_env: &[(&str, &str)]) -> Starting {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bookingd"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("BOOKINGD_LISTEN_ADDR", "127.0.0.1:0")
            .env("BOOKINGD_LOG_FORMAT", "json")
            .env("BOOKINGD_PRINCIPALS", test_principals())
            .env("BOOKINGD_HEALTH_PROBE_INTERVAL", "100ms")
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("start bookingd");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr) = tokio::sync::oneshot::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let collected = logs.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = serving_addr(&line)
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr);
                }
                collected.lock().expect("logs").push(line);
            }
        });
        let collected = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().expect("logs").push(line);
            }
        });
        Starting { child, logs, addr }
    }

    pub(crate) fn logged(&self, message: &str) -> usize {
        count_message(&self.logs, message)
    }

    /// Waits until it logs the address it serves on.
    pub(crate) async fn ready(self) -> Replica {
        let Starting { child, logs, addr } = self;
        let addr = match tokio::time::timeout(Duration::from_secs(90), addr).await {
            Ok(Ok(addr)) => addr,
            _ => panic!("bookingd did not start serving:\n{}", logs.lock().expect("logs").join("\n")),
        };
        Replica { child, addr: format!("http://{addr}"), logs }
    }
}

fn count_message(logs: &Mutex<Vec<String>>, message: &str) -> usize {
    let needle = format!("\"message\":\"{message}\"");
    logs.lock().expect("logs").iter().filter(|line| line.contains(&needle)).count()
}

impl Replica {
    pub(crate) async fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Replica {
        Starting::spawn(database_url, extra_env).ready().await
    }

    pub(crate) fn channel(&self) -> Channel {
        Endpoint::from_shared(self.addr.clone()).expect("endpoint").connect_lazy()
    }

    pub(crate) fn booking(&self) -> BookingServiceClient<Authed> {
        BookingServiceClient::with_interceptor(self.channel(), BearerToken::new(TEST_BOOKING_TOKEN))
    }

    pub(crate) fn admin(&self) -> AdminServiceClient<Authed> {
        AdminServiceClient::with_interceptor(self.channel(), BearerToken::new(TEST_OPERATOR_TOKEN))
    }

    pub(crate) async fn health(&self) -> Option<ServingStatus> {
        let mut client = HealthClient::new(self.channel());
        let response = client.check(HealthCheckRequest { service: String::new() }).await.ok()?;
        Some(response.into_inner().status())
    }

    /// Log lines whose message is `message`.
    pub(crate) fn logged(&self, message: &str) -> usize {
        count_message(&self.logs, message)
    }

    /// The timestamp of the last line whose message is `message`.
    pub(crate) fn last_timestamp_of(&self, message: &str) -> chrono::DateTime<chrono::Utc> {
        let needle = format!("\"message\":\"{message}\"");
        let logs = self.logs.lock().expect("logs");
        let line = logs.iter().rev().find(|line| line.contains(&needle)).expect("a matching line");
        let value: serde_json::Value = serde_json::from_str(line).expect("json log line");
        let stamp = value.get("timestamp").and_then(|t| t.as_str()).expect("timestamp");
        chrono::DateTime::parse_from_rfc3339(stamp).expect("rfc3339 timestamp").with_timezone(&chrono::Utc)
    }

    pub(crate) fn all_logs(&self) -> String {
        self.logs.lock().expect("logs").join("\n")
    }

    /// SIGKILL: no drain, no goodbye, connections dropped mid-call.
    pub(crate) async fn kill(&mut self) {
        self.child.kill().await.expect("kill bookingd");
    }
}

/// The address from bookingd's "bookingd serving" JSON log line.
fn serving_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    if !fields.get("message")?.as_str()?.starts_with("bookingd serving") {
        return None;
    }
    Some(fields.get("addr")?.as_str()?.to_owned())
}

pub(crate) async fn migrated_database() -> (String, PgPool) {
    let url = create_test_database().await;
    let pool = PgPool::connect(&url).await.expect("connect");
    bookingd::db::schema::prepare(&pool, false).await.expect("migrate");
    (url, pool)
}
