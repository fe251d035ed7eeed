//! The outbox worker. [`Worker::step`] does one round and can be called from tests.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::action::Action;
use super::backoff;
use crate::clock::Clock;
use crate::storage::outbox::{Delivery, Outcome};
use crate::storage::{self, Db, StorageError};
use crate::telegram::send::{self, SendError};

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Rows were claimed and handled.
    Done(usize),
    /// Nothing was due.
    Empty,
}

/// Delivers outbox rows.
#[derive(Clone)]
pub struct Worker {
    pub bot: teloxide::Bot,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub token: String,
    /// Woken when rows are enqueued.
    pub wake: Arc<Notify>,
    /// Rows claimed per round.
    pub batch: i64,
}

impl Worker {
    /// One round: claim due rows (one per chat), send them concurrently, record outcomes. Sends
    /// that finish together are recorded in one transaction (a group commit); none waits for a
    /// slower one, so the window between Telegram accepting a message and the bot recording it
    /// stays as short as a single send allows.
    #[tracing::instrument(skip_all)]
    pub async fn step(&self) -> Result<Step, StorageError> {
        let rows = storage::outbox::claim_due(&self.db, self.clock.now_ms(), self.batch).await?;
        if rows.is_empty() {
            return Ok(Step::Empty);
        }
        let n = rows.len();
        let mut sending: FuturesUnordered<_> =
            rows.into_iter().map(|row| self.deliver(row)).collect();
        let mut failure = None;
        while let Some(first) = sending.next().await {
            let mut done = vec![first];
            while let Some(Some(d)) = sending.next().now_or_never() {
                done.push(d);
            }
            if let Err(e) = storage::outbox::record_deliveries(&self.db, &done).await {
                failure.get_or_insert(e);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Step::Done(n)),
        }
    }

    /// Sends one row; the outcome is recorded by the caller.
    async fn deliver(&self, row: storage::outbox::Row) -> Delivery {
        let outcome = match serde_json::from_str::<Action>(&row.action) {
            Ok(action) => {
                let outcome = send::perform(&self.bot, row.chat_id, &action, &self.token).await;
                self.outcome(&row, &action, outcome)
            }
            Err(e) => {
                tracing::error!(outbox_id = row.id, error = %e, "outbox row does not decode; given up");
                Outcome::Failed {
                    error: format!("corrupt action: {e}"),
                    blocked: false,
                }
            }
        };
        Delivery {
            id: row.id,
            chat_id: row.chat_id,
            outcome,
        }
    }

    fn outcome(
        &self,
        row: &storage::outbox::Row,
        action: &Action,
        outcome: Result<Option<i32>, SendError>,
    ) -> Outcome {
        let now = self.clock.now_ms();
        match outcome {
            Ok(message_id) => Outcome::Sent {
                message_id: message_id.map(i64::from),
                at: now,
            },
            Err(SendError::RetryAfter(d)) => {
                tracing::warn!(
                    outbox_id = row.id,
                    seconds = d.as_secs(),
                    "rate limited by Telegram"
                );
                Outcome::Retry {
                    at: now + ms(d.max(Duration::from_secs(1))),
                    error: "429 Too Many Requests".into(),
                }
            }
            Err(SendError::Blocked(msg)) => {
                tracing::info!(
                    outbox_id = row.id,
                    "the user blocked the bot; lead marked blocked"
                );
                Outcome::Failed {
                    error: msg,
                    blocked: true,
                }
            }
            Err(SendError::Permanent(msg)) => {
                tracing::error!(outbox_id = row.id, error = %msg, "Telegram refused a request; given up");
                Outcome::Failed {
                    error: msg,
                    blocked: false,
                }
            }
            Err(SendError::Transient(msg)) => {
                if !action.retryable() || row.attempts >= backoff::MAX_ATTEMPTS {
                    tracing::warn!(outbox_id = row.id, error = %msg, attempts = row.attempts, "send failed; given up");
                    Outcome::Failed {
                        error: msg,
                        blocked: false,
                    }
                } else {
                    let delay = backoff::delay(row.attempts);
                    tracing::warn!(outbox_id = row.id, error = %msg, retry_in_ms = ms(delay), "send failed; will retry");
                    Outcome::Retry {
                        at: now + ms(delay),
                        error: msg,
                    }
                }
            }
        }
    }

    /// Runs until shutdown. Sends are pipelined: up to `batch` rows are in flight, each in its own
    /// task, and as soon as some finish their outcomes are recorded together and more rows are
    /// claimed, so one slow send holds up only its own chat. With nothing in flight it waits for
    /// a wake-up or the next due row. Dropping the future (a crash in tests) aborts the sends.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let cap = usize::try_from(this.batch).unwrap_or(64).max(1);
        let mut sending: JoinSet<Delivery> = JoinSet::new();
        let mut claim = true;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = cap.saturating_sub(sending.len());
            // Claims are worth a query when a fair share of the slots is free.
            if claim && (sending.is_empty() || free >= (cap / 8).max(1)) {
                match storage::outbox::claim_due(&this.db, this.clock.now_ms(), free as i64).await {
                    Ok(rows) => {
                        // Fewer rows than asked: nothing else is due until something changes.
                        claim = rows.len() == free;
                        for row in rows {
                            let w = this.clone();
                            sending.spawn(async move { w.deliver(row).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim outbox rows; retrying");
                        claim = false;
                    }
                }
            }
            if sending.is_empty() {
                let idle = match storage::outbox::next_due(&this.db).await {
                    Ok(Some(at)) => {
                        Duration::from_millis(u64::try_from(at - this.clock.now_ms()).unwrap_or(0))
                            .clamp(Duration::from_millis(10), Duration::from_secs(1))
                    }
                    _ => Duration::from_secs(1),
                };
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => {}
                }
                claim = true;
                continue;
            }
            tokio::select! {
                Some(first) = sending.join_next() => {
                    let mut done = Vec::new();
                    collect(&mut done, first);
                    while let Some(more) = sending.try_join_next() {
                        collect(&mut done, more);
                    }
                    this.record(&done).await;
                    // A chat's next row is claimable once its previous one is recorded.
                    claim = true;
                }
                _ = this.wake.notified() => claim = true,
                _ = shutdown.changed() => {}
            }
        }
        // Sends already under way finish and are recorded, so a clean stop leaves nothing in flight.
        let mut done = Vec::new();
        while let Some(d) = sending.join_next().await {
            collect(&mut done, d);
        }
        this.record(&done).await;
        tracing::info!("outbox worker stopped");
    }

    /// Records outcomes; on a storage error the rows stay `sending` and are sent again after a
    /// restart (the documented duplicate window).
    async fn record(&self, done: &[Delivery]) {
        if done.is_empty() {
            return;
        }
        if let Err(e) = storage::outbox::record_deliveries(&self.db, done).await {
            tracing::warn!(error = %e, rows = done.len(), "cannot record sent outbox rows");
        }
    }
}

/// A finished send; a panicked one leaves its row `sending` (sent again after a restart).
fn collect(done: &mut Vec<Delivery>, joined: Result<Delivery, tokio::task::JoinError>) {
    match joined {
        Ok(d) => done.push(d),
        Err(e) => tracing::error!(error = %e, "an outbox send panicked"),
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
