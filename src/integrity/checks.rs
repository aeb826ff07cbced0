//! The catalogue: one [`Check`] per runbook monitor. Each is a SQL file in
//! `sql/` that returns one row (`violation_count`, `observed`, `facts`,
//! `samples` with at most `$1` sample rows) and a judgement that turns that
//! row into PASS / WARN / FAIL. Names are stable: operators put them in cron
//! lines and dashboards.

use serde_json::{Map, Value};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// The check itself could not run (timeout, missing object, database down).
    Error,
}

/// One sample violation: a row as JSON (`row_to_json` in the check's SQL).
pub type SampleRow = Map<String, Value>;

/// What a check's SQL measured.
#[derive(Debug, Clone)]
pub struct Observation {
    pub violation_count: i64,
    pub observed: Option<f64>,
    /// Extra numbers the judgement needs (e.g. the window's size).
    pub facts: Value,
    pub samples: Vec<SampleRow>,
}

/// What the process knows that the database does not.
#[derive(Debug, Clone, Copy, Default)]
pub struct JudgeContext {
    /// `USE_LEGACY_BOOKING_SERVICE` pinned in the environment (true = legacy).
    pub legacy_pin: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: CheckStatus,
    pub message: String,
}

impl Verdict {
    fn pass(message: impl Into<String>) -> Self {
        Verdict { status: CheckStatus::Pass, message: message.into() }
    }
    fn warn(message: impl Into<String>) -> Self {
        Verdict { status: CheckStatus::Warn, message: message.into() }
    }
    fn fail(message: impl Into<String>) -> Self {
        Verdict { status: CheckStatus::Fail, message: message.into() }
    }
}

/// A relation a check reads that, when missing, is itself the finding.
#[derive(Debug, Clone, Copy)]
pub struct RequiredRelation {
    pub relation: &'static str,
    /// The FAIL message when it is missing.
    pub missing: &'static str,
}

#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    /// Human-readable threshold, reported with every result.
    pub threshold: &'static str,
    pub(crate) sql: &'static str,
    pub(crate) requires: Option<RequiredRelation>,
    pub(crate) judge: fn(&Observation, &JudgeContext) -> Verdict,
}

/// Every check, in the order a full run lists them.
pub static CHECKS: &[Check] = &[
    Check {
        name: "availability_consistency",
        description: "available_spots of every dated tour (any status) equals max_capacity minus the seats \
                      of its pending and confirmed bookings",
        threshold: "0 tours with a discrepancy",
        sql: include_str!("sql/availability_consistency.sql"),
        requires: None,
        judge: judge_availability,
    },
    Check {
        name: "schedule_id_capture",
        description: "template bookings of the last 24 h carry their schedule_id",
        threshold: "capture rate = 100% (n/a when there were no template bookings)",
        sql: include_str!("sql/schedule_id_capture.sql"),
        requires: None,
        judge: judge_schedule_id_capture,
    },
    Check {
        name: "booking_reference_uniqueness",
        description: "no booking_reference is used by more than one booking (scans bookings only when no valid \
                      unique index guarantees it)",
        threshold: "0 duplicated references; WARN when no unique index enforces it",
        sql: include_str!("sql/booking_reference_uniqueness.sql"),
        requires: None,
        judge: judge_reference_uniqueness,
    },
    Check {
        name: "commission_accuracy",
        description: "bookings of the last hour: commission_amount = round(subtotal x applied_commission_rate / 100)",
        threshold: "0 bookings off by more than 1 cent",
        sql: include_str!("sql/commission_accuracy.sql"),
        requires: None,
        judge: judge_commission,
    },
    Check {
        name: "negative_available_spots",
        description: "no tour has negative available_spots",
        threshold: "0 tours below zero",
        sql: include_str!("sql/negative_available_spots.sql"),
        requires: None,
        judge: judge_negative_spots,
    },
    Check {
        name: "expired_holds",
        description: "no pending booking whose hold lapsed more than 2 minutes ago still holds its seats \
                      (the hold sweeper releases them every few seconds)",
        threshold: "0 lapsed holds older than 2 minutes",
        sql: include_str!("sql/expired_holds.sql"),
        requires: None,
        judge: judge_expired_holds,
    },
    Check {
        name: "creation_failure_rate",
        description: "booking creation failures (audit_logs action creation_failed) in the last hour",
        threshold: "WARN above 0, FAIL above 5 per hour",
        sql: include_str!("sql/creation_failure_rate.sql"),
        requires: None,
        judge: judge_creation_failures,
    },
    Check {
        name: "journey_data_quality",
        description: "template bookings of the last 24 h show their template data in active_tours_with_operators \
                      (view row present, template_name set)",
        threshold: "0 bookings missing template data; the view must exist",
        sql: include_str!("sql/journey_data_quality.sql"),
        requires: Some(RequiredRelation {
            relation: "active_tours_with_operators",
            missing: "the enhanced view active_tours_with_operators is missing: the journey cannot show \
                      template data for any booking",
        }),
        judge: judge_journey,
    },
    Check {
        name: "pre_deployment",
        description: "runbook checkpoint 1: bookings.schedule_id exists, the enhanced view exists, template \
                      instances exist",
        threshold: "all 3 checkpoints pass",
        sql: include_str!("sql/pre_deployment.sql"),
        requires: None,
        judge: judge_pre_deployment,
    },
    Check {
        name: "post_deployment",
        description: "runbook checkpoint 2: create_booking_atomic, restore_tour_availability and an enabled \
                      restore_availability_trigger are deployed",
        threshold: "all 3 components present",
        sql: include_str!("sql/post_deployment.sql"),
        requires: None,
        judge: judge_post_deployment,
    },
    Check {
        name: "booking_performance",
        description: "bookings per hour over the last 24 h, and the mean time from creation to last update \
                      (informational)",
        threshold: "informational; WARN when no booking was made in 24 h",
        sql: include_str!("sql/booking_performance.sql"),
        requires: None,
        judge: judge_performance,
    },
    Check {
        name: "trigger_activity",
        description: "seat restorations (audit_logs action spots_restored) in the last 24 h and the mean \
                      interval between them (informational)",
        threshold: "informational",
        sql: include_str!("sql/trigger_activity.sql"),
        requires: None,
        judge: judge_trigger_activity,
    },
    Check {
        name: "flag_state",
        description: "the use_legacy_booking_service flag (environment pin or database row) and whether the \
                      atomic path it selects is deployed",
        threshold: "WARN when the flag selects the atomic path but its database objects are missing",
        sql: include_str!("sql/flag_state.sql"),
        requires: None,
        judge: judge_flag_state,
    },
];

pub fn find(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|check| check.name == name)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    CHECKS.iter().map(|check| check.name)
}

fn fact_i64(observation: &Observation, key: &str) -> i64 {
    observation.facts.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn fact_bool(observation: &Observation, key: &str) -> Option<bool> {
    observation.facts.get(key).and_then(Value::as_bool)
}

/// The `key` field of sample rows whose `flag` field is false, e.g. the
/// failed checkpoints.
fn failed_names(observation: &Observation, key: &str, flag: &str) -> String {
    let names: Vec<&str> = observation
        .samples
        .iter()
        .filter(|row| row.get(flag).and_then(Value::as_bool) == Some(false))
        .filter_map(|row| row.get(key).and_then(Value::as_str))
        .collect();
    names.join(", ")
}

fn judge_availability(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("every dated tour's available_spots matches its live bookings"),
        n => match fact_i64(o, "overbooked_tours") {
            0 => Verdict::fail(format!(
                "{n} tour(s) whose available_spots disagree with their live bookings ({} seats of drift in total)",
                o.observed.unwrap_or(0.0)
            )),
            overbooked => Verdict::fail(format!(
                "{n} tour(s) whose available_spots disagree with their live bookings ({} seats of drift in total), \
                 {overbooked} of them overbooked (more live seats than capacity: nothing is sold until \
                 cancellations pay the excess down)",
                o.observed.unwrap_or(0.0)
            )),
        },
    }
}

fn judge_schedule_id_capture(o: &Observation, _: &JudgeContext) -> Verdict {
    let total = fact_i64(o, "template_bookings");
    match (total, o.violation_count) {
        (0, _) => Verdict::pass("no template bookings in the last 24 h; capture rate n/a"),
        (total, 0) => Verdict::pass(format!("all {total} template booking(s) of the last 24 h carry schedule_id")),
        (total, missing) => Verdict::fail(format!(
            "{missing} of {total} template booking(s) of the last 24 h lack schedule_id (capture rate {}%)",
            o.observed.unwrap_or(0.0)
        )),
    }
}

fn judge_reference_uniqueness(o: &Observation, _: &JudgeContext) -> Verdict {
    match (o.violation_count, fact_bool(o, "unique_index").unwrap_or(false)) {
        (0, true) => Verdict::pass("every booking_reference is unique (enforced by a valid unique index)"),
        (0, false) => Verdict::warn(
            "every booking_reference is unique, but no valid unique index on booking_reference enforces it",
        ),
        (n, _) => Verdict::fail(format!("{n} booking_reference value(s) are shared by more than one booking")),
    }
}

fn judge_commission(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("every booking of the last hour has its commission right to the cent"),
        n => Verdict::fail(format!(
            "{n} booking(s) of the last hour with a commission off by more than 1 cent (worst: {} cents)",
            o.observed.unwrap_or(0.0)
        )),
    }
}

fn judge_negative_spots(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("no tour has negative available_spots"),
        n => {
            Verdict::fail(format!("{n} tour(s) with negative available_spots (lowest: {})", o.observed.unwrap_or(0.0)))
        }
    }
}

fn judge_expired_holds(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("every lapsed hold has been released"),
        n => Verdict::fail(format!(
            "{n} pending booking(s) whose hold lapsed still hold {} seat(s) (oldest lapsed {} s ago): is the hold \
             sweeper running?",
            fact_i64(o, "held_seats"),
            o.observed.unwrap_or(0.0)
        )),
    }
}

/// The runbook alerts on more than 5 failures in an hour.
const CREATION_FAILURES_PER_HOUR_LIMIT: i64 = 5;

fn judge_creation_failures(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("no booking creation failures in the last hour"),
        n if n > CREATION_FAILURES_PER_HOUR_LIMIT => Verdict::fail(format!(
            "{n} booking creation failures in the last hour (more than {CREATION_FAILURES_PER_HOUR_LIMIT})"
        )),
        n => Verdict::warn(format!("{n} booking creation failure(s) in the last hour")),
    }
}

fn judge_journey(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("every template booking of the last 24 h shows its template data"),
        n => Verdict::fail(format!(
            "{n} template booking(s) of the last 24 h have no template data in active_tours_with_operators"
        )),
    }
}

fn judge_pre_deployment(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("schedule_id column, enhanced view and template instances are in place"),
        n => Verdict::fail(format!("{n} checkpoint(s) failed: {}", failed_names(o, "checkpoint", "passed"))),
    }
}

fn judge_post_deployment(o: &Observation, _: &JudgeContext) -> Verdict {
    match o.violation_count {
        0 => Verdict::pass("atomic function, restore function and restore trigger are deployed"),
        n => Verdict::fail(format!("{n} component(s) missing: {}", failed_names(o, "component", "present"))),
    }
}

fn judge_performance(o: &Observation, _: &JudgeContext) -> Verdict {
    match fact_i64(o, "bookings_24h") {
        0 => Verdict::warn("no bookings in the last 24 h"),
        n => Verdict::pass(format!("{n} booking(s) in the last 24 h ({:.2} per hour)", o.observed.unwrap_or(0.0))),
    }
}

fn judge_trigger_activity(o: &Observation, _: &JudgeContext) -> Verdict {
    match (fact_i64(o, "restorations_24h"), o.observed) {
        (0, _) => Verdict::pass("no seat restorations in the last 24 h"),
        (n, Some(mean)) => {
            Verdict::pass(format!("{n} seat restoration(s) in the last 24 h, {mean:.1} s apart on average"))
        }
        (n, None) => Verdict::pass(format!("{n} seat restoration in the last 24 h")),
    }
}

fn judge_flag_state(o: &Observation, context: &JudgeContext) -> Verdict {
    let stored = fact_bool(o, "stored_enabled");
    let (legacy, source) = match (context.legacy_pin, stored) {
        (Some(pinned), _) => (pinned, "environment"),
        (None, Some(stored)) => (stored, "database"),
        (None, None) => (false, "default"),
    };
    let path = if legacy { "legacy" } else { "atomic" };
    let atomic_function = fact_bool(o, "atomic_function").unwrap_or(false);
    let restore_trigger = fact_bool(o, "restore_trigger").unwrap_or(false);
    if legacy {
        return Verdict::pass(format!("booking path: legacy (flag from {source})"));
    }
    if !atomic_function {
        return Verdict::warn(format!(
            "degraded: legacy fallback in use (flag from {source} selects the atomic path, but \
             create_booking_atomic is missing)"
        ));
    }
    if !restore_trigger {
        return Verdict::warn(format!(
            "booking path: {path} (flag from {source}), but restore_availability_trigger is missing: \
             only application code releases seats"
        ));
    }
    Verdict::pass(format!("booking path: {path} (flag from {source}), atomic path deployed"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn observation(violation_count: i64, observed: Option<f64>, facts: Value) -> Observation {
        Observation { violation_count, observed, facts, samples: Vec::new() }
    }

    #[test]
    fn check_names_are_unique_snake_case_and_every_sql_takes_the_sample_limit() {
        let mut seen = std::collections::HashSet::new();
        for check in CHECKS {
            assert!(seen.insert(check.name), "duplicate check {}", check.name);
            assert!(check.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", check.name);
            assert!(check.sql.contains("$1"), "{} must bind the sample limit", check.name);
            assert!(!check.sql.to_lowercase().contains("for update"), "{} must not lock rows", check.name);
        }
    }

    #[test]
    fn an_empty_capture_window_passes_with_no_rate() {
        let verdict =
            judge_schedule_id_capture(&observation(0, None, json!({"template_bookings": 0})), &Default::default());
        assert_eq!(verdict.status, CheckStatus::Pass);
        assert!(verdict.message.contains("n/a"), "{}", verdict.message);
    }

    #[test]
    fn creation_failures_warn_up_to_five_and_fail_above() {
        let judge = |n| judge_creation_failures(&observation(n, Some(n as f64), json!({})), &Default::default()).status;
        assert_eq!(judge(0), CheckStatus::Pass);
        assert_eq!(judge(1), CheckStatus::Warn);
        assert_eq!(judge(5), CheckStatus::Warn);
        assert_eq!(judge(6), CheckStatus::Fail);
    }

    #[test]
    fn the_environment_pin_wins_over_the_stored_flag() {
        let facts = json!({"stored_enabled": false, "atomic_function": false, "restore_trigger": false});
        let pinned = judge_flag_state(&observation(0, None, facts.clone()), &JudgeContext { legacy_pin: Some(true) });
        let stored = judge_flag_state(&observation(0, None, facts), &JudgeContext { legacy_pin: None });
        assert_eq!(pinned.status, CheckStatus::Pass);
        assert!(pinned.message.contains("environment"), "{}", pinned.message);
        assert_eq!(stored.status, CheckStatus::Warn);
        assert!(stored.message.starts_with("degraded: legacy fallback in use"), "{}", stored.message);
    }
}
