//! Conversions between `flags` domain values and the AdminService's flag
//! messages, and the atomic-path status GetFlag reports beside the flag.

use std::time::Duration;

use sqlx::PgPool;

use crate::{
    db::functions,
    flags::{self, ChangesPage, FlagChange, FlagState},
    proto::v1::{self as pb, GetFlagResponse, ListFlagChangesResponse},
};

/// The key a request names, or the booking-path flag when it names none.
pub fn key_or_default(key: &str) -> &str {
    if key.is_empty() { flags::USE_LEGACY_BOOKING_SERVICE } else { key }
}

/// Whether the atomic path's database objects are there, read live from the
/// catalogs (bounded: GetFlag must answer while the database is down).
pub async fn atomic_path(pool: &PgPool) -> (bool, String) {
    const WITHIN: Duration = Duration::from_secs(1);
    match tokio::time::timeout(WITHIN, functions::state(pool)).await {
        Ok(Ok(state)) if state.complete() => (
            true,
            "create_booking_atomic, restore_tour_availability and restore_availability_trigger are deployed".into(),
        ),
        Ok(Ok(state)) => {
            let missing: Vec<&str> = [
                (state.atomic_function, "create_booking_atomic"),
                (state.restore_function, "restore_tour_availability"),
                (state.trigger, "restore_availability_trigger"),
            ]
            .into_iter()
            .filter_map(|(present, name)| (!present).then_some(name))
            .collect();
            (false, format!("missing: {}; bookings use the legacy path", missing.join(", ")))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "cannot read the database catalog for the atomic path status");
            (false, "unknown: the database catalog cannot be read".into())
        }
        Err(_) => (false, format!("unknown: the database catalog did not answer within {WITHIN:?}")),
    }
}

pub fn flag_response(state: FlagState, atomic_path: (bool, String)) -> GetFlagResponse {
    let (atomic_path_available, atomic_path_detail) = atomic_path;
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

fn duration(age: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(age).unwrap_or(prost_types::Duration { seconds: i64::MAX, nanos: 0 })
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}
