//! The sending engine run by `leadbot run`.
//!
//! - A scheduled broadcast starts when due: its recipients are materialised in one transaction
//!   (only one replica can take it).
//! - Recipients are claimed (`sending`, committed) in batches before their requests, then marked
//!   `sent` / `failed` / `blocked`, or put back with a backoff; outcomes that finish together are
//!   written in one transaction. A row still `sending` at start-up is counted `unknown` and never
//!   sent again, so a crash can lose an offer but never double it; so is one claimed ten minutes
//!   ago and still `sending` (its sender gone for good, or its claim lost to an error after the
//!   commit), so that the broadcast finishes. See [`super::dispatch`].
//! - The overall rate (`LEADBOT_BROADCAST_RATE`) and one message per second per chat are kept by
//!   exact token buckets over the injected clock; quiet hours pause sending; a 429 pauses the whole
//!   broadcast for `retry_after`; a 403 marks the lead blocked.
//! - Replicas on one PostgreSQL database share the overall rate: each keeps to an N-th of it, N
//!   the live replicas counted at each housekeeping while something is sent; one that joins
//!   others waits a second before it sends.
//! - The staff chat gets a progress message edited at most every 3 seconds, and a final report.
//! - Recalls delete sent messages (within 48 hours of sending).
//!
//! Housekeeping (starts, expiries, completions, progress, recalls) runs beside the sending, so
//! that its queries never hold a request back.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use super::dispatch::{self, Dispatcher, Pauses};
use super::limiter::Pace;
use super::outcome;
use super::progress::{self, Progress};
use super::texts;
use crate::app::App;
use crate::app::texts::Lang;
use crate::domain::CallbackData;
use crate::outbox::{Action, Button, Markup};
use crate::storage::broadcasts::{self as store, Broadcast, Eligibility};
use crate::storage::{StorageError, ops};
use crate::telegram::send::{self, SendError};

/// How often schedules, expiries, completions and recalls are looked at.
const HOUSEKEEPING_MS: i64 = 250;
/// The progress message is edited at most this often.
pub const PROGRESS_EVERY_MS: i64 = 3_000;
/// A finished broadcast's report is refreshed this often while its offer lasts.
const REPORT_REFRESH_MS: i64 = 30_000;
/// The window the current rate is measured over.
const RATE_WINDOW_MS: i64 = 10_000;
/// A recipient claimed this long ago and still `sending` has no one to record it (see
/// `storage::broadcasts::stale_to_unknown`): far longer than a request and its record take.
const STALE_SENDING_MS: i64 = 10 * 60_000;
/// How often running broadcasts are looked at for such recipients.
const STALE_CHECK_MS: i64 = 60_000;

/// The broadcast sender.
pub struct Sender {
    pub app: Arc<App>,
    pub bot: teloxide::Bot,
    pub token: String,
    /// Idle wait between rounds.
    pub tick: Duration,
}

struct State {
    global: Arc<Mutex<Pace>>,
    running: watch::Sender<Vec<Arc<Broadcast>>>,
    /// Broadcasts whose progress message must be updated as soon as allowed.
    dirty: HashSet<i64>,
    pauses: Pauses,
    /// When running broadcasts were last looked at for stale claims.
    stale_checked_at: i64,
}

impl Sender {
    /// Runs until shutdown; sends in flight are finished and recorded before it returns.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
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
        let mut pace = Pace::new(self.app.settings.broadcast_rate);
        match ops::live_replicas(&self.app.db).await {
            Ok(1) => {}
            Ok(n) => {
                // Joining replicas that may be sending: they learn of this one within a
                // housekeeping period, and this one waits a second before taking its share.
                tracing::info!(
                    replicas = n,
                    "the broadcast rate is shared among the live replicas"
                );
                pace.share(n);
                pace.hold(self.app.clock.now_ms());
            }
            Err(e) => tracing::error!(error = %e, "cannot count the replicas"),
        }
        let global = Arc::new(Mutex::new(pace));
        let pauses: Pauses = Default::default();
        let (running, running_rx) = watch::channel(Vec::new());
        let recheck = Arc::new(Notify::new());
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher {
            app: self.app.clone(),
            bot: self.bot.clone(),
            token: self.token.clone(),
            global: global.clone(),
            pauses: pauses.clone(),
            running: running_rx,
            recheck: recheck.clone(),
            outcomes,
            idle: self.tick.min(Duration::from_millis(500)),
        };
        let st = State {
            global,
            running,
            dirty: HashSet::new(),
            pauses,
            stale_checked_at: 0,
        };
        // Sending and recording have their own tasks, so that the rate does not wait for the
        // housekeeping's queries; the set belongs to this future, so aborting it (a crash, in
        // tests) stops them all.
        let mut tasks = JoinSet::new();
        tasks.spawn(dispatcher.run(shutdown.clone()));
        tasks.spawn(outcome::record_all(self.app.clone(), outcomes_rx));
        self.housekeeping_loop(st, recheck, shutdown).await;
        while tasks.join_next().await.is_some() {}
        tracing::info!("broadcast sender stopped");
    }

    async fn housekeeping_loop(
        &self,
        mut st: State,
        recheck: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let every = Duration::from_millis(HOUSEKEEPING_MS.unsigned_abs());
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.app.clock.now_ms();
            if let Err(e) = self.housekeeping(&mut st, now).await {
                tracing::warn!(error = %e, "broadcast housekeeping failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = recheck.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    fn eligibility(&self, now: i64) -> Eligibility {
        Eligibility {
            now,
            max_per_week: self.app.settings.max_offers_per_week,
        }
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
        let check_stale = now - st.stale_checked_at >= STALE_CHECK_MS;
        if check_stale {
            st.stale_checked_at = now;
        }
        let mut still = Vec::new();
        for b in running {
            if check_stale {
                let n = store::stale_to_unknown(db, b.id, now - STALE_SENDING_MS).await?;
                if n > 0 {
                    tracing::warn!(
                        broadcast_id = b.id,
                        unknown = n,
                        "offers claimed long ago and never recorded are counted unknown and not sent again"
                    );
                }
            }
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
            {
                dispatch::pause(&st.pauses, b.id, until);
            }
            if store::finish_if_complete(db, b.id, now).await? {
                tracing::info!(broadcast_id = b.id, "broadcast finished");
                self.progress_soon(st, b.id, now).await?;
            } else {
                self.progress(b.id, now).await?;
                still.push(Arc::new(b));
            }
        }
        if !still.is_empty() {
            self.share_rate(st).await?;
        }
        // The dispatcher follows this list (and may claim again from every broadcast on it).
        st.running.send_replace(still);
        for b in store::reports_due(db, now, REPORT_REFRESH_MS).await? {
            self.progress_soon(st, b.id, now).await?;
        }
        for id in std::mem::take(&mut st.dirty) {
            self.progress_soon(st, id, now).await?;
        }
        self.recall_round(st, now).await?;
        Ok(())
    }

    /// Keeps the overall pace to this replica's share of the rate: replicas on one PostgreSQL
    /// database send the same broadcasts, and together they keep to the configured rate.
    async fn share_rate(&self, st: &State) -> Result<(), StorageError> {
        let n = ops::live_replicas(&self.app.db).await?;
        if let Ok(mut pace) = st.global.lock()
            && pace.replicas() != n
        {
            tracing::info!(
                replicas = n,
                "the broadcast rate is shared among the live replicas"
            );
            pace.share(n);
        }
        Ok(())
    }

    /// Deletes messages of recalled broadcasts.
    async fn recall_round(&self, st: &mut State, now: i64) -> Result<(), StorageError> {
        let db = &self.app.db;
        if !store::recall_waiting(db).await? {
            return Ok(());
        }
        self.share_rate(st).await?;
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
                let now = self.app.clock.now_ms();
                let admitted = st
                    .global
                    .lock()
                    .map(|mut g| g.try_acquire(now))
                    .unwrap_or(Err(1));
                match admitted {
                    Ok(()) => break,
                    Err(wait) => {
                        tokio::time::sleep(Duration::from_millis(
                            wait.clamp(1, 1000).unsigned_abs(),
                        ))
                        .await
                    }
                }
            }
            let action = Action::DeleteMessage { message_id };
            match send::perform(&self.bot, row.chat_id, &action, &self.token).await {
                Ok(_) => store::set_recall(db, row.id, "done").await?,
                Err(SendError::RetryAfter(_) | SendError::Transient(_)) => {
                    store::set_recall(db, row.id, "pending").await?
                }
                Err(
                    SendError::Blocked(_) | SendError::Permanent(_) | SendError::Migrated { .. },
                ) => store::set_recall(db, row.id, "failed").await?,
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
                send::perform(&self.bot, self.app.staff_chat.id(), &action, &self.token).await
            }
            Some(message_id) => {
                let action = Action::EditMessage {
                    message_id,
                    text,
                    html: false,
                    markup: Markup::None,
                    of_key: None,
                };
                send::perform(&self.bot, self.app.staff_chat.id(), &action, &self.token).await
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
