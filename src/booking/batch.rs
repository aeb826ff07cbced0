//! Group commit for the atomic path: bookings that arrive while a booking
//! call is in flight are coalesced into one call of
//! `create_booking_atomic_batch` (one statement, one commit), which books
//! each of them with the runbook's `create_booking_atomic` in its own
//! subtransaction — the way TigerBeetle pays its costs once per batch.
//!
//! - No added latency: a lane sends what is queued the moment its previous
//!   call returns, so a request on an idle lane goes out at once; under load
//!   the queue (and so the batch) grows, up to `max_size`. A batch of one is
//!   a plain `create_booking_atomic` call on the lane's connection.
//! - First come, first served per tour: a tour always maps to the same lane
//!   (a FIFO), and a batch keeps arrival order within a tour.
//! - Fixed lock order: a batch is sorted by tour id (stable), so two batches
//!   lock tours in the same order, and lanes never share a tour.
//! - Each booking keeps its own outcome; one whose batch call failed as a
//!   whole (not a refusal: the call wrote nothing) is retried alone.
//! - After the runbook's rollback the batch call fails with undefined
//!   function and every booking in it goes to the legacy path, as a single
//!   call would.
//!
//! Each lane holds one connection while it has work, so a batch pays no pool
//! checkout at all (and, idle, leaves it warm: `db::warm`). A caller with a deadline nearer than the
//! session's `statement_timeout` skips the lanes, or leaves its lane for a
//! call of its own when its deadline comes that near while it queues (see
//! [`Batcher::create`]).

use std::sync::Arc;

use sqlx::{FromRow, PgConnection, Row, postgres::PgRow, types::Json};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::booking::{
    atomic::{self, AtomicFailure, Payload},
    error::BookingError,
    prepared::{AttemptError, PreparedBooking},
    reference,
    store::{BookingRow, db_span},
    types::{Booking, Created},
};
use crate::db::{
    deadline::{self, Deadline},
    error::{self as db_error, DbError, DbErrorKind, sqlstate},
    warm::{WarmConnection, WarmConnections},
};

/// Up to 64: a batch with a refusal in it is booked again one subtransaction
/// per booking, and PostgreSQL keeps 64 subtransaction ids per backend before
/// others' snapshots slow down.
pub const MAX_BATCH_SIZE: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_size: usize,
    pub lanes: usize,
}

struct Job {
    prepared: PreparedBooking,
    /// The caller's deadline, if it has one: a task-local does not cross
    /// into the lane.
    deadline: Option<Deadline>,
    reply: oneshot::Sender<Result<Created, AtomicFailure>>,
}

/// Hands atomic-path bookings to the lanes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Batcher {
    warm: WarmConnections,
    lanes: Arc<[mpsc::Sender<Job>]>,
}

impl Batcher {
    /// Starts the lanes; they stop when `stop` is cancelled.
    pub fn start(
        warm: WarmConnections,
        settings: BatchSettings,
        stop: CancellationToken,
        background: &mut tokio::task::JoinSet<()>,
    ) -> Batcher {
        let max_size = settings.max_size.clamp(1, MAX_BATCH_SIZE);
        let mut lanes = Vec::new();
        for _ in 0..settings.lanes.max(1) {
            // bounded by the server's concurrency limit in practice; the
            // bound only keeps a runaway from growing without limit
            let (sender, receiver) = mpsc::channel(4096);
            background.spawn(run_lane(warm.clone(), receiver, max_size, stop.clone()));
            lanes.push(sender);
        }
        Batcher { warm, lanes: lanes.into() }
    }

    /// Books through a lane; the same contract as [`atomic::create`].
    ///
    /// A caller whose deadline is nearer than the session's
    /// `statement_timeout` is booked alone, with its deadline
    /// (`db::deadline`): a batch is one statement and one commit for all its
    /// callers, so bounding it by one caller's deadline would cancel its
    /// neighbours' bookings, and not bounding it could commit a booking after
    /// its caller was told DEADLINE_EXCEEDED.
    pub async fn create(&self, prepared: &PreparedBooking) -> Result<Created, AtomicFailure> {
        if deadline::is_short() {
            return atomic::create(&self.warm, prepared).await;
        }
        let lane = lane_of(prepared, self.lanes.len());
        let (reply, answer) = oneshot::channel();
        // the caller's own db.query span: its wait in the lane plus the batch
        // call that booked it (create_booking_atomic, batched)
        let answered = async {
            let job = Job { prepared: prepared.clone(), deadline: deadline::current(), reply };
            self.lanes[lane].send(job).await.ok()?;
            answer.await.ok()
        }
        .instrument(db_span("create_booking_atomic"))
        .await;
        if let Some(result) = answered {
            return result;
        }
        // the lanes are stopping (shutdown): book alone
        atomic::create(&self.warm, prepared).await
    }
}

fn lane_of(prepared: &PreparedBooking, lanes: usize) -> usize {
    (prepared.request.tour_id.0.as_u128() % lanes as u128) as usize
}

async fn run_lane(warm: WarmConnections, mut queue: mpsc::Receiver<Job>, max_size: usize, stop: CancellationToken) {
    let mut conn: Option<WarmConnection> = None;
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            job = queue.recv() => match job { Some(job) => job, None => return },
        };
        let mut jobs = vec![first];
        while jobs.len() < max_size {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // a caller that gave up (deadline, cancel) is not booked behind its back
        jobs.retain(|job| !job.reply.is_closed());
        // a caller whose deadline came nearer than the session's
        // statement_timeout while it queued is booked alone, with its
        // deadline, as if it had arrived that way (see `Batcher::create`):
        // the batch may run for the whole statement_timeout
        let (short, batched): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|job| job.deadline.is_some_and(|d| d.is_short()));
        alone(&warm, short);
        let jobs = batched;
        if jobs.is_empty() {
            continue;
        }
        if conn.is_none() {
            match warm.acquire().await {
                Ok(acquired) => conn = Some(acquired),
                Err(error) => {
                    tracing::warn!(%error, "no connection for a batch; booking its requests one by one");
                    alone(&warm, jobs);
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else { continue };
        let usable = match <[Job; 1]>::try_from(jobs) {
            Ok([job]) => run_single(&warm, connection, job).await,
            Err(jobs) => run_batch(&warm, connection, jobs).await,
        };
        if !usable {
            // the connection may be broken: back to the pool, a fresh one next time
            conn = None;
        }
        if queue.is_empty()
            && let Some(idle) = conn.take()
        {
            // idle: the connection waits warm for the next booking
            idle.release();
        }
    }
}

/// A batch of one: the runbook's function called directly on the lane's
/// connection (no batch function, no subtransaction), so a booking on an idle
/// lane costs what an unbatched one does. False when the connection may be
/// broken.
async fn run_single(warm: &WarmConnections, conn: &mut PgConnection, job: Job) -> bool {
    let reference = reference::generate();
    let called = atomic::call_on(conn, &job.prepared, &reference).await;
    let usable = called.as_ref().err().is_none_or(db_error::leaves_session_usable);
    match atomic::outcome(&job.prepared, called) {
        Ok(created) => {
            let _ = job.reply.send(Ok(created));
        }
        Err(AttemptError::Failed(failure)) => {
            let _ = job.reply.send(Err(failure));
        }
        // a collision (reference taken, or the request id raced by another
        // transaction): the single call's loop answers it
        Err(AttemptError::ReferenceTaken | AttemptError::RequestIdTaken) => alone(warm, vec![job]),
    }
    usable
}

/// One row of the batch function's answer.
struct ItemRow {
    item: i32,
    error_code: Option<String>,
    error_detail: Option<String>,
    error_constraint: Option<String>,
    booking: Option<BookingRow>,
}

impl FromRow<'_, PgRow> for ItemRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let error_code: Option<String> = row.try_get("error_code")?;
        let booking = if error_code.is_none() { Some(BookingRow::from_row(row)?) } else { None };
        Ok(ItemRow {
            item: row.try_get("item")?,
            error_code,
            error_detail: row.try_get("error_detail")?,
            error_constraint: row.try_get("error_constraint")?,
            booking,
        })
    }
}

/// Books one batch and answers every job. False when the call failed in a
/// way that may have broken the connection.
async fn run_batch(warm: &WarmConnections, conn: &mut PgConnection, mut jobs: Vec<Job>) -> bool {
    // fixed lock order; a stable sort keeps arrival order within a tour
    jobs.sort_by_key(|job| job.prepared.request.tour_id.0);
    let references: Vec<String> = jobs.iter().map(|_| reference::generate()).collect();
    let payloads: Vec<Payload<'_>> =
        jobs.iter().zip(&references).map(|(job, reference)| Payload::new(&job.prepared, reference)).collect();
    let mut called = call(conn, &payloads).await;
    if let Err(error) = &called
        && atomic::dropped_stale_statements(conn, "create_booking_atomic_batch", error).await
    {
        called = call(conn, &payloads).await;
    }
    drop(payloads);

    let rows = match called {
        Ok(rows) if rows.len() == jobs.len() => rows,
        Ok(rows) => {
            tracing::error!(sent = jobs.len(), answered = rows.len(), "batch call answered the wrong number of rows");
            alone(warm, jobs);
            return true;
        }
        Err(error) => {
            let kind = db_error::classify(&error);
            if db_error::has_sqlstate(&error, sqlstate::UNDEFINED_FUNCTION) {
                // the runbook's rollback ran (or the batch function is missing):
                // the single call decides, and falls back to legacy like any booking
                tracing::info!(%error, "batch call found a function missing; booking the batch one by one");
                alone(warm, jobs);
            } else if kind.is_retryable() {
                // the database is away, busy or past a deadline: every booking
                // in the batch gets that answer (nothing was written), as a
                // single call would; the callers retry with their request ids
                tracing::warn!(%error, size = jobs.len(), "batch call failed; nothing was booked");
                let message = error.to_string();
                for job in jobs {
                    let source = sqlx::Error::Protocol(message.clone());
                    let failure = DbError { action: "calling create_booking_atomic_batch", kind: kind.clone(), source };
                    let _ = job.reply.send(Err(AtomicFailure::Refused(BookingError::Database(failure))));
                }
            } else {
                tracing::warn!(%error, size = jobs.len(), "batch call failed as a whole; booking its requests one by one");
                alone(warm, jobs);
            }
            return kind != DbErrorKind::Unavailable;
        }
    };
    for (job, row) in jobs.into_iter().zip(rows) {
        debug_assert!(row.item >= 0);
        let seats = job.prepared.request.seats.total();
        let result = match (row.booking, row.error_code) {
            (Some(booking), _) => match Booking::try_from(booking) {
                Ok(booking) => atomic::answer(&job.prepared, booking).map_err(AtomicFailure::Refused),
                Err(error) => Err(AtomicFailure::Refused(error)),
            },
            (None, Some(code)) => {
                match atomic::refusal(&code, row.error_detail.as_deref().unwrap_or(""), seats) {
                    Some(refused) => Err(AtomicFailure::Refused(refused)),
                    None => {
                        // a unique violation (a reference collision or a request
                        // id raced by another transaction) or an out-of-range
                        // price: the single call's handling answers it
                        tracing::debug!(
                            code,
                            constraint = row.error_constraint.as_deref(),
                            "batched booking retried alone"
                        );
                        alone(warm, vec![job]);
                        continue;
                    }
                }
            }
            (None, None) => Err(AtomicFailure::Refused(BookingError::internal(
                "reading a batch answer",
                "a row with neither a booking nor an error",
            ))),
        };
        let _ = job.reply.send(result);
    }
    true
}

async fn call(conn: &mut PgConnection, payloads: &[Payload<'_>]) -> Result<Vec<ItemRow>, sqlx::Error> {
    sqlx::query_as::<_, ItemRow>(
        "select r.item, r.error_code, r.error_detail, r.error_constraint, (r.booking).*
           from create_booking_atomic_batch($1) r",
    )
    .bind(Json(payloads))
    .fetch_all(conn)
    .await
}

async fn alone_one(warm: WarmConnections, job: Job) {
    let booked = atomic::create(&warm, &job.prepared);
    let result = match job.deadline {
        Some(at) => deadline::scope(at, booked).await,
        None => booked.await,
    };
    let _ = job.reply.send(result);
}

/// Books each job with its own single call, off the lane.
fn alone(warm: &WarmConnections, jobs: Vec<Job>) {
    for job in jobs {
        tokio::spawn(alone_one(warm.clone(), job));
    }
}
