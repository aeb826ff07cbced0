//! ClampNegativeAvailability: the runbook's emergency fix for negative
//! available spots, in the right order.
//!
//! The runbook clamps first and then logs `where available_spots < 0`, which
//! by then matches nothing: its incident is always empty. Here one
//! transaction locks the negative tours, writes the `negative_availability`
//! incident listing each of them with its values, and only then clamps them
//! to 0. The schema's CHECK constraint normally makes negatives impossible;
//! this is the tool for a database where it was dropped or bypassed.
//!
//! Clamping to 0 stops the bleeding (nothing more is sold); the seats sold
//! beyond capacity are kept in `overbooked_seats`, which cancellations and
//! expiries pay down before any seat is sold again. It does not make the
//! tour consistent with its bookings if it also drifted: run
//! RepairAvailability next.

use serde_json::json;
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;

use super::{AdminError, Reason, TourChange, audit, db_span, error::DbContext, repair};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClampOutcome {
    pub changes: Vec<TourChange>,
    /// The incident written before clamping; `None` when nothing was negative.
    pub incident_id: Option<i64>,
}

#[derive(Debug, sqlx::FromRow)]
struct NegativeTour {
    id: Uuid,
    tour_name: String,
    max_capacity: i32,
    available_spots: i32,
    live_seats: i64,
}

#[tracing::instrument(name = "admin.clamp_negative_availability", skip_all, fields(admin.actor = actor))]
pub async fn clamp_negative_availability(pool: &PgPool, actor: &str, reason: &str) -> Result<ClampOutcome, AdminError> {
    let reason = Reason::parse(reason)?;
    let mut tx = pool.begin().await.context("starting the clamp transaction")?;
    repair::set_lock_timeout(&mut tx).await?;

    // `for update of t`: the recheck of `available_spots < 0` after a lock
    // wait sees the committed value, so a tour fixed meanwhile drops out
    let negative: Vec<NegativeTour> = sqlx::query_as(
        "select t.id, t.tour_name, t.max_capacity, t.available_spots,
                coalesce((select sum(b.num_adults + b.num_children) from bookings b
                          where b.tour_id = t.id and b.booking_status in ('pending', 'confirmed')), 0)::bigint
                    as live_seats
           from tours t
          where t.available_spots < 0
          order by t.id
            for update of t",
    )
    .fetch_all(&mut *tx)
    .instrument(db_span("select negative tours for update"))
    .await
    .map_err(repair::lock_timeout_or("locking the negative tours"))?;

    let mut incident_id = None;
    if !negative.is_empty() {
        let affected: Vec<_> = negative
            .iter()
            .map(|t| {
                json!({
                    "tour_id": t.id,
                    "tour_name": t.tour_name,
                    "available_spots": t.available_spots,
                    "max_capacity": t.max_capacity,
                    "live_seats": t.live_seats,
                })
            })
            .collect();
        // logged BEFORE the clamp, in the same transaction: the incident
        // holds the values the clamp is about to erase
        let id: i64 = sqlx::query_scalar(
            "insert into incident_log (type, details, timestamp)
             values ('negative_availability', $1, now()) returning id",
        )
        .bind(sqlx::types::Json(json!({
            "affected_tours": affected,
            "action": "clamped_to_zero",
            "actor": actor,
            "reason": reason.as_str(),
        })))
        .fetch_one(&mut *tx)
        .instrument(db_span("insert incident_log"))
        .await
        .context("recording the negative availability incident")?;
        incident_id = Some(id);

        let ids: Vec<Uuid> = negative.iter().map(|t| t.id).collect();
        // the seats sold beyond capacity are kept as overbooked_seats, so
        // releases pay them down before anything is sold again
        let overbooked: Vec<i64> = negative.iter().map(|t| (t.live_seats - i64::from(t.max_capacity)).max(0)).collect();
        sqlx::query(
            "update tours t
                set available_spots = 0, overbooked_seats = v.overbooked::integer, updated_at = now()
               from unnest($1::uuid[], $2::bigint[]) as v(id, overbooked)
              where t.id = v.id",
        )
        .bind(&ids)
        .bind(&overbooked)
        .execute(&mut *tx)
        .instrument(db_span("update tours clamp available_spots"))
        .await
        .context("clamping negative availability")?;
    }

    let changes: Vec<TourChange> = negative
        .into_iter()
        .map(|t| TourChange {
            tour_id: t.id,
            tour_name: t.tour_name,
            max_capacity: t.max_capacity,
            live_seats: t.live_seats,
            available_spots_before: t.available_spots,
            available_spots_after: 0,
        })
        .collect();
    audit::record(
        &mut tx,
        "tours",
        "negative_availability_clamped",
        actor,
        None,
        json!({
            "reason": reason.as_str(),
            "incident_id": incident_id,
            "changes": changes.iter().map(|c| json!({
                "tour_id": c.tour_id,
                "available_spots_before": c.available_spots_before,
                "available_spots_after": c.available_spots_after,
            })).collect::<Vec<_>>(),
        }),
    )
    .await
    .context("auditing the clamp")?;
    tx.commit().await.context("committing the clamp")?;

    if let Some(incident_id) = incident_id {
        tracing::warn!(incident_id, tours = changes.len(), "negative availability clamped to 0");
    }
    Ok(ClampOutcome { changes, incident_id })
}
