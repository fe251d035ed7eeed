//! The outbox worker. [`Worker::step`] does one round and can be called from tests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};

use super::action::Action;
use super::backoff;
use super::handover::Handover;
use crate::clock::Clock;
use crate::staff::chat::Upgrade;
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
    /// Woken when rows are enqueued or handed over.
    pub wake: Arc<Notify>,
    /// Rows claimed for this worker by the transactions that enqueued them.
    pub handover: Option<Arc<Handover>>,
    /// Rows claimed and not yet recorded, at most (a chain of a chat's messages claimed together
    /// counts once): the more, the more deliveries each recording transaction carries.
    pub batch: i64,
    /// Requests to Telegram at once, at most (each holds a connection). Sends beyond it wait
    /// their turn, already claimed.
    pub sends: Arc<Semaphore>,
    /// The staff chat: in a forum, messages about a lead go to the lead's topic; an upgrade to a
    /// supergroup is followed.
    pub staff_chat: Arc<crate::staff::chat::StaffChat>,
    pub staff_forum: Arc<ForumFlag>,
    /// The instance id stamped on claimed rows (see `storage::ops`).
    pub owner: Option<i64>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A send's result, waiting to be recorded.
struct Delivered {
    row: storage::outbox::Row,
    /// The action as sent; `None` when the stored action no longer decodes.
    action: Option<Action>,
    outcome: Outcome,
}

enum Outcome {
    /// Telegram's answer.
    Sent(Result<Option<i32>, SendError>),
    /// Not sent: the lead's forum topic could not be looked up.
    NotSent(StorageError),
    /// Not tried: a message before it in its chain was not delivered, so it waits its turn again.
    Unsent,
}

/// How long recording an outcome is retried while the database is away. A send Telegram
/// accepted but the bot did not record is sent again after a restart, so it is worth waiting.
const RECORD_PATIENCE: Duration = Duration::from_secs(120);

/// How often the staff chat's first waiting message is tried while the bot cannot post there.
const STAFF_CHAT_RETRY: Duration = Duration::from_secs(60);

impl Worker {
    /// One round: claim due rows (one per chat), send them concurrently, and record outcomes as
    /// they come in: everything that finished by then in one transaction, so the window between
    /// Telegram accepting a message and the bot recording it stays short under load.
    #[tracing::instrument(skip_all)]
    pub async fn step(&self) -> Result<Step, StorageError> {
        let mut rows = self.handover.as_ref().map(|h| h.take()).unwrap_or_default();
        rows.extend(
            storage::outbox::claim_due_by(&self.db, self.clock.now_ms(), self.batch, self.owner)
                .await?,
        );
        if rows.is_empty() {
            return Ok(Step::Empty);
        }
        let n = rows.len();
        let mut sends = JoinSet::new();
        self.spawn_sends(&mut sends, rows);
        while let Some(first) = sends.join_next().await {
            let done = self.go_on(finished(first, &mut sends), &mut sends);
            self.record_patiently(&done, 0).await?;
        }
        Ok(Step::Done(n))
    }

    /// Sends claimed rows: each chain (see [`chains`]) starts on a task of its own, so it runs on
    /// (and its timeout counts from the answer) while the worker is busy recording other
    /// outcomes: a future left unpolled past its timeout would report a message Telegram accepted
    /// as failed, and it would be sent again.
    fn spawn_sends(&self, sends: &mut JoinSet<Sent>, rows: Vec<storage::outbox::Row>) {
        for chain in chains(rows) {
            self.spawn_chain(sends, chain);
        }
    }

    /// Sends a chain's next row on a task of its own.
    fn spawn_chain(&self, sends: &mut JoinSet<Sent>, mut chain: Chain) {
        let Some(row) = chain.rows.pop_front() else {
            return;
        };
        let worker = self.clone();
        sends.spawn(async move { worker.send_next(row, chain).await });
    }

    async fn send_next(&self, row: storage::outbox::Row, mut chain: Chain) -> Sent {
        let delivered = self.send(row, &chain.delivered).await;
        if let Outcome::Sent(Ok(Some(mid))) = delivered.outcome {
            chain
                .delivered
                .push((delivered.row.idempotency_key.clone(), mid));
        }
        Sent { delivered, chain }
    }

    /// Chains go on: each row delivered lets the next row of its chain go at once, while its own
    /// delivery is recorded; after a row that was not delivered, the rest of its chain is left
    /// unsent (it waits behind that row again). The outcomes to record.
    fn go_on(&self, sent: Vec<Sent>, sends: &mut JoinSet<Sent>) -> Vec<Delivered> {
        let mut done = Vec::with_capacity(sent.len());
        for Sent { delivered, chain } in sent {
            if matches!(delivered.outcome, Outcome::Sent(Ok(_))) {
                self.spawn_chain(sends, chain);
            } else {
                done.extend(chain.rows.into_iter().map(|row| Delivered {
                    row,
                    action: None,
                    outcome: Outcome::Unsent,
                }));
            }
            done.push(delivered);
        }
        done
    }

    /// Sends one row; `earlier` are the keys and message ids of the rows of its chain delivered
    /// before it (an edit of one of them needs its id).
    async fn send(&self, row: storage::outbox::Row, earlier: &[(String, i32)]) -> Delivered {
        let action: Action = match serde_json::from_str(&row.action) {
            Ok(a) => a,
            Err(e) => {
                return Delivered {
                    row,
                    action: None,
                    outcome: Outcome::Sent(Err(SendError::Permanent(format!(
                        "corrupt action: {e}"
                    )))),
                };
            }
        };
        let action = match self.in_lead_topic(&row, action).await {
            Ok(action) => action,
            Err(e) => {
                return Delivered {
                    row,
                    action: None,
                    outcome: Outcome::NotSent(e),
                };
            }
        };
        let action = match self.message_to_edit(action, earlier).await {
            Ok(Some(action)) => action,
            Ok(None) => {
                return Delivered {
                    row,
                    action: None,
                    outcome: Outcome::Sent(Err(SendError::Permanent(
                        "the message to edit was never sent".into(),
                    ))),
                };
            }
            Err(e) => {
                return Delivered {
                    row,
                    action: None,
                    outcome: Outcome::NotSent(e),
                };
            }
        };
        // The semaphore is never closed; were it, the send would simply go ahead.
        let _turn = self.sends.acquire().await;
        let outcome =
            send::perform_observed(&self.bot, row.chat_id, &action, &self.token, &self.metrics)
                .await;
        Delivered {
            row,
            action: Some(action),
            outcome: Outcome::Sent(outcome),
        }
    }

    /// Records outcomes, retrying with backoff while the database is unreachable: a row left
    /// `sending` is sent again after a restart. After [`RECORD_PATIENCE`] the caller decides
    /// (`run` tries again every round, so that the worker's other sends are recorded meanwhile;
    /// at shutdown the rows are left). Up to `claim` due rows
    /// are claimed in the same transaction as the deliveries (the rows they unblock among them),
    /// and returned.
    async fn record_patiently(
        &self,
        done: &[Delivered],
        claim: i64,
    ) -> Result<Vec<storage::outbox::Row>, StorageError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            match self.record(done, claim).await {
                Ok(claimed) => return Ok(claimed),
                Err(e) if started.elapsed() < RECORD_PATIENCE => {
                    if claim > 0 {
                        // The transaction that claimed may have been committed all the same,
                        // or committed before a later step failed: its rows are lost to us.
                        self.claim_lost();
                    }
                    tracing::warn!(error = %e, rows = done.len(), "cannot record deliveries; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Records a group of outcomes: the deliveries in one transaction, which also claims up to
    /// `claim` due rows, and the rest row by row.
    async fn record(
        &self,
        done: &[Delivered],
        claim: i64,
    ) -> Result<Vec<storage::outbox::Row>, StorageError> {
        let mut claimed = Vec::new();
        let now = self.clock.now_ms();
        let delivered: Vec<(&Delivered, Option<i64>)> = done
            .iter()
            .filter_map(|d| match &d.outcome {
                Outcome::Sent(Ok(mid)) => Some((d, mid.map(i64::from))),
                _ => None,
            })
            .collect();
        if !delivered.is_empty() {
            let sent: Vec<(i64, Option<i64>)> =
                delivered.iter().map(|&(d, mid)| (d.row.id, mid)).collect();
            // A topic's id is not a message of the lead's history.
            let linked: Vec<(i64, i64)> = delivered
                .iter()
                .filter(|(d, _)| !matches!(d.action, Some(Action::CreateTopic { .. })))
                .filter_map(|&(d, mid)| mid.map(|mid| (d.row.id, mid)))
                .collect();
            let mut tx = self.db.begin().await?;
            let mut chats: Vec<i64> = delivered.iter().map(|(d, _)| d.row.chat_id).collect();
            chats.sort_unstable();
            chats.dedup();
            let record = storage::outbox::Delivered {
                sent: &sent,
                linked: &linked,
                chats: &chats,
                now,
            };
            claimed =
                storage::outbox::record_delivered_in(&mut tx, &record, claim, self.owner).await?;
            tx.commit().await?;
            // PostgreSQL: a message enqueued behind one of these while they were being recorded
            // (see `outbox::promote`). SQLite's writers take turns, so each sees the other's rows.
            if self.db.is_postgres() {
                match storage::outbox::promote(&self.db, &chats).await {
                    Ok(0) => {}
                    Ok(_) => self.wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot release queued messages now; the timer will")
                    }
                }
            }
            for &(d, mid) in &delivered {
                if d.row.idempotency_key.starts_with("alert:") {
                    self.metrics.alerts_sent.inc();
                }
                if let (Some(Action::CreateTopic { .. }), Some(lead_id), Some(topic)) =
                    (&d.action, d.row.lead_id, mid)
                {
                    self.staff_forum.learn(true);
                    storage::leads::set_topic(&self.db, lead_id, topic).await?;
                }
            }
        }
        // Rows a chain did not reach wait again behind the row that stopped it (before that row's
        // failure is recorded: giving it up releases the next one).
        let unsent: Vec<i64> = done
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Unsent))
            .map(|d| d.row.id)
            .collect();
        if !unsent.is_empty() {
            storage::outbox::unclaim(&self.db, &unsent).await?;
        }
        for d in done {
            match &d.outcome {
                Outcome::Sent(Ok(_)) | Outcome::Unsent => {}
                Outcome::Sent(Err(e)) => self.record_failure(d, e, now).await?,
                Outcome::NotSent(e) => {
                    tracing::warn!(outbox_id = d.row.id, error = %e, "cannot look up the lead's topic; will retry");
                    storage::outbox::retry_at(&self.db, d.row.id, now + 1000, &e.to_string())
                        .await?;
                }
            }
        }
        if done
            .iter()
            .any(|d| !matches!(d.outcome, Outcome::Sent(Ok(_))))
        {
            // A row given up lets its chat's next one go: claim it soon.
            self.wake.notify_one();
        }
        Ok(claimed)
    }

    async fn record_failure(
        &self,
        d: &Delivered,
        error: &SendError,
        now: i64,
    ) -> Result<(), StorageError> {
        let row = &d.row;
        // The staff group refused a message with its new id as a supergroup.
        let upgrade = match error {
            SendError::Migrated { to, .. } => self.staff_chat.follow(row.chat_id, *to),
            _ => Upgrade::Other,
        };
        match error {
            SendError::Permanent(msg)
                if matches!(d.action, Some(Action::CreateTopic { .. }))
                    && topics::is_not_a_forum(msg) =>
            {
                self.staff_forum.learn(false);
                storage::outbox::mark_failed(&self.db, row.id, "the staff chat is not a forum")
                    .await?;
            }
            SendError::RetryAfter(wait) => {
                tracing::warn!(
                    outbox_id = row.id,
                    seconds = wait.as_secs(),
                    "rate limited by Telegram"
                );
                let at = now + ms((*wait).max(Duration::from_secs(1)));
                storage::outbox::pause(&self.db, row.id, at, "429 Too Many Requests").await?;
            }
            SendError::Blocked(msg) | SendError::Permanent(msg)
                if row.chat_id == self.staff_chat.id() && send::cannot_post(error) =>
            {
                // Alerts wait for the managers to add the bot back (or give it the right to
                // post) rather than being lost; only the chat's first message is tried.
                tracing::error!(
                    outbox_id = row.id,
                    error = %msg,
                    "the bot cannot post in the staff chat; alerts wait until it can (tried every minute)"
                );
                let at = now + ms(STAFF_CHAT_RETRY);
                storage::outbox::pause(&self.db, row.id, at, msg).await?;
            }
            SendError::Blocked(msg) => {
                tracing::info!(
                    outbox_id = row.id,
                    "the user blocked the bot; lead marked blocked"
                );
                storage::outbox::mark_failed(&self.db, row.id, msg).await?;
                storage::leads::set_blocked_by_chat(&self.db, row.chat_id, true).await?;
                // A manager's reply that did not reach the lead: the manager is told, under it.
                if let Some(Action::CopyMessage {
                    from_chat_id,
                    message_id,
                    ..
                }) = &d.action
                    && *from_chat_id == self.staff_chat.id()
                {
                    let notice = crate::staff::relay::undelivered(*message_id);
                    let json = serde_json::to_string(&notice)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    let mut tx = self.db.begin().await?;
                    storage::outbox::enqueue(
                        &mut tx,
                        &format!("undelivered:{}", row.id),
                        row.lead_id,
                        *from_chat_id,
                        &json,
                        true,
                        now,
                    )
                    .await?;
                    tx.commit().await?;
                }
            }
            SendError::Migrated { to, message } if upgrade != Upgrade::Other => {
                // Whatever waits for the old chat goes to the new one, this row first; topics
                // are tried again there (turning them on is what upgrades a group).
                if upgrade == Upgrade::Followed {
                    self.staff_forum.forget();
                }
                let moved = storage::outbox::move_chat(&self.db, row.chat_id, *to).await?;
                tracing::info!(
                    outbox_id = row.id,
                    moved,
                    "messages for the staff chat go to the upgraded chat"
                );
                storage::outbox::retry_at(&self.db, row.id, now, message).await?;
            }
            SendError::Permanent(msg) | SendError::Migrated { message: msg, .. } => {
                tracing::error!(outbox_id = row.id, error = %msg, "Telegram refused a request; given up");
                storage::outbox::mark_failed(&self.db, row.id, msg).await?;
            }
            SendError::Transient(msg) => {
                let retryable = d.action.as_ref().is_some_and(Action::retryable);
                if !retryable || row.attempts >= backoff::MAX_ATTEMPTS {
                    tracing::warn!(outbox_id = row.id, error = %msg, attempts = row.attempts, "send failed; given up");
                    storage::outbox::mark_failed(&self.db, row.id, msg).await?;
                } else {
                    let delay = backoff::delay(row.attempts);
                    tracing::warn!(outbox_id = row.id, error = %msg, retry_in_ms = ms(delay), "send failed; will retry");
                    storage::outbox::retry_at(&self.db, row.id, now + ms(delay), msg).await?;
                }
            }
        }
        Ok(())
    }

    /// An edit queued before its message's delivery was recorded gets the message's id, which
    /// is known by now (the chat's order sent that message first: earlier in the same chain, or
    /// recorded); `None` when it was never sent.
    async fn message_to_edit(
        &self,
        mut action: Action,
        earlier: &[(String, i32)],
    ) -> Result<Option<Action>, StorageError> {
        if let Action::EditMessage {
            message_id,
            of_key: Some(key),
            ..
        } = &mut action
            && *message_id == 0
        {
            let in_chain = earlier.iter().find(|(k, _)| k == key);
            let sent = match in_chain {
                Some(&(_, mid)) => Some(mid),
                None => storage::outbox::by_key(&self.db, key)
                    .await?
                    .and_then(|r| r.telegram_message_id)
                    .and_then(|m| i32::try_from(m).ok()),
            };
            match sent {
                Some(id) => *message_id = id,
                None => return Ok(None),
            }
        }
        Ok(Some(action))
    }

    /// In a forum staff chat, a message meant for the lead's topic gets the topic's id.
    async fn in_lead_topic(
        &self,
        row: &storage::outbox::Row,
        mut action: Action,
    ) -> Result<Action, StorageError> {
        if row.chat_id != self.staff_chat.id() || !self.staff_forum.is_forum() {
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

    /// Runs until shutdown. Sends overlap: whenever one finishes (and on every wake-up, and with
    /// every hand-over of rows claimed for it) more due rows are claimed, up to `batch` claimed
    /// and not yet recorded and `sends` requests at once,
    /// so a send that hangs or meets a slow 5xx holds up only its own chat (whose next row waits
    /// for it, keeping the chat's order). While one group of deliveries is being recorded, the
    /// next group's sends go on: a claim larger than the requests allowed at once keeps both busy.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut in_flight = JoinSet::new();
        // Whether rows may be due that nobody claimed for this worker: not after a round whose
        // claim (with the deliveries it recorded) took fewer than it could, nor after rows were
        // handed over (the transaction that did so claimed what was due).
        let mut claim = true;
        // Outcomes whose recording gave up (the database away for long): tried again every
        // round. Their rows stay `sending` and held, so the sweep of lost claims waits for them:
        // a message Telegram accepted is not sent again.
        let mut unrecorded: Vec<Delivered> = Vec::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.send_handed(&mut in_flight);
            if !unrecorded.is_empty() {
                match self.record(&unrecorded, 0).await {
                    Ok(_) => unrecorded.clear(),
                    Err(e) => {
                        tracing::warn!(error = %e, rows = unrecorded.len(), "cannot record deliveries yet; retrying")
                    }
                }
            }
            if in_flight.is_empty() && unrecorded.is_empty() {
                self.sweep_lost().await;
                self.send_handed(&mut in_flight);
            }
            let room = self.room(&in_flight);
            if room > 0 && claim {
                match storage::outbox::claim_due_by(&self.db, self.clock.now_ms(), room, self.owner)
                    .await
                {
                    Ok(rows) => self.spawn_sends(&mut in_flight, rows),
                    Err(e) => {
                        // The claim may have been applied, its answer lost.
                        self.claim_lost();
                        tracing::warn!(error = %e, "cannot claim outbox rows; retrying");
                    }
                }
            }
            // Rows blocked behind a chat's send in flight are claimed when its delivery is
            // recorded, so with sends in flight the timer only serves rows coming due later, and
            // a tenth of a second is soon enough for those (no query needed on the busy path).
            let idle = if in_flight.is_empty() {
                match storage::outbox::next_due(&self.db).await {
                    Ok(Some(at)) => {
                        Duration::from_millis(u64::try_from(at - self.clock.now_ms()).unwrap_or(0))
                            .clamp(Duration::from_millis(10), Duration::from_secs(1))
                    }
                    _ => Duration::from_secs(1),
                }
            } else {
                Duration::from_millis(100)
            };
            if let Some(handover) = &self.handover {
                handover.set_in_flight(in_flight.len());
            }
            claim = true;
            tokio::select! {
                Some(first) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let mut done = self.go_on(finished(first, &mut in_flight), &mut in_flight);
                    let mut more = Vec::new();
                    gather(&mut more, &mut in_flight, || self.handed(), |sends| self.send_handed(sends)).await;
                    done.extend(self.go_on(more, &mut in_flight));
                    let room = self.room(&in_flight);
                    // Rows handed over meanwhile go out at once rather than after the recording.
                    let recorded = {
                        let record = self.record_patiently(&done, room);
                        tokio::pin!(record);
                        loop {
                            tokio::select! {
                                biased;
                                r = &mut record => break r,
                                () = self.handed() => self.send_handed(&mut in_flight),
                            }
                        }
                    };
                    match recorded {
                        Ok(rows) => {
                            // A claim short of its limit took every row due then; rows enqueued
                            // later wake the worker.
                            claim = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= room;
                            self.spawn_sends(&mut in_flight, rows);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, rows = done.len(), "deliveries not recorded yet; tried again every round");
                            unrecorded.append(&mut done);
                        }
                    }
                }
                () = self.handed() => claim = false,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Rows handed over are sent too; sends already made are recorded, so a graceful stop
        // doubles nothing.
        if let Some(handover) = &self.handover {
            self.spawn_sends(&mut in_flight, handover.take());
        }
        if !unrecorded.is_empty()
            && let Err(e) = self.record_patiently(&unrecorded, 0).await
        {
            tracing::error!(error = %e, "deliveries not recorded at shutdown; they will be sent again after a restart");
        }
        while let Some(first) = in_flight.join_next().await {
            let done = self.go_on(finished(first, &mut in_flight), &mut in_flight);
            if let Err(e) = self.record_patiently(&done, 0).await {
                tracing::error!(error = %e, "deliveries not recorded at shutdown; they will be sent again after a restart");
            }
        }
        tracing::info!("outbox worker stopped");
    }

    /// Waits until rows are handed over (forever without a hand-over).
    async fn handed(&self) {
        match &self.handover {
            Some(h) => h.given().await,
            None => std::future::pending().await,
        }
    }

    /// Sends the rows handed over since the last time.
    fn send_handed(&self, in_flight: &mut JoinSet<Sent>) {
        if let Some(handover) = &self.handover {
            self.spawn_sends(in_flight, handover.take());
        }
    }

    /// How many more rows (chains) may be in flight: none while a lost claim waits for the
    /// sweep (see `outbox::handover`), so that the worker comes to hold none.
    fn room(&self, in_flight: &JoinSet<Sent>) -> i64 {
        if self.handover.as_ref().is_some_and(|h| h.is_unsure()) {
            return 0;
        }
        self.batch - i64::try_from(in_flight.len()).unwrap_or(i64::MAX)
    }

    /// A claim's outcome is unknown: its rows may be `sending` with no one to send them.
    fn claim_lost(&self) {
        if let Some(h) = &self.handover {
            h.lost();
        }
    }

    /// After a lost claim, with nothing in flight: puts back the rows still claimed for this
    /// process once no claim for it is under way (see `outbox::handover`).
    async fn sweep_lost(&self) {
        let Some(h) = self.handover.as_ref().filter(|h| h.is_unsure()) else {
            return;
        };
        match h
            .sweep(storage::ops::release_lost(
                &self.db,
                storage::ops::Claimed::Outbox,
                self.owner,
            ))
            .await
        {
            Ok(Some(0) | None) => {}
            Ok(Some(n)) => {
                tracing::warn!(
                    rows = n,
                    "messages whose claim was lost are put back to be sent"
                );
                self.wake.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot put back the messages of a lost claim yet; retrying")
            }
        }
    }
}

/// A chat's rows claimed together (a claim takes up to `storage::outbox::CHAIN` of a private
/// chat's in a row), sent one after the other: each once Telegram accepted the one before.
struct Chain {
    rows: std::collections::VecDeque<storage::outbox::Row>,
    /// Keys and message ids of the chain's rows delivered so far.
    delivered: Vec<(String, i32)>,
}

/// A chain's row sent, and the rest of its chain.
struct Sent {
    delivered: Delivered,
    chain: Chain,
}

/// Claimed rows as the worker sends them: a chat's rows in order one chain, every other row a
/// chain of its own. Chains keep the order rows were claimed in.
fn chains(rows: Vec<storage::outbox::Row>) -> Vec<Chain> {
    let mut chains: Vec<Chain> = Vec::with_capacity(rows.len());
    let mut of_chat: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for row in rows {
        let at = match of_chat.get(&row.chat_id) {
            Some(&i) if row.in_order => i,
            _ => {
                if row.in_order {
                    of_chat.insert(row.chat_id, chains.len());
                }
                chains.push(Chain {
                    rows: std::collections::VecDeque::new(),
                    delivered: Vec::new(),
                });
                chains.len() - 1
            }
        };
        if let Some(chain) = chains.get_mut(at) {
            chain.rows.push_back(row);
        }
    }
    for chain in &mut chains {
        chain.rows.make_contiguous().sort_unstable_by_key(|r| r.id);
    }
    chains
}

/// How long the worker waits, after a send finished, for the few others in flight to finish too.
const GATHER: Duration = Duration::from_millis(2);

/// Sends in flight, at most, for the worker to wait for them ([`GATHER`]).
const GATHER_MAX: usize = 8;

/// At light load a step's sends (a reply and a hot lead's alert, say) finish
/// within a millisecond of each other, and each finished group is one write transaction: waiting
/// up to [`GATHER`] for the few others in flight records them together, which halves the
/// transactions that take turns with the updates' own. Under load the groups are large anyway
/// (and the sends many), so the worker does not wait. Rows handed over meanwhile (`handed`
/// resolves when there are some, `send` starts them) go out at once, and are waited for too.
async fn gather<T: 'static, H: Future<Output = ()>>(
    done: &mut Vec<T>,
    sends: &mut JoinSet<T>,
    handed: impl Fn() -> H,
    send: impl Fn(&mut JoinSet<T>),
) {
    if sends.is_empty() || sends.len() > GATHER_MAX {
        return;
    }
    let deadline = tokio::time::Instant::now() + GATHER;
    while !sends.is_empty() {
        tokio::select! {
            more = tokio::time::timeout_at(deadline, sends.join_next()) => match more {
                Ok(Some(more)) => done.extend(finished(more, sends)),
                Ok(None) | Err(_) => break,
            },
            () = handed() => send(sends),
        }
    }
}

/// The send that finished and every other one finished by now (a panicked send is logged; its
/// row stays `sending` and is sent again after a restart).
fn finished<T: 'static>(first: Result<T, JoinError>, sends: &mut JoinSet<T>) -> Vec<T> {
    let mut done = Vec::new();
    let mut take = |r: Result<T, JoinError>| match r {
        Ok(d) => done.push(d),
        Err(e) => tracing::error!(error = %e, "a send task failed"),
    };
    take(first);
    while let Some(more) = sends.try_join_next() {
        take(more);
    }
    done
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_taking(sends: &mut JoinSet<u32>, id: u32, ms: u64) {
        sends.spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            id
        });
    }

    async fn first_finished(sends: &mut JoinSet<u32>) -> Vec<u32> {
        match sends.join_next().await {
            Some(first) => finished(first, sends),
            None => Vec::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sends_finishing_close_together_are_recorded_together() {
        let mut sends = JoinSet::new();
        send_taking(&mut sends, 1, 10);
        send_taking(&mut sends, 2, 11);
        let mut done = first_finished(&mut sends).await;
        assert_eq!(done, [1]);
        gather(&mut done, &mut sends, std::future::pending, |_| {}).await;
        done.sort_unstable();
        assert_eq!(done, [1, 2]);
        assert!(sends.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_still_running_after_the_wait_is_left_for_the_next_group() {
        let mut sends = JoinSet::new();
        send_taking(&mut sends, 1, 10);
        send_taking(&mut sends, 2, 11);
        send_taking(&mut sends, 3, 500);
        let mut done = first_finished(&mut sends).await;
        let waited_from = tokio::time::Instant::now();
        gather(&mut done, &mut sends, std::future::pending, |_| {}).await;
        done.sort_unstable();
        assert_eq!(done, [1, 2]);
        assert_eq!(sends.len(), 1);
        assert_eq!(waited_from.elapsed(), GATHER);
    }

    #[tokio::test(start_paused = true)]
    async fn under_load_the_worker_records_what_finished_without_waiting() {
        let mut sends = JoinSet::new();
        send_taking(&mut sends, 0, 10);
        let more = GATHER_MAX + 1;
        for id in 1..=u32::try_from(more).unwrap_or(u32::MAX) {
            send_taking(&mut sends, id, 11);
        }
        let mut done = first_finished(&mut sends).await;
        let waited_from = tokio::time::Instant::now();
        gather(&mut done, &mut sends, std::future::pending, |_| {}).await;
        assert_eq!(done, [0]);
        assert_eq!(waited_from.elapsed(), Duration::ZERO);
        assert_eq!(sends.len(), more);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_handed_over_while_gathering_starts_at_once_and_is_waited_for() {
        let mut sends = JoinSet::new();
        send_taking(&mut sends, 1, 10);
        send_taking(&mut sends, 2, 500);
        let mut done = first_finished(&mut sends).await;
        let handed = std::sync::Arc::new(tokio::sync::Notify::new());
        handed.notify_one();
        let started = std::sync::atomic::AtomicBool::new(false);
        gather(
            &mut done,
            &mut sends,
            || {
                let handed = handed.clone();
                async move { handed.notified().await }
            },
            |sends| {
                started.store(true, std::sync::atomic::Ordering::Relaxed);
                send_taking(sends, 3, 1);
            },
        )
        .await;
        assert!(started.load(std::sync::atomic::Ordering::Relaxed));
        done.sort_unstable();
        assert_eq!(done, [1, 3], "the handed send finished within the wait");
        assert_eq!(sends.len(), 1);
    }

    fn row(id: i64, chat_id: i64, in_order: bool) -> storage::outbox::Row {
        storage::outbox::Row::claimed_for_test(id, chat_id, in_order)
    }

    #[test]
    fn a_chats_rows_in_order_make_one_chain_in_their_order() {
        let rows = vec![
            row(5, 7, true),
            row(2, 9, true),
            row(3, 7, true),
            row(4, 7, false),
            row(1, 7, true),
        ];
        let ids: Vec<Vec<i64>> = chains(rows)
            .iter()
            .map(|c| c.rows.iter().map(|r| r.id).collect())
            .collect();
        assert_eq!(ids, vec![vec![1, 3, 5], vec![2], vec![4]]);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_in_flight_means_no_wait() {
        let mut sends: JoinSet<u32> = JoinSet::new();
        let mut done = vec![7];
        let waited_from = tokio::time::Instant::now();
        gather(&mut done, &mut sends, std::future::pending, |_| {}).await;
        assert_eq!(done, [7]);
        assert_eq!(waited_from.elapsed(), Duration::ZERO);
    }
}
