//! Operator tools: repair availability from bookings, clamp negative
//! availability, pause and resume bookings, deploy and roll back the
//! atomic-path functions.
//!
//! Every action that writes takes the calling principal's name and a [`Reason`]
//! (the crate's one rule for reasons, [`crate::reason`])
//! and records one `audit_logs` row in the same transaction as its change, so
//! the audit trail never claims a change that was rolled back (nor misses one
//! that was not). Audit details hold ids, counts and the reason, never
//! personal data.

mod audit;
pub mod clamp;
pub mod error;
pub mod functions;
pub mod pause;
pub mod repair;

use uuid::Uuid;

pub use crate::reason::Reason;
pub use error::AdminError;

/// Parses a request's tour ids (field name `field`), sorted and without
/// duplicates. Empty means "every tour" to the callers that allow it.
pub fn parse_tour_ids(raw: &[String], field: &str) -> Result<Vec<Uuid>, AdminError> {
    let mut ids = Vec::with_capacity(raw.len());
    for (index, value) in raw.iter().enumerate() {
        let id = Uuid::parse_str(value.trim())
            .map_err(|_| AdminError::InvalidTourId { field: format!("{field}[{index}]"), value: value.clone() })?;
        ids.push(id);
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `None` for "every tour", as the SQL's `$1::uuid[] is null` expects.
fn selection(ids: &[Uuid]) -> Option<&[Uuid]> {
    (!ids.is_empty()).then_some(ids)
}

/// One tour's availability before and after an operator action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TourChange {
    pub tour_id: Uuid,
    pub tour_name: String,
    pub max_capacity: i32,
    /// Seats held by pending and confirmed bookings.
    pub live_seats: i64,
    pub available_spots_before: i32,
    pub available_spots_after: i32,
}

use crate::telemetry::db_span;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tour_ids_are_parsed_sorted_and_deduplicated_and_bad_ones_name_their_field() {
        let a = "00000000-0000-0000-0000-000000000002".to_owned();
        let b = "00000000-0000-0000-0000-000000000001".to_owned();
        let ids = parse_tour_ids(&[a.clone(), b.clone(), a], "tour_ids").expect("valid");
        assert_eq!(
            ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            [b.clone(), "00000000-0000-0000-0000-000000000002".to_owned()]
        );

        let error = parse_tour_ids(&[b, "nope".to_owned()], "tour_ids").expect_err("invalid");
        assert!(matches!(error, AdminError::InvalidTourId { ref field, .. } if field == "tour_ids[1]"), "{error:?}");
    }
}
