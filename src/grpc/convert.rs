//! The well-known protobuf types every adapter writes: one conversion each.

use chrono::{DateTime, Utc};

pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    // chrono keeps a leap second as nanos ≥ 1e9; protobuf allows at most 999,999,999
    let nanos = at.timestamp_subsec_nanos().min(999_999_999) as i32;
    prost_types::Timestamp { seconds: at.timestamp(), nanos }
}

/// Saturating: no duration we report is near `i64::MAX` seconds, but none
/// may fail to convert either.
pub fn duration(value: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(value).unwrap_or(prost_types::Duration { seconds: i64::MAX, nanos: 999_999_999 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_durations_keep_their_nanoseconds() {
        let at = DateTime::from_timestamp(1_700_000_000, 5).expect("valid");
        assert_eq!(timestamp(at), prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 });
        let took = std::time::Duration::from_millis(1500);
        assert_eq!(duration(took), prost_types::Duration { seconds: 1, nanos: 500_000_000 });
        assert_eq!(duration(std::time::Duration::MAX).seconds, i64::MAX);
    }
}
