//! Applies stored updates: per lead in order, different leads concurrently, each update in one
//! transaction that also marks it applied, so a replay changes nothing.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Notify, watch};

use super::App;
use super::ctx::Ctx;
use super::event::Event;
use super::prospect;
use crate::storage::updates::{self, StoredUpdate};

/// Updates that failed this often are left aside (and logged) so one bad update cannot stall a lead.
const MAX_ATTEMPTS: i32 = 5;

/// The update processor.
pub struct Processor {
    pub app: Arc<App>,
    /// Woken when the poller stored updates.
    pub stored: Arc<Notify>,
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Done(usize),
    Empty,
}

impl Processor {
    /// One round: every pending update, grouped by user.
    pub async fn step(&self) -> Result<Round, crate::storage::StorageError> {
        let pending = updates::pending(&self.app.db, 512, MAX_ATTEMPTS).await?;
        if pending.is_empty() {
            return Ok(Round::Empty);
        }
        let n = pending.len();
        let mut groups: BTreeMap<i64, Vec<StoredUpdate>> = BTreeMap::new();
        for u in pending {
            // Updates without a user have no order to keep; give each its own group.
            let key = u.user_id.unwrap_or(i64::MIN + u.update_id);
            groups.entry(key).or_default().push(u);
        }
        let app = &self.app;
        let busy = std::sync::atomic::AtomicUsize::new(0);
        let busy = &busy;
        let groups_n = groups.len();
        futures::future::join_all(groups.into_values().map(|group| async move {
            for u in group {
                // A bug must not take the processor down: a panic is caught and counted as a failure.
                let result = AssertUnwindSafe(apply(app, &u, Lock::Try))
                    .catch_unwind()
                    .await;
                let error = match result {
                    Ok(Ok(Applied::Yes)) => continue,
                    Ok(Ok(Applied::Busy)) => {
                        // Another replica holds this user; it carries on with the rest.
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "the handler panicked".to_owned(),
                };
                tracing::error!(update_id = u.update_id, error = %error, "update failed; will retry");
                let _ = updates::record_failure(&app.db, u.update_id, &error).await;
                // Later updates of this user wait for this one.
                break;
            }
        }))
        .await;
        self.app.outbox_wake.notify_one();
        if busy.load(std::sync::atomic::Ordering::Relaxed) == groups_n {
            // Everything pending belongs to users another replica is on: wait instead of spinning.
            return Ok(Round::Empty);
        }
        Ok(Round::Done(n))
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

/// Whether to wait for a user another replica is working on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lock {
    Wait,
    Try,
}

/// What became of an update.
enum Applied {
    /// Applied now, or found applied already.
    Yes,
    /// Another replica is applying this user's updates; left to it.
    Busy,
}

/// Applies one stored update in one transaction (waiting if another replica holds its user).
pub async fn apply_update(app: &App, u: &StoredUpdate) -> Result<(), prospect::ProspectError> {
    apply(app, u, Lock::Wait).await.map(|_| ())
}

#[tracing::instrument(skip_all, fields(update_id = u.update_id))]
async fn apply(
    app: &App,
    u: &StoredUpdate,
    lock: Lock,
) -> Result<Applied, prospect::ProspectError> {
    let tx = app.db.begin().await?;
    let mut ctx = Ctx::new(tx, app.clock.now_ms(), u.update_id);
    // Replicas on PostgreSQL: one user's updates are applied by one replica at a time, and the
    // pending check below runs after the lock, so it sees what another replica just committed.
    // An update without a user locks on its own id (a harmless overlap with some user's key).
    let key = u.user_id.unwrap_or(u.update_id);
    match lock {
        Lock::Wait => crate::storage::ops::lock_user(&mut ctx.tx, key).await?,
        Lock::Try => {
            if !crate::storage::ops::try_lock_user(&mut ctx.tx, key).await? {
                return Ok(Applied::Busy);
            }
        }
    }
    if !updates::is_pending(&mut ctx.tx, u.update_id).await? {
        return Ok(Applied::Yes);
    }
    let note = match serde_json::from_str::<teloxide::types::Update>(&u.payload) {
        Ok(update) => {
            let event = crate::telegram::update::to_event(&update);
            handle(app, &mut ctx, event).await?
        }
        Err(e) => {
            tracing::warn!(error = %e, "stored update does not decode; skipped");
            Some("undecodable update".to_owned())
        }
    };
    updates::mark_processed(&mut ctx.tx, u.update_id, ctx.now, note.as_deref()).await?;
    let enqueued = ctx.enqueued;
    ctx.tx.commit().await?;
    if enqueued {
        app.outbox_wake.notify_one();
    }
    Ok(Applied::Yes)
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
        } => {
            prospect::on_message(app, ctx, &from, message_id, content).await?;
        }
        Event::PrivateEdited { from } => prospect::on_edited(app, ctx, &from).await?,
        Event::Callback {
            from,
            query_id,
            data,
            chat_id,
            message_id,
        } => {
            if chat_id.is_some() && chat_id == Some(app.staff_chat_id)
                || app.settings.managers.contains(&from.id) && chat_id != Some(from.id)
            {
                crate::staff::on_callback(app, ctx, &from, &query_id, data.as_deref(), message_id)
                    .await?;
            } else {
                prospect::on_callback(app, ctx, &from, &query_id, data.as_deref()).await?;
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
            if chat_id == app.staff_chat_id {
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
        Event::Ignored(reason) => return Ok(Some(reason.to_owned())),
    }
    Ok(None)
}
