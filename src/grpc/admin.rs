//! `booking.v1.AdminService` adapter. The layer in [`super::auth`] has
//! already authenticated the caller and checked its role; handlers pass the
//! principal's name to the domain for the audit trail.

use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::{
    admin::{self, TourChange, functions::DeploymentCheck as DomainCheck},
    booking::AtomicPathStatus,
    flags::Flags,
    grpc::{
        auth::{principal, require_operator_to_apply},
        flags::{changes_response, flag_response, key_or_default},
        status::ApiError,
    },
    proto::v1::{
        ClampNegativeAvailabilityRequest, ClampNegativeAvailabilityResponse, DeployFunctionsRequest,
        DeployFunctionsResponse, DeploymentCheck, GetFlagRequest, GetFlagResponse, ListFlagChangesRequest,
        ListFlagChangesResponse, PauseBookingsRequest, PauseBookingsResponse, RepairAvailabilityRequest,
        RepairAvailabilityResponse, ResumeBookingsRequest, ResumeBookingsResponse, RollbackFunctionsRequest,
        RollbackFunctionsResponse, SetFlagRequest, SetFlagResponse, TourAvailabilityChange,
        admin_service_server::AdminService,
    },
};

#[derive(Debug, Clone)]
pub struct AdminApi {
    pool: PgPool,
    flags: Flags,
    /// The booking service's atomic-path status, reported by GetFlag.
    atomic_path: AtomicPathStatus,
}

impl AdminApi {
    pub fn new(pool: PgPool, flags: Flags, atomic_path: AtomicPathStatus) -> Self {
        AdminApi { pool, flags, atomic_path }
    }
}

fn tour_change(change: TourChange) -> TourAvailabilityChange {
    TourAvailabilityChange {
        tour_id: change.tour_id.to_string(),
        tour_name: change.tour_name,
        max_capacity: change.max_capacity,
        available_spots_before: change.available_spots_before,
        available_spots_after: change.available_spots_after,
        live_seats: change.live_seats,
    }
}

fn deployment_check(check: DomainCheck) -> DeploymentCheck {
    DeploymentCheck { name: check.name.to_owned(), passed: check.passed, detail: check.detail.to_owned() }
}

fn to_strings(ids: Vec<uuid::Uuid>) -> Vec<String> {
    ids.into_iter().map(|id| id.to_string()).collect()
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn get_flag(&self, request: Request<GetFlagRequest>) -> Result<Response<GetFlagResponse>, Status> {
        let key = key_or_default(&request.get_ref().key);
        let state = self.flags.describe(key).await.map_err(ApiError::from)?;
        Ok(Response::new(flag_response(state, &self.atomic_path.current())))
    }

    async fn set_flag(&self, request: Request<SetFlagRequest>) -> Result<Response<SetFlagResponse>, Status> {
        let changed_by = principal(&request)?.name().to_owned();
        let SetFlagRequest { key, enabled, reason } = request.get_ref();
        let changed =
            self.flags.set(key_or_default(key), *enabled, &changed_by, reason).await.map_err(ApiError::from)?;
        Ok(Response::new(SetFlagResponse {
            flag: Some(flag_response(changed.flag, &self.atomic_path.current())),
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
        request: Request<RepairAvailabilityRequest>,
    ) -> Result<Response<RepairAvailabilityResponse>, Status> {
        let caller = principal(&request)?;
        let RepairAvailabilityRequest { apply, tour_ids, reason } = request.into_inner();
        if apply {
            require_operator_to_apply(&caller)?;
        }
        let actor = caller.name().to_owned();
        let outcome = admin::repair::repair_availability(
            &self.pool,
            &actor,
            admin::repair::RepairRequest { apply, tour_ids, reason },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(Response::new(RepairAvailabilityResponse {
            changes: outcome.changes.into_iter().map(tour_change).collect(),
            applied: outcome.applied,
            tours_examined: i32::try_from(outcome.tours_examined).unwrap_or(i32::MAX),
            overbooked_tour_ids: to_strings(outcome.overbooked),
            incident_id: outcome.incident_id.unwrap_or(0),
        }))
    }

    async fn clamp_negative_availability(
        &self,
        request: Request<ClampNegativeAvailabilityRequest>,
    ) -> Result<Response<ClampNegativeAvailabilityResponse>, Status> {
        let actor = principal(&request)?.name().to_owned();
        let outcome = admin::clamp::clamp_negative_availability(&self.pool, &actor, &request.into_inner().reason)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(ClampNegativeAvailabilityResponse {
            changes: outcome.changes.into_iter().map(tour_change).collect(),
            incident_id: outcome.incident_id.unwrap_or(0),
        }))
    }

    async fn pause_bookings(
        &self,
        request: Request<PauseBookingsRequest>,
    ) -> Result<Response<PauseBookingsResponse>, Status> {
        let actor = principal(&request)?.name().to_owned();
        let PauseBookingsRequest { tour_ids, reason } = request.into_inner();
        let pause =
            admin::pause::pause_bookings(&self.pool, &actor, &tour_ids, &reason).await.map_err(ApiError::from)?;
        Ok(Response::new(PauseBookingsResponse {
            pause_id: pause.pause_id.to_string(),
            paused_tour_ids: to_strings(pause.tour_ids),
        }))
    }

    async fn resume_bookings(
        &self,
        request: Request<ResumeBookingsRequest>,
    ) -> Result<Response<ResumeBookingsResponse>, Status> {
        let actor = principal(&request)?.name().to_owned();
        let ResumeBookingsRequest { pause_id, tour_ids, reason } = request.into_inner();
        let resumed = admin::pause::resume_bookings(&self.pool, &actor, &pause_id, &tour_ids, &reason)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(ResumeBookingsResponse {
            resumed_tour_ids: to_strings(resumed.tour_ids),
            left_alone_tour_ids: to_strings(resumed.left_alone),
        }))
    }

    async fn deploy_functions(
        &self,
        request: Request<DeployFunctionsRequest>,
    ) -> Result<Response<DeployFunctionsResponse>, Status> {
        let actor = principal(&request)?.name().to_owned();
        let checks = admin::functions::deploy_functions(&self.pool, &actor, &request.into_inner().reason)
            .await
            .map_err(ApiError::from)?;
        // the booking service and GetFlag see the change now, not a probe later
        self.atomic_path.probe(&self.pool).await;
        Ok(Response::new(DeployFunctionsResponse { checks: checks.into_iter().map(deployment_check).collect() }))
    }

    async fn rollback_functions(
        &self,
        request: Request<RollbackFunctionsRequest>,
    ) -> Result<Response<RollbackFunctionsResponse>, Status> {
        let actor = principal(&request)?.name().to_owned();
        let checks = admin::functions::rollback_functions(&self.pool, &actor, &request.into_inner().reason)
            .await
            .map_err(ApiError::from)?;
        // the booking service and GetFlag see the change now, not a probe later
        self.atomic_path.probe(&self.pool).await;
        Ok(Response::new(RollbackFunctionsResponse { checks: checks.into_iter().map(deployment_check).collect() }))
    }
}
