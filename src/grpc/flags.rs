//! Conversions between `flags` domain values and the AdminService's flag
//! messages, with the booking service's atomic-path status beside the flag.

use crate::{
    booking::AtomicPathState,
    flags::{self, ChangesPage, FlagChange, FlagState},
    grpc::convert::{duration, timestamp},
    proto::v1::{self as pb, GetFlagResponse, ListFlagChangesResponse},
};

/// The key a request names, or the booking-path flag when it names none.
pub fn key_or_default(key: &str) -> &str {
    if key.is_empty() { flags::USE_LEGACY_BOOKING_SERVICE } else { key }
}

/// The flag, and what the booking service knows of the atomic path (its
/// in-memory status, probed every second; unconfirmed while the catalogs
/// cannot be read, and then reported as not available).
pub fn flag_response(state: FlagState, atomic_path: &AtomicPathState) -> GetFlagResponse {
    let atomic_path_available = atomic_path.confirmed_available();
    let atomic_path_detail = match &atomic_path.unconfirmed {
        None => atomic_path.detail.clone(),
        Some(reason) => format!(
            "unknown: {reason}; last known: {}",
            if atomic_path.available { "available" } else { &atomic_path.detail }
        ),
    };
    let source = match state.value.source {
        flags::FlagSource::Environment => pb::FlagSource::Environment,
        flags::FlagSource::Database => pb::FlagSource::Database,
        flags::FlagSource::Default => pb::FlagSource::Default,
        flags::FlagSource::LastKnown => pb::FlagSource::LastKnown,
    };
    GetFlagResponse {
        key: state.value.key.to_owned(),
        enabled: state.value.enabled,
        source: source.into(),
        cache_age: Some(duration(state.value.age)),
        atomic_path_available,
        atomic_path_detail,
        updated_at: state.updated_at.map(timestamp),
        updated_by: state.updated_by.unwrap_or_default(),
    }
}

pub fn changes_response(page: ChangesPage) -> ListFlagChangesResponse {
    ListFlagChangesResponse {
        changes: page.changes.into_iter().map(change).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

fn change(change: FlagChange) -> pb::FlagChange {
    pb::FlagChange {
        id: change.id,
        key: change.key,
        old_value: change.old_value,
        new_value: change.new_value,
        changed_by: change.changed_by,
        reason: change.reason,
        changed_at: Some(timestamp(change.changed_at)),
    }
}
