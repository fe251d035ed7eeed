//! The outbox worker. [`Worker::step`] does one round and can be called from tests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::action::Action;
use super::backoff;
use crate::clock::Clock;
use crate::staff::topics::{self, ForumFlag};
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
    /// The staff chat: in a forum, messages about a lead go to the lead's topic.
    pub staff_chat_id: i64,
    pub staff_forum: Arc<ForumFlag>,
    /// The instance id stamped on claimed rows (see `storage::ops`).
    pub owner: Option<i64>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Worker {
    /// One round: claim due rows (one per chat), send them concurrently, record outcomes.
    #[tracing::instrument(skip_all)]
    pub async fn step(&self) -> Result<Step, StorageError> {
        let rows =
            storage::outbox::claim_due_by(&self.db, self.clock.now_ms(), self.batch, self.owner)
                .await?;
        if rows.is_empty() {
            return Ok(Step::Empty);
        }
        let n = rows.len();
        let results =
            futures::future::join_all(rows.into_iter().map(|row| self.deliver(row))).await;
        for r in results {
            r?;
        }
        Ok(Step::Done(n))
    }

    async fn deliver(&self, row: storage::outbox::Row) -> Result<(), StorageError> {
        let action: Action = match serde_json::from_str(&row.action) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(outbox_id = row.id, error = %e, "outbox row does not decode; given up");
                return storage::outbox::mark_failed(
                    &self.db,
                    row.id,
                    &format!("corrupt action: {e}"),
                )
                .await;
            }
        };
        let action = self.in_lead_topic(&row, action).await?;
        let started = std::time::Instant::now();
        let outcome = send::perform(&self.bot, row.chat_id, &action, &self.token).await;
        self.metrics
            .observe_bot_api(crate::metrics::method_of(&action), started.elapsed());
        if let Err(e) = &outcome {
            self.metrics.telegram_error(match e {
                SendError::RetryAfter(_) => "rate_limited",
                SendError::Blocked(_) => "blocked",
                SendError::Permanent(_) => "permanent",
                SendError::Transient(_) => "transient",
            });
        }
        let now = self.clock.now_ms();
        match outcome {
            Ok(message_id) => {
                if row.idempotency_key.starts_with("alert:") {
                    self.metrics.alerts_sent.inc();
                }
                let mid = message_id.map(i64::from);
                storage::outbox::mark_sent(&self.db, row.id, mid, now).await?;
                if let (Action::CreateTopic { .. }, Some(lead_id), Some(topic)) =
                    (&action, row.lead_id, mid)
                {
                    self.staff_forum.learn(true);
                    storage::leads::set_topic(&self.db, lead_id, topic).await?;
                } else if let Some(mid) = mid {
                    storage::messages::link_delivered(&self.db, row.id, mid).await?;
                }
            }
            Err(SendError::Permanent(msg))
                if matches!(action, Action::CreateTopic { .. }) && topics::is_not_a_forum(&msg) =>
            {
                self.staff_forum.learn(false);
                storage::outbox::mark_failed(&self.db, row.id, "the staff chat is not a forum")
                    .await?;
            }
            Err(SendError::RetryAfter(d)) => {
                tracing::warn!(
                    outbox_id = row.id,
                    seconds = d.as_secs(),
                    "rate limited by Telegram"
                );
                let at = now + ms(d.max(Duration::from_secs(1)));
                storage::outbox::retry_at(&self.db, row.id, at, "429 Too Many Requests").await?;
            }
            Err(SendError::Blocked(msg)) => {
                tracing::info!(
                    outbox_id = row.id,
                    "the user blocked the bot; lead marked blocked"
                );
                storage::outbox::mark_failed(&self.db, row.id, &msg).await?;
                storage::leads::set_blocked_by_chat(&self.db, row.chat_id, true).await?;
            }
            Err(SendError::Permanent(msg)) => {
                tracing::error!(outbox_id = row.id, error = %msg, "Telegram refused a request; given up");
                storage::outbox::mark_failed(&self.db, row.id, &msg).await?;
            }
            Err(SendError::Transient(msg)) => {
                if !action.retryable() || row.attempts >= backoff::MAX_ATTEMPTS {
                    tracing::warn!(outbox_id = row.id, error = %msg, attempts = row.attempts, "send failed; given up");
                    storage::outbox::mark_failed(&self.db, row.id, &msg).await?;
                } else {
                    let delay = backoff::delay(row.attempts);
                    tracing::warn!(outbox_id = row.id, error = %msg, retry_in_ms = ms(delay), "send failed; will retry");
                    storage::outbox::retry_at(&self.db, row.id, now + ms(delay), &msg).await?;
                }
            }
        }
        Ok(())
    }

    /// In a forum staff chat, a message meant for the lead's topic gets the topic's id.
    async fn in_lead_topic(
        &self,
        row: &storage::outbox::Row,
        mut action: Action,
    ) -> Result<Action, StorageError> {
        if row.chat_id != self.staff_chat_id || !self.staff_forum.is_forum() {
            return Ok(action);
        }
        let Some(lead_id) = row.lead_id else {
            return Ok(action);
        };
        if let Action::SendMessage {
            thread_id,
            lead_topic: true,
            ..
        }
        | Action::CopyMessage {
            thread_id,
            lead_topic: true,
            ..
        } = &mut action
            && thread_id.is_none()
            && let Some(lead) = storage::leads::get(&self.db, lead_id).await?
        {
            *thread_id = lead.topic_id.and_then(|t| i32::try_from(t).ok());
        }
        Ok(action)
    }

    /// Runs until shutdown: rounds while there is work, then waits for a wake-up or the next due row.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.step().await {
                Ok(Step::Done(_)) => continue,
                Ok(Step::Empty) => {}
                Err(e) => tracing::warn!(error = %e, "outbox round failed; retrying"),
            }
            let idle = match storage::outbox::next_due(&self.db).await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - self.clock.now_ms()).unwrap_or(0))
                        .clamp(Duration::from_millis(10), Duration::from_secs(1))
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
