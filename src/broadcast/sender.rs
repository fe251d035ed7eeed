//! The sending engine run by `leadbot run`.
//!
//! - A scheduled broadcast starts when due: its recipients are materialised in one transaction
//!   (only one replica can take it).
//! - Each send is claimed (`sending`) in its own committed write before the request, then marked
//!   `sent` / `failed` / `blocked`, or put back with a backoff. A row still `sending` at start-up
//!   is counted `unknown` and never sent again, so a crash can lose an offer but never double it.
//! - The overall rate (`LEADBOT_BROADCAST_RATE`) and one message per second per chat are kept by
//!   exact token buckets over the injected clock; quiet hours pause sending; a 429 pauses the whole
//!   broadcast for `retry_after`; a 403 marks the lead blocked.
//! - The staff chat gets a progress message edited at most every 3 seconds, and a final report.
//! - Recalls delete sent messages (within 48 hours of sending).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::limiter::{Bucket, PerChat};
use super::progress::{self, Progress};
use super::texts;
use crate::app::App;
use crate::app::texts::Lang;
use crate::domain::CallbackData;
use crate::outbox::{Action, Button, Markup, backoff};
use crate::storage::broadcasts::{self as store, Broadcast, Claim, Claimed, Eligibility};
use crate::storage::{self, StorageError};
use crate::telegram::send::{self, SendError};

/// Sends in flight at once (the rate limiter decides how fast they start).
const MAX_IN_FLIGHT: usize = 64;
/// How often schedules, expiries, completions and recalls are looked at.
const HOUSEKEEPING_MS: i64 = 250;
/// The progress message is edited at most this often.
pub const PROGRESS_EVERY_MS: i64 = 3_000;
/// A finished broadcast's report is refreshed this often while its offer lasts.
const REPORT_REFRESH_MS: i64 = 30_000;
/// The window the current rate is measured over.
const RATE_WINDOW_MS: i64 = 10_000;
/// Claims per broadcast per round, so several broadcasts share the rate.
const CLAIMS_PER_ROUND: usize = 64;

/// The broadcast sender.
pub struct Sender {
    pub app: Arc<App>,
    pub bot: teloxide::Bot,
    pub token: String,
    /// Idle wait between rounds.
    pub tick: Duration,
}

type Pauses = Arc<Mutex<HashMap<i64, i64>>>;

type Shared<T> = Arc<Mutex<T>>;

struct State {
    global: Bucket,
    per_chat: Shared<PerChat>,
    running: Vec<Arc<Broadcast>>,
    /// Broadcasts a claim found with nothing due (until the next housekeeping).
    empty: Shared<HashSet<i64>>,
    recheck: Arc<AtomicBool>,
    /// Broadcasts whose progress message must be updated as soon as allowed.
    dirty: HashSet<i64>,
    last_housekeeping: i64,
    pauses: Pauses,
    tasks: JoinSet<()>,
    permits: Arc<Semaphore>,
}

impl Sender {
    /// Runs until shutdown; sends in flight are finished before it returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        match store::in_flight_to_unknown(&self.app.db).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                unknown = n,
                "offers in flight at the last stop are counted unknown and not sent again"
            ),
            Err(e) => tracing::error!(error = %e, "cannot check offers in flight"),
        }
        if let Err(e) = store::requeue_recall(&self.app.db).await {
            tracing::error!(error = %e, "cannot resume recalls");
        }
        let mut st = State {
            global: Bucket::new(self.app.settings.broadcast_rate, 1),
            per_chat: Arc::new(Mutex::new(PerChat::new(1))),
            running: Vec::new(),
            empty: Arc::new(Mutex::new(HashSet::new())),
            recheck: Arc::new(AtomicBool::new(false)),
            dirty: HashSet::new(),
            last_housekeeping: i64::MIN,
            pauses: Arc::new(Mutex::new(HashMap::new())),
            tasks: JoinSet::new(),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        };
        let idle = self.tick.min(Duration::from_millis(500));
        loop {
            if *shutdown.borrow() {
                break;
            }
            while st.tasks.try_join_next().is_some() {}
            let worked = match self.round(&mut st).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "broadcast round failed; retrying");
                    false
                }
            };
            if !worked {
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        while st.tasks.join_next().await.is_some() {}
        tracing::info!("broadcast sender stopped");
    }

    fn eligibility(&self, now: i64) -> Eligibility {
        Eligibility {
            now,
            max_per_week: self.app.settings.max_offers_per_week,
        }
    }

    /// One round: housekeeping when due, then claims for every running broadcast.
    async fn round(&self, st: &mut State) -> Result<bool, StorageError> {
        let now = self.app.clock.now_ms();
        if now.saturating_sub(st.last_housekeeping) >= HOUSEKEEPING_MS || now < st.last_housekeeping
        {
            self.housekeeping(st, now).await?;
            st.last_housekeeping = now;
        }
        if super::is_quiet(&self.app.settings, now) {
            return Ok(false);
        }
        if st.recheck.swap(false, Ordering::SeqCst) {
            // A claim found a broadcast empty: look for its completion soon.
            st.last_housekeeping = i64::MIN;
        }
        let mut worked = false;
        for b in st.running.clone() {
            for _ in 0..CLAIMS_PER_ROUND {
                let now = self.app.clock.now_ms();
                if is_empty(&st.empty, b.id) || b.expires_at <= now || paused(&st.pauses, b.id, now)
                {
                    break;
                }
                let now = loop {
                    let now = self.app.clock.now_ms();
                    match st.global.try_acquire(now) {
                        Ok(()) => break now,
                        Err(wait) => {
                            tokio::time::sleep(Duration::from_millis(wait.clamp(1, 1000) as u64))
                                .await
                        }
                    }
                };
                if paused(&st.pauses, b.id, now) {
                    break;
                }
                let Ok(permit) = st.permits.clone().acquire_owned().await else {
                    break;
                };
                worked = true;
                // Claims run concurrently (each is its own committed write before its request);
                // the token bucket above decides how fast they start.
                let job = Delivery {
                    app: self.app.clone(),
                    bot: self.bot.clone(),
                    token: self.token.clone(),
                    broadcast: b.clone(),
                    pauses: st.pauses.clone(),
                    per_chat: st.per_chat.clone(),
                    empty: st.empty.clone(),
                    recheck: st.recheck.clone(),
                    max_per_week: self.app.settings.max_offers_per_week,
                };
                st.tasks.spawn(async move {
                    job.claim_and_deliver(now).await;
                    drop(permit);
                });
            }
        }
        Ok(worked)
    }

    async fn housekeeping(&self, st: &mut State, now: i64) -> Result<(), StorageError> {
        let db = &self.app.db;
        for b in store::with_status(db, "scheduled").await? {
            if b.start_at > now {
                continue;
            }
            let segment = match super::segment::Segment::parse(&b.segment) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(broadcast_id = b.id, error = %e, "stored segment no longer parses; broadcast cancelled");
                    store::cancel(db, b.id, now).await?;
                    continue;
                }
            };
            if let Some(total) = store::start(db, b.id, &segment, self.eligibility(now)).await? {
                tracing::info!(broadcast_id = b.id, total, "broadcast started");
                self.progress_soon(st, b.id, now).await?;
            }
        }
        let running = store::with_status(db, "running").await?;
        let mut still = Vec::new();
        for b in running {
            if b.expires_at <= now {
                let n = store::expire_pending(db, b.id).await?;
                if n > 0 {
                    tracing::info!(
                        broadcast_id = b.id,
                        not_sent = n,
                        "offer expired before everyone got it"
                    );
                }
            }
            if let Some(until) = b.paused_until
                && until > now
                && let Ok(mut p) = st.pauses.lock()
            {
                let e = p.entry(b.id).or_insert(until);
                *e = (*e).max(until);
            }
            if store::finish_if_complete(db, b.id, now).await? {
                tracing::info!(broadcast_id = b.id, "broadcast finished");
                self.progress_soon(st, b.id, now).await?;
            } else {
                self.progress(b.id, now).await?;
                still.push(Arc::new(b));
            }
        }
        st.running = still;
        if let Ok(mut e) = st.empty.lock() {
            e.clear();
        }
        for b in store::reports_due(db, now, REPORT_REFRESH_MS).await? {
            self.progress_soon(st, b.id, now).await?;
        }
        for id in std::mem::take(&mut st.dirty) {
            self.progress_soon(st, id, now).await?;
        }
        self.recall_round(st, now).await?;
        Ok(())
    }

    /// Deletes messages of recalled broadcasts.
    async fn recall_round(&self, st: &mut State, now: i64) -> Result<(), StorageError> {
        let db = &self.app.db;
        if !store::recall_waiting(db).await? {
            return Ok(());
        }
        let rows = store::claim_recall(db, 100).await?;
        let mut touched = HashSet::new();
        for row in rows {
            touched.insert(row.broadcast_id);
            if row.sent_at + store::RECALL_WINDOW_MS <= now {
                store::set_recall(db, row.id, "too_late").await?;
                continue;
            }
            let Ok(message_id) = i32::try_from(row.telegram_message_id) else {
                store::set_recall(db, row.id, "failed").await?;
                continue;
            };
            loop {
                match st.global.try_acquire(self.app.clock.now_ms()) {
                    Ok(()) => break,
                    Err(wait) => {
                        tokio::time::sleep(Duration::from_millis(wait.clamp(1, 1000) as u64)).await
                    }
                }
            }
            let action = Action::DeleteMessage { message_id };
            match send::perform(&self.bot, row.chat_id, &action, &self.token).await {
                Ok(_) => store::set_recall(db, row.id, "done").await?,
                Err(SendError::RetryAfter(_) | SendError::Transient(_)) => {
                    store::set_recall(db, row.id, "pending").await?
                }
                Err(SendError::Blocked(_) | SendError::Permanent(_)) => {
                    store::set_recall(db, row.id, "failed").await?
                }
            }
        }
        for id in touched {
            self.progress_soon(st, id, self.app.clock.now_ms()).await?;
        }
        Ok(())
    }

    /// Posts or edits the staff-chat progress message, at most every 3 s; false when it was
    /// updated too recently (the caller tries again later).
    async fn progress(&self, id: i64, now: i64) -> Result<bool, StorageError> {
        let db = &self.app.db;
        let Some(b) = store::get(db, id).await? else {
            return Ok(true);
        };
        if b.progress_at
            .is_some_and(|t| now - t < PROGRESS_EVERY_MS && now >= t)
        {
            return Ok(false);
        }
        let p = snapshot(&self.app, &b, now).await?;
        let text = progress::render(&p);
        let result = match b.progress_message_id.and_then(|m| i32::try_from(m).ok()) {
            None => {
                let action = Action::text(text, Markup::None);
                send::perform(&self.bot, self.app.staff_chat_id, &action, &self.token).await
            }
            Some(message_id) => {
                let action = Action::EditMessage {
                    message_id,
                    text,
                    html: false,
                    markup: Markup::None,
                };
                send::perform(&self.bot, self.app.staff_chat_id, &action, &self.token).await
            }
        };
        match result {
            Ok(mid) => store::set_progress(db, id, mid.map(i64::from), now).await?,
            Err(e) => {
                tracing::warn!(broadcast_id = id, error = ?e, "cannot update the progress message");
                store::set_progress(db, id, None, now).await?;
            }
        }
        Ok(true)
    }

    /// Updates the progress message now or, if it was just updated, at a later housekeeping.
    async fn progress_soon(&self, st: &mut State, id: i64, now: i64) -> Result<(), StorageError> {
        if !self.progress(id, now).await? {
            st.dirty.insert(id);
        }
        Ok(())
    }
}

/// The current figures of a broadcast.
pub async fn snapshot(app: &App, b: &Broadcast, now: i64) -> Result<Progress, StorageError> {
    let counts = store::counts(&app.db, b.id).await?;
    let gauge = |n: i64| u64::try_from(n).unwrap_or(0);
    app.metrics.broadcast_progress(
        b.id,
        gauge(counts.sent),
        gauge(counts.failed + counts.blocked + counts.unknown),
        gauge(counts.total),
    );
    let window = b
        .started_at
        .map(|s| (now - s).clamp(1, RATE_WINDOW_MS))
        .unwrap_or(RATE_WINDOW_MS);
    let recent = store::sent_since(&app.db, b.id, now - window).await?;
    let paused = if b.status != "running" {
        None
    } else if super::is_quiet(&app.settings, now) {
        Some(format!(
            "Пауза: тихие часы, продолжим в {}",
            super::local_time(
                &app.settings,
                now + super::quiet_left_ms(&app.settings, now)
            )
        ))
    } else {
        b.paused_until.filter(|u| *u > now).map(|u| {
            format!(
                "Пауза: Telegram попросил подождать {} с",
                (u - now + 999) / 1000
            )
        })
    };
    Ok(Progress::new(b, counts, recent, window, paused))
}

fn is_empty(empty: &Shared<HashSet<i64>>, id: i64) -> bool {
    empty.lock().map(|e| e.contains(&id)).unwrap_or(false)
}

fn paused(pauses: &Pauses, id: i64, now: i64) -> bool {
    pauses
        .lock()
        .map(|p| p.get(&id).is_some_and(|until| *until > now))
        .unwrap_or(false)
}

/// The offer's keyboard: the call-to-action (if any) and the unsubscribe button.
pub fn offer_markup(b: &Broadcast, lang: Lang) -> Markup {
    let mut rows = Vec::new();
    if let Some(label) = &b.button {
        rows.push(vec![Button {
            text: label.clone(),
            data: CallbackData::Offer(b.id).to_string(),
        }]);
    }
    rows.push(vec![Button {
        text: texts::unsubscribe_label(lang).into(),
        data: CallbackData::Unsubscribe.to_string(),
    }]);
    Markup::Inline { rows }
}

struct Delivery {
    app: Arc<App>,
    bot: teloxide::Bot,
    token: String,
    broadcast: Arc<Broadcast>,
    pauses: Pauses,
    per_chat: Shared<PerChat>,
    empty: Shared<HashSet<i64>>,
    recheck: Arc<AtomicBool>,
    max_per_week: u32,
}

impl Delivery {
    /// Claims the next recipient (its own committed write) and sends its offer.
    async fn claim_and_deliver(&self, now: i64) {
        let b = &self.broadcast;
        let e = Eligibility {
            now,
            max_per_week: self.max_per_week,
        };
        let claim = match store::claim_next(&self.app.db, b.id, e).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(broadcast_id = b.id, error = %e, "cannot claim a recipient; retrying");
                return;
            }
        };
        let r = match claim {
            Claim::Empty => {
                if let Ok(mut e) = self.empty.lock() {
                    e.insert(b.id);
                }
                self.recheck.store(true, Ordering::SeqCst);
                return;
            }
            Claim::Skipped => return,
            Claim::Claimed(r) => r,
        };
        let chat_wait = self
            .per_chat
            .lock()
            .map(|mut p| p.try_acquire(r.chat_id, now).err())
            .unwrap_or(None);
        if let Some(wait) = chat_wait {
            if let Err(e) = store::retry_at(&self.app.db, r.id, now + wait, None, true).await {
                tracing::error!(broadcast_id = b.id, error = %e, "cannot put a recipient back");
            }
            return;
        }
        self.deliver(r).await;
    }

    async fn deliver(&self, r: Claimed) {
        if let Err(e) = self.try_deliver(&r).await {
            // The row stays `sending` and becomes `unknown` at the next start: never doubled.
            tracing::error!(broadcast_id = self.broadcast.id, recipient = r.id, error = %e, "cannot record an offer's outcome");
        }
    }

    #[tracing::instrument(skip_all, fields(broadcast_id = self.broadcast.id, lead_id = r.lead_id))]
    async fn try_deliver(&self, r: &Claimed) -> Result<(), StorageError> {
        let b = &self.broadcast;
        let lang = Lang::from_code(r.language_code.as_deref());
        let action = Action::SendMessage {
            text: b.text.clone(),
            html: true,
            markup: offer_markup(b, lang),
            reply_to: None,
            thread_id: None,
            lead_topic: false,
        };
        let outcome = send::perform(&self.bot, r.chat_id, &action, &self.token).await;
        let db = &self.app.db;
        let now = self.app.clock.now_ms();
        match outcome {
            Ok(mid) => {
                let mid = mid.map(i64::from);
                let mut tx = db.begin().await?;
                store::mark_sent(&mut tx, r.id, mid, now).await?;
                storage::messages::record(
                    &mut tx,
                    &storage::messages::NewMessage {
                        lead_id: r.lead_id,
                        direction: "out",
                        kind: "offer",
                        text: Some(&b.text),
                        update_id: None,
                        outbox_id: None,
                        telegram_message_id: mid,
                        author_id: None,
                    },
                    now,
                )
                .await?;
                tx.commit().await?;
            }
            Err(SendError::RetryAfter(d)) => {
                let until = now + ms(d.max(Duration::from_secs(1)));
                tracing::warn!(
                    seconds = d.as_secs(),
                    "rate limited by Telegram; broadcast paused"
                );
                if let Ok(mut p) = self.pauses.lock() {
                    let e = p.entry(b.id).or_insert(until);
                    *e = (*e).max(until);
                }
                store::pause_until(db, b.id, until).await?;
                store::retry_at(db, r.id, until, Some("429 Too Many Requests"), true).await?;
            }
            Err(SendError::Blocked(msg)) => {
                store::mark_final(db, r.id, "blocked", &msg).await?;
                storage::leads::set_blocked_by_chat(db, r.chat_id, true).await?;
            }
            Err(SendError::Permanent(msg)) => {
                tracing::warn!(error = %msg, "Telegram refused an offer");
                store::mark_final(db, r.id, "failed", &msg).await?;
            }
            Err(SendError::Transient(msg)) => {
                if r.attempts >= backoff::MAX_ATTEMPTS {
                    store::mark_final(db, r.id, "failed", &msg).await?;
                } else {
                    let at = now + ms(backoff::delay(r.attempts));
                    store::retry_at(db, r.id, at, Some(&msg), false).await?;
                }
            }
        }
        Ok(())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
