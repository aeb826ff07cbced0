//! `booking.v1.AdminService` adapter.

use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    flags::Flags,
    grpc::{
        auth::operator,
        flags::{atomic_path, changes_response, flag_response, key_or_default},
        status::{ApiError, not_built},
    },
    proto::v1::{
        ClampNegativeAvailabilityRequest, ClampNegativeAvailabilityResponse, DeployFunctionsRequest,
        DeployFunctionsResponse, GetFlagRequest, GetFlagResponse, ListFlagChangesRequest, ListFlagChangesResponse,
        PauseBookingsRequest, PauseBookingsResponse, RepairAvailabilityRequest, RepairAvailabilityResponse,
        ResumeBookingsRequest, ResumeBookingsResponse, RollbackFunctionsRequest, RollbackFunctionsResponse,
        SetFlagRequest, SetFlagResponse, admin_service_server::AdminService,
    },
};

#[derive(Debug, Clone)]
pub struct AdminApi {
    pool: PgPool,
    flags: Flags,
}

impl AdminApi {
    pub fn new(pool: PgPool, flags: Flags) -> Self {
        AdminApi { pool, flags }
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_flag(&self, request: Request<GetFlagRequest>) -> Result<Response<GetFlagResponse>, Status> {
        let key = key_or_default(&request.get_ref().key);
        let state = self.flags.describe(key).await.map_err(ApiError::from)?;
        Ok(Response::new(flag_response(state, atomic_path(&self.pool).await)))
    }

    async fn set_flag(&self, request: Request<SetFlagRequest>) -> Result<Response<SetFlagResponse>, Status> {
        let changed_by = operator(&request);
        let SetFlagRequest { key, enabled, reason } = request.get_ref();
        let changed =
            self.flags.set(key_or_default(key), *enabled, &changed_by, reason).await.map_err(ApiError::from)?;
        Ok(Response::new(SetFlagResponse {
            flag: Some(flag_response(changed.flag, atomic_path(&self.pool).await)),
            previous: changed.previous,
        }))
    }

    async fn list_flag_changes(
        &self,
        request: Request<ListFlagChangesRequest>,
    ) -> Result<Response<ListFlagChangesResponse>, Status> {
        let ListFlagChangesRequest { key, page_size, page_token } = request.get_ref();
        let key = (!key.is_empty()).then_some(key.as_str());
        let page = self.flags.changes(key, *page_size, page_token).await.map_err(ApiError::from)?;
        Ok(Response::new(changes_response(page)))
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
