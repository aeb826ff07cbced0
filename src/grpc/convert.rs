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

/// A caller's duration; `None` when it is negative (or its two parts
/// disagree in sign). Not prost-types' `TryFrom`: it negates `seconds` to
/// describe a negative duration, which overflows on `i64::MIN` (a panic in
/// debug builds, found by fuzzing `WatchChecks.interval`).
pub fn std_duration(value: prost_types::Duration) -> Option<std::time::Duration> {
    let seconds = u64::try_from(value.seconds).ok()?;
    let nanos = u64::try_from(value.nanos).ok()?;
    std::time::Duration::from_secs(seconds).checked_add(std::time::Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_duration_is_none_when_negative_at_any_extreme() {
        let d = |seconds, nanos| std_duration(prost_types::Duration { seconds, nanos });
        assert_eq!(d(2, 500_000_000), Some(std::time::Duration::from_millis(2500)));
        assert_eq!(d(0, i32::MAX), Some(std::time::Duration::from_nanos(i32::MAX as u64)));
        assert_eq!(
            d(i64::MAX, i32::MAX),
            Some(std::time::Duration::new(i64::MAX as u64, 0) + std::time::Duration::from_nanos(i32::MAX as u64))
        );
        for (seconds, nanos) in [(i64::MIN, 0), (i64::MIN, i32::MIN), (-1, 0), (0, -1), (5, i32::MIN)] {
            assert_eq!(d(seconds, nanos), None, "{seconds} s {nanos} ns");
        }
    }

    #[test]
    fn instants_and_durations_keep_their_nanoseconds() {
        let at = DateTime::from_timestamp(1_700_000_000, 5).expect("valid");
        assert_eq!(timestamp(at), prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 });
        let took = std::time::Duration::from_millis(1500);
        assert_eq!(duration(took), prost_types::Duration { seconds: 1, nanos: 500_000_000 });
        assert_eq!(duration(std::time::Duration::MAX).seconds, i64::MAX);
    }
}
