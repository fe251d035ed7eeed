//! The sending half of the broadcast sender: claims recipients in batches, paces their
//! requests with the overall bucket, sends them, and hands each outcome to the recorder.
//!
//! - Recipients are claimed (`sending`, committed) in batches a little ahead of their turn, so
//!   that the database's pace never decides when a request goes out: the bucket does, right
//!   before the request. A claim is still committed before its request; a crash can lose the
//!   few claimed ahead (they become `unknown`) but never doubles an offer.
//! - Claimed recipients not yet requested go back to `pending` (without counting an attempt)
//!   when their broadcast pauses (429), quiet hours begin, the offer expires, the broadcast is
//!   cancelled (they become `cancelled`) or the bot stops.
//! - One message per second per chat: a recipient whose chat is not due goes back until it is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::limiter::{Pace, PerChat};
use super::outcome::{Outcome, Record};
use crate::app::App;
use crate::app::texts::Lang;
use crate::outbox::{Action, backoff};
use crate::storage::StorageError;
use crate::storage::broadcasts::{self as store, Broadcast, Claimed, Claims, Eligibility};
use crate::telegram::send::{self, SendError};

/// Requests in flight, or sent and waiting for their outcome to be written, at once (half a
/// second at 1,000/s, so that a slow commit does not hold sending back).
const MAX_IN_FLIGHT: usize = 512;
/// Recipients claimed ahead cover two of the slowest recent claims and this much more.
const CLAIM_MARGIN_MS: u64 = 25;
/// Never more claimed ahead than this much sending (nor than [`MAX_AHEAD`]).
const MAX_AHEAD_MS: u64 = 500;
const MAX_AHEAD: u64 = 500;
/// The slowest recent claim is forgotten at this many milliseconds per second.
const FORGET_MS_PER_S: f64 = 50.0;

/// Pauses per broadcast (until, Unix ms), shared with the housekeeping that reads them back.
pub type Pauses = Arc<Mutex<HashMap<i64, i64>>>;

/// Claimed recipients of one running broadcast, waiting for their turn.
struct Lane {
    broadcast: Arc<Broadcast>,
    ready: VecDeque<Claimed>,
    /// A claim is in flight.
    claiming: bool,
    /// The last claim found nothing due: no more claims until the next housekeeping.
    drained: bool,
    /// Something was sent since the lane last ran dry (so running dry again is news).
    sent_since_dry: bool,
}

/// How many recipients to hold claimed ahead, and the low-water mark that triggers the next
/// claim, at `rate` when claims take up to `claim_ms`: enough to keep sending through a slow
/// commit (a busy disk makes one take hundreds of milliseconds), few when the database is quick,
/// since a crash turns what was claimed ahead into `unknown`.
fn claim_sizes(rate: u32, claim_ms: u64) -> (usize, usize) {
    let rate = u64::from(rate);
    let cap = (rate * MAX_AHEAD_MS / 1000).clamp(2, MAX_AHEAD);
    let low = (rate * (2 * claim_ms + CLAIM_MARGIN_MS) / 1000).clamp(1, cap / 2);
    let ahead = (2 * low).clamp(2, cap);
    (
        usize::try_from(ahead).unwrap_or(2),
        usize::try_from(low).unwrap_or(1),
    )
}

/// The slowest recent claim, forgotten little by little.
#[derive(Debug)]
struct ClaimLatency {
    peak_ms: f64,
    at: Instant,
}

impl ClaimLatency {
    fn now_ms(&self, now: Instant) -> f64 {
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        (self.peak_ms - since * FORGET_MS_PER_S).max(0.0)
    }

    fn observe(&mut self, took: Duration, now: Instant) {
        self.peak_ms = self.now_ms(now).max(took.as_secs_f64() * 1000.0);
        self.at = now;
    }
}

/// The dispatcher's handles on the rest of the sender.
pub struct Dispatcher {
    pub app: Arc<App>,
    pub bot: teloxide::Bot,
    pub token: String,
    /// The overall pace (recalls take from it too).
    pub global: Arc<Mutex<Pace>>,
    pub pauses: Pauses,
    /// The running broadcasts, republished by every housekeeping.
    pub running: watch::Receiver<Vec<Arc<Broadcast>>>,
    /// Asks the housekeeping to look for completions soon.
    pub recheck: Arc<Notify>,
    pub outcomes: mpsc::UnboundedSender<Record>,
    /// Idle wait when nothing is to be sent.
    pub idle: Duration,
}

struct State {
    lanes: BTreeMap<i64, Lane>,
    per_chat: PerChat,
    permits: Arc<Semaphore>,
    sends: JoinSet<()>,
    claims: JoinSet<(i64, Duration, Result<Claims, StorageError>)>,
    claim_latency: ClaimLatency,
    /// Where the next dispatch starts, so that broadcasts share the rate.
    turn: usize,
}

impl Dispatcher {
    /// Sends until shutdown; then puts back what was claimed and not sent, and waits for the
    /// sends in flight.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut st = State {
            lanes: BTreeMap::new(),
            per_chat: PerChat::new(1),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            sends: JoinSet::new(),
            claims: JoinSet::new(),
            claim_latency: ClaimLatency {
                peak_ms: 0.0,
                at: Instant::now(),
            },
            turn: 0,
        };
        let mut running = self.running.clone();
        running.mark_changed();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while st.sends.try_join_next().is_some() {}
            while let Some(done) = st.claims.try_join_next() {
                if let Ok((id, took, result)) = done {
                    self.claimed(&mut st, id, took, result);
                }
            }
            if running.has_changed().unwrap_or(false) {
                let list = running.borrow_and_update().clone();
                self.sync_lanes(&mut st, list);
            }
            let now = self.app.clock.now_ms();
            self.hold_or_refill(&mut st, now);
            self.dispatch(&mut st, now);
            let ready: usize = st.lanes.values().map(|l| l.ready.len()).sum();
            let wake = if ready > 0 && st.permits.available_permits() > 0 {
                let wait = self.global.lock().map(|g| g.wait_ms(now)).unwrap_or(1);
                Duration::from_millis(wait.clamp(1, 1000).unsigned_abs())
            } else if ready > 0 {
                // Waiting for a permit: sends finish within milliseconds.
                Duration::from_millis(1)
            } else {
                self.idle
            };
            tokio::select! {
                _ = tokio::time::sleep(wake) => {}
                Some(Ok((id, took, result))) = st.claims.join_next(), if !st.claims.is_empty() => {
                    self.claimed(&mut st, id, took, result);
                }
                Ok(()) = running.changed() => {
                    // `changed` marks the list seen: take it in now.
                    let list = running.borrow_and_update().clone();
                    self.sync_lanes(&mut st, list);
                }
                _ = shutdown.changed() => {}
            }
        }
        // Claims in flight are awaited so that what they took can be put back.
        while let Some(done) = st.claims.join_next().await {
            if let Ok((id, took, result)) = done {
                self.claimed(&mut st, id, took, result);
            }
        }
        let now = self.app.clock.now_ms();
        for lane in st.lanes.values_mut() {
            self.put_back(lane, now);
        }
        while st.sends.join_next().await.is_some() {}
    }

    /// Takes in what a claim found.
    fn claimed(
        &self,
        st: &mut State,
        id: i64,
        took: Duration,
        result: Result<Claims, StorageError>,
    ) {
        st.claim_latency.observe(took, Instant::now());
        let Some(lane) = st.lanes.get_mut(&id) else {
            // The broadcast stopped running meanwhile.
            if let Ok(claims) = result {
                let now = self.app.clock.now_ms();
                for r in claims.claimed {
                    self.retry_unsent(r.id, now);
                }
            }
            return;
        };
        lane.claiming = false;
        match result {
            Ok(claims) => {
                if claims.is_empty() {
                    lane.drained = true;
                    // Probably complete: worth a look before the next housekeeping is due.
                    if lane.ready.is_empty() && std::mem::take(&mut lane.sent_since_dry) {
                        self.recheck.notify_one();
                    }
                }
                lane.ready.extend(claims.claimed);
            }
            Err(e) => {
                tracing::warn!(broadcast_id = id, error = %e, "cannot claim recipients; retrying");
                // Tried again after the next housekeeping.
                lane.drained = true;
            }
        }
    }

    /// Follows the running list: new broadcasts get a lane; a broadcast no longer running gives
    /// its claimed recipients back; every lane may claim again.
    fn sync_lanes(&self, st: &mut State, list: Vec<Arc<Broadcast>>) {
        let now = self.app.clock.now_ms();
        let gone: Vec<i64> = st
            .lanes
            .keys()
            .filter(|id| !list.iter().any(|b| b.id == **id))
            .copied()
            .collect();
        for id in gone {
            if let Some(mut lane) = st.lanes.remove(&id) {
                self.put_back(&mut lane, now);
            }
        }
        for b in list {
            match st.lanes.get_mut(&b.id) {
                Some(lane) => {
                    lane.broadcast = b;
                    lane.drained = false;
                }
                None => {
                    st.lanes.insert(
                        b.id,
                        Lane {
                            broadcast: b,
                            ready: VecDeque::new(),
                            claiming: false,
                            drained: false,
                            sent_since_dry: false,
                        },
                    );
                }
            }
        }
    }

    /// A lane that must not send now (quiet hours, a 429 pause, expiry) gives its claimed
    /// recipients back; the others claim more when they run low.
    fn hold_or_refill(&self, st: &mut State, now: i64) {
        let quiet = super::is_quiet(&self.app.settings, now);
        let claim_ms = st.claim_latency.now_ms(Instant::now());
        // This replica's share of the rate decides how much it claims ahead.
        let rate = self
            .global
            .lock()
            .map(|g| g.share_per_second())
            .unwrap_or(self.app.settings.broadcast_rate);
        let (ahead, low) = claim_sizes(rate, claim_ms as u64);
        for (id, lane) in st.lanes.iter_mut() {
            let paused = paused_until(&self.pauses, *id, now);
            if quiet || paused.is_some() || lane.broadcast.expires_at <= now {
                if !lane.ready.is_empty() {
                    self.put_back(lane, paused.unwrap_or(now));
                }
                continue;
            }
            if lane.claiming || lane.drained || lane.ready.len() >= low.max(1) {
                continue;
            }
            let want = u32::try_from(ahead.saturating_sub(lane.ready.len())).unwrap_or(1);
            let e = Eligibility {
                now,
                max_per_week: self.app.settings.max_offers_per_week,
            };
            let db = self.app.db.clone();
            let id = *id;
            lane.claiming = true;
            st.claims.spawn(async move {
                let started = Instant::now();
                let result = store::claim_due(&db, id, e, want.max(1)).await;
                (id, started.elapsed(), result)
            });
        }
    }

    /// Sends as many claimed recipients as the overall bucket admits now, taking broadcasts in
    /// turn.
    fn dispatch(&self, st: &mut State, now: i64) {
        let ids: Vec<i64> = st.lanes.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let want = st.permits.available_permits();
        let mut picked: Vec<(i64, Claimed)> = Vec::new();
        let mut idle_lanes = 0;
        let mut i = st.turn;
        while picked.len() < want && idle_lanes < ids.len() {
            let id = ids[i % ids.len()];
            i += 1;
            let Some(lane) = st.lanes.get_mut(&id) else {
                idle_lanes += 1;
                continue;
            };
            let Some(r) = lane.ready.pop_front() else {
                idle_lanes += 1;
                continue;
            };
            idle_lanes = 0;
            let chat_wait = st.per_chat.wait_ms(r.chat_id, now);
            if chat_wait > 0 {
                // This chat had a message less than a second ago (another broadcast).
                self.send_record(Outcome::Retry {
                    recipient_id: r.id,
                    at: now + chat_wait,
                    error: None,
                    undo_attempt: true,
                });
                continue;
            }
            picked.push((id, r));
        }
        st.turn = i % ids.len();
        if picked.is_empty() {
            return;
        }
        let asked = u32::try_from(picked.len()).unwrap_or(u32::MAX);
        let admitted = self
            .global
            .lock()
            .map(|mut g| g.take_up_to(asked, now))
            .unwrap_or(0);
        let admitted = usize::try_from(admitted).unwrap_or(0);
        // Those the bucket did not admit go back to the front of their lanes, in order.
        for (id, r) in picked.split_off(admitted).into_iter().rev() {
            if let Some(lane) = st.lanes.get_mut(&id) {
                lane.ready.push_front(r);
            }
        }
        for (id, r) in picked {
            let Some(lane) = st.lanes.get_mut(&id) else {
                continue;
            };
            lane.sent_since_dry = true;
            let Ok(permit) = st.permits.clone().try_acquire_owned() else {
                self.retry_unsent(r.id, now);
                continue;
            };
            if st.per_chat.try_acquire(r.chat_id, now).is_err() {
                self.retry_unsent(r.id, now + 1000);
                continue;
            }
            let job = Delivery {
                app: self.app.clone(),
                bot: self.bot.clone(),
                token: self.token.clone(),
                broadcast: lane.broadcast.clone(),
                pauses: self.pauses.clone(),
                outcomes: self.outcomes.clone(),
            };
            st.sends.spawn(job.deliver(r, permit));
        }
    }

    /// Gives a lane's claimed recipients back, to be tried from `at`.
    fn put_back(&self, lane: &mut Lane, at: i64) {
        for r in lane.ready.drain(..) {
            self.retry_unsent(r.id, at);
        }
    }

    fn retry_unsent(&self, recipient_id: i64, at: i64) {
        self.send_record(Outcome::Retry {
            recipient_id,
            at,
            error: None,
            undo_attempt: true,
        });
    }

    fn send_record(&self, outcome: Outcome) {
        if self.outcomes.send(Record::new(outcome)).is_err() {
            tracing::error!("the outcome recorder stopped; a claimed recipient stays in flight");
        }
    }
}

/// When the broadcast's 429 pause ends, if it is paused now.
fn paused_until(pauses: &Pauses, id: i64, now: i64) -> Option<i64> {
    pauses
        .lock()
        .ok()
        .and_then(|p| p.get(&id).copied())
        .filter(|until| *until > now)
}

/// Whether a broadcast is paused now.
pub fn paused(pauses: &Pauses, id: i64, now: i64) -> bool {
    paused_until(pauses, id, now).is_some()
}

/// Raises a broadcast's pause to `until`.
pub fn pause(pauses: &Pauses, id: i64, until: i64) {
    if let Ok(mut p) = pauses.lock() {
        let e = p.entry(id).or_insert(until);
        *e = (*e).max(until);
    }
}

/// One offer's request and its outcome.
struct Delivery {
    app: Arc<App>,
    bot: teloxide::Bot,
    token: String,
    broadcast: Arc<Broadcast>,
    pauses: Pauses,
    outcomes: mpsc::UnboundedSender<Record>,
}

impl Delivery {
    #[tracing::instrument(skip_all, fields(broadcast_id = self.broadcast.id, lead_id = r.lead_id))]
    async fn deliver(self, r: Claimed, permit: OwnedSemaphorePermit) {
        let b = &self.broadcast;
        let lang = Lang::from_code(r.language_code.as_deref());
        let action = Action::SendMessage {
            text: b.text.clone(),
            html: true,
            markup: super::sender::offer_markup(b, lang),
            reply_to: None,
            thread_id: None,
            lead_topic: false,
        };
        let result = send::perform(&self.bot, r.chat_id, &action, &self.token).await;
        let now = self.app.clock.now_ms();
        let mut outcomes = Vec::new();
        match result {
            Ok(mid) => outcomes.push(Outcome::Sent {
                recipient_id: r.id,
                lead_id: r.lead_id,
                broadcast: b.clone(),
                message_id: mid.map(i64::from),
                at: now,
            }),
            Err(SendError::RetryAfter(d)) => {
                let until = now + ms(d.max(Duration::from_secs(1)));
                tracing::warn!(
                    seconds = d.as_secs(),
                    "rate limited by Telegram; broadcast paused"
                );
                // At once, so that nothing more of this broadcast is requested meanwhile.
                pause(&self.pauses, b.id, until);
                outcomes.push(Outcome::Paused {
                    broadcast_id: b.id,
                    until,
                });
                outcomes.push(Outcome::Retry {
                    recipient_id: r.id,
                    at: until,
                    error: Some("429 Too Many Requests".into()),
                    undo_attempt: true,
                });
            }
            Err(SendError::Blocked(error)) => outcomes.push(Outcome::Blocked {
                recipient_id: r.id,
                chat_id: r.chat_id,
                error,
            }),
            Err(SendError::Permanent(error) | SendError::Migrated { message: error, .. }) => {
                tracing::warn!(error = %error, "Telegram refused an offer");
                outcomes.push(Outcome::Failed {
                    recipient_id: r.id,
                    error,
                });
            }
            Err(SendError::Transient(error)) => {
                if r.attempts >= backoff::MAX_ATTEMPTS {
                    outcomes.push(Outcome::Failed {
                        recipient_id: r.id,
                        error,
                    });
                } else {
                    outcomes.push(Outcome::Retry {
                        recipient_id: r.id,
                        at: now + ms(backoff::delay(r.attempts)),
                        error: Some(error),
                        undo_attempt: false,
                    });
                }
            }
        }
        // The permit travels with the last outcome: it comes back once that is written.
        let mut permit = Some(permit);
        let n = outcomes.len();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            let record = Record {
                outcome,
                permit: if i + 1 == n { permit.take() } else { None },
            };
            if self.outcomes.send(record).is_err() {
                tracing::error!("the outcome recorder stopped; an offer's outcome is not recorded");
            }
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_reach_about_50_ms_ahead_within_bounds() {
        // A quick database: about 70 ms of sending at 1,000/s.
        assert_eq!(claim_sizes(1000, 5), (70, 35));
        // Claims taking 230 ms: half a second's worth.
        assert_eq!(claim_sizes(1000, 230), (500, 250));
        assert_eq!(claim_sizes(25, 5), (2, 1));
        assert_eq!(claim_sizes(100, 230), (50, 25));
        assert_eq!(claim_sizes(100_000, 0), (500, 250));
    }
}
