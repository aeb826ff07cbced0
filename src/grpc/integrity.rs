//! `booking.v1.IntegrityService` adapter: validates through the domain, then
//! streams its reports converted to `CheckResult` (rows → `Struct`,
//! `Duration`, `Timestamp`).

use std::pin::Pin;

use futures::{Stream, StreamExt, stream};
use prost_types::{ListValue, Struct, Value, value::Kind};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::{
    grpc::{
        convert::{duration, std_duration, timestamp},
        status::{ApiError, shutting_down},
    },
    integrity::{CheckReport, CheckStatus, IntegrityRunner},
    proto::v1::{self, CheckResult, RunChecksRequest, WatchChecksRequest, integrity_service_server::IntegrityService},
};

pub type CheckStream = Pin<Box<dyn Stream<Item = Result<CheckResult, Status>> + Send + 'static>>;

#[derive(Debug, Clone)]
pub struct IntegrityApi {
    runner: IntegrityRunner,
    /// The server's stop signal: an open watch would otherwise hold graceful
    /// shutdown forever.
    stop: CancellationToken,
}

impl IntegrityApi {
    pub fn new(runner: IntegrityRunner, stop: CancellationToken) -> Self {
        IntegrityApi { runner, stop }
    }

    /// Converts, and ends the stream with UNAVAILABLE when the server stops.
    fn respond(&self, reports: impl Stream<Item = CheckReport> + Send + 'static) -> CheckStream {
        let stop = self.stop.clone();
        let results = reports.map(|report| Ok(check_result(report))).take_until(stop.clone().cancelled_owned());
        let goodbye = stream::once(async move { stop.is_cancelled() })
            .filter_map(|stopped| async move { stopped.then(|| Err(shutting_down())) });
        Box::pin(results.chain(goodbye))
    }
}

#[tonic::async_trait]
impl IntegrityService for IntegrityApi {
    type RunChecksStream = CheckStream;
    type WatchChecksStream = CheckStream;

    async fn run_checks(&self, request: Request<RunChecksRequest>) -> Result<Response<Self::RunChecksStream>, Status> {
        let request = request.into_inner();
        let reports = self.runner.run_checks(&request.checks, request.max_samples).map_err(ApiError::from)?;
        Ok(Response::new(self.respond(reports)))
    }

    async fn watch_checks(
        &self,
        request: Request<WatchChecksRequest>,
    ) -> Result<Response<Self::WatchChecksStream>, Status> {
        let request = request.into_inner();
        // a negative duration is "too short" like any other below the minimum
        let interval = request.interval.map(|d| std_duration(d).unwrap_or_default());
        let reports =
            self.runner.watch_checks(&request.checks, request.max_samples, interval).map_err(ApiError::from)?;
        Ok(Response::new(self.respond(reports)))
    }
}

pub fn check_result(report: CheckReport) -> CheckResult {
    let status = match report.status {
        CheckStatus::Pass => v1::CheckStatus::Pass,
        CheckStatus::Warn => v1::CheckStatus::Warn,
        CheckStatus::Fail => v1::CheckStatus::Fail,
        CheckStatus::Error => v1::CheckStatus::Error,
    };
    CheckResult {
        name: report.name.to_owned(),
        description: report.description.to_owned(),
        status: status.into(),
        violation_count: report.violation_count,
        samples: report.samples.into_iter().map(json_object_to_struct).collect(),
        threshold: report.threshold.to_owned(),
        observed_value: report.observed,
        duration: Some(duration(report.duration)),
        message: report.message,
        finished_at: Some(timestamp(report.finished_at)),
        round: report.round,
    }
}

pub fn json_object_to_struct(object: serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct { fields: object.into_iter().map(|(key, value)| (key, json_to_value(value))).collect() }
}

fn json_to_value(value: serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        // Struct numbers are doubles: exact for counts, cents and seats (< 2^53)
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.into_iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(object) => Kind::StructValue(json_object_to_struct(object)),
    };
    Value { kind: Some(kind) }
}

/// The way back, for clients (bookingctl's `--json`, tests). Whole numbers
/// come back as integers.
pub fn struct_to_json(value: &Struct) -> serde_json::Value {
    serde_json::Value::Object(value.fields.iter().map(|(key, value)| (key.clone(), value_to_json(value))).collect())
}

fn value_to_json(value: &Value) -> serde_json::Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            serde_json::Value::from(*n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(object)) => struct_to_json(object),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sample_rows_survive_the_trip_through_struct() {
        let row = json!({"tour_id": "7d0c", "seats": 3, "rate": 12.5, "nested": {"ok": true, "list": [1, null]}});
        let serde_json::Value::Object(object) = row.clone() else { unreachable!() };
        assert_eq!(struct_to_json(&json_object_to_struct(object)), row);
    }

    #[test]
    fn check_results_carry_duration_and_finish_time() {
        let finished_at = chrono::DateTime::from_timestamp(1_700_000_000, 5).expect("valid");
        let result = check_result(CheckReport {
            name: "flag_state",
            description: "d",
            status: CheckStatus::Warn,
            violation_count: 0,
            samples: Vec::new(),
            threshold: "t",
            observed: None,
            duration: std::time::Duration::from_millis(1500),
            message: "m".into(),
            finished_at,
            round: 2,
        });
        assert_eq!(result.status(), v1::CheckStatus::Warn);
        assert_eq!(result.duration, Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(result.finished_at, Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }));
    }
}
