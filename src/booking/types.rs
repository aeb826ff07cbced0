//! Booking value types with checked constructors: ids, seat counts, contact
//! details and the validated creation request. What the domain answers with
//! (the booking as stored, statuses, pages) is in [`super::records`],
//! re-exported here.
//!
//! Validation happens here, before anything touches the database: a request
//! that reaches a code path is well formed, so both paths refuse the same
//! inputs in the same way.

use std::{fmt, time::Duration};

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use super::records::{
    Booking, BookingStatus, Cancelled, CodePath, Created, JourneyEntry, JourneyPage, TourListing, TourPage,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookingId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TourId(pub Uuid);

impl BookingId {
    pub fn new_random() -> Self {
        BookingId(Uuid::new_v4())
    }

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldProblem> {
        parse_uuid(field, raw).map(BookingId)
    }
}

impl TourId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldProblem> {
        parse_uuid(field, raw).map(TourId)
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for TourId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One bad field of a request: which one and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub description: String,
}

impl FieldProblem {
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        FieldProblem { field, description: description.into() }
    }
}

impl From<crate::page::PageError> for FieldProblem {
    fn from(error: crate::page::PageError) -> Self {
        FieldProblem::new(error.field(), error.to_string())
    }
}

/// Accepts the canonical hyphenated form only (36 characters): other forms
/// parse too, but a caller sending them is more likely confused than clever.
fn parse_uuid(field: &'static str, raw: &str) -> Result<Uuid, FieldProblem> {
    if raw.is_empty() {
        return Err(FieldProblem::new(field, "is required"));
    }
    if raw.len() != 36 {
        return Err(FieldProblem::new(field, "must be a UUID like 123e4567-e89b-12d3-a456-426614174000"));
    }
    Uuid::try_parse(raw)
        .map_err(|_| FieldProblem::new(field, "must be a UUID like 123e4567-e89b-12d3-a456-426614174000"))
}

/// Seats of one booking: counts never negative, together between 1 and the
/// configured maximum (so the sum cannot overflow an i32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    adults: i32,
    children: i32,
}

impl Seats {
    pub fn parse(adults: i32, children: i32, max_per_booking: i32) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        if adults < 0 {
            problems.push(FieldProblem::new("num_adults", "must not be negative"));
        }
        if children < 0 {
            problems.push(FieldProblem::new("num_children", "must not be negative"));
        }
        if problems.is_empty() {
            // i64: i32::MAX + i32::MAX must not wrap into something small
            let total = i64::from(adults) + i64::from(children);
            if total < 1 {
                problems.push(FieldProblem::new("num_adults", "a booking needs at least one seat"));
            } else if total > i64::from(max_per_booking) {
                problems.push(FieldProblem::new(
                    "num_adults",
                    format!("at most {max_per_booking} seats (adults + children) per booking"),
                ));
            }
        }
        if problems.is_empty() { Ok(Seats { adults, children }) } else { Err(problems) }
    }

    pub fn adults(&self) -> i32 {
        self.adults
    }

    pub fn children(&self) -> i32 {
        self.children
    }

    pub fn total(&self) -> i32 {
        self.adults + self.children
    }
}

/// The caller's idempotency key: 1..=128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, FieldProblem> {
        if raw.is_empty() {
            return Err(FieldProblem::new("request_id", "is required (an idempotency key, e.g. a UUID)"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(FieldProblem::new("request_id", format!("must be at most {} characters", Self::MAX_LEN)));
        }
        if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(FieldProblem::new("request_id", "must be printable ASCII"));
        }
        Ok(RequestId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 1..=200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerName(String);

impl CustomerName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, FieldProblem> {
        // bytes first: a 1 MB name is refused without walking its characters
        if raw.len() > Self::MAX_CHARS * 4 {
            return Err(FieldProblem::new("customer_name", format!("must be at most {} characters", Self::MAX_CHARS)));
        }
        if raw.chars().any(char::is_control) {
            return Err(FieldProblem::new("customer_name", "must not contain control characters"));
        }
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(FieldProblem::new("customer_name", "is required"));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldProblem::new("customer_name", format!("must be at most {} characters", Self::MAX_CHARS)));
        }
        Ok(CustomerName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A syntactically valid address (ASCII, `local@domain.tld`, at most 254
/// characters). Whether it receives mail is not ours to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub const MAX_LEN: usize = 254;

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldProblem> {
        if raw.len() > Self::MAX_LEN {
            return Err(FieldProblem::new(field, format!("must be at most {} characters", Self::MAX_LEN)));
        }
        if email_is_valid(raw) {
            Ok(EmailAddress(raw.to_owned()))
        } else {
            Err(FieldProblem::new(field, "must be an email address like name@example.com"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn email_is_valid(raw: &str) -> bool {
    let Some((local, domain)) = raw.split_once('@') else { return false };
    const LOCAL_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || LOCAL_SPECIALS.contains(&b));
    if !local_ok || domain.is_empty() || domain.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let labels_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let top_level = labels.last().copied().unwrap_or_default();
    labels_ok && top_level.len() >= 2 && !top_level.bytes().all(|b| b.is_ascii_digit())
}

/// A WhatsApp number in E.164 form: `+`, country code, subscriber number, 8 to
/// 15 digits in all, e.g. `+4915112345678`. Same rule as the schema's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsAppNumber(String);

impl WhatsAppNumber {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, FieldProblem> {
        let digits = raw.strip_prefix('+').unwrap_or("");
        let valid =
            (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if valid {
            Ok(WhatsAppNumber(raw.to_owned()))
        } else {
            Err(FieldProblem::new(field, "must be an E.164 number like +4915112345678"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// At least one way to reach the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    email: Option<EmailAddress>,
    whatsapp: Option<WhatsAppNumber>,
}

impl Contact {
    /// Empty strings mean "not given" (proto3 strings have no null).
    pub fn parse(
        email_field: &'static str,
        email: &str,
        whatsapp_field: &'static str,
        whatsapp: &str,
    ) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let email = (!email.is_empty())
            .then(|| EmailAddress::parse(email_field, email))
            .transpose()
            .map_err(|p| problems.push(p))
            .ok()
            .flatten();
        let whatsapp = (!whatsapp.is_empty())
            .then(|| WhatsAppNumber::parse(whatsapp_field, whatsapp))
            .transpose()
            .map_err(|p| problems.push(p))
            .ok()
            .flatten();
        if !problems.is_empty() {
            return Err(problems);
        }
        if email.is_none() && whatsapp.is_none() {
            return Err(vec![FieldProblem::new(email_field, "give an email address or a WhatsApp number (or both)")]);
        }
        Ok(Contact { email, whatsapp })
    }

    pub fn email(&self) -> Option<&EmailAddress> {
        self.email.as_ref()
    }

    pub fn whatsapp(&self) -> Option<&WhatsAppNumber> {
        self.whatsapp.as_ref()
    }
}

/// What the API hands the domain for CreateBooking, unchecked.
#[derive(Debug, Clone, Default)]
pub struct CreateBookingInput {
    /// The calling principal's name: idempotency keys are scoped to it.
    pub created_by: String,
    pub request_id: String,
    pub tour_id: String,
    pub num_adults: i32,
    pub num_children: i32,
    pub customer_name: String,
    pub customer_email: String,
    pub customer_whatsapp: String,
    pub hold_seconds: Option<i32>,
    pub user_id: Option<String>,
}

/// Limits from the settings that validation needs.
#[derive(Debug, Clone, Copy)]
pub struct BookingRules {
    pub max_seats_per_booking: i32,
    /// The longest (and default) hold; a request may ask for less.
    pub hold: Duration,
}

/// A CreateBooking request that passed validation.
#[derive(Debug, Clone)]
pub struct BookingRequest {
    /// Whose idempotency key `request_id` is (the principal's name).
    pub created_by: String,
    pub request_id: RequestId,
    pub tour_id: TourId,
    pub seats: Seats,
    pub customer_name: CustomerName,
    pub contact: Contact,
    pub user_id: Option<Uuid>,
    /// The hold this booking gets: the request's, capped at the configured one.
    pub hold: Duration,
    /// What the caller asked for, part of the fingerprint.
    requested_hold_seconds: Option<i32>,
}

impl BookingRequest {
    /// Checks every field and reports every problem at once.
    pub fn parse(input: &CreateBookingInput, rules: &BookingRules) -> Result<Self, Vec<FieldProblem>> {
        let mut problems = Vec::new();
        let request_id = RequestId::parse(&input.request_id).map_err(|p| problems.push(p)).ok();
        let tour_id = TourId::parse("tour_id", &input.tour_id).map_err(|p| problems.push(p)).ok();
        let seats = Seats::parse(input.num_adults, input.num_children, rules.max_seats_per_booking)
            .map_err(|p| problems.extend(p))
            .ok();
        let customer_name = CustomerName::parse(&input.customer_name).map_err(|p| problems.push(p)).ok();
        let contact =
            Contact::parse("customer_email", &input.customer_email, "customer_whatsapp", &input.customer_whatsapp)
                .map_err(|p| problems.extend(p))
                .ok();
        let user_id = match input.user_id.as_deref() {
            None | Some("") => None,
            Some(raw) => parse_uuid("user_id", raw).map_err(|p| problems.push(p)).ok(),
        };
        let hold = match input.hold_seconds {
            None => Some(rules.hold),
            Some(seconds) if seconds < 1 => {
                problems.push(FieldProblem::new("hold_seconds", "must be at least 1 when given"));
                None
            }
            // asking for more than the server allows gets the server's maximum
            Some(seconds) => Some(rules.hold.min(Duration::from_secs(seconds.unsigned_abs().into()))),
        };
        match (request_id, tour_id, seats, customer_name, contact, hold) {
            (Some(request_id), Some(tour_id), Some(seats), Some(customer_name), Some(contact), Some(hold))
                if problems.is_empty() =>
            {
                Ok(BookingRequest {
                    created_by: input.created_by.clone(),
                    request_id,
                    tour_id,
                    seats,
                    customer_name,
                    contact,
                    user_id,
                    hold,
                    requested_hold_seconds: input.hold_seconds,
                })
            }
            _ => Err(problems),
        }
    }

    /// sha-256 (hex) of the request's canonical form: a retry with the same
    /// key must carry the same fingerprint to be answered with the booking.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "v": 1,
            "tour_id": self.tour_id.0.to_string(),
            "num_adults": self.seats.adults(),
            "num_children": self.seats.children(),
            "customer_name": self.customer_name.as_str(),
            "customer_email": self.contact.email().map(EmailAddress::as_str),
            "customer_whatsapp": self.contact.whatsapp().map(WhatsAppNumber::as_str),
            "user_id": self.user_id.map(|id| id.to_string()),
            "hold_seconds": self.requested_hold_seconds,
        });
        // serde_json's map is ordered by key, so the text is canonical
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> BookingRules {
        BookingRules { max_seats_per_booking: 20, hold: Duration::from_secs(1800) }
    }

    fn valid_input() -> CreateBookingInput {
        CreateBookingInput {
            created_by: "booking-client".into(),
            request_id: "req-1".into(),
            tour_id: Uuid::new_v4().to_string(),
            num_adults: 2,
            num_children: 1,
            customer_name: "Ada Lovelace".into(),
            customer_email: "ada@example.com".into(),
            customer_whatsapp: String::new(),
            hold_seconds: None,
            user_id: None,
        }
    }

    #[test]
    fn seat_counts_that_overflow_an_i32_are_refused_not_wrapped() {
        let problems = Seats::parse(i32::MAX, i32::MAX, 20).expect_err("too many");
        assert_eq!(problems[0].field, "num_adults");
        assert!(Seats::parse(i32::MAX, 1, i32::MAX).is_err());
    }

    #[test]
    fn zero_and_negative_seat_counts_are_refused() {
        assert!(Seats::parse(0, 0, 20).is_err());
        assert_eq!(Seats::parse(-1, 2, 20).expect_err("negative")[0].field, "num_adults");
        assert_eq!(Seats::parse(2, -1, 20).expect_err("negative")[0].field, "num_children");
        assert_eq!(Seats::parse(0, 3, 20).expect("children only").total(), 3);
    }

    #[test]
    fn emails_are_checked_for_shape() {
        for good in ["a@b.co", "o'brien+tag@mail.example.com", "x_y@sub-domain.example.org"] {
            assert!(EmailAddress::parse("e", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@b.c",
            "a..b@example.com",
            ".a@example.com",
            "a@-b.com",
            "a b@example.com",
            "a@b.com,customer_email.neq.x",
            "a@exa mple.com",
            "a@b.123",
            "ünï@example.com",
            "a\0@example.com",
        ] {
            assert!(EmailAddress::parse("e", bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(EmailAddress::parse("e", &long).is_err());
    }

    #[test]
    fn whatsapp_numbers_must_be_e164() {
        assert!(WhatsAppNumber::parse("w", "+4915112345678").is_ok());
        for bad in ["4915112345678", "+0151123456", "+49 151 1234", "+12345", "+1234567890123456", "+49151abc"] {
            assert!(WhatsAppNumber::parse("w", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_request_needs_at_least_one_contact() {
        let mut input = valid_input();
        input.customer_email.clear();
        let problems = BookingRequest::parse(&input, &rules()).expect_err("no contact");
        assert_eq!(problems[0].field, "customer_email");
        input.customer_whatsapp = "+4915112345678".into();
        assert!(BookingRequest::parse(&input, &rules()).is_ok());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let input = CreateBookingInput {
            created_by: "booking-client".into(),
            request_id: String::new(),
            tour_id: "not-a-uuid".into(),
            num_adults: -1,
            num_children: 0,
            customer_name: "a\0b".into(),
            customer_email: "nope".into(),
            customer_whatsapp: "123".into(),
            hold_seconds: Some(0),
            user_id: Some("x".into()),
        };
        let fields: Vec<_> =
            BookingRequest::parse(&input, &rules()).expect_err("all bad").into_iter().map(|p| p.field).collect();
        for field in [
            "request_id",
            "tour_id",
            "num_adults",
            "customer_name",
            "customer_email",
            "customer_whatsapp",
            "hold_seconds",
            "user_id",
        ] {
            assert!(fields.contains(&field), "{field} missing from {fields:?}");
        }
    }

    #[test]
    fn a_hold_longer_than_the_configured_one_is_capped() {
        let mut input = valid_input();
        input.hold_seconds = Some(i32::MAX);
        assert_eq!(BookingRequest::parse(&input, &rules()).expect("valid").hold, Duration::from_secs(1800));
        input.hold_seconds = Some(5);
        assert_eq!(BookingRequest::parse(&input, &rules()).expect("valid").hold, Duration::from_secs(5));
    }

    #[test]
    fn the_fingerprint_changes_with_the_request_and_only_with_it() {
        let first = BookingRequest::parse(&valid_input(), &rules()).expect("valid");
        let same = BookingRequest::parse(&valid_input(), &rules()).expect("valid");
        let mut other_input = valid_input();
        other_input.tour_id = first.tour_id.0.to_string();
        other_input.num_children = 2;
        let other = BookingRequest::parse(&other_input, &rules()).expect("valid");
        let mut same_tour = valid_input();
        same_tour.tour_id = first.tour_id.0.to_string();
        let same_tour = BookingRequest::parse(&same_tour, &rules()).expect("valid");

        assert_ne!(first.fingerprint(), same.fingerprint(), "different tours");
        assert_eq!(first.fingerprint(), same_tour.fingerprint());
        assert_ne!(first.fingerprint(), other.fingerprint());
        assert_eq!(first.fingerprint().len(), 64);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(CustomerName::parse("  Ada  ").expect("valid").as_str(), "Ada");
        assert!(CustomerName::parse("   ").is_err());
        assert!(CustomerName::parse(&"é".repeat(200)).is_ok());
        assert!(CustomerName::parse(&"é".repeat(201)).is_err());
        assert!(CustomerName::parse(&"x".repeat(1 << 20)).is_err());
        assert!(CustomerName::parse("Robert'); drop table bookings;--").is_ok());
    }
}
