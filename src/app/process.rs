//! Applies stored updates: per lead in order, in transactions of several leads' updates (a group
//! commit) that also mark them applied, so a replay changes nothing. A group that fails is applied
//! again one update per transaction, different leads concurrently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, watch};

use super::App;
use super::ctx::Ctx;
use super::event::Event;
use super::prospect;
use crate::staff::chat::Upgrade;
use crate::storage::updates::{self, StoredUpdate};
use crate::telegram::update::Received;

/// About this many updates share one transaction.
const CHUNK: usize = 64;

/// Updates that failed this often are left aside (and logged) so one bad update cannot stall a lead.
const MAX_ATTEMPTS: i32 = 5;

/// How long an update waits after the database was unreachable (not counted as an attempt).
const UNAVAILABLE_PAUSE_MS: i64 = 500;

/// The update processor.
pub struct Processor {
    pub app: Arc<App>,
    /// Woken when the poller stored updates.
    pub stored: Arc<Notify>,
    /// Updates that failed, with the clock time (ms) before which they are not tried again.
    pub deferred: Mutex<HashMap<i64, i64>>,
}

/// How long an update that failed `attempts` times waits before the next try: 1 s, doubling, at most 1 min.
pub fn retry_delay(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(6);
    Duration::from_secs(1u64 << doublings).min(Duration::from_secs(60))
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Done(usize),
    Empty,
}

impl Processor {
    /// One round: every pending update, grouped by user. A user whose next update failed
    /// recently waits out its backoff (and so do that user's later updates, to keep their order).
    pub async fn step(&self) -> Result<Round, crate::storage::StorageError> {
        let pending = updates::pending(&self.app.db, 512, MAX_ATTEMPTS).await?;
        let now = self.app.clock.now_ms();
        // `None` marks a user whose next update waits out its backoff: none of theirs run now.
        let mut groups: BTreeMap<i64, Option<Vec<StoredUpdate>>> = BTreeMap::new();
        {
            let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
            deferred.retain(|_, until| *until > now);
            for u in pending {
                // Updates without a user have no order to keep; give each its own group.
                let key = u.user_id.unwrap_or(i64::MIN + u.update_id);
                match groups.get_mut(&key) {
                    Some(Some(group)) => group.push(u),
                    Some(None) => {}
                    None if deferred.contains_key(&u.update_id) => {
                        groups.insert(key, None);
                    }
                    None => {
                        groups.insert(key, Some(vec![u]));
                    }
                }
            }
        }
        let groups: Vec<Vec<StoredUpdate>> = groups.into_values().flatten().collect();
        if groups.is_empty() {
            return Ok(Round::Empty);
        }
        let n = groups.iter().map(Vec::len).sum();
        let groups_n = groups.len();
        // Several users' updates share a transaction (a group commit): SQLite has one writer at
        // a time, and PostgreSQL then waits for one commit instead of one per update. A chunk
        // that fails is rolled back and its updates are applied one by one, so a bad update still
        // fails alone and backs off.
        let mut busy = 0;
        let mut chunk = Vec::new();
        let mut size = 0;
        for group in groups {
            size += group.len();
            chunk.push(group);
            if size >= CHUNK {
                busy += self.group_commit(std::mem::take(&mut chunk)).await;
                size = 0;
            }
        }
        if !chunk.is_empty() {
            busy += self.group_commit(chunk).await;
        }
        if busy == groups_n {
            // Everything pending belongs to users another replica is on: wait instead of spinning.
            return Ok(Round::Empty);
        }
        Ok(Round::Done(n))
    }

    /// Applies a chunk of groups in one transaction, or one by one if that fails. Returns how
    /// many groups were left to another replica.
    async fn group_commit(&self, groups: Vec<Vec<StoredUpdate>>) -> usize {
        let app = &self.app;
        let result = AssertUnwindSafe(apply_chunk(app, &groups))
            .catch_unwind()
            .await;
        match result {
            Ok(Ok(chunk)) => {
                if chunk.enqueued {
                    app.outbox_wake.notify_one();
                }
                chunk.busy
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "a shared transaction failed; applying its updates one by one");
                self.busy_one_by_one(groups).await
            }
            Err(_) => {
                tracing::debug!("a shared transaction panicked; applying its updates one by one");
                self.busy_one_by_one(groups).await
            }
        }
    }

    /// [`Processor::one_by_one`], counted as [`Processor::group_commit`] counts: every group left
    /// to another replica, or none.
    async fn busy_one_by_one(&self, groups: Vec<Vec<StoredUpdate>>) -> usize {
        let groups_n = groups.len();
        match self.one_by_one(groups).await {
            Round::Empty => groups_n,
            Round::Done(_) => 0,
        }
    }

    /// Applies each update in its own transaction, different users concurrently. `Empty` when
    /// every user was busy with another replica.
    async fn one_by_one(&self, groups: Vec<Vec<StoredUpdate>>) -> Round {
        let n = groups.iter().map(Vec::len).sum();
        let app = &self.app;
        let busy = std::sync::atomic::AtomicUsize::new(0);
        let busy = &busy;
        let groups_n = groups.len();
        let failed: Vec<Option<(i64, i64)>> =
            futures::future::join_all(groups.into_iter().map(|group| async move {
                for u in group {
                    // A bug must not take the processor down: a panic is caught and counted as a failure.
                    let result = AssertUnwindSafe(apply(app, &u))
                        .catch_unwind()
                        .await;
                    let error = match result {
                        Ok(Ok(Applied::Yes)) => continue,
                        Ok(Ok(Applied::Busy)) => {
                            // Another replica holds this user; it carries on with the rest.
                            busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                        // The database is away: nothing is wrong with the update, so it keeps
                        // its attempts (an outage used to use them up and set it aside for good).
                        Ok(Err(prospect::ProspectError::Storage(e))) if e.is_unavailable() => {
                            tracing::warn!(update_id = u.update_id, error = %e, "database unavailable; update will be retried");
                            let until = app.clock.now_ms().saturating_add(UNAVAILABLE_PAUSE_MS);
                            return Some((u.update_id, until));
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "the handler panicked".to_owned(),
                    };
                    let attempts = u.attempts.saturating_add(1);
                    let delay = retry_delay(attempts);
                    tracing::error!(update_id = u.update_id, attempts, retry_in = ?delay, error = %error, "update failed; will retry");
                    let _ = updates::record_failure(&app.db, u.update_id, &error).await;
                    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    // Later updates of this user wait for this one.
                    return Some((u.update_id, app.clock.now_ms().saturating_add(delay_ms)));
                }
                None
            }))
            .await;
        {
            let mut deferred = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
            deferred.extend(failed.into_iter().flatten());
        }
        self.app.outbox_wake.notify_one();
        if busy.load(std::sync::atomic::Ordering::Relaxed) == groups_n {
            // Everything pending belongs to users another replica is on: wait instead of spinning.
            return Round::Empty;
        }
        Round::Done(n)
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.step().await {
                Ok(Round::Done(_)) => continue,
                Ok(Round::Empty) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read pending updates; retrying"),
            }
            tokio::select! {
                _ = self.stored.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("update processor stopped");
    }
}

/// What became of an update.
enum Applied {
    /// Applied now, or found applied already.
    Yes,
    /// Another replica is applying this user's updates; left to it.
    Busy,
}

/// Applies one stored update in its own transaction, unless another replica holds its user.
async fn apply(app: &App, u: &StoredUpdate) -> Result<Applied, prospect::ProspectError> {
    // Read before the transaction, so the write turn does not wait for JSON.
    let event = crate::telegram::update::event_of(&u.payload);
    let tx = app.db.begin().await?;
    let mut ctx = Ctx::new(tx, app.clock.now_ms(), u.update_id);
    // Replicas on PostgreSQL: one user's updates are applied by one replica at a time, and the
    // pending check runs after the lock, so it sees what another replica just committed.
    match updates::lock_and_begin_apply(&mut ctx.tx, u.update_id, lock_key(u), ctx.now).await? {
        updates::Begun::Busy => return Ok(Applied::Busy),
        updates::Begun::Done => return Ok(Applied::Yes),
        updates::Begun::Fresh => apply_begun(app, &mut ctx, event).await?,
    }
    let enqueued = ctx.enqueued;
    let answers = std::mem::take(&mut ctx.answers);
    ctx.tx.commit().await?;
    app.answers.send(answers);
    if enqueued {
        app.outbox_wake.notify_one();
    }
    Ok(Applied::Yes)
}

/// What [`apply_chunk`] did.
struct Chunk {
    /// Something was enqueued: wake the outbox worker.
    enqueued: bool,
    /// Groups left to another replica (PostgreSQL), which holds their user.
    busy: usize,
}

/// Applies several users' updates in one transaction. On PostgreSQL each user's replica lock is
/// tried first, as [`apply`] does, and a user another replica holds is left to it with all of
/// their updates. Any error rolls all of them back.
async fn apply_chunk(
    app: &App,
    groups: &[Vec<StoredUpdate>],
) -> Result<Chunk, prospect::ProspectError> {
    // Read before the transaction, so the write turn does not wait for JSON.
    let mut events: HashMap<i64, Event> = groups
        .iter()
        .flatten()
        .map(|u| (u.update_id, crate::telegram::update::event_of(&u.payload)))
        .collect();
    let mut tx = app.db.begin().await?;
    let keyed: Vec<(i64, i64)> = groups
        .iter()
        .flatten()
        .map(|u| (u.update_id, lock_key(u)))
        .collect();
    let begun = updates::begin_apply_many(&mut tx, &keyed, app.clock.now_ms()).await?;
    // The chunk's leads with one statement; their changes are written at commit.
    let users: Vec<i64> = groups
        .iter()
        .flatten()
        .filter(|u| begun.fresh.contains(&u.update_id))
        .filter_map(|u| u.user_id)
        .collect();
    crate::storage::leads::prefetch(&mut tx, &users).await?;
    let mut enqueued = false;
    let mut answers = Vec::new();
    let mut busy = 0;
    for group in groups {
        if group
            .first()
            .is_some_and(|u| begun.busy.contains(&lock_key(u)))
        {
            busy += 1;
            continue;
        }
        for u in group {
            let mut ctx = Ctx::new(tx, app.clock.now_ms(), u.update_id);
            if begun.fresh.contains(&u.update_id)
                && let Some(event) = events.remove(&u.update_id)
            {
                apply_begun(app, &mut ctx, event).await?;
            }
            enqueued |= ctx.enqueued;
            answers.append(&mut ctx.answers);
            tx = ctx.tx;
        }
    }
    tx.commit().await?;
    app.answers.send(answers);
    Ok(Chunk { enqueued, busy })
}

/// What [`intake`] did with a polled batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    /// Updates stored that were not stored before.
    pub new: usize,
    /// Of those, how many were left to the processor (stored, not applied).
    pub left: usize,
}

/// Stores a polled batch with the next polling offset and, in the same transaction, applies the
/// updates of every user with nothing else waiting (one write transaction per batch instead of
/// two, and no trip through the processor). A user with an earlier update still pending keeps
/// their order: their new updates are only stored, for the processor. If applying fails the
/// batch is stored alone and the processor applies it, one update per transaction if need be.
pub async fn intake(
    app: &App,
    batch: &[Received],
    next_offset: i64,
) -> Result<Intake, crate::storage::StorageError> {
    let result = AssertUnwindSafe(store_and_apply(app, batch, next_offset))
        .catch_unwind()
        .await;
    match result {
        Ok(Ok(done)) => return Ok(done),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "a polled batch could not be applied at once; storing it for the processor")
        }
        Err(_) => {
            tracing::debug!("applying a polled batch panicked; storing it for the processor")
        }
    }
    let incoming: Vec<&updates::IncomingUpdate> = batch.iter().map(|r| &r.incoming).collect();
    let new = updates::store_batch(&app.db, &incoming, next_offset, app.clock.now_ms()).await?;
    let new = usize::try_from(new).unwrap_or(usize::MAX);
    Ok(Intake { new, left: new })
}

async fn store_and_apply(
    app: &App,
    batch: &[Received],
    next_offset: i64,
) -> Result<Intake, prospect::ProspectError> {
    let now = app.clock.now_ms();
    let incoming: Vec<&updates::IncomingUpdate> = batch.iter().map(|r| &r.incoming).collect();
    // Taken before the transaction (and so before SQLite's write turn), held until the rows
    // claimed for the worker are given: see `outbox::handover`.
    let _claiming = match &app.handover {
        Some(h) => Some(h.claiming().await),
        None => None,
    };
    let mut tx = app.db.begin().await?;
    let users: Vec<i64> = incoming.iter().filter_map(|u| u.user_id).collect();
    let waiting = updates::users_waiting(&mut tx, &users, MAX_ATTEMPTS).await?;
    let applying: HashSet<i64> = incoming
        .iter()
        .filter(|u| u.user_id.is_none_or(|user| !waiting.contains(&user)))
        .map(|u| u.update_id)
        .collect();
    let mut new = updates::store_batch_in(&mut tx, &incoming, &applying, next_offset, now).await?;
    let stored = new.len();
    // Each new update once (a batch could name one twice), in the order Telegram sent them.
    let mut fresh: Vec<&Received> = batch
        .iter()
        .filter(|r| applying.contains(&r.incoming.update_id) && new.remove(&r.incoming.update_id))
        .collect();
    fresh.sort_by_key(|r| r.incoming.update_id);
    let users: Vec<i64> = fresh.iter().filter_map(|r| r.incoming.user_id).collect();
    crate::storage::leads::prefetch(&mut tx, &users).await?;
    let mut enqueued = false;
    let mut answers = Vec::new();
    for r in &fresh {
        let mut ctx = Ctx::new(tx, now, r.incoming.update_id);
        apply_begun(app, &mut ctx, r.event.clone()).await?;
        enqueued |= ctx.enqueued;
        answers.append(&mut ctx.answers);
        tx = ctx.tx;
    }
    // The replies are claimed for this process's worker here, rather than by the worker in a
    // transaction of its own.
    let handed = match &app.handover {
        Some(h) if enqueued => {
            crate::storage::outbox::claim_due_in(&mut tx, now, h.room(), h.owner()).await?
        }
        _ => Vec::new(),
    };
    let promotes = tx.promotes_at_commit();
    if let Err(e) = tx.commit().await {
        // The commit may have been applied all the same, and the rows claimed with it.
        if let Some(h) = app.handover.as_ref().filter(|_| !handed.is_empty()) {
            h.lost();
        }
        return Err(e.into());
    }
    app.answers.send(answers);
    // Rows handed over wake the worker themselves, and it need not claim: this claim took
    // every row due then, or as many as the worker has room for (it claims more when it
    // records). Rows promoted at commit (PostgreSQL) are for the worker's claim.
    let claim = handed.is_empty() || promotes;
    if let Some(h) = &app.handover {
        h.give(handed);
    }
    if enqueued && claim {
        app.outbox_wake.notify_one();
    }
    Ok(Intake {
        new: stored,
        left: stored - fresh.len(),
    })
}

/// The replica lock of an update: its user's, or its own id for an update without a user (a
/// harmless overlap with some user's key).
fn lock_key(u: &StoredUpdate) -> i64 {
    u.user_id.unwrap_or(u.update_id)
}

/// Applies one update's event inside `ctx`'s transaction, which has just marked the update
/// applied (so a replay finds it applied and changes nothing).
#[tracing::instrument(skip_all, fields(update_id = ctx.update_id))]
async fn apply_begun(
    app: &App,
    ctx: &mut Ctx,
    event: Event,
) -> Result<(), prospect::ProspectError> {
    if let Some(note) = handle(app, ctx, event).await?.as_deref() {
        updates::note_applied(&mut ctx.tx, ctx.update_id, note).await?;
    }
    Ok(())
}

async fn handle(
    app: &App,
    ctx: &mut Ctx,
    event: Event,
) -> Result<Option<String>, prospect::ProspectError> {
    match event {
        Event::Private {
            from,
            message_id,
            content,
            album,
        } => {
            let album_seen = album.is_some_and(|a| app.albums.seen(from.id, a));
            prospect::on_message(app, ctx, &from, message_id, content, album_seen).await?;
        }
        Event::PrivateEdited { from } => prospect::on_edited(app, ctx, &from).await?,
        Event::Callback {
            from,
            query_id,
            data,
            chat_id,
            message_id,
        } => {
            if chat_id.is_some() && chat_id == Some(app.staff_chat.id())
                || app.settings.managers.contains(&from.id) && chat_id != Some(from.id)
            {
                crate::staff::on_callback(app, ctx, &from, &query_id, data.as_deref(), message_id)
                    .await?;
            } else {
                let pressed = prospect::Pressed {
                    chat_id,
                    message_id,
                };
                prospect::on_callback(app, ctx, &from, &query_id, data.as_deref(), pressed).await?;
            }
        }
        Event::Membership { user_id, blocked } => {
            prospect::on_membership(ctx, user_id, blocked).await?
        }
        Event::Group {
            chat_id,
            from,
            message_id,
            thread_id,
            reply_to,
            content,
        } => {
            if chat_id == app.staff_chat.id() {
                crate::staff::on_message(
                    app,
                    ctx,
                    from.as_ref(),
                    message_id,
                    thread_id,
                    reply_to,
                    content,
                )
                .await?;
            } else {
                return Ok(Some("message in a foreign group".into()));
            }
        }
        Event::ChatUpgraded { from, to } => match app.staff_chat.follow(from, to) {
            // Topics are tried again in the new chat; messages already queued for the old one
            // follow when it refuses them.
            Upgrade::Followed => app.staff_forum.forget(),
            Upgrade::Known => {}
            Upgrade::Other => return Ok(Some("a group upgraded to a supergroup".into())),
        },
        Event::Ignored(reason) => return Ok(Some(reason.to_owned())),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::retry_delay;
    use std::time::Duration;

    #[test]
    fn failed_updates_back_off_from_a_second_to_a_minute() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(2), Duration::from_secs(2));
        assert_eq!(retry_delay(4), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_secs(60));
        assert_eq!(retry_delay(0), Duration::from_secs(1));
        assert_eq!(retry_delay(-5), Duration::from_secs(1));
    }
}
