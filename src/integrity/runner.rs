//! Runs checks: each in its own short read-only snapshot, a few at once,
//! reporting each as it finishes.
//!
//! Safety towards bookings: a check is plain SELECTs in a `REPEATABLE READ,
//! READ ONLY` transaction, so it takes nothing stronger than ACCESS SHARE
//! locks (which conflict only with DDL), and `statement_timeout` /
//! `lock_timeout` bound how long it can hold or wait for them.
//!
//! Cancellation: dropping a result stream drops the running checks, but a
//! dropped sqlx future does not stop the statement on the server. Each check
//! therefore records its backend pid and tags its session
//! (`application_name`); the [`CheckSession`] guard, when dropped mid-check,
//! closes that connection instead of returning it to the pool and cancels the
//! backend's statement from another connection.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt, stream};
use sqlx::{PgPool, Postgres, pool::PoolConnection, types::Json};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::{
    checks::{self, Check, CheckStatus, JudgeContext, Observation, SampleRow},
    error::IntegrityError,
};
use crate::db::error::{DbErrorKind, classify, sqlstate};
use crate::telemetry::db_span;

/// Default and cap of sample rows per check.
pub const DEFAULT_SAMPLES: i64 = 10;
pub const MAX_SAMPLES: i64 = 100;
/// WatchChecks' default and shortest interval.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(60);
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// `application_name` prefix of a session while it runs a check: how
/// operators (and the cancellation guard) recognise check queries in
/// `pg_stat_activity`.
pub const SESSION_TAG_PREFIX: &str = "bookingd check ";

#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
    /// Checks running at once in this process, across all requests.
    pub concurrency: usize,
    /// `USE_LEGACY_BOOKING_SERVICE` pinned in the environment.
    pub legacy_pin: Option<bool>,
}

/// The result of one check, as reported to callers.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub name: &'static str,
    pub description: &'static str,
    pub status: CheckStatus,
    pub violation_count: i64,
    pub samples: Vec<SampleRow>,
    pub threshold: &'static str,
    pub observed: Option<f64>,
    pub duration: Duration,
    pub message: String,
    pub finished_at: DateTime<Utc>,
    /// 1 for a single run; counts up in a watch.
    pub round: i64,
}

/// Checks chosen by a request, validated, without duplicates, in request order.
#[derive(Debug, Clone)]
pub struct Selection {
    checks: Vec<&'static Check>,
}

impl Selection {
    /// Every check when `names` is empty; otherwise the named ones, or an
    /// error naming every unknown one.
    pub fn parse(names: &[String]) -> Result<Self, IntegrityError> {
        if names.is_empty() {
            return Ok(Selection { checks: checks::CHECKS.iter().collect() });
        }
        let mut selected: Vec<&'static Check> = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match checks::find(name.trim()) {
                Some(check) if !selected.iter().any(|s| s.name == check.name) => selected.push(check),
                Some(_) => {}
                None => unknown.push(name.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(IntegrityError::UnknownChecks { unknown });
        }
        Ok(Selection { checks: selected })
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.checks.iter().map(|check| check.name)
    }

    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// 0 means the default; more than the cap is capped.
pub fn sample_limit(requested: i32) -> Result<i64, IntegrityError> {
    match requested {
        n if n < 0 => Err(IntegrityError::NegativeSampleLimit { requested }),
        0 => Ok(DEFAULT_SAMPLES),
        n => Ok(i64::from(n).min(MAX_SAMPLES)),
    }
}

/// `None` means the default.
pub fn watch_interval(requested: Option<Duration>) -> Result<Duration, IntegrityError> {
    match requested {
        None => Ok(DEFAULT_WATCH_INTERVAL),
        Some(interval) if interval < MIN_WATCH_INTERVAL => {
            Err(IntegrityError::IntervalTooShort { requested: interval, minimum: MIN_WATCH_INTERVAL })
        }
        Some(interval) => Ok(interval),
    }
}

/// Runs checks against one database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IntegrityRunner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    settings: RunnerSettings,
    permits: Semaphore,
}

impl IntegrityRunner {
    pub fn new(pool: PgPool, settings: RunnerSettings) -> Self {
        let permits = Semaphore::new(settings.concurrency.max(1));
        IntegrityRunner { inner: Arc::new(Inner { pool, settings, permits }) }
    }

    /// RunChecks: validates the request, then streams one report per check
    /// as each finishes.
    pub fn run_checks(
        &self,
        names: &[String],
        max_samples: i32,
    ) -> Result<impl Stream<Item = CheckReport> + Send + 'static, IntegrityError> {
        let selection = Selection::parse(names)?;
        let limit = sample_limit(max_samples)?;
        tracing::info!(checks = selection.len(), "integrity run started");
        Ok(self.run_round(selection, limit, 1))
    }

    /// WatchChecks: validates the request, then reruns the selection every
    /// `interval` (measured from the start of one round to the start of the
    /// next; a round that overruns delays the next) until the stream is
    /// dropped.
    pub fn watch_checks(
        &self,
        names: &[String],
        max_samples: i32,
        interval: Option<Duration>,
    ) -> Result<impl Stream<Item = CheckReport> + Send + 'static, IntegrityError> {
        let selection = Selection::parse(names)?;
        let limit = sample_limit(max_samples)?;
        let interval = watch_interval(interval)?;
        tracing::info!(checks = selection.len(), interval_ms = interval.as_millis() as u64, "integrity watch started");
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let runner = self.clone();
        let rounds = stream::unfold((ticker, 0_i64), move |(mut ticker, round)| {
            let runner = runner.clone();
            let selection = selection.clone();
            async move {
                ticker.tick().await;
                let round = round + 1;
                Some((runner.run_round(selection, limit, round), (ticker, round)))
            }
        });
        Ok(rounds.flatten())
    }

    /// The selection's checks, at most `concurrency` at once, yielded in the
    /// order they finish.
    fn run_round(
        &self,
        selection: Selection,
        limit: i64,
        round: i64,
    ) -> impl Stream<Item = CheckReport> + Send + 'static + use<> {
        let runner = self.clone();
        let concurrency = self.inner.settings.concurrency.max(1);
        stream::iter(selection.checks)
            .map(move |check| runner.clone().run_one(check, limit, round))
            .buffer_unordered(concurrency)
    }

    async fn run_one(self, check: &'static Check, limit: i64, round: i64) -> CheckReport {
        let span = tracing::info_span!(
            "integrity.check",
            check.name = check.name,
            check.round = round,
            check.status = tracing::field::Empty
        );
        async move {
            // The process-wide bound: many watchers must not drain the pool
            // that bookings use.
            let _permit = self.inner.permits.acquire().await.expect("the check semaphore is never closed");
            let started = Instant::now();
            let outcome = self.observe(check, limit).await;
            let duration = started.elapsed();
            let context = JudgeContext { legacy_pin: self.inner.settings.legacy_pin };
            let (status, message, observation) = match outcome {
                Ok(Outcome::Observed(observation)) => {
                    let verdict = (check.judge)(&observation, &context);
                    (verdict.status, verdict.message, Some(observation))
                }
                Ok(Outcome::MissingRelation(missing)) => (CheckStatus::Fail, missing.to_owned(), None),
                Err(error) => {
                    tracing::warn!(check = check.name, error = %error.cause, "integrity check could not run");
                    (CheckStatus::Error, error.safe_message, None)
                }
            };
            let status_name = format!("{status:?}").to_lowercase();
            tracing::Span::current().record("check.status", status_name.as_str());
            crate::telemetry::metrics::check_result(check.name, &status_name);
            let (violation_count, observed, samples) = match observation {
                Some(o) => (o.violation_count, o.observed, o.samples),
                None if status == CheckStatus::Fail => (1, None, Vec::new()),
                None => (0, None, Vec::new()),
            };
            CheckReport {
                name: check.name,
                description: check.description,
                status,
                violation_count,
                samples,
                threshold: check.threshold,
                observed,
                duration,
                message,
                finished_at: Utc::now(),
                round,
            }
        }
        .instrument(span)
        .await
    }

    async fn observe(&self, check: &'static Check, limit: i64) -> Result<Outcome, RunFailure> {
        let settings = &self.inner.settings;
        let mut session = CheckSession::open(&self.inner.pool, check.name, settings).await?;
        let result = async {
            if let Some(required) = check.requires {
                let present: bool = sqlx::query_scalar("select to_regclass($1) is not null")
                    .bind(required.relation)
                    .fetch_one(session.connection())
                    .await?;
                if !present {
                    return Ok(Outcome::MissingRelation(required.missing));
                }
            }
            let row: CheckRow = sqlx::query_as(check.sql)
                .bind(limit)
                .fetch_one(session.connection())
                .instrument(db_span(check.name))
                .await?;
            Ok::<_, sqlx::Error>(Outcome::Observed(Observation {
                violation_count: row.violation_count,
                observed: row.observed,
                facts: row.facts.0,
                samples: row.samples.0,
            }))
        }
        .await
        .map_err(|error| RunFailure::from_sqlx(error, settings));
        session.finish().await;
        result
    }
}

enum Outcome {
    Observed(Observation),
    MissingRelation(&'static str),
}

#[derive(sqlx::FromRow)]
struct CheckRow {
    violation_count: i64,
    observed: Option<f64>,
    facts: Json<serde_json::Value>,
    samples: Json<Vec<SampleRow>>,
}

/// Why a check could not run: a message safe to send, and the cause to log.
#[derive(Debug)]
struct RunFailure {
    safe_message: String,
    cause: String,
}

impl RunFailure {
    fn from_sqlx(error: sqlx::Error, settings: &RunnerSettings) -> Self {
        let cause = error.to_string();
        let safe_message = match classify(&error) {
            DbErrorKind::Cancelled => format!(
                "the check's query was cancelled: it ran longer than the statement timeout ({} ms)",
                settings.statement_timeout.as_millis()
            ),
            DbErrorKind::LockTimeout => format!(
                "the check waited longer than the lock timeout ({} ms) for a table another session locks",
                settings.lock_timeout.as_millis()
            ),
            DbErrorKind::UndefinedObject => format!(
                "a database object the check reads is missing (SQLSTATE {}); see the server log",
                sqlstate(&error).unwrap_or_default()
            ),
            DbErrorKind::Unavailable => "the database is unavailable".to_owned(),
            _ => match sqlstate(&error) {
                Some(code) => format!("the check's query failed (SQLSTATE {code}); see the server log"),
                None => "the check could not run; see the server log".to_owned(),
            },
        };
        RunFailure { safe_message, cause }
    }
}

/// One check's connection and transaction. Dropped before [`finish`]
/// (the stream was dropped mid-check), it closes the connection and cancels
/// whatever the backend is still running for it.
///
/// [`finish`]: CheckSession::finish
struct CheckSession {
    connection: Option<PoolConnection<Postgres>>,
    pool: PgPool,
    tag: String,
    backend_pid: Option<i32>,
    in_flight: bool,
}

impl CheckSession {
    async fn open(pool: &PgPool, check: &'static str, settings: &RunnerSettings) -> Result<Self, RunFailure> {
        let connection = pool.acquire().await.map_err(|e| RunFailure::from_sqlx(e, settings))?;
        let tag = format!("{SESSION_TAG_PREFIX}{check}");
        let mut session = CheckSession {
            connection: Some(connection),
            pool: pool.clone(),
            tag: tag.clone(),
            backend_pid: None,
            in_flight: true,
        };
        let setup = async {
            sqlx::query("begin isolation level repeatable read, read only").execute(session.connection()).await?;
            // set_config(.., true) is SET LOCAL: all three revert when the
            // transaction ends, so a pooled connection keeps none of them.
            sqlx::query_scalar::<_, i32>(
                "select pg_backend_pid()
                 from (select set_config('statement_timeout', $1, true),
                              set_config('lock_timeout', $2, true),
                              set_config('application_name', $3, true)) as settings",
            )
            .bind(settings.statement_timeout.as_millis().to_string())
            .bind(settings.lock_timeout.as_millis().to_string())
            .bind(&tag)
            .fetch_one(session.connection())
            .await
        }
        .await;
        match setup {
            Ok(pid) => {
                session.backend_pid = Some(pid);
                Ok(session)
            }
            Err(error) => {
                session.finish().await;
                Err(RunFailure::from_sqlx(error, settings))
            }
        }
    }

    fn connection(&mut self) -> &mut sqlx::PgConnection {
        self.connection.as_mut().expect("the connection lives as long as the session")
    }

    /// Ends the (read-only) transaction and hands the connection back; a
    /// connection that cannot even roll back is closed instead.
    async fn finish(&mut self) {
        if sqlx::query("rollback").execute(self.connection()).await.is_err()
            && let Some(connection) = self.connection.as_mut()
        {
            connection.close_on_drop();
        }
        self.in_flight = false;
    }
}

impl Drop for CheckSession {
    fn drop(&mut self) {
        if !self.in_flight {
            return;
        }
        // Never hand a connection with a statement still running back to the pool.
        if let Some(connection) = self.connection.as_mut() {
            connection.close_on_drop();
        }
        let Some(pid) = self.backend_pid else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let pool = self.pool.clone();
        let tag = std::mem::take(&mut self.tag);
        runtime.spawn(cancel_backend(pool, pid, tag));
    }
}

/// Cancels the statement of a dropped check. The tag guards against
/// cancelling anything else: it is set only inside the check's transaction,
/// and the connection is never reused.
async fn cancel_backend(pool: PgPool, pid: i32, tag: String) {
    let cancelled = sqlx::query_scalar::<_, bool>(
        "select pg_cancel_backend(pid) from pg_stat_activity where pid = $1 and application_name = $2",
    )
    .bind(pid)
    .bind(&tag)
    .fetch_optional(&pool)
    .instrument(db_span("pg_cancel_backend"))
    .await;
    match cancelled {
        Ok(Some(true)) => tracing::info!(backend_pid = pid, session = %tag, "cancelled an abandoned check query"),
        Ok(_) => tracing::debug!(backend_pid = pid, "abandoned check had already finished"),
        Err(error) => tracing::warn!(backend_pid = pid, %error, "could not cancel an abandoned check query"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_all_reported_and_duplicates_collapse() {
        let names = ["flag_state", "nope", "flag_state", "also_nope"].map(String::from);
        match Selection::parse(&names) {
            Err(IntegrityError::UnknownChecks { unknown }) => assert_eq!(unknown, ["nope", "also_nope"]),
            other => panic!("expected unknown checks, got {other:?}"),
        }
        let selection = Selection::parse(&["flag_state".into(), "flag_state".into()]).expect("valid");
        assert_eq!(selection.names().collect::<Vec<_>>(), ["flag_state"]);
        assert_eq!(Selection::parse(&[]).expect("all").len(), checks::CHECKS.len());
    }

    #[test]
    fn sample_limits_default_cap_and_refuse_negatives() {
        assert_eq!(sample_limit(0).unwrap(), DEFAULT_SAMPLES);
        assert_eq!(sample_limit(3).unwrap(), 3);
        assert_eq!(sample_limit(1000).unwrap(), MAX_SAMPLES);
        assert!(sample_limit(-1).is_err());
    }

    #[test]
    fn watch_intervals_default_to_a_minute_and_refuse_less_than_a_second() {
        assert_eq!(watch_interval(None).unwrap(), DEFAULT_WATCH_INTERVAL);
        assert_eq!(watch_interval(Some(Duration::from_secs(1))).unwrap(), Duration::from_secs(1));
        assert!(watch_interval(Some(Duration::from_millis(999))).is_err());
    }
}
