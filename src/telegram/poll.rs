//! Long polling with durable intake: a batch of updates is stored, together with the next offset,
//! before `getUpdates` is asked for anything newer — which is what confirms them to Telegram.

use std::sync::Arc;
use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::prelude::Requester;
use tokio::sync::{Notify, watch};

use crate::storage::updates::{self, IncomingUpdate};

/// What the poller needs.
pub struct Poller {
    pub bot: teloxide::Bot,
    /// Stores each batch and applies what it can at once (see `app::process::intake`).
    pub app: Arc<crate::app::App>,
    /// Woken after a batch left updates to the processor.
    pub stored: Arc<Notify>,
    /// Long-poll timeout in seconds.
    pub timeout_secs: u32,
    pub token: String,
}

impl Poller {
    /// Polls until `shutdown` turns true. Errors are logged and retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        // Telegram refuses getUpdates while a webhook is set: after running in webhook mode the
        // bot removes it first (keeping the updates Telegram holds). A webhook set some other way
        // shows up as a refused getUpdates, handled below.
        if crate::storage::ops::webhook_registered(&self.app.db)
            .await
            .unwrap_or(true)
        {
            tokio::select! {
                _ = self.remove_webhook() => {}
                _ = shutdown.changed() => return,
            }
        }
        // The offset the last stored batch moved to. It is read from the database at start and
        // after a batch could not be stored; otherwise it is known without asking.
        let mut stored_offset: Option<i64> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let offset = match stored_offset {
                Some(o) => Ok(Some(o)),
                None => updates::polling_offset(&self.app.db).await,
            };
            let offset = match offset {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the polling offset; retrying");
                    if wait(&mut shutdown, backoff(&mut failures)).await {
                        break;
                    }
                    continue;
                }
            };
            let mut req = self
                .bot
                .get_updates()
                .timeout(self.timeout_secs)
                .limit(100)
                .allowed_updates(super::webhook::ALLOWED_UPDATES);
            // Telegram's update ids are 32-bit; a stored offset beyond that means a corrupt row.
            match offset.map(i32::try_from) {
                Some(Ok(o)) => req = req.offset(o),
                Some(Err(_)) => {
                    tracing::error!(
                        ?offset,
                        "the stored polling offset is out of range; polling without it"
                    )
                }
                None => {}
            }
            let result = tokio::select! {
                r = req => r,
                _ = shutdown.changed() => break,
            };
            match result {
                Ok(batch) => {
                    failures = 0;
                    if batch.is_empty() {
                        continue;
                    }
                    let mut incoming = Vec::with_capacity(batch.len());
                    let mut next = offset.unwrap_or(0);
                    for u in &batch {
                        let id = i64::from(u.id.0);
                        next = next.max(id + 1);
                        match serde_json::to_string(u) {
                            Ok(payload) => incoming.push(IncomingUpdate {
                                update_id: id,
                                user_id: super::update::user_of(u),
                                payload,
                            }),
                            Err(e) => {
                                tracing::warn!(update_id = id, error = %e, "update cannot be stored; skipped")
                            }
                        }
                    }
                    match crate::app::process::intake(&self.app, &incoming, next).await {
                        Ok(done) => {
                            stored_offset = Some(next);
                            tracing::debug!(
                                received = batch.len(),
                                new = done.new,
                                left = done.left,
                                "updates stored"
                            );
                            self.app
                                .metrics
                                .received("polling", u64::try_from(done.new).unwrap_or(u64::MAX));
                            if done.left > 0 {
                                self.stored.notify_one();
                            }
                        }
                        Err(e) => {
                            // Not stored means not confirmed: the same batch comes again.
                            stored_offset = None;
                            tracing::warn!(error = %e, "cannot store updates; they will be fetched again");
                            if wait(&mut shutdown, backoff(&mut failures)).await {
                                break;
                            }
                        }
                    }
                }
                Err(RequestError::RetryAfter(s)) => {
                    tracing::warn!(seconds = s.seconds(), "getUpdates rate limited");
                    if wait(&mut shutdown, s.duration()).await {
                        break;
                    }
                }
                Err(e) => {
                    let msg = super::redact(&e.to_string(), &self.token);
                    tracing::warn!(error = %msg, "getUpdates failed; retrying");
                    self.app.metrics.telegram_error("polling");
                    if msg.contains("webhook") {
                        self.remove_webhook().await;
                    }
                    if wait(&mut shutdown, backoff(&mut failures)).await {
                        break;
                    }
                }
            }
        }
        tracing::info!("polling stopped");
    }
}

impl Poller {
    async fn remove_webhook(&self) {
        match super::webhook::remove(&self.bot, &self.token).await {
            Ok(()) => {
                tracing::info!("webhook removed; polling");
                if let Err(e) = crate::storage::ops::note_webhook_removed(&self.app.db).await {
                    tracing::warn!(error = %e, "cannot note the webhook's removal");
                }
            }
            Err(e) => tracing::warn!(error = %e, "deleteWebhook failed; polling may be refused"),
        }
    }
}

fn backoff(failures: &mut u32) -> Duration {
    *failures = failures.saturating_add(1);
    let ms = 250u64.saturating_mul(1 << (*failures).min(7));
    Duration::from_millis(ms.min(30_000))
}

/// Sleeps unless shutdown comes first; true when shutting down.
async fn wait(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
