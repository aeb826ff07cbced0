//! What the booking domain answers with: a booking as stored, its status
//! and code path, the outcome of a creation or a cancellation, and the pages
//! of journeys and tours. Plain data; validation lives in [`super::types`].

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::types::{BookingId, TourId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookingStatus {
    Pending,
    Confirmed,
    Cancelled,
    Expired,
}

impl BookingStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            BookingStatus::Pending => "pending",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(BookingStatus::Pending),
            "confirmed" => Some(BookingStatus::Confirmed),
            "cancelled" => Some(BookingStatus::Cancelled),
            "expired" => Some(BookingStatus::Expired),
            _ => None,
        }
    }

    /// Pending and confirmed bookings hold seats.
    pub fn holds_seats(&self) -> bool {
        matches!(self, BookingStatus::Pending | BookingStatus::Confirmed)
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which code path created a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePath {
    Atomic,
    Legacy,
}

impl CodePath {
    pub fn as_str(&self) -> &'static str {
        match self {
            CodePath::Atomic => "atomic",
            CodePath::Legacy => "legacy",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "atomic" => Some(CodePath::Atomic),
            "legacy" => Some(CodePath::Legacy),
            _ => None,
        }
    }
}

/// A booking as stored. Money is integer cents in `currency_code`.
#[derive(Debug, Clone, PartialEq)]
pub struct Booking {
    pub id: BookingId,
    pub booking_reference: String,
    pub request_id: String,
    pub request_fingerprint: String,
    pub tour_id: TourId,
    pub schedule_id: Option<Uuid>,
    pub operator_id: Uuid,
    pub user_id: Option<Uuid>,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub customer_whatsapp: Option<String>,
    pub num_adults: i32,
    pub num_children: i32,
    pub subtotal_cents: i64,
    pub commission_amount_cents: i64,
    /// What the customer pays: the subtotal (commission is the marketplace's share of it).
    pub total_amount_cents: i64,
    /// Percent, e.g. 12.50.
    pub applied_commission_rate: Decimal,
    pub currency_code: String,
    pub status: BookingStatus,
    pub code_path: CodePath,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancellation_reason: Option<String>,
    pub seats_released_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Booking {
    pub fn seats(&self) -> i32 {
        self.num_adults + self.num_children
    }
}

/// A new booking and whether it replays an earlier request with the same key.
#[derive(Debug, Clone)]
pub struct Created {
    pub booking: Booking,
    pub replayed: bool,
}

/// A cancellation's outcome: false when the booking had already ended.
#[derive(Debug, Clone)]
pub struct Cancelled {
    pub booking: Booking,
    pub seats_released: bool,
}

/// One line of a customer's journey.
#[derive(Debug, Clone)]
pub struct JourneyEntry {
    pub booking: Booking,
    pub tour_name: String,
    pub template_name: Option<String>,
    pub tour_date: Option<NaiveDate>,
    pub time_slot: Option<String>,
    pub operator_company: String,
    pub schedule_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct JourneyPage {
    pub entries: Vec<JourneyEntry>,
    pub next_page_token: Option<String>,
    /// True when the enhanced view was missing or incomplete (runbook scenario 3).
    pub used_fallback: bool,
}

/// A bookable tour as a booking page shows it.
#[derive(Debug, Clone)]
pub struct TourListing {
    pub id: TourId,
    pub tour_name: String,
    pub template_id: Option<Uuid>,
    pub template_name: Option<String>,
    pub schedule_id: Option<Uuid>,
    pub tour_date: NaiveDate,
    pub time_slot: Option<String>,
    pub max_capacity: i32,
    pub available_spots: i32,
    pub adult_price_cents: i64,
    pub child_price_cents: i64,
    pub currency_code: String,
    pub status: String,
    pub operator_id: Uuid,
    pub operator_company: String,
    pub commission_rate: Decimal,
}

#[derive(Debug, Clone)]
pub struct TourPage {
    pub tours: Vec<TourListing>,
    pub next_page_token: Option<String>,
}
