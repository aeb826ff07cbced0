//! `booking.v1.IntegrityService` adapter.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::{
    grpc::status::not_built,
    proto::v1::{CheckResult, RunChecksRequest, WatchChecksRequest, integrity_service_server::IntegrityService},
};

pub type CheckStream = Pin<Box<dyn Stream<Item = Result<CheckResult, Status>> + Send + 'static>>;

#[derive(Debug, Clone, Default)]
pub struct IntegrityApi {}

#[tonic::async_trait]
impl IntegrityService for IntegrityApi {
    type RunChecksStream = CheckStream;
    type WatchChecksStream = CheckStream;

    async fn run_checks(&self, _request: Request<RunChecksRequest>) -> Result<Response<Self::RunChecksStream>, Status> {
        Err(not_built("RunChecks"))
    }

    async fn watch_checks(
        &self,
        _request: Request<WatchChecksRequest>,
    ) -> Result<Response<Self::WatchChecksStream>, Status> {
        Err(not_built("WatchChecks"))
    }
}
