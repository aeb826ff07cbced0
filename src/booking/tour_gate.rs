//! A bound on the bookings of one tour in flight at once, so that a flash
//! sale on one tour cannot take the whole database pool.
//!
//! Every booking of a tour locks that tour's row, so they go through the
//! database one at a time whatever the pool holds. Without a bound, the
//! callers of a hot tour each take a connection and wait on the row lock:
//! the pool runs dry and every other tour's bookings fail with
//! DATABASE_UNAVAILABLE. With the gate:
//!
//! - at most `max_in_database` bookings of a tour hold a connection at once
//!   (the paths that take one connection per booking: the unbatched atomic
//!   call and the legacy path); the others wait their turn here, first come
//!   first served, holding nothing;
//! - at most `max_waiting` more may wait; beyond that a booking is refused at
//!   once with [`BookingError::TourBusy`] (RESOURCE_EXHAUSTED `TOUR_BUSY`,
//!   retryable) instead of queueing behind a lock it would time out on.
//!
//! Batched bookings share one connection per lane already, so only the
//! waiting bound applies to them: at most `max_waiting` of a tour in flight,
//! which keeps one hot tour from filling the server's whole concurrency
//! limit.
//!
//! A tour has an entry only while it has bookings in flight: the last one to
//! leave removes it, so the map holds at most the tours being booked now.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::{booking::error::BookingError, telemetry::metrics};

/// The gate every booking creation passes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TourGate {
    tours: Arc<Mutex<HashMap<Uuid, Entry>>>,
    max_in_database: usize,
    max_waiting: usize,
}

#[derive(Debug)]
struct Entry {
    /// Bookings of the tour admitted and not yet finished.
    admitted: usize,
    /// Turns in the database (`max_in_database` permits, handed out fairly).
    in_database: Arc<Semaphore>,
}

/// How a booking will meet the database, which decides its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It takes a connection of its own: `max_in_database` at a time, up to
    /// `max_waiting` more waiting their turn.
    OwnConnection,
    /// It goes into a batch on a lane's connection: up to `max_waiting` in
    /// flight.
    Batched,
}

impl TourGate {
    pub fn new(max_in_database: usize, max_waiting: usize) -> Self {
        TourGate { tours: Arc::default(), max_in_database: max_in_database.max(1), max_waiting: max_waiting.max(1) }
    }

    /// Admits one booking of `tour_id`, or refuses it at once when the tour
    /// already has its fill in flight. The ticket counts it until dropped.
    pub fn admit(&self, tour_id: Uuid, admission: Admission) -> Result<Ticket, BookingError> {
        let bound = match admission {
            Admission::OwnConnection => self.max_in_database + self.max_waiting,
            Admission::Batched => self.max_waiting,
        };
        let mut tours = self.tours.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = tours
            .entry(tour_id)
            .or_insert_with(|| Entry { admitted: 0, in_database: Arc::new(Semaphore::new(self.max_in_database)) });
        if entry.admitted >= bound {
            let in_flight = entry.admitted;
            drop(tours);
            metrics::load_shed("tour_waiters");
            tracing::debug!(%tour_id, in_flight, "booking refused: tour busy");
            return Err(BookingError::TourBusy { in_flight });
        }
        entry.admitted += 1;
        Ok(Ticket { gate: self.clone(), tour_id, in_database: entry.in_database.clone() })
    }

    /// Tours with bookings in flight (entries in the map).
    pub fn tours_in_flight(&self) -> usize {
        self.tours.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn leave(&self, tour_id: Uuid) {
        let mut tours = self.tours.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = tours.get_mut(&tour_id) {
            entry.admitted -= 1;
            if entry.admitted == 0 {
                tours.remove(&tour_id);
            }
        }
    }
}

/// One admitted booking of a tour; leaves the gate when dropped (answered,
/// failed, or its caller gone).
#[derive(Debug)]
pub struct Ticket {
    gate: TourGate,
    tour_id: Uuid,
    in_database: Arc<Semaphore>,
}

impl Ticket {
    /// Waits for one of the tour's turns in the database; the turn ends when
    /// the returned permit is dropped.
    pub async fn turn_in_database(&self) -> Result<OwnedSemaphorePermit, BookingError> {
        self.in_database
            .clone()
            .acquire_owned()
            .await
            .map_err(|closed| BookingError::internal("waiting for a turn in the database", closed))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.leave(self.tour_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tour_takes_in_database_plus_waiting_then_is_busy() {
        let gate = TourGate::new(2, 3);
        let hot = Uuid::new_v4();
        let tickets: Vec<Ticket> =
            (0..5).map(|_| gate.admit(hot, Admission::OwnConnection).expect("within the bound")).collect();

        let refused = gate.admit(hot, Admission::OwnConnection).expect_err("the sixth is refused");
        assert!(matches!(refused, BookingError::TourBusy { in_flight: 5 }), "{refused:?}");
        gate.admit(Uuid::new_v4(), Admission::OwnConnection).expect("another tour is not affected");

        drop(tickets);
        gate.admit(hot, Admission::OwnConnection).expect("room again once they leave");
    }

    #[test]
    fn batched_bookings_are_bounded_by_the_waiting_bound_alone() {
        let gate = TourGate::new(2, 3);
        let hot = Uuid::new_v4();
        let _tickets: Vec<Ticket> =
            (0..3).map(|_| gate.admit(hot, Admission::Batched).expect("within the bound")).collect();
        assert!(gate.admit(hot, Admission::Batched).is_err());
    }

    #[test]
    fn idle_tours_leave_no_entry_behind() {
        let gate = TourGate::new(1, 1);
        for _ in 0..100 {
            let _ticket = gate.admit(Uuid::new_v4(), Admission::OwnConnection).expect("admitted");
        }
        assert_eq!(gate.tours_in_flight(), 0);
    }

    #[tokio::test]
    async fn turns_in_the_database_are_bounded_and_handed_on() {
        let gate = TourGate::new(1, 5);
        let hot = Uuid::new_v4();
        let first = gate.admit(hot, Admission::OwnConnection).expect("admitted");
        let second = gate.admit(hot, Admission::OwnConnection).expect("admitted");
        let turn = first.turn_in_database().await.expect("a turn");

        let waiting = second.turn_in_database();
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "one at a time in the database");
        drop(turn);
        let _next = waiting.await.expect("the turn passes on");
    }
}
