//! Rows claimed by the transaction that enqueued them, passed to the worker in memory: the worker
//! sends them without a turn at the database of its own to claim them (on SQLite that turn
//! waited behind the next batch's transaction, on PostgreSQL it was a round trip).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::storage::outbox::Row;

/// Between the transactions that enqueue messages and the outbox worker of this process.
#[derive(Debug)]
pub struct Handover {
    rows: Mutex<Vec<Row>>,
    /// Rows the worker holds claimed and not yet recorded, as it last counted.
    in_flight: AtomicI64,
    /// Rows claimed and not yet recorded the worker takes at most (its `batch`).
    limit: i64,
    /// The instance id claimed rows are stamped with (see `storage::ops`).
    owner: Option<i64>,
    /// Woken when rows are given.
    given: tokio::sync::Notify,
}

impl Handover {
    pub fn new(limit: i64, owner: Option<i64>) -> Handover {
        Handover {
            rows: Mutex::new(Vec::new()),
            in_flight: AtomicI64::new(0),
            limit,
            owner,
            given: tokio::sync::Notify::new(),
        }
    }

    /// How many more rows a transaction may claim for the worker now.
    pub fn room(&self) -> i64 {
        let waiting = i64::try_from(self.lock().len()).unwrap_or(i64::MAX);
        self.limit
            .saturating_sub(self.in_flight.load(Ordering::Relaxed))
            .saturating_sub(waiting)
    }

    pub fn owner(&self) -> Option<i64> {
        self.owner
    }

    /// Gives the worker rows claimed by a committed transaction, and wakes it.
    pub fn give(&self, rows: Vec<Row>) {
        if !rows.is_empty() {
            self.lock().extend(rows);
            self.given.notify_one();
        }
    }

    /// Waits until rows are given (the worker's side; a give before the wait counts).
    pub async fn given(&self) {
        self.given.notified().await;
    }

    /// The rows given since the last call (the worker's side).
    pub fn take(&self) -> Vec<Row> {
        std::mem::take(&mut *self.lock())
    }

    /// The worker tells how many rows it holds.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Row>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::Handover;
    use crate::storage::outbox::Row;

    fn row(id: i64) -> Row {
        Row::claimed_for_test(id, 1, true)
    }

    #[test]
    fn room_counts_rows_in_flight_and_rows_not_yet_taken() {
        let h = Handover::new(4, Some(7));
        assert_eq!(h.room(), 4);
        h.give(vec![row(1), row(2)]);
        assert_eq!(h.room(), 2);
        h.set_in_flight(1);
        assert_eq!(h.room(), 1);
        let taken = h.take();
        assert_eq!(taken.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2]);
        h.set_in_flight(3);
        assert_eq!(h.room(), 1);
        h.set_in_flight(9);
        assert!(h.room() < 0, "over the limit: nothing more is claimed");
        assert!(h.take().is_empty());
    }
}
