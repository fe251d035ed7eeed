//! A fake Telegram Bot API server for integration tests.
//!
//! It speaks real HTTP on 127.0.0.1, so the bot under test uses the real teloxide client
//! (`Bot::new(token).set_api_url(fake.api_url())`). It validates like Telegram where a bot can
//! get it wrong (parameters, HTML, lengths, buttons, edits), keeps every chat as a user would
//! see it, and fails on demand (faults, blocked users, flood limits, chaos).
//!
//! Tests never sleep: [`FakeTelegram::wait_until`] and friends wake on every state change.

mod faults;
mod inbound;
mod methods;
mod server;
mod state;
mod validation;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use faults::{Chaos, Fault, FaultTarget, RateLimits};
#[allow(unused_imports)]
pub use state::{BOT_USERNAME, Gone, RecordedRequest, State, StoredFile, StoredMessage};

use faults::{ChaosState, FaultRule};
use server::{Connection, KillableListener, Shared};

use crate::support::updates::{Chat, Update};

/// The token [`FakeTelegram::bot`] uses; the fake accepts any token and records it.
pub const TOKEN: &str = "123456789:TEST-fake-telegram-token";

/// Largest upload the fake accepts, Telegram's limit for bots.
const UPLOAD_LIMIT: usize = 50 * 1024 * 1024;

/// A running fake Bot API server; shuts down when dropped.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

/// What [`FakeTelegram::push`] queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The `update_id` the fake assigned.
    pub update_id: i64,
    /// For a new message: the `message_id` it got in its chat.
    pub message_id: Option<i64>,
}

/// A wait for a condition ran out of time; its `Display` shows the latest requests to help
/// tell why.
#[derive(Debug, Clone)]
pub struct WaitTimedOut {
    /// What was waited for.
    pub what: String,
    /// How long the wait lasted.
    pub waited: Duration,
    /// The last requests the fake saw, one line each.
    pub recent_requests: Vec<String>,
}

impl fmt::Display for WaitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "timed out after {:?} waiting for {}",
            self.waited, self.what
        )?;
        writeln!(f, "last requests the fake saw:")?;
        for line in &self.recent_requests {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitTimedOut {}

impl FakeTelegram {
    /// Binds 127.0.0.1 on a free port and serves the Bot API there.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0 for the fake Telegram server");
        let addr = listener
            .local_addr()
            .expect("the fake Telegram listener has an address");
        let bot_id = TOKEN
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(123_456_789);
        let shared = Arc::new(Shared::new(State::new(bot_id)));
        let app = Router::new()
            .fallback(server::handle)
            .layer(DefaultBodyLimit::max(UPLOAD_LIMIT))
            .with_state(Arc::clone(&shared));
        let service = app.into_make_service_with_connect_info::<Connection>();
        let server = tokio::spawn(async move {
            // The server only stops when the fake is dropped, which aborts this task.
            let _ = axum::serve(KillableListener(listener), service).await;
        });
        Self {
            shared,
            addr,
            server,
        }
    }

    /// Base URL for `Bot::set_api_url` / `TELOXIDE_API_URL`.
    pub fn api_url(&self) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}/", self.addr))
            .expect("an http URL built from a socket address parses")
    }

    /// A teloxide bot with [`TOKEN`], pointed at this fake, with teloxide's default client.
    pub fn bot(&self) -> teloxide::Bot {
        teloxide::Bot::new(TOKEN).set_api_url(self.api_url())
    }

    /// A teloxide bot whose HTTP client gives up after `timeout` (for hang and close tests).
    pub fn bot_with_timeout(&self, timeout: Duration) -> teloxide::Bot {
        let client = teloxide::net::default_reqwest_settings()
            .timeout(timeout)
            .build()
            .expect("building a reqwest client with a timeout");
        teloxide::Bot::with_client(TOKEN, client).set_api_url(self.api_url())
    }

    /// The bot's user id, as `getMe` reports it.
    pub fn bot_id(&self) -> i64 {
        self.read(|s| s.bot_id)
    }

    /// From now on only `token` is a bot Telegram knows; requests with any other token are
    /// answered 401 Unauthorized, as Telegram answers a mistyped or revoked token.
    pub fn accept_only_token(&self, token: &str) {
        let token = token.to_owned();
        self.shared.update(|s| s.only_token = Some(token));
    }

    /// From now on the bot cannot reach `chat_id`, for the reason given: `getChatMember` and
    /// every request naming the chat are answered as Telegram answers them.
    pub fn make_chat_gone(&self, chat_id: i64, why: Gone) {
        self.shared.update(|s| s.gone.insert(chat_id, why));
    }

    /// `getMe` reports the bot's privacy mode off (`/setprivacy` → Disable in BotFather).
    pub fn turn_privacy_off(&self) {
        self.shared.update(|s| s.reads_all_group_messages = true);
    }

    /// The bot can reach `chat_id` again (added back to the group).
    pub fn bring_chat_back(&self, chat_id: i64) {
        self.shared.update(|s| s.gone.remove(&chat_id));
    }

    /// The token of the latest request (the fake accepts any token unless told otherwise).
    pub fn token(&self) -> Option<String> {
        self.read(|s| s.tokens().last().cloned())
    }

    /// Reads the state under its lock.
    pub fn read<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        read(&self.shared.lock())
    }

    /// Queues an update for `getUpdates`, assigning its `update_id` (and, for a new message,
    /// its `message_id`), and records the message in its chat.
    pub fn push(&self, update: Update) -> Pushed {
        let (update_id, message_id) = self.shared.update(|s| s.push(update));
        Pushed {
            update_id,
            message_id,
        }
    }

    /// Queues several updates at once, so a waiting `getUpdates` returns them together.
    pub fn push_all(&self, updates: Vec<Update>) -> Vec<Pushed> {
        self.shared.update(|s| {
            updates
                .into_iter()
                .map(|u| {
                    let (update_id, message_id) = s.push(u);
                    Pushed {
                        update_id,
                        message_id,
                    }
                })
                .collect()
        })
    }

    /// Queues an already delivered update again with its original `update_id`, as Telegram
    /// does when the bot's confirmation never arrived. False when no such update was pushed.
    pub fn redeliver(&self, update_id: i64) -> bool {
        self.shared
            .update(|s| match s.pushed.get(&update_id).cloned() {
                Some(queued) => {
                    s.updates.push_back(queued);
                    true
                }
                None => false,
            })
    }

    /// Makes the next pushed update take this `update_id` (ids only grow, as Telegram's do).
    pub fn set_next_update_id(&self, update_id: i64) {
        self.shared
            .update(|s| s.next_update_id = s.next_update_id.max(update_id));
    }

    /// Delivers an update the way Telegram does in webhook mode: POSTs it to the URL given to
    /// `setWebhook`, with `X-Telegram-Bot-Api-Secret-Token`, and returns the HTTP status the
    /// bot answered. The chat is updated as for [`Self::push`]; the update is not queued
    /// for `getUpdates`.
    pub async fn deliver_to_webhook(&self, update: Update) -> Result<u16, String> {
        let (webhook, json) = self.shared.update(|s| {
            s.push(update);
            let json = s.updates.pop_back().map(|u| u.json);
            (s.webhook.clone(), json)
        });
        let webhook = webhook.ok_or("no webhook is set")?;
        let json = json.ok_or("the update was not built")?;
        let url = webhook["url"].as_str().unwrap_or_default();
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(json.to_string());
        if let Some(secret) = webhook.get("secret_token").and_then(Value::as_str) {
            request = request.header("x-telegram-bot-api-secret-token", secret);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        Ok(response.status().as_u16())
    }

    /// Builds an update as Telegram would POST it in webhook mode (the chat is updated as for
    /// [`Self::push`]) and returns its `update_id` and JSON body, for tests that post it
    /// themselves (to one of several replicas, twice, or without the secret).
    pub fn webhook_body(&self, update: Update) -> (i64, String) {
        self.shared.update(|s| {
            let (update_id, _) = s.push(update);
            let json = s.updates.pop_back().map(|u| u.json.to_string());
            (update_id, json.unwrap_or_default())
        })
    }

    /// Introduces a group, supergroup or forum so messages to it render with its title and type.
    pub fn add_chat(&self, chat: &Chat) {
        let json = chat.json();
        self.shared.update(|s| s.chat_mut(chat.id).json = json);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.read(|s| s.requests().to_vec())
    }

    /// Requests for one method (canonical camelCase name), oldest first.
    pub fn requests_for(&self, method: &str) -> Vec<RecordedRequest> {
        self.read(|s| s.requests_for(method).cloned().collect())
    }

    /// All messages in a chat (both sides, deleted ones included), oldest first.
    pub fn messages_in(&self, chat_id: i64) -> Vec<StoredMessage> {
        self.read(|s| s.messages_in(chat_id).to_vec())
    }

    /// Messages the bot sent to a chat and has not deleted, oldest first.
    pub fn bot_messages_in(&self, chat_id: i64) -> Vec<StoredMessage> {
        self.read(|s| s.bot_messages_in(chat_id).cloned().collect())
    }

    /// The newest message the bot sent to a chat and has not deleted.
    pub fn last_bot_message(&self, chat_id: i64) -> Option<StoredMessage> {
        self.read(|s| s.bot_messages_in(chat_id).last().cloned())
    }

    /// The chat as text, one message a line, for assertion messages.
    pub fn transcript(&self, chat_id: i64) -> String {
        self.read(|s| {
            s.messages_in(chat_id)
                .iter()
                .map(|m| {
                    let who = if m.from_bot { "bot" } else { "user" };
                    let deleted = if m.deleted { " (deleted)" } else { "" };
                    let buttons = m.button_labels();
                    let buttons = if buttons.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", buttons.join(" | "))
                    };
                    format!(
                        "#{} {who}: {}{buttons}{deleted}",
                        m.message_id,
                        m.visible_text()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// Updates pushed but not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.read(State::pending_updates)
    }

    /// The highest offset the bot has confirmed.
    pub fn offset_confirmed(&self) -> i64 {
        self.read(State::offset_confirmed)
    }

    /// How many 429 answers the fake has given.
    pub fn too_many_requests(&self) -> u64 {
        self.read(State::too_many_requests)
    }

    /// From now on, sends to this user answer 403 `Forbidden: bot was blocked by the user`.
    pub fn block_user(&self, user_id: i64) {
        self.shared.update(|s| s.blocked.insert(user_id));
    }

    /// Undoes [`Self::block_user`].
    pub fn unblock_user(&self, user_id: i64) {
        self.shared.update(|s| s.blocked.remove(&user_id));
    }

    /// The next `n` requests of any method but `getUpdates` and `getMe` fail with `fault`.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.fail(n, fault, FaultTarget::AnyExceptGetUpdates);
    }

    /// The next `n` calls of `method` fail with `fault`.
    pub fn fail_next_method(&self, method: &str, n: usize, fault: Fault) {
        self.fail(n, fault, FaultTarget::Method(method.to_owned()));
    }

    /// The next `n` requests for which `predicate(method, params)` holds fail with `fault`.
    pub fn fail_when(
        &self,
        n: usize,
        fault: Fault,
        predicate: impl Fn(&str, &Value) -> bool + Send + Sync + 'static,
    ) {
        self.fail(n, fault, FaultTarget::Matching(Arc::new(predicate)));
    }

    /// Queues a fault rule; rules apply in the order they were added.
    pub fn fail(&self, n: usize, fault: Fault, target: FaultTarget) {
        self.shared.update(|s| {
            s.faults.push(FaultRule {
                remaining: n,
                fault,
                target,
            });
        });
    }

    /// Random failures for chaos tests (`None` turns them off).
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        self.shared.update(|s| s.chaos = chaos.map(ChaosState::new));
    }

    /// Flood limits to enforce (all off by default).
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.shared.update(|s| s.rate.limits = limits);
    }

    /// Waits until `condition` holds for the state, re-checking on every change.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&State) -> bool,
    ) -> Result<(), WaitTimedOut> {
        self.wait_for("a condition on the fake's state", timeout, |s| {
            condition(s).then_some(())
        })
        .await
    }

    /// Waits for a message in `chat_id` (either side, not deleted) matching `predicate`.
    pub async fn wait_for_message(
        &self,
        chat_id: i64,
        timeout: Duration,
        predicate: impl Fn(&StoredMessage) -> bool,
    ) -> Result<StoredMessage, WaitTimedOut> {
        self.wait_for(&format!("a message in chat {chat_id}"), timeout, |s| {
            s.messages_in(chat_id)
                .iter()
                .find(|m| !m.deleted && predicate(m))
                .cloned()
        })
        .await
    }

    /// Waits for a request matching `predicate` and returns the first such.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        predicate: impl Fn(&RecordedRequest) -> bool,
    ) -> Result<RecordedRequest, WaitTimedOut> {
        self.wait_for("a request", timeout, |s| {
            s.requests().iter().find(|r| predicate(r)).cloned()
        })
        .await
    }

    /// Waits until `probe` finds something in the state.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, WaitTimedOut> {
        // Subscribe before the first look so a change between look and wait is not missed.
        let mut changed = self.shared.subscribe();
        let wait = async {
            loop {
                if let Some(found) = probe(&self.shared.lock()) {
                    return Some(found);
                }
                if changed.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(found)) => Ok(found),
            _ => Err(WaitTimedOut {
                what: what.to_owned(),
                waited: timeout,
                recent_requests: self.read(|s| {
                    let requests = s.requests();
                    requests[requests.len().saturating_sub(15)..]
                        .iter()
                        .map(|r| {
                            format!(
                                "{} {} -> {:?} {}",
                                r.method,
                                r.params,
                                r.status,
                                r.description().unwrap_or("")
                            )
                        })
                        .collect()
                }),
            }),
        }
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        // Wake hung requests and long polls so their connections close, then stop accepting.
        self.shared.shutdown.send_replace(true);
        self.server.abort();
    }
}
