//! `booking.v1.AdminService` adapter.

use tonic::{Request, Response, Status};

use crate::{
    grpc::status::not_built,
    proto::v1::{
        ClampNegativeAvailabilityRequest, ClampNegativeAvailabilityResponse, DeployFunctionsRequest,
        DeployFunctionsResponse, GetFlagRequest, GetFlagResponse, ListFlagChangesRequest, ListFlagChangesResponse,
        PauseBookingsRequest, PauseBookingsResponse, RepairAvailabilityRequest, RepairAvailabilityResponse,
        ResumeBookingsRequest, ResumeBookingsResponse, RollbackFunctionsRequest, RollbackFunctionsResponse,
        SetFlagRequest, SetFlagResponse, admin_service_server::AdminService,
    },
};

#[derive(Debug, Clone, Default)]
pub struct AdminApi {}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_flag(&self, _request: Request<GetFlagRequest>) -> Result<Response<GetFlagResponse>, Status> {
        Err(not_built("GetFlag"))
    }

    async fn set_flag(&self, _request: Request<SetFlagRequest>) -> Result<Response<SetFlagResponse>, Status> {
        Err(not_built("SetFlag"))
    }

    async fn list_flag_changes(
        &self,
        _request: Request<ListFlagChangesRequest>,
    ) -> Result<Response<ListFlagChangesResponse>, Status> {
        Err(not_built("ListFlagChanges"))
    }

    async fn repair_availability(
        &self,
        _request: Request<RepairAvailabilityRequest>,
    ) -> Result<Response<RepairAvailabilityResponse>, Status> {
        Err(not_built("RepairAvailability"))
    }

    async fn clamp_negative_availability(
        &self,
        _request: Request<ClampNegativeAvailabilityRequest>,
    ) -> Result<Response<ClampNegativeAvailabilityResponse>, Status> {
        Err(not_built("ClampNegativeAvailability"))
    }

    async fn pause_bookings(
        &self,
        _request: Request<PauseBookingsRequest>,
    ) -> Result<Response<PauseBookingsResponse>, Status> {
        Err(not_built("PauseBookings"))
    }

    async fn resume_bookings(
        &self,
        _request: Request<ResumeBookingsRequest>,
    ) -> Result<Response<ResumeBookingsResponse>, Status> {
        Err(not_built("ResumeBookings"))
    }

    async fn deploy_functions(
        &self,
        _request: Request<DeployFunctionsRequest>,
    ) -> Result<Response<DeployFunctionsResponse>, Status> {
        Err(not_built("DeployFunctions"))
    }

    async fn rollback_functions(
        &self,
        _request: Request<RollbackFunctionsRequest>,
    ) -> Result<Response<RollbackFunctionsResponse>, Status> {
        Err(not_built("RollbackFunctions"))
    }
}
