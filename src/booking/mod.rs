//! The booking domain: validation, pricing, the two creation paths (atomic
//! and legacy) behind the `use_legacy_booking_service` flag, the booking
//! lifecycle with exactly-once seat release, holds, journeys and tour lists.
//!
//! - [`types`]: checked values and the validated request; [`records`]: what
//!   the domain answers with (bookings, statuses, pages).
//! - [`pricing`], [`reference`]: money and readable references, shared by both paths.
//! - [`prepared`]: the request as both paths store it, and their shared
//!   retry/replay loop around one attempt.
//! - [`atomic`], [`legacy`]: the two ways a booking is stored.
//! - [`service`]: [`Bookings`], what the API calls; chooses the path.
//! - [`path_status`]: whether the atomic path is usable (health, GetFlag).
//! - [`holds`]: the expiry sweeper.
//! - [`tour_gate`]: the bound on one tour's bookings in flight (a flash sale
//!   on one tour leaves the pool to the others).
//! - [`store`], [`journey`], [`catalog`]: SQL.

pub mod atomic;
pub mod batch;
pub mod catalog;
pub mod error;
pub mod holds;
pub mod journey;
pub mod legacy;
pub mod path_status;
pub mod prepared;
pub mod pricing;
pub mod records;
pub mod reference;
pub mod service;
pub mod store;
pub mod tour_gate;
pub mod types;

pub use error::BookingError;
pub use path_status::{AtomicPathState, AtomicPathStatus};
pub use service::{BookingKey, Bookings};
