//! Long polling with durable intake: a batch of updates is stored, together with the next offset,
//! before `getUpdates` is asked for anything newer — which is what confirms them to Telegram.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};

use super::update::{self, Received};
use crate::storage::updates;

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
    /// Dropped once the updates Telegram kept while the bot was stopped are in: polled without
    /// waiting, stored and applied (up to ten full batches), or the first poll
    /// failed. A button press among them proves its message delivered, so messages in flight at
    /// the last stop are only sent again after that (see `storage::outbox::record_pressed`).
    pub caught_up: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Updates asked for at once, Telegram's most.
const LIMIT: u8 = 100;

/// Full batches polled at start-up before the updates kept meanwhile count as in.
const CATCH_UP_POLLS: u32 = 10;

impl Poller {
    /// Polls until `shutdown` turns true. Errors are logged and retried with backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        let mut caught_up = self.caught_up.take();
        let mut catch_up_polls: u32 = 0;
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
            // Held for this round only (dropping it is the signal), unless a full batch shows
            // more updates kept meanwhile.
            let catching_up = caught_up.take();
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
            // Telegram's update ids are 32-bit; a stored offset beyond that means a corrupt row.
            let offset = match offset.map(i32::try_from) {
                Some(Ok(o)) => Some(o),
                Some(Err(_)) => {
                    tracing::error!(
                        ?offset,
                        "the stored polling offset is out of range; polling without it"
                    );
                    None
                }
                None => None,
            };
            // Catching up, nothing is worth waiting for: what Telegram kept comes at once.
            let long_poll_secs = if catching_up.is_some() {
                0
            } else {
                self.timeout_secs
            };
            let result = tokio::select! {
                r = self.get_updates(offset, long_poll_secs) => r,
                _ = shutdown.changed() => break,
            };
            match result {
                Ok(batch) => {
                    failures = 0;
                    if batch.is_empty() {
                        continue;
                    }
                    let next = batch
                        .iter()
                        .map(|u| u.incoming.update_id.saturating_add(1))
                        .fold(offset.map_or(0, i64::from), i64::max);
                    match crate::app::process::intake(&self.app, &batch, next).await {
                        Ok(done) => {
                            stored_offset = Some(next);
                            // Counted only while catching up: a full batch then means more
                            // updates were kept meanwhile.
                            if catching_up.is_some() {
                                catch_up_polls += 1;
                            }
                            if batch.len() >= usize::from(LIMIT) && catch_up_polls < CATCH_UP_POLLS
                            {
                                caught_up = catching_up;
                            }
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
                Err(PollError::RetryAfter(d)) => {
                    tracing::warn!(seconds = d.as_secs(), "getUpdates rate limited");
                    if wait(&mut shutdown, d).await {
                        break;
                    }
                }
                Err(PollError::Unauthorized) => {
                    // Nothing arrives until the token is fixed; say so plainly, and keep asking
                    // (slowly) in case it was a passing fault on Telegram's side.
                    tracing::error!(
                        "TELOXIDE_TOKEN: Telegram refused the token (401 Unauthorized): it was revoked or changed in @BotFather; no messages arrive until leadbot runs with the new one"
                    );
                    self.app.metrics.telegram_error("polling");
                    failures = failures.max(6);
                    if wait(&mut shutdown, backoff(&mut failures)).await {
                        break;
                    }
                }
                Err(PollError::Failed(msg)) => {
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

/// Why a `getUpdates` brought nothing.
#[derive(Debug, PartialEq)]
enum PollError {
    /// 429: ask again after this long.
    RetryAfter(Duration),
    /// 401: Telegram no longer knows the token (revoked or changed in BotFather).
    Unauthorized,
    /// Anything else, as a message without the token.
    Failed(String),
}

/// The request.
#[derive(serde::Serialize)]
struct GetUpdates<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i32>,
    timeout: u32,
    limit: u8,
    allowed_updates: &'a [teloxide::types::AllowedUpdate],
}

/// A Bot API answer to `getUpdates`, its updates left as the JSON Telegram sent.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    ok: bool,
    #[serde(borrow, default)]
    result: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(serde::Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// Reads a `getUpdates` answer. Each update is kept as Telegram sent it (stored as is, and read
/// once, into the event applied): teloxide's own `getUpdates` reads the whole answer into a tree
/// of values, then into its types, which leadbot wrote back to JSON to store and read again when
/// applying. An update without an id is left out (logged): it cannot be stored, and the offset
/// moves past it with the others; an answer of such updates alone is a failed poll (it would
/// come again at once).
fn read_answer(status: u16, body: &str) -> Result<Vec<Received>, PollError> {
    let answer: Answer = serde_json::from_str(body).map_err(|_| {
        PollError::Failed(format!(
            "the Bot API answered HTTP {status} with something other than its JSON"
        ))
    })?;
    if !answer.ok {
        if let Some(secs) = answer.parameters.and_then(|p| p.retry_after) {
            return Err(PollError::RetryAfter(Duration::from_secs(secs)));
        }
        if status == 401 {
            return Err(PollError::Unauthorized);
        }
        return Err(PollError::Failed(format!(
            "HTTP {status}: {}",
            answer.description.as_deref().unwrap_or("no description")
        )));
    }
    let raw = answer.result.unwrap_or_default();
    let mut batch = Vec::with_capacity(raw.len());
    let mut unreadable = None;
    for update in &raw {
        match update::decode(update.get()) {
            Ok(r) => batch.push(r),
            Err(why) => {
                tracing::warn!(
                    why,
                    "an update in getUpdates' answer cannot be stored; skipped"
                );
                unreadable = Some(why);
            }
        }
    }
    match unreadable {
        Some(why) if batch.is_empty() => Err(PollError::Failed(format!(
            "getUpdates' answer holds only updates leadbot cannot store: {why}"
        ))),
        _ => Ok(batch),
    }
}

impl Poller {
    /// `getUpdates`, made here rather than through teloxide's request (see [`read_answer`]),
    /// with the same client, address and timeout.
    async fn get_updates(
        &self,
        offset: Option<i32>,
        timeout: u32,
    ) -> Result<Vec<Received>, PollError> {
        let mut url = self.bot.api_url();
        url.path_segments_mut()
            .map_err(|()| PollError::Failed("TELOXIDE_API_URL cannot take a path".to_owned()))?
            .push(&format!("bot{}", self.token))
            .push("getUpdates");
        let body = GetUpdates {
            offset,
            timeout,
            limit: LIMIT,
            allowed_updates: &super::webhook::ALLOWED_UPDATES,
        };
        let failed = |e: reqwest::Error| {
            PollError::Failed(super::redact(&e.without_url().to_string(), &self.token))
        };
        let response = self
            .bot
            .client()
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(failed)?;
        read_answer(status, &text)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"update_id":9,"message":{"message_id":1,"date":1700000000,"chat":{"id":7,"type":"private","first_name":"A"},"from":{"id":7,"is_bot":false,"first_name":"A"},"text":"hi"}}"#;

    #[test]
    fn an_answer_s_updates_are_kept_as_telegram_sent_them() {
        let body = format!(
            r#"{{"ok":true,"result":[{MESSAGE},{{"update_id":10,"brand_new_kind":{{}}}}]}}"#
        );
        let batch = read_answer(200, &body).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].incoming.payload, MESSAGE);
        assert_eq!(batch[0].incoming.user_id, Some(7));
        assert_eq!(
            (batch[1].incoming.update_id, batch[1].incoming.user_id),
            (10, None)
        );
        assert!(
            read_answer(200, r#"{"ok":true,"result":[]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_refusal_says_why_and_a_rate_limit_how_long_to_wait() {
        assert_eq!(
            read_answer(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#
            )
            .err(),
            Some(PollError::RetryAfter(Duration::from_secs(3)))
        );
        assert_eq!(
            read_answer(
                409,
                r#"{"ok":false,"error_code":409,"description":"Conflict: can't use getUpdates method while webhook is active"}"#
            )
            .err(),
            Some(PollError::Failed(
                "HTTP 409: Conflict: can't use getUpdates method while webhook is active".into()
            ))
        );
        assert_eq!(
            read_answer(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            )
            .err(),
            Some(PollError::Unauthorized)
        );
        assert_eq!(
            read_answer(502, "<html>Bad Gateway</html>").err(),
            Some(PollError::Failed(
                "the Bot API answered HTTP 502 with something other than its JSON".into()
            ))
        );
    }

    #[test]
    fn updates_without_an_id_are_left_out_and_alone_fail_the_poll() {
        let body = format!(r#"{{"ok":true,"result":[{{"message":{{}}}},{MESSAGE}]}}"#);
        let batch = read_answer(200, &body).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].incoming.update_id, 9);
        assert!(matches!(
            read_answer(200, r#"{"ok":true,"result":[{"message":{}}]}"#),
            Err(PollError::Failed(_))
        ));
    }
}
