//! RepairAvailability: recompute `available_spots = max_capacity − live
//! seats` for every (or the selected) tour.
//!
//! Applying is safe while bookings flow. A first statement, without locks,
//! finds the drifted tours (one snapshot of tours and bookings: a tour that
//! is consistent in it stays consistent under correct bookings, so only the
//! drifted ones need work, and the scan of every booking blocks nobody).
//! Those tours are then locked, in id order (every booking path locks one
//! tour at a time, so a consistent order cannot deadlock with them), and
//! their seats are summed again in a later statement of the same
//! transaction, whose fresh READ COMMITTED snapshot sees every booking that
//! committed before the locks were granted. A booking that comes later
//! waits on the tour lock and then applies its decrement on top of the
//! repaired value; a cancellation whose booking update is still uncommitted
//! is counted as live here and gives its seats back (relative increment)
//! after we commit. Either way no update is lost.
//!
//! Overbooked tours (live seats above capacity) cannot be made consistent:
//! the schema forbids negative availability. They are set to 0 with the
//! excess in `overbooked_seats`, which every later release pays down before
//! a seat is sold again, and an `overbooked_tours` incident lists them with
//! their numbers, in the same transaction, for a human to resolve by moving
//! or cancelling bookings (once: a later run finds the tour already recorded
//! and only reports it as still overbooked). A dry run reports the
//! same changes and writes only its audit row.

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use super::{AdminError, Reason, TourChange, audit, db_span, error::DbContext, parse_tour_ids, selection};
use crate::db::error::{DbError, DbErrorKind};

const LIVE_SEATS_SQL: &str = include_str!("sql/live_seats.sql");

/// How long an apply waits for tour locks before giving up: a stuck booking
/// transaction must not park the repair (and, behind it, every booking).
const LOCK_TIMEOUT: &str = "10s";

#[derive(Debug, Clone)]
pub struct RepairRequest {
    pub apply: bool,
    pub tour_ids: Vec<String>,
    /// Required when applying; optional for a dry run.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairOutcome {
    pub changes: Vec<TourChange>,
    pub applied: bool,
    pub tours_examined: usize,
    /// Tours whose live bookings exceed their capacity.
    pub overbooked: Vec<Uuid>,
    /// `incident_log` row listing the overbooked tours (applied runs only).
    pub incident_id: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct LiveSeatsRow {
    id: Uuid,
    tour_name: String,
    max_capacity: i32,
    available_spots: i32,
    overbooked_seats: i32,
    live_seats: i64,
}

impl LiveSeatsRow {
    /// What the invariant demands, floored at 0 for an overbooked tour.
    fn target(&self) -> i32 {
        let exact = i64::from(self.max_capacity) - self.live_seats;
        exact.clamp(0, i64::from(self.max_capacity)) as i32
    }

    /// Seats sold beyond capacity, to be paid down before any is sold again.
    fn target_overbooked(&self) -> i32 {
        (self.live_seats - i64::from(self.max_capacity)).clamp(0, i64::from(i32::MAX)) as i32
    }

    fn overbooked(&self) -> bool {
        self.live_seats > i64::from(self.max_capacity)
    }

    fn change(&self) -> Option<TourChange> {
        let changed = self.available_spots != self.target() || self.overbooked_seats != self.target_overbooked();
        changed.then(|| TourChange {
            tour_id: self.id,
            tour_name: self.tour_name.clone(),
            max_capacity: self.max_capacity,
            live_seats: self.live_seats,
            available_spots_before: self.available_spots,
            available_spots_after: self.target(),
        })
    }
}

#[tracing::instrument(name = "admin.repair_availability", skip_all, fields(admin.actor = actor, admin.apply = request.apply))]
pub async fn repair_availability(
    pool: &PgPool,
    actor: &str,
    request: RepairRequest,
) -> Result<RepairOutcome, AdminError> {
    let tour_ids = parse_tour_ids(&request.tour_ids, "tour_ids")?;
    let reason = match (request.apply, request.reason.trim().is_empty()) {
        (false, true) => None,
        _ => Some(Reason::parse(&request.reason)?),
    };
    let mut tx = pool.begin().await.context("starting the repair transaction")?;
    // a first pass without locks finds the drifted tours; only those are
    // locked and recomputed (a tour consistent in one snapshot stays
    // consistent under correct bookings), so the full scan blocks nobody
    let snapshot = live_seats(&mut tx, &tour_ids).await?;
    check_all_found(&tour_ids, &snapshot)?;
    let tours_examined = snapshot.len();
    let rows = if request.apply {
        let drifted: Vec<Uuid> =
            snapshot.iter().filter(|row| row.change().is_some() || row.overbooked()).map(|row| row.id).collect();
        if drifted.is_empty() {
            Vec::new()
        } else {
            set_lock_timeout(&mut tx).await?;
            lock_tours(&mut tx, &drifted).await?;
            live_seats(&mut tx, &drifted).await?
        }
    } else {
        snapshot
    };

    let changes: Vec<TourChange> = rows.iter().filter_map(LiveSeatsRow::change).collect();
    let overbooked_ids: Vec<Uuid> = rows.iter().filter(|row| row.overbooked()).map(|row| row.id).collect();

    let mut incident_id = None;
    if request.apply {
        write_changes(&mut tx, &changes).await?;
        // an incident for the overbooked tours this run changed; one already
        // at 0 was recorded by the run that set it there
        let newly_overbooked: Vec<&LiveSeatsRow> =
            rows.iter().filter(|row| row.overbooked() && row.change().is_some()).collect();
        if !newly_overbooked.is_empty() {
            incident_id = Some(record_overbooked(&mut tx, &newly_overbooked, actor, reason.as_ref()).await?);
        }
    }
    let action = if request.apply { "availability_repaired" } else { "availability_repair_previewed" };
    audit::record(
        &mut tx,
        "tours",
        action,
        actor,
        None,
        json!({
            "reason": reason.as_ref().map(Reason::as_str),
            "tours_examined": tours_examined,
            "selected_tours": tour_ids,
            "changes": changes.iter().map(|c| json!({
                "tour_id": c.tour_id,
                "available_spots_before": c.available_spots_before,
                "available_spots_after": c.available_spots_after,
                "live_seats": c.live_seats,
            })).collect::<Vec<_>>(),
            "overbooked_tours": overbooked_ids,
            "incident_id": incident_id,
        }),
    )
    .await
    .context("auditing the repair")?;
    tx.commit().await.context("committing the repair")?;

    if request.apply {
        tracing::info!(changed = changes.len(), overbooked = overbooked_ids.len(), "availability repaired");
    }
    Ok(RepairOutcome { changes, applied: request.apply, tours_examined, overbooked: overbooked_ids, incident_id })
}

/// `set local`: the timeout ends with the transaction.
pub(super) async fn set_lock_timeout(conn: &mut PgConnection) -> Result<(), AdminError> {
    sqlx::query("select set_config('lock_timeout', $1, true)")
        .bind(LOCK_TIMEOUT)
        .execute(conn)
        .await
        .context("setting the lock timeout")?;
    Ok(())
}

async fn lock_tours(conn: &mut PgConnection, tour_ids: &[Uuid]) -> Result<(), AdminError> {
    sqlx::query("select id from tours where $1::uuid[] is null or id = any($1) order by id for update")
        .bind(selection(tour_ids))
        .execute(conn)
        .instrument(db_span("select tours for update"))
        .await
        .map_err(lock_timeout_or("locking the tours"))?;
    Ok(())
}

async fn live_seats(conn: &mut PgConnection, tour_ids: &[Uuid]) -> Result<Vec<LiveSeatsRow>, AdminError> {
    sqlx::query_as(LIVE_SEATS_SQL)
        .bind(selection(tour_ids))
        .fetch_all(conn)
        .instrument(db_span("select live seats per tour"))
        .await
        .context("summing live seats per tour")
}

fn check_all_found(requested: &[Uuid], rows: &[LiveSeatsRow]) -> Result<(), AdminError> {
    let missing: Vec<Uuid> =
        requested.iter().filter(|id| rows.binary_search_by(|row| row.id.cmp(id)).is_err()).copied().collect();
    if missing.is_empty() { Ok(()) } else { Err(AdminError::UnknownTours(missing)) }
}

async fn write_changes(conn: &mut PgConnection, changes: &[TourChange]) -> Result<(), AdminError> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changes.iter().map(|c| c.tour_id).collect();
    let spots: Vec<i32> = changes.iter().map(|c| c.available_spots_after).collect();
    let overbooked: Vec<i64> = changes.iter().map(|c| (c.live_seats - i64::from(c.max_capacity)).max(0)).collect();
    sqlx::query(
        "update tours t
            set available_spots = v.spots, overbooked_seats = v.overbooked::integer, updated_at = now()
           from unnest($1::uuid[], $2::integer[], $3::bigint[]) as v(id, spots, overbooked)
          where t.id = v.id",
    )
    .bind(&ids)
    .bind(&spots)
    .bind(&overbooked)
    .execute(conn)
    .instrument(db_span("update tours available_spots"))
    .await
    .context("writing repaired availability")?;
    Ok(())
}

async fn record_overbooked(
    conn: &mut PgConnection,
    overbooked: &[&LiveSeatsRow],
    actor: &str,
    reason: Option<&Reason>,
) -> Result<i64, AdminError> {
    let tours: Vec<_> = overbooked
        .iter()
        .map(|row| {
            json!({
                "tour_id": row.id,
                "tour_name": row.tour_name,
                "max_capacity": row.max_capacity,
                "live_seats": row.live_seats,
                "available_spots_before": row.available_spots,
                "available_spots_after": 0,
            })
        })
        .collect();
    tracing::warn!(tours = overbooked.len(), "overbooked tours found; availability set to 0, incident recorded");
    sqlx::query_scalar(
        "insert into incident_log (type, details, timestamp) values ('overbooked_tours', $1, now()) returning id",
    )
    .bind(sqlx::types::Json(json!({
        "affected_tours": tours,
        "detected_by": "repair_availability",
        "actor": actor,
        "reason": reason.map(Reason::as_str),
    })))
    .fetch_one(conn)
    .instrument(db_span("insert incident_log"))
    .await
    .context("recording overbooked tours")
}

/// A lock wait on tour rows that hit `lock_timeout` is the operator's "busy,
/// try again" (naming the tours), not an internal failure.
pub(super) fn lock_timeout_or(action: &'static str) -> impl FnOnce(sqlx::Error) -> AdminError {
    move |source| match DbError::new(action, source) {
        DbError { kind: DbErrorKind::LockTimeout, .. } => AdminError::ToursBusy,
        other => AdminError::Database(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(max_capacity: i32, available_spots: i32, live_seats: i64) -> LiveSeatsRow {
        LiveSeatsRow {
            id: Uuid::nil(),
            tour_name: "t".into(),
            max_capacity,
            available_spots,
            overbooked_seats: 0,
            live_seats,
        }
    }

    #[test]
    fn a_consistent_tour_needs_no_change() {
        assert_eq!(row(10, 6, 4).change(), None);
    }

    #[test]
    fn a_drifted_tour_is_set_to_capacity_minus_live_seats() {
        let change = row(10, 9, 4).change().expect("a change");
        assert_eq!((change.available_spots_before, change.available_spots_after), (9, 6));
    }

    #[test]
    fn an_overbooked_tour_is_floored_at_zero() {
        let overbooked = row(10, 2, 13);
        assert!(overbooked.overbooked());
        assert_eq!(overbooked.change().expect("a change").available_spots_after, 0);
        assert!(!row(10, 0, 10).overbooked());
    }
}
