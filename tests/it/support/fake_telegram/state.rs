//! Everything the fake remembers: chats and their messages, the update queue, requests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::faults::{ChaosState, FaultRule, RateLimiter};

/// The bot's own identity as `getMe` reports it.
pub const BOT_FIRST_NAME: &str = "Leadbot Test";
/// The bot's username as `getMe` reports it.
pub const BOT_USERNAME: &str = "leadbot_test_bot";

/// A file the bot uploaded (or referenced by `file_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    /// The `file_id` the fake assigned.
    pub file_id: String,
    /// The name the bot gave the upload, if any.
    pub file_name: Option<String>,
    /// The uploaded bytes (empty when the bot sent a `file_id` or URL).
    pub bytes: Vec<u8>,
}

/// One message in a chat, as the chat's participants would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Chat the message lives in.
    pub chat_id: i64,
    /// Id, increasing per chat like Telegram's.
    pub message_id: i64,
    /// Sent by the bot (true) or pushed as a user's message (false).
    pub from_bot: bool,
    /// Sender's user id (the bot's id for bot messages).
    pub sender_id: i64,
    /// Visible text after entity parsing (markup removed).
    pub text: Option<String>,
    /// The text exactly as the bot sent it (with markup), for bot messages.
    pub source_text: Option<String>,
    /// Entities of the text (or of the caption).
    pub entities: Vec<Value>,
    /// Visible caption of a media message.
    pub caption: Option<String>,
    /// `parse_mode` the bot used, if any.
    pub parse_mode: Option<String>,
    /// Media part of the message: key (`document`, `photo`, `sticker`...) and its JSON.
    pub media: Option<(String, Value)>,
    /// Uploaded file, for `sendDocument` / `sendPhoto`.
    pub file: Option<StoredFile>,
    /// The inline keyboard under the message, if any.
    pub reply_markup: Option<Value>,
    /// A reply keyboard, force reply or keyboard removal sent with the message.
    pub reply_keyboard: Option<Value>,
    /// The message this one replies to.
    pub reply_to_message_id: Option<i64>,
    /// Forum topic or reply thread.
    pub message_thread_id: Option<i64>,
    /// `(chat_id, message_id)` this message was copied or forwarded from.
    pub origin: Option<(i64, i64)>,
    /// Whether `forwardMessage` produced it (as opposed to `copyMessage`).
    pub forwarded: bool,
    /// Deleted by `deleteMessage`.
    pub deleted: bool,
    /// How many times it was edited.
    pub edit_count: u32,
    /// Unix time it was sent.
    pub date: i64,
    /// The `Message` JSON Telegram would return or deliver for it.
    pub json: Value,
}

impl StoredMessage {
    /// The text a reader sees: the text, or the caption of a media message.
    pub fn visible_text(&self) -> &str {
        self.text
            .as_deref()
            .or(self.caption.as_deref())
            .unwrap_or_default()
    }

    /// Inline keyboard buttons, row by row, as `(text, callback_data or url)`.
    pub fn button_rows(&self) -> Vec<Vec<(String, String)>> {
        let rows = self
            .reply_markup
            .as_ref()
            .and_then(|m| m.get("inline_keyboard"))
            .and_then(Value::as_array);
        rows.map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|buttons| buttons.iter().map(button_pair).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
    }

    /// Labels of all inline buttons, in reading order.
    pub fn button_labels(&self) -> Vec<String> {
        self.button_rows()
            .into_iter()
            .flatten()
            .map(|(text, _)| text)
            .collect()
    }

    /// `callback_data` of the inline button labelled `label`.
    pub fn callback_data(&self, label: &str) -> Option<String> {
        let rows = self
            .reply_markup
            .as_ref()?
            .get("inline_keyboard")?
            .as_array()?;
        rows.iter()
            .filter_map(Value::as_array)
            .flatten()
            .find(|b| b.get("text").and_then(Value::as_str) == Some(label))?
            .get("callback_data")?
            .as_str()
            .map(str::to_owned)
    }
}

fn button_pair(button: &Value) -> (String, String) {
    let text = button["text"].as_str().unwrap_or_default().to_owned();
    let action = ["callback_data", "url", "request_contact"]
        .iter()
        .find_map(|k| {
            button
                .get(*k)
                .map(|v| v.as_str().map_or(v.to_string(), str::to_owned))
        })
        .unwrap_or_default();
    (text, action)
}

/// One call the bot made, with what the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// Canonical method name, e.g. `sendMessage`.
    pub method: String,
    /// Parameters as JSON (uploaded files appear as their `attach://` reference).
    pub params: Value,
    /// HTTP status answered; `None` when the fake hung or closed the connection.
    pub status: Option<u16>,
    /// The JSON body answered (`Null` when there was none).
    pub response: Value,
}

impl RecordedRequest {
    /// The `description` of an error answer.
    pub fn description(&self) -> Option<&str> {
        self.response.get("description").and_then(Value::as_str)
    }
}

/// An update waiting in the queue.
#[derive(Debug, Clone)]
pub(super) struct QueuedUpdate {
    pub(super) id: i64,
    pub(super) kind: String,
    pub(super) json: Value,
}

/// A chat the fake knows about.
#[derive(Debug, Clone, Default)]
pub(super) struct ChatState {
    pub(super) json: Value,
    pub(super) next_message_id: i64,
    pub(super) messages: Vec<StoredMessage>,
    pub(super) topics: Vec<(i64, String)>,
}

/// Why the bot cannot reach a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// No such chat with the bot in it: `Bad Request: chat not found`.
    NotFound,
    /// The bot left: its status there is `left`.
    Left,
    /// The bot was removed from the supergroup: `Forbidden: bot was kicked from the supergroup chat`.
    Kicked,
    /// The group became a supergroup with this id.
    Migrated(i64),
}

/// What the fake answers for one request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Reply {
    Ok(Value),
    Error {
        code: u16,
        description: String,
        retry_after: Option<u32>,
    },
    Hang,
    Close,
    /// 400 with `parameters.migrate_to_chat_id`, as for a group upgraded to a supergroup.
    Migrated(i64),
}

impl Reply {
    pub(super) fn bad(description: impl Into<String>) -> Self {
        Self::Error {
            code: 400,
            description: description.into(),
            retry_after: None,
        }
    }

    /// The HTTP status and JSON body, or `None` for hang and close.
    pub(super) fn http(&self) -> Option<(u16, Value)> {
        match self {
            Self::Ok(result) => Some((200, json!({"ok": true, "result": result}))),
            Self::Error {
                code,
                description,
                retry_after,
            } => {
                let mut body = json!({"ok": false, "error_code": code, "description": description});
                if let Some(seconds) = retry_after {
                    body["parameters"] = json!({"retry_after": seconds});
                }
                Some((*code, body))
            }
            Self::Migrated(to) => Some((
                400,
                json!({
                    "ok": false,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": to},
                }),
            )),
            Self::Hang | Self::Close => None,
        }
    }
}

/// The fake's whole memory; tests read it through [`super::FakeTelegram`].
#[derive(Debug)]
pub struct State {
    pub(super) bot_id: i64,
    pub(super) tokens: Vec<String>,
    /// When set, the one token Telegram knows: any other is answered 401 Unauthorized.
    pub(super) only_token: Option<String>,
    /// What `getMe` says of the bot's privacy mode (off: it reads every group message).
    pub(super) reads_all_group_messages: bool,
    /// Chats the bot cannot reach, and why (every other chat has the bot as a member).
    pub(super) gone: HashMap<i64, Gone>,
    pub(super) next_update_id: i64,
    pub(super) updates: VecDeque<QueuedUpdate>,
    /// Every update ever queued, by id, so one can be delivered again.
    pub(super) pushed: HashMap<i64, QueuedUpdate>,
    pub(super) offset_confirmed: i64,
    pub(super) allowed_updates: Vec<String>,
    pub(super) poll_generation: u64,
    pub(super) chats: HashMap<i64, ChatState>,
    pub(super) users: HashMap<i64, Value>,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) blocked: HashSet<i64>,
    pub(super) faults: Vec<FaultRule>,
    pub(super) chaos: Option<ChaosState>,
    pub(super) rate: RateLimiter,
    pub(super) too_many_requests: u64,
    pub(super) next_callback_id: u64,
    pub(super) callback_queries: HashMap<String, Option<Value>>,
    pub(super) webhook: Option<Value>,
    pub(super) commands: HashMap<String, Value>,
    pub(super) chat_actions: Vec<(i64, String)>,
    pub(super) next_file: u64,
    /// Requests left unanswered on purpose (a hang) that the client gave up on.
    pub(super) abandoned: u64,
}

impl State {
    pub(super) fn new(bot_id: i64) -> Self {
        Self {
            bot_id,
            tokens: Vec::new(),
            only_token: None,
            reads_all_group_messages: false,
            gone: HashMap::new(),
            next_update_id: 1000,
            updates: VecDeque::new(),
            pushed: HashMap::new(),
            offset_confirmed: 0,
            allowed_updates: Vec::new(),
            poll_generation: 0,
            chats: HashMap::new(),
            users: HashMap::new(),
            requests: Vec::new(),
            blocked: HashSet::new(),
            faults: Vec::new(),
            chaos: None,
            rate: RateLimiter::default(),
            too_many_requests: 0,
            next_callback_id: 1,
            callback_queries: HashMap::new(),
            webhook: None,
            commands: HashMap::new(),
            chat_actions: Vec::new(),
            next_file: 1,
            abandoned: 0,
        }
    }

    /// Requests left hanging on purpose that the bot gave up on (it closed the connection).
    pub fn abandoned(&self) -> u64 {
        self.abandoned
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> &[RecordedRequest] {
        &self.requests
    }

    /// Requests for one method (canonical name), oldest first.
    pub fn requests_for<'a>(
        &'a self,
        method: &'a str,
    ) -> impl Iterator<Item = &'a RecordedRequest> + 'a {
        self.requests.iter().filter(move |r| r.method == method)
    }

    /// All messages of a chat, deleted ones included, oldest first.
    pub fn messages_in(&self, chat_id: i64) -> &[StoredMessage] {
        self.chats
            .get(&chat_id)
            .map(|c| c.messages.as_slice())
            .unwrap_or_default()
    }

    /// Messages the bot sent to a chat and has not deleted.
    pub fn bot_messages_in(&self, chat_id: i64) -> impl Iterator<Item = &StoredMessage> {
        self.messages_in(chat_id)
            .iter()
            .filter(|m| m.from_bot && !m.deleted)
    }

    /// One message by id.
    pub fn message(&self, chat_id: i64, message_id: i64) -> Option<&StoredMessage> {
        self.messages_in(chat_id)
            .iter()
            .find(|m| m.message_id == message_id)
    }

    /// Updates pushed but not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.updates.len()
    }

    /// The highest offset the bot has confirmed (0 before the first confirmation).
    pub fn offset_confirmed(&self) -> i64 {
        self.offset_confirmed
    }

    /// How many `getUpdates` calls have started (so a test knows a long poll is waiting).
    pub fn polls_started(&self) -> u64 {
        self.poll_generation
    }

    /// How many 429 answers the fake has given (rate limits and faults alike).
    pub fn too_many_requests(&self) -> u64 {
        self.too_many_requests
    }

    /// The `answerCallbackQuery` parameters per callback query id (`None`: not answered yet).
    pub fn callback_answer(&self, callback_query_id: &str) -> Option<&Value> {
        self.callback_queries.get(callback_query_id)?.as_ref()
    }

    /// The webhook set with `setWebhook` (its parameters), if any.
    pub fn webhook(&self) -> Option<&Value> {
        self.webhook.as_ref()
    }

    /// Commands registered by `setMyCommands`, keyed by `scope-type/language_code`.
    pub fn commands(&self) -> &HashMap<String, Value> {
        &self.commands
    }

    /// `(chat_id, action)` for every `sendChatAction`.
    pub fn chat_actions(&self) -> &[(i64, String)] {
        &self.chat_actions
    }

    /// Tokens the bot has used, in order of first use.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// Forum topics created in a chat, as `(message_thread_id, name)`.
    pub fn topics(&self, chat_id: i64) -> &[(i64, String)] {
        self.chats
            .get(&chat_id)
            .map(|c| c.topics.as_slice())
            .unwrap_or_default()
    }

    pub(super) fn bot_json(&self) -> Value {
        json!({
            "id": self.bot_id,
            "is_bot": true,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
        })
    }

    /// The chat's JSON, inventing a plausible one for chats nobody introduced: any user may
    /// have written to the bot, and a negative id is some group.
    pub(super) fn chat_json(&self, chat_id: i64) -> Value {
        if let Some(chat) = self.chats.get(&chat_id).filter(|c| !c.json.is_null()) {
            return chat.json.clone();
        }
        if chat_id > 0 {
            let mut chat = json!({"id": chat_id, "type": "private"});
            let user = self.users.get(&chat_id);
            for key in ["first_name", "last_name", "username"] {
                if let Some(value) = user.and_then(|u| u.get(key)) {
                    chat[key] = value.clone();
                }
            }
            if chat.get("first_name").is_none() {
                chat["first_name"] = json!(format!("User{chat_id}"));
            }
            chat
        } else if chat_id < -1_000_000_000_000 {
            json!({"id": chat_id, "type": "supergroup", "title": format!("Supergroup {chat_id}")})
        } else {
            json!({"id": chat_id, "type": "group", "title": format!("Group {chat_id}")})
        }
    }

    pub(super) fn is_forum(&self, chat_id: i64) -> bool {
        self.chat_json(chat_id)
            .get("is_forum")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub(super) fn chat_mut(&mut self, chat_id: i64) -> &mut ChatState {
        let json = self.chat_json(chat_id);
        let chat = self.chats.entry(chat_id).or_default();
        if chat.json.is_null() {
            chat.json = json;
        }
        chat
    }

    pub(super) fn message_mut(
        &mut self,
        chat_id: i64,
        message_id: i64,
    ) -> Option<&mut StoredMessage> {
        self.chats
            .get_mut(&chat_id)?
            .messages
            .iter_mut()
            .find(|m| m.message_id == message_id)
    }

    pub(super) fn next_message_id(&mut self, chat_id: i64) -> i64 {
        let chat = self.chat_mut(chat_id);
        chat.next_message_id += 1;
        chat.next_message_id
    }

    pub(super) fn new_file_id(&mut self) -> String {
        self.next_file += 1;
        format!("FAKEFILE{:06}", self.next_file)
    }

    /// Renders the `Message` JSON of a bot message (or refreshes a user message's JSON).
    pub(super) fn render(&self, message: &StoredMessage, nested: bool) -> Value {
        if !message.from_bot {
            let mut json = message.json.clone();
            if nested && let Some(obj) = json.as_object_mut() {
                obj.remove("reply_to_message");
            }
            return json;
        }
        let mut json = json!({
            "message_id": message.message_id,
            "date": message.date,
            "chat": self.chat_json(message.chat_id),
            "from": self.bot_json(),
        });
        match (&message.text, &message.caption) {
            (Some(text), _) => {
                json["text"] = json!(text);
                if !message.entities.is_empty() {
                    json["entities"] = json!(message.entities);
                }
            }
            (None, Some(caption)) => {
                json["caption"] = json!(caption);
                if !message.entities.is_empty() {
                    json["caption_entities"] = json!(message.entities);
                }
            }
            (None, None) => {}
        }
        if let Some((key, media)) = &message.media {
            json[key.as_str()] = media.clone();
        }
        if let Some(markup) = &message.reply_markup {
            json["reply_markup"] = markup.clone();
        }
        if let Some(thread) = message.message_thread_id {
            json["message_thread_id"] = json!(thread);
            if self.is_forum(message.chat_id) {
                json["is_topic_message"] = json!(true);
            }
        }
        if message.edit_count > 0 {
            json["edit_date"] = json!(unix_now());
        }
        if let (true, Some((from_chat, from_id))) = (message.forwarded, message.origin) {
            json["forward_origin"] = match self.message(from_chat, from_id) {
                Some(original) if !original.from_bot && from_chat > 0 => json!({
                    "type": "user",
                    "date": original.date,
                    "sender_user": original.json.get("from").cloned().unwrap_or(Value::Null),
                }),
                _ => {
                    json!({"type": "chat", "date": message.date, "sender_chat": self.chat_json(from_chat)})
                }
            };
        }
        if let (false, Some(reply_id)) = (nested, message.reply_to_message_id)
            && let Some(original) = self.message(message.chat_id, reply_id)
        {
            json["reply_to_message"] = self.render(original, true);
        }
        json
    }
}

/// Seconds since the Unix epoch, as Telegram's `date` fields.
pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
