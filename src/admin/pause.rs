//! PauseBookings / ResumeBookings: take tours out of service for
//! maintenance and put back exactly what was taken.
//!
//! The runbook pauses with `status = 'maintenance' where status = 'active'`
//! and resumes with `status = 'active' where status = 'maintenance'`, which
//! also reactivates tours that were in maintenance for reasons of their own.
//! Here each pause records, per tour, the status it found (`tour_pauses`), and
//! a resume restores that status only on tours of an open pause that are
//! still in the maintenance the pause put them in. A tour whose status an
//! operator changed by hand meanwhile is left as it is (its pause row is
//! closed, and the audit row lists it).
//!
//! Tours are locked in id order, like every multi-tour action here, so pause,
//! resume and repair cannot deadlock with each other or with bookings.

use serde_json::json;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;
use uuid::Uuid;

use super::{AdminError, Reason, audit, db_span, error::DbContext, parse_tour_ids, repair, selection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub pause_id: Uuid,
    pub tour_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Tours whose prior status was restored.
    pub tour_ids: Vec<Uuid>,
    /// Tours of the pause that were no longer in maintenance (changed by
    /// hand since): their pause is closed, their status left alone.
    pub left_alone: Vec<Uuid>,
}

/// Pauses every active tour, or the listed ones that are active (listed
/// tours that are not active are skipped: there is nothing to pause).
#[tracing::instrument(name = "admin.pause_bookings", skip_all, fields(admin.actor = actor))]
pub async fn pause_bookings(
    pool: &PgPool,
    actor: &str,
    tour_ids: &[String],
    reason: &str,
) -> Result<Pause, AdminError> {
    let reason = Reason::parse(reason)?;
    let requested = parse_tour_ids(tour_ids, "tour_ids")?;
    let mut tx = pool.begin().await.context("starting the pause transaction")?;
    repair::set_lock_timeout(&mut tx).await?;
    ensure_tours_exist(&mut tx, &requested).await?;

    let locked: Vec<Uuid> = sqlx::query_scalar(
        "select id from tours
          where status = 'active' and ($1::uuid[] is null or id = any($1))
          order by id
            for update",
    )
    .bind(selection(&requested))
    .fetch_all(&mut *tx)
    .instrument(db_span("select tours for update"))
    .await
    .map_err(repair::lock_timeout_or("locking the tours to pause"))?;
    if locked.is_empty() {
        return Err(AdminError::NothingToPause);
    }

    // an active tour with an open pause was reactivated by hand; pausing it
    // again would lose the first pause's record of its prior status
    let already: Vec<Uuid> = sqlx::query_scalar(
        "select tour_id from tour_pauses where resumed_at is null and tour_id = any($1) order by tour_id",
    )
    .bind(&locked)
    .fetch_all(&mut *tx)
    .instrument(db_span("select open tour_pauses"))
    .await
    .context("looking for open pauses")?;
    if !already.is_empty() {
        return Err(AdminError::AlreadyPaused(already));
    }

    let pause_id = Uuid::new_v4();
    sqlx::query(
        "insert into tour_pauses (pause_id, tour_id, prior_status, paused_by, reason)
         select $1, t.id, t.status, $2, $3 from tours t where t.id = any($4)",
    )
    .bind(pause_id)
    .bind(actor)
    .bind(reason.as_str())
    .bind(&locked)
    .execute(&mut *tx)
    .instrument(db_span("insert tour_pauses"))
    .await
    .context("recording the pause")?;
    sqlx::query("update tours set status = 'maintenance', updated_at = now() where id = any($1)")
        .bind(&locked)
        .execute(&mut *tx)
        .instrument(db_span("update tours status maintenance"))
        .await
        .context("pausing the tours")?;
    audit::record(
        &mut tx,
        "tours",
        "bookings_paused",
        actor,
        None,
        json!({ "reason": reason.as_str(), "pause_id": pause_id, "tour_ids": locked, "tours": locked.len() }),
    )
    .await
    .context("auditing the pause")?;
    tx.commit().await.context("committing the pause")?;

    tracing::info!(%pause_id, tours = locked.len(), "bookings paused");
    Ok(Pause { pause_id, tour_ids: locked })
}

#[derive(Debug, sqlx::FromRow)]
struct OpenPause {
    pause_id: Uuid,
    tour_id: Uuid,
    prior_status: String,
    current_status: String,
}

/// Resumes one pause (`pause_id`) or every open pause, optionally only for
/// the listed tours.
#[tracing::instrument(name = "admin.resume_bookings", skip_all, fields(admin.actor = actor))]
pub async fn resume_bookings(
    pool: &PgPool,
    actor: &str,
    pause_id: &str,
    tour_ids: &[String],
    reason: &str,
) -> Result<Resumed, AdminError> {
    let reason = Reason::parse(reason)?;
    let pause_id = match pause_id.trim() {
        "" => None,
        raw => Some(Uuid::parse_str(raw).map_err(|_| AdminError::InvalidPauseId { value: raw.to_owned() })?),
    };
    let requested = parse_tour_ids(tour_ids, "tour_ids")?;
    let mut tx = pool.begin().await.context("starting the resume transaction")?;
    repair::set_lock_timeout(&mut tx).await?;
    if let Some(pause_id) = pause_id {
        ensure_pause_open(&mut tx, pause_id).await?;
    }

    // tours first, in id order, then the pause rows: the same order as pause
    sqlx::query(
        "select t.id from tours t
          where t.id in (select p.tour_id from tour_pauses p
                          where p.resumed_at is null
                            and ($1::uuid is null or p.pause_id = $1)
                            and ($2::uuid[] is null or p.tour_id = any($2)))
          order by t.id
            for update of t",
    )
    .bind(pause_id)
    .bind(selection(&requested))
    .execute(&mut *tx)
    .instrument(db_span("select tours for update"))
    .await
    .map_err(repair::lock_timeout_or("locking the paused tours"))?;
    let open: Vec<OpenPause> = sqlx::query_as(
        "select p.pause_id, p.tour_id, p.prior_status, t.status as current_status
           from tour_pauses p
           join tours t on t.id = p.tour_id
          where p.resumed_at is null
            and ($1::uuid is null or p.pause_id = $1)
            and ($2::uuid[] is null or p.tour_id = any($2))
          order by p.tour_id
            for update of p",
    )
    .bind(pause_id)
    .bind(selection(&requested))
    .fetch_all(&mut *tx)
    .instrument(db_span("select open tour_pauses for update"))
    .await
    .context("reading the open pauses")?;

    let not_paused: Vec<Uuid> =
        requested.iter().filter(|id| !open.iter().any(|p| p.tour_id == **id)).copied().collect();
    if !not_paused.is_empty() {
        return Err(AdminError::ToursNotPaused { pause_id, tours: not_paused });
    }

    let (restore, left_alone): (Vec<&OpenPause>, Vec<&OpenPause>) =
        open.iter().partition(|p| p.current_status == "maintenance");
    let restore_ids: Vec<Uuid> = restore.iter().map(|p| p.tour_id).collect();
    let restore_status: Vec<&str> = restore.iter().map(|p| p.prior_status.as_str()).collect();
    sqlx::query(
        "update tours t
            set status = v.prior_status, updated_at = now()
           from unnest($1::uuid[], $2::text[]) as v(id, prior_status)
          where t.id = v.id",
    )
    .bind(&restore_ids)
    .bind(&restore_status)
    .execute(&mut *tx)
    .instrument(db_span("update tours status restore"))
    .await
    .context("restoring the tours' prior statuses")?;
    close_pauses(&mut tx, &open).await?;

    let left_alone: Vec<Uuid> = left_alone.iter().map(|p| p.tour_id).collect();
    let pause_ids: Vec<Uuid> = {
        let mut ids: Vec<Uuid> = open.iter().map(|p| p.pause_id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    audit::record(
        &mut tx,
        "tours",
        "bookings_resumed",
        actor,
        None,
        json!({
            "reason": reason.as_str(),
            "pause_ids": pause_ids,
            "resumed_tour_ids": restore_ids,
            "left_alone_tour_ids": left_alone,
        }),
    )
    .await
    .context("auditing the resume")?;
    tx.commit().await.context("committing the resume")?;

    tracing::info!(tours = restore_ids.len(), left_alone = left_alone.len(), "bookings resumed");
    Ok(Resumed { tour_ids: restore_ids, left_alone })
}

async fn ensure_tours_exist(conn: &mut PgConnection, requested: &[Uuid]) -> Result<(), AdminError> {
    if requested.is_empty() {
        return Ok(());
    }
    let found: Vec<Uuid> = sqlx::query_scalar("select id from tours where id = any($1)")
        .bind(requested)
        .fetch_all(conn)
        .instrument(db_span("select tours"))
        .await
        .context("looking up the tours")?;
    let missing: Vec<Uuid> = requested.iter().filter(|id| !found.contains(id)).copied().collect();
    if missing.is_empty() { Ok(()) } else { Err(AdminError::UnknownTours(missing)) }
}

async fn ensure_pause_open(conn: &mut PgConnection, pause_id: Uuid) -> Result<(), AdminError> {
    let (total, open): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where resumed_at is null) from tour_pauses where pause_id = $1",
    )
    .bind(pause_id)
    .fetch_one(conn)
    .instrument(db_span("select tour_pauses"))
    .await
    .context("looking up the pause")?;
    match (total, open) {
        (0, _) => Err(AdminError::UnknownPause(pause_id)),
        (_, 0) => Err(AdminError::PauseAlreadyResumed(pause_id)),
        _ => Ok(()),
    }
}

async fn close_pauses(conn: &mut PgConnection, open: &[OpenPause]) -> Result<(), AdminError> {
    let pause_ids: Vec<Uuid> = open.iter().map(|p| p.pause_id).collect();
    let tour_ids: Vec<Uuid> = open.iter().map(|p| p.tour_id).collect();
    sqlx::query(
        "update tour_pauses p
            set resumed_at = now()
           from unnest($1::uuid[], $2::uuid[]) as v(pause_id, tour_id)
          where p.pause_id = v.pause_id and p.tour_id = v.tour_id",
    )
    .bind(&pause_ids)
    .bind(&tour_ids)
    .execute(conn)
    .instrument(db_span("update tour_pauses resumed_at"))
    .await
    .context("closing the pauses")?;
    Ok(())
}
