//! `booking.v1.BookingService` adapter.

use tonic::{Request, Response, Status};

use crate::{
    grpc::status::not_built,
    proto::v1::{
        CancelBookingRequest, CancelBookingResponse, ConfirmBookingRequest, ConfirmBookingResponse,
        CreateBookingRequest, CreateBookingResponse, GetBookingRequest, GetBookingResponse, ListToursRequest,
        ListToursResponse, LookupJourneyRequest, LookupJourneyResponse, booking_service_server::BookingService,
    },
};

#[derive(Debug, Clone, Default)]
pub struct BookingApi {}

#[tonic::async_trait]
impl BookingService for BookingApi {
    async fn create_booking(
        &self,
        _request: Request<CreateBookingRequest>,
    ) -> Result<Response<CreateBookingResponse>, Status> {
        Err(not_built("CreateBooking"))
    }

    async fn confirm_booking(
        &self,
        _request: Request<ConfirmBookingRequest>,
    ) -> Result<Response<ConfirmBookingResponse>, Status> {
        Err(not_built("ConfirmBooking"))
    }

    async fn cancel_booking(
        &self,
        _request: Request<CancelBookingRequest>,
    ) -> Result<Response<CancelBookingResponse>, Status> {
        Err(not_built("CancelBooking"))
    }

    async fn get_booking(&self, _request: Request<GetBookingRequest>) -> Result<Response<GetBookingResponse>, Status> {
        Err(not_built("GetBooking"))
    }

    async fn lookup_journey(
        &self,
        _request: Request<LookupJourneyRequest>,
    ) -> Result<Response<LookupJourneyResponse>, Status> {
        Err(not_built("LookupJourney"))
    }

    async fn list_tours(&self, _request: Request<ListToursRequest>) -> Result<Response<ListToursResponse>, Status> {
        Err(not_built("ListTours"))
    }
}
