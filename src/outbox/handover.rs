//! Rows claimed by the transaction that enqueued them, passed to the worker in memory: the worker
//! sends them without a turn at the database of its own to claim them (on SQLite that turn
//! waited behind the next batch's transaction, on PostgreSQL it was a round trip).
//!
//! A claim whose commit fails may still have been applied (PostgreSQL can commit and the
//! connection break before the answer arrives): its rows are then `sending` for this process
//! with no one to send them. Whoever sees such a failure calls [`Handover::lost`]; transactions
//! then claim nothing for the worker, the worker stops claiming and, once it holds no row and no
//! claim for it is under way ([`Handover::claiming`] keeps the sweep out), puts back every row
//! still `sending` for this process (`storage::ops::release_lost`), and claiming resumes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

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
    /// Held (shared) by each transaction that may claim rows for the worker, from before it
    /// begins until its rows are given; the sweep of lost claims holds it alone.
    gate: tokio::sync::RwLock<()>,
    /// Set when a claim's outcome is unknown, until the sweep put its rows back.
    unsure: AtomicBool,
}

impl Handover {
    pub fn new(limit: i64, owner: Option<i64>) -> Handover {
        Handover {
            rows: Mutex::new(Vec::new()),
            in_flight: AtomicI64::new(0),
            limit,
            owner,
            given: tokio::sync::Notify::new(),
            gate: tokio::sync::RwLock::new(()),
            unsure: AtomicBool::new(false),
        }
    }

    /// How many more rows a transaction may claim for the worker now: none while a lost claim
    /// waits for the sweep.
    pub fn room(&self) -> i64 {
        if self.is_unsure() {
            return 0;
        }
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

    /// Held by a transaction that may claim rows for the worker, from before it begins until its
    /// rows are given (or it failed, and said so with [`Handover::lost`]).
    pub async fn claiming(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// A claim for this process failed in a way that may have left its rows claimed: claiming
    /// stops until the worker swept them back.
    pub fn lost(&self) {
        self.unsure.store(true, Ordering::SeqCst);
    }

    /// Whether a lost claim waits for the sweep.
    pub fn is_unsure(&self) -> bool {
        self.unsure.load(Ordering::SeqCst)
    }

    /// The worker's side, holding no row: once no claim is under way and no row waits to be
    /// taken, runs `sweep` (which puts back the rows still claimed for this process) and, if it
    /// succeeded, lets claiming resume. What `sweep` returned (the rows put back); `None` when
    /// rows wait to be taken (they are sent first).
    pub async fn sweep<E>(
        &self,
        sweep: impl Future<Output = Result<u64, E>>,
    ) -> Result<Option<u64>, E> {
        let _alone = self.gate.write().await;
        if !self.lock().is_empty() {
            return Ok(None);
        }
        let put_back = sweep.await?;
        self.unsure.store(false, Ordering::SeqCst);
        Ok(Some(put_back))
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

    #[tokio::test(start_paused = true)]
    async fn a_lost_claim_stops_claiming_until_swept_with_no_claim_under_way() {
        let h = std::sync::Arc::new(Handover::new(4, Some(7)));
        let claiming = h.claiming().await;
        h.lost();
        assert_eq!(h.room(), 0, "nothing is claimed while the sweep waits");
        // The sweep waits for the transaction under way to give its rows.
        let sweeper = h.clone();
        let sweep = tokio::spawn(async move { sweeper.sweep(async { Ok::<u64, ()>(3) }).await });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!sweep.is_finished(), "swept while a claim was under way");
        h.give(vec![row(1)]);
        drop(claiming);
        assert_eq!(
            sweep.await.ok(),
            Some(Ok(None)),
            "rows given are sent first"
        );
        assert!(h.is_unsure());
        assert_eq!(h.take().len(), 1);
        // A sweep that fails leaves claiming stopped; one that succeeds resumes it.
        assert_eq!(h.sweep(async { Err::<u64, ()>(()) }).await, Err(()));
        assert!(h.is_unsure());
        assert_eq!(h.room(), 0);
        assert_eq!(h.sweep(async { Ok::<u64, ()>(2) }).await, Ok(Some(2)));
        assert!(!h.is_unsure());
        assert_eq!(h.room(), 4);
    }
}
