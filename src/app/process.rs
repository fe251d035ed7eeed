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
use super::prospect::{self, ProspectError};
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
    /// Updates were applied (or tried); `failed` of them failed and wait for the next round.
    Done {
        applied: usize,
        failed: usize,
    },
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
        let failed = futures::future::join_all(groups.into_values().map(|group| async move {
            for u in group {
                // A bug must not take the processor down: a panic is caught and counted as a failure.
                let result = AssertUnwindSafe(apply_update(app, &u)).catch_unwind().await;
                match result {
                    Ok(Ok(())) => continue,
                    // The database is away: nothing is wrong with the update, so it keeps all its
                    // attempts (five quick failures during an outage used to set it aside for good).
                    Ok(Err(ProspectError::Storage(e))) if e.is_unavailable() => {
                        tracing::warn!(update_id = u.update_id, error = %e, "database unavailable; update will be retried");
                    }
                    other => {
                        let error = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "the handler panicked".to_owned(),
                        };
                        tracing::error!(update_id = u.update_id, error = %error, "update failed; will retry");
                        let _ = updates::record_failure(&app.db, u.update_id, &error).await;
                    }
                }
                // Later updates of this user wait for this one.
                return 1;
            }
            0
        }))
        .await
        .into_iter()
        .sum();
        self.app.outbox_wake.notify_one();
        Ok(Round::Done {
            applied: n - failed,
            failed,
        })
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut pause = Duration::ZERO;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let idle = match self.step().await {
                Ok(Round::Done { failed: 0, .. }) => {
                    pause = Duration::ZERO;
                    continue;
                }
                // Failed updates are retried after a growing pause, not in a tight loop.
                Ok(Round::Done { .. }) => {
                    pause = (pause * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    pause
                }
                Ok(Round::Empty) => Duration::from_secs(2),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read pending updates; retrying");
                    pause = (pause * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    pause
                }
            };
            tokio::select! {
                _ = self.stored.notified(), if pause.is_zero() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("update processor stopped");
    }
}

/// Applies one stored update in one transaction.
#[tracing::instrument(skip_all, fields(update_id = u.update_id))]
pub async fn apply_update(app: &App, u: &StoredUpdate) -> Result<(), prospect::ProspectError> {
    let tx = app.db.begin().await?;
    let mut ctx = Ctx::new(tx, app.clock.now_ms(), u.update_id);
    if !updates::is_pending(&mut ctx.tx, u.update_id).await? {
        return Ok(());
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
