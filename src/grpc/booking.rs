//! `booking.v1.BookingService` adapter: unpack, call [`Bookings`], convert.
//! Domain → proto conversions live here and nowhere else.

use tonic::{Request, Response, Status};

use crate::{
    booking::{
        BookingKey, Bookings,
        service::{JourneyQuery, TourQuery},
        types::{self, BookingStatus, CodePath, CreateBookingInput},
    },
    grpc::{auth::principal, convert::timestamp, status::ApiError},
    proto::v1::{
        self, CancelBookingRequest, CancelBookingResponse, ConfirmBookingRequest, ConfirmBookingResponse,
        CreateBookingRequest, CreateBookingResponse, GetBookingRequest, GetBookingResponse, ListToursRequest,
        ListToursResponse, LookupJourneyRequest, LookupJourneyResponse, booking_service_server::BookingService,
        get_booking_request::Key,
    },
};

#[derive(Debug, Clone)]
pub struct BookingApi {
    bookings: Bookings,
}

impl BookingApi {
    pub fn new(bookings: Bookings) -> Self {
        BookingApi { bookings }
    }
}

fn to_status(error: crate::booking::BookingError) -> Status {
    ApiError::from(error).into()
}

#[tonic::async_trait]
impl BookingService for BookingApi {
    async fn create_booking(
        &self,
        request: Request<CreateBookingRequest>,
    ) -> Result<Response<CreateBookingResponse>, Status> {
        let created_by = principal(&request)?.name().to_owned();
        let request = request.into_inner();
        let input = CreateBookingInput {
            created_by,
            request_id: request.request_id,
            tour_id: request.tour_id,
            num_adults: request.num_adults,
            num_children: request.num_children,
            customer_name: request.customer_name,
            customer_email: request.customer_email,
            customer_whatsapp: request.customer_whatsapp,
            hold_seconds: request.hold_seconds,
            user_id: request.user_id,
        };
        let created = self.bookings.create(input).await.map_err(to_status)?;
        Ok(Response::new(CreateBookingResponse {
            booking: Some(booking_to_proto(created.booking)),
            replayed: created.replayed,
        }))
    }

    async fn confirm_booking(
        &self,
        request: Request<ConfirmBookingRequest>,
    ) -> Result<Response<ConfirmBookingResponse>, Status> {
        let booking = self.bookings.confirm(&request.into_inner().booking_id).await.map_err(to_status)?;
        Ok(Response::new(ConfirmBookingResponse { booking: Some(booking_to_proto(booking)) }))
    }

    async fn cancel_booking(
        &self,
        request: Request<CancelBookingRequest>,
    ) -> Result<Response<CancelBookingResponse>, Status> {
        let cancelled_by = crate::grpc::auth::principal(&request)?.name().to_owned();
        let request = request.into_inner();
        let cancelled =
            self.bookings.cancel(&request.booking_id, &request.reason, &cancelled_by).await.map_err(to_status)?;
        Ok(Response::new(CancelBookingResponse {
            booking: Some(booking_to_proto(cancelled.booking)),
            seats_released: cancelled.seats_released,
        }))
    }

    async fn get_booking(&self, request: Request<GetBookingRequest>) -> Result<Response<GetBookingResponse>, Status> {
        let key = match request.into_inner().key {
            Some(Key::BookingId(id)) => BookingKey::Id(id),
            Some(Key::BookingReference(reference)) => BookingKey::Reference(reference),
            None => {
                return Err(ApiError::invalid_field("booking_id", "give booking_id or booking_reference").into());
            }
        };
        let booking = self.bookings.get(key).await.map_err(to_status)?;
        Ok(Response::new(GetBookingResponse { booking: Some(booking_to_proto(booking)) }))
    }

    async fn lookup_journey(
        &self,
        request: Request<LookupJourneyRequest>,
    ) -> Result<Response<LookupJourneyResponse>, Status> {
        let request = request.into_inner();
        let query = JourneyQuery {
            customer_email: request.customer_email,
            customer_whatsapp: request.customer_whatsapp,
            page_size: request.page_size,
            page_token: request.page_token,
        };
        let page = self.bookings.lookup_journey(query).await.map_err(to_status)?;
        Ok(Response::new(LookupJourneyResponse {
            entries: page.entries.into_iter().map(journey_entry_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
            used_fallback: page.used_fallback,
        }))
    }

    async fn list_tours(&self, request: Request<ListToursRequest>) -> Result<Response<ListToursResponse>, Status> {
        let request = request.into_inner();
        let query = TourQuery {
            from_date: request.from_date,
            to_date: request.to_date,
            template_id: request.template_id,
            only_available: request.only_available,
            page_size: request.page_size,
            page_token: request.page_token,
        };
        let page = self.bookings.list_tours(query).await.map_err(to_status)?;
        Ok(Response::new(ListToursResponse {
            tours: page.tours.into_iter().map(tour_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}

fn status_to_proto(status: BookingStatus) -> v1::BookingStatus {
    match status {
        BookingStatus::Pending => v1::BookingStatus::Pending,
        BookingStatus::Confirmed => v1::BookingStatus::Confirmed,
        BookingStatus::Cancelled => v1::BookingStatus::Cancelled,
        BookingStatus::Expired => v1::BookingStatus::Expired,
    }
}

fn code_path_to_proto(path: CodePath) -> v1::CodePath {
    match path {
        CodePath::Atomic => v1::CodePath::Atomic,
        CodePath::Legacy => v1::CodePath::Legacy,
    }
}

pub fn booking_to_proto(booking: types::Booking) -> v1::Booking {
    v1::Booking {
        id: booking.id.to_string(),
        booking_reference: booking.booking_reference,
        tour_id: booking.tour_id.to_string(),
        schedule_id: booking.schedule_id.map(|id| id.to_string()),
        operator_id: booking.operator_id.to_string(),
        customer_name: booking.customer_name,
        customer_email: booking.customer_email,
        customer_whatsapp: booking.customer_whatsapp,
        num_adults: booking.num_adults,
        num_children: booking.num_children,
        subtotal_cents: booking.subtotal_cents,
        commission_amount_cents: booking.commission_amount_cents,
        total_amount_cents: booking.total_amount_cents,
        applied_commission_rate: booking.applied_commission_rate.to_string(),
        currency_code: booking.currency_code,
        status: status_to_proto(booking.status).into(),
        code_path: code_path_to_proto(booking.code_path).into(),
        request_id: booking.request_id,
        hold_expires_at: booking.hold_expires_at.map(timestamp),
        created_at: Some(timestamp(booking.created_at)),
        updated_at: Some(timestamp(booking.updated_at)),
        confirmed_at: booking.confirmed_at.map(timestamp),
        cancelled_at: booking.cancelled_at.map(timestamp),
    }
}

fn journey_entry_to_proto(entry: types::JourneyEntry) -> v1::JourneyEntry {
    v1::JourneyEntry {
        booking: Some(booking_to_proto(entry.booking)),
        tour_name: entry.tour_name,
        template_name: entry.template_name,
        tour_date: entry.tour_date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default(),
        time_slot: entry.time_slot.unwrap_or_default(),
        operator_company: entry.operator_company,
        schedule_id: entry.schedule_id.map(|id| id.to_string()),
    }
}

fn tour_to_proto(tour: types::TourListing) -> v1::Tour {
    v1::Tour {
        id: tour.id.to_string(),
        tour_name: tour.tour_name,
        template_id: tour.template_id.map(|id| id.to_string()),
        template_name: tour.template_name,
        schedule_id: tour.schedule_id.map(|id| id.to_string()),
        tour_date: tour.tour_date.format("%Y-%m-%d").to_string(),
        time_slot: tour.time_slot.unwrap_or_default(),
        max_capacity: tour.max_capacity,
        available_spots: tour.available_spots,
        adult_price_cents: tour.adult_price_cents,
        child_price_cents: tour.child_price_cents,
        currency_code: tour.currency_code,
        status: tour.status,
        operator_id: tour.operator_id.to_string(),
        operator_company: tour.operator_company,
        commission_rate: tour.commission_rate.to_string(),
    }
}
