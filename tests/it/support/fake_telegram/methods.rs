//! The Bot API methods the fake implements, with Telegram's validation and error texts.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::faults::Fault;
use super::state::{Gone, Reply, State, StoredFile, StoredMessage, unix_now};
use super::validation::{
    TextError, as_chat_id, chat_id, message_text, too_many_requests, validate_markup,
};

/// A file part of a multipart request.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    pub(super) file_name: Option<String>,
    pub(super) bytes: Vec<u8>,
}

/// Methods that deliver a message and so count against flood limits.
const SENDS: &[&str] = &[
    "sendMessage",
    "sendDocument",
    "sendPhoto",
    "copyMessage",
    "forwardMessage",
];

/// Telegram's exact wording, which teloxide matches to `ApiError::MessageNotModified`.
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message";

const TEXT_LIMIT: usize = 4096;
const CAPTION_LIMIT: usize = 1024;

type Params = Map<String, Value>;

/// What a fault does to a request.
pub(super) enum Faulted {
    /// The fault's answer instead of the method's.
    Answer(Reply),
    /// The method is carried out, then the request is left unanswered.
    DoThenHang,
}

impl State {
    /// Takes the first queued fault (or chaos roll) that applies to this request.
    pub(super) fn take_fault(&mut self, method: &str, params: &Params) -> Option<Faulted> {
        let as_value = Value::Object(params.clone());
        let position = self
            .faults
            .iter()
            .position(|r| r.remaining > 0 && r.target.matches_request(method, &as_value));
        let fault = match position {
            Some(index) => {
                let rule = &mut self.faults[index];
                rule.remaining -= 1;
                let fault = rule.fault;
                if rule.remaining == 0 {
                    self.faults.remove(index);
                }
                Some(fault)
            }
            None => self.chaos.as_mut().and_then(|c| c.roll(method)),
        }?;
        Some(Faulted::Answer(match fault {
            Fault::AcceptThenHang => return Some(Faulted::DoThenHang),
            Fault::ServerError => Reply::Error {
                code: 500,
                description: "Internal Server Error".into(),
                retry_after: None,
            },
            Fault::Hang => Reply::Hang,
            Fault::CloseConnection => Reply::Close,
            Fault::TooManyRequests { retry_after } => {
                self.too_many_requests += 1;
                too_many_requests(retry_after)
            }
        }))
    }

    /// Answers one request (other than `getUpdates`): faults, blocks and flood limits first,
    /// then the method itself.
    pub(super) fn handle(
        &mut self,
        method: &str,
        params: &Params,
        files: &HashMap<String, Upload>,
    ) -> Reply {
        match self.take_fault(method, params) {
            Some(Faulted::Answer(reply)) => return reply,
            Some(Faulted::DoThenHang) => {
                let _ = self.call(method, params, files);
                return Reply::Hang;
            }
            None => {}
        }
        let chat_id = params.get("chat_id").and_then(as_chat_id);
        if chat_id.is_some_and(|id| self.blocked.contains(&id)) {
            return Reply::Error {
                code: 403,
                description: "Forbidden: bot was blocked by the user".into(),
                retry_after: None,
            };
        }
        // A chat made gone refuses everything sent to it, as Telegram does.
        if method != "getChatMember"
            && let Some(gone) = chat_id.and_then(|id| self.gone.get(&id))
        {
            return match gone {
                Gone::Migrated(to) => Reply::Migrated(*to),
                Gone::NotFound => Reply::bad("Bad Request: chat not found"),
                Gone::Left => Reply::Error {
                    code: 403,
                    description: "Forbidden: bot is not a member of the supergroup chat".into(),
                    retry_after: None,
                },
                Gone::Kicked => Reply::Error {
                    code: 403,
                    description: "Forbidden: bot was kicked from the supergroup chat".into(),
                    retry_after: None,
                },
            };
        }
        let counts = SENDS.contains(&method);
        let now = Instant::now();
        if let (true, Some(chat_id)) = (counts, chat_id)
            && let Err(retry_after) = self.rate.check(chat_id, now)
        {
            self.too_many_requests += 1;
            return too_many_requests(retry_after);
        }
        let reply = match self.call(method, params, files) {
            Ok(value) => Reply::Ok(value),
            Err(reply) => reply,
        };
        if let (true, Some(chat_id), Reply::Ok(_)) = (counts, chat_id, &reply) {
            self.rate.record(chat_id, now);
        }
        reply
    }

    fn call(
        &mut self,
        method: &str,
        p: &Params,
        files: &HashMap<String, Upload>,
    ) -> Result<Value, Reply> {
        match method {
            "getMe" => {
                let mut me = self.bot_json();
                for (key, value) in [
                    ("can_join_groups", true),
                    ("can_read_all_group_messages", self.reads_all_group_messages),
                    ("supports_inline_queries", false),
                    ("can_connect_to_business", false),
                    ("has_main_web_app", false),
                ] {
                    me[key] = json!(value);
                }
                Ok(me)
            }
            "getChatMember" => {
                let chat = chat_id(p, "chat_id")?;
                let user = p
                    .get("user_id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| Reply::bad("Bad Request: invalid user_id specified"))?;
                let who = if user == self.bot_id {
                    self.bot_json()
                } else {
                    json!({"id": user, "is_bot": false, "first_name": "User"})
                };
                match self.gone.get(&chat) {
                    Some(Gone::NotFound) => Err(Reply::bad("Bad Request: chat not found")),
                    Some(Gone::Migrated(to)) => Err(Reply::Migrated(*to)),
                    Some(Gone::Left) => Ok(json!({"user": who, "status": "left"})),
                    Some(Gone::Kicked) => Err(Reply::Error {
                        code: 403,
                        description: "Forbidden: bot was kicked from the supergroup chat".into(),
                        retry_after: None,
                    }),
                    None => Ok(json!({"user": who, "status": "member"})),
                }
            }
            "sendMessage" => self.send_message(p),
            "editMessageText" => self.edit_message_text(p),
            "editMessageReplyMarkup" => self.edit_message_reply_markup(p),
            "deleteMessage" => self.delete_message(p),
            "answerCallbackQuery" => self.answer_callback_query(p),
            "sendDocument" => self.send_file(p, files, "document"),
            "sendPhoto" => self.send_file(p, files, "photo"),
            "copyMessage" => self.copy_message(p, false),
            "forwardMessage" => self.copy_message(p, true),
            "createForumTopic" => self.create_forum_topic(p),
            "setWebhook" => self.set_webhook(p),
            "deleteWebhook" => {
                if p.get("drop_pending_updates") == Some(&json!(true)) {
                    self.updates.clear();
                }
                self.webhook = None;
                Ok(json!(true))
            }
            "getWebhookInfo" => {
                let url = self
                    .webhook
                    .as_ref()
                    .and_then(|w| w.get("url").cloned())
                    .unwrap_or(json!(""));
                Ok(json!({
                    "url": url,
                    "has_custom_certificate": false,
                    "pending_update_count": self.updates.len(),
                }))
            }
            "setMyCommands" => self.set_my_commands(p),
            "sendChatAction" => self.send_chat_action(p),
            other => Err(Reply::Error {
                code: 501,
                description: format!(
                    "Not Implemented: the fake Telegram server does not implement {other}"
                ),
                retry_after: None,
            }),
        }
    }

    fn send_message(&mut self, p: &Params) -> Result<Value, Reply> {
        let chat_id = chat_id(p, "chat_id")?;
        let raw = p.get("text").and_then(Value::as_str).unwrap_or_default();
        let parse_mode = p.get("parse_mode").and_then(Value::as_str);
        let (text, entities) = message_text(raw, parse_mode, p.get("entities"), TEXT_LIMIT)
            .map_err(|e| e.reply("Bad Request: message is too long"))?;
        let keyboard = validate_markup(p.get("reply_markup"))?;
        let thread = self.check_thread(chat_id, p)?;
        let reply_to = self.check_reply(chat_id, p)?;
        let mut message = self.blank_message(chat_id);
        message.text = Some(text);
        message.source_text = Some(raw.to_owned());
        message.entities = entities;
        message.parse_mode = parse_mode.map(str::to_owned);
        message.message_thread_id = thread;
        message.reply_to_message_id = reply_to;
        (message.reply_markup, message.reply_keyboard) = keyboard;
        Ok(self.store(message))
    }

    fn edit_target(&self, p: &Params) -> Result<(i64, i64), Reply> {
        if p.contains_key("inline_message_id") {
            return Err(Reply::bad(
                "Bad Request: the fake Telegram server does not support inline messages",
            ));
        }
        let chat_id = chat_id(p, "chat_id")?;
        let message_id = p
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| Reply::bad("Bad Request: message identifier is not specified"))?;
        Ok((chat_id, message_id))
    }

    fn editable(&self, chat_id: i64, message_id: i64) -> Result<&StoredMessage, Reply> {
        let message = self
            .message(chat_id, message_id)
            .filter(|m| !m.deleted)
            .ok_or_else(|| Reply::bad("Bad Request: message to edit not found"))?;
        if !message.from_bot {
            return Err(Reply::bad("Bad Request: message can't be edited"));
        }
        Ok(message)
    }

    fn edit_message_text(&mut self, p: &Params) -> Result<Value, Reply> {
        let (chat_id, message_id) = self.edit_target(p)?;
        let raw = p.get("text").and_then(Value::as_str).unwrap_or_default();
        let parse_mode = p.get("parse_mode").and_then(Value::as_str);
        let (text, entities) = message_text(raw, parse_mode, p.get("entities"), TEXT_LIMIT)
            .map_err(|e| e.reply("Bad Request: MESSAGE_TOO_LONG"))?;
        let (markup, _) = validate_markup(p.get("reply_markup"))?;
        let current = self.editable(chat_id, message_id)?;
        if current.text.is_none() {
            return Err(Reply::bad(
                "Bad Request: there is no text in the message to edit",
            ));
        }
        // Telegram compares what the reader would see, so the same text written with
        // different markup that renders identically is still "not modified".
        if current.text.as_deref() == Some(text.as_str())
            && current.entities == entities
            && current.reply_markup == markup
        {
            return Err(Reply::bad(NOT_MODIFIED));
        }
        let mut message = current.clone();
        message.text = Some(text);
        message.source_text = Some(raw.to_owned());
        message.entities = entities;
        message.parse_mode = parse_mode.map(str::to_owned);
        message.reply_markup = markup;
        Ok(self.replace(message))
    }

    fn edit_message_reply_markup(&mut self, p: &Params) -> Result<Value, Reply> {
        let (chat_id, message_id) = self.edit_target(p)?;
        let (markup, _) = validate_markup(p.get("reply_markup"))?;
        let current = self.editable(chat_id, message_id)?;
        if current.reply_markup == markup {
            return Err(Reply::bad(NOT_MODIFIED));
        }
        let mut message = current.clone();
        message.reply_markup = markup;
        Ok(self.replace(message))
    }

    fn delete_message(&mut self, p: &Params) -> Result<Value, Reply> {
        let chat_id = chat_id(p, "chat_id")?;
        let message_id = p.get("message_id").and_then(Value::as_i64).unwrap_or(0);
        let message = self
            .message_mut(chat_id, message_id)
            .filter(|m| !m.deleted)
            .ok_or_else(|| Reply::bad("Bad Request: message to delete not found"))?;
        message.deleted = true;
        Ok(json!(true))
    }

    fn answer_callback_query(&mut self, p: &Params) -> Result<Value, Reply> {
        let id = p
            .get("callback_query_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match self.callback_queries.get_mut(id) {
            Some(answer @ None) => {
                *answer = Some(Value::Object(p.clone()));
                Ok(json!(true))
            }
            _ => Err(Reply::bad(
                "Bad Request: query is too old and response timeout expired or query id is invalid",
            )),
        }
    }

    fn send_file(
        &mut self,
        p: &Params,
        files: &HashMap<String, Upload>,
        field: &str,
    ) -> Result<Value, Reply> {
        let chat_id = chat_id(p, "chat_id")?;
        let file = self.resolve_file(p.get(field), files, field)?;
        let caption = self.caption(p)?;
        let keyboard = validate_markup(p.get("reply_markup"))?;
        let thread = self.check_thread(chat_id, p)?;
        let reply_to = self.check_reply(chat_id, p)?;
        let size = file.bytes.len();
        let media = if field == "photo" {
            json!([{"file_id": file.file_id, "file_unique_id": format!("U{}", file.file_id),
                    "width": 1280, "height": 720, "file_size": size}])
        } else {
            let mut doc = json!({"file_id": file.file_id, "file_unique_id": format!("U{}", file.file_id),
                       "file_size": size});
            if let Some(name) = &file.file_name {
                doc["file_name"] = json!(name);
            }
            doc
        };
        let mut message = self.blank_message(chat_id);
        if let Some((text, entities, parse_mode)) = caption {
            message.caption = Some(text);
            message.entities = entities;
            message.parse_mode = parse_mode;
        }
        message.media = Some((field.to_owned(), media));
        message.file = Some(file);
        message.message_thread_id = thread;
        message.reply_to_message_id = reply_to;
        (message.reply_markup, message.reply_keyboard) = keyboard;
        Ok(self.store(message))
    }

    /// The parsed caption, `None` when absent or empty.
    #[allow(clippy::type_complexity)]
    fn caption(&self, p: &Params) -> Result<Option<(String, Vec<Value>, Option<String>)>, Reply> {
        let Some(raw) = p.get("caption").and_then(Value::as_str) else {
            return Ok(None);
        };
        let parse_mode = p.get("parse_mode").and_then(Value::as_str);
        match message_text(raw, parse_mode, p.get("caption_entities"), CAPTION_LIMIT) {
            Ok((text, entities)) => Ok(Some((text, entities, parse_mode.map(str::to_owned)))),
            Err(TextError::Empty) => Ok(None),
            Err(e) => Err(e.reply("Bad Request: message caption is too long")),
        }
    }

    fn resolve_file(
        &mut self,
        value: Option<&Value>,
        files: &HashMap<String, Upload>,
        field: &str,
    ) -> Result<StoredFile, Reply> {
        let reference = value.and_then(Value::as_str).unwrap_or_default();
        let upload = match reference.strip_prefix("attach://") {
            Some(name) => files.get(name),
            None => files
                .get(field)
                .filter(|_| reference == format!("attach://{field}")),
        };
        if let Some(upload) = upload {
            if upload.bytes.is_empty() {
                return Err(Reply::bad("Bad Request: file must be non-empty"));
            }
            return Ok(StoredFile {
                file_id: self.new_file_id(),
                file_name: upload.file_name.clone().filter(|n| !n.is_empty()),
                bytes: upload.bytes.clone(),
            });
        }
        if reference.starts_with("attach://") {
            return Err(Reply::bad("Bad Request: there is no file in the request"));
        }
        if reference.starts_with("http://") || reference.starts_with("https://") {
            return Ok(StoredFile {
                file_id: self.new_file_id(),
                file_name: reference.rsplit('/').next().map(str::to_owned),
                bytes: Vec::new(),
            });
        }
        // File ids the fake or the update builders handed out are known; anything else is
        // not, like a file id from another bot.
        if reference.starts_with("FAKE") {
            return Ok(StoredFile {
                file_id: reference.to_owned(),
                file_name: None,
                bytes: Vec::new(),
            });
        }
        Err(Reply::bad(
            "Bad Request: wrong file identifier/HTTP URL specified",
        ))
    }

    fn copy_message(&mut self, p: &Params, forward: bool) -> Result<Value, Reply> {
        let from_chat = chat_id(p, "from_chat_id")?;
        let chat_id = chat_id(p, "chat_id")?;
        let message_id = p.get("message_id").and_then(Value::as_i64).unwrap_or(0);
        let not_found = if forward {
            "Bad Request: message to forward not found"
        } else {
            "Bad Request: message to copy not found"
        };
        let original = self
            .message(from_chat, message_id)
            .filter(|m| !m.deleted)
            .cloned()
            .ok_or_else(|| Reply::bad(not_found))?;
        let caption = if forward { None } else { self.caption(p)? };
        let keyboard = if forward {
            (None, None)
        } else {
            validate_markup(p.get("reply_markup"))?
        };
        let thread = self.check_thread(chat_id, p)?;
        let reply_to = if forward {
            None
        } else {
            self.check_reply(chat_id, p)?
        };
        let mut message = self.blank_message(chat_id);
        message.text = original.text.clone();
        message.source_text = original.source_text.clone();
        message.entities = original.entities.clone();
        message.caption = original.caption.clone();
        message.media = original.media.clone();
        message.file = original.file.clone();
        if let Some((text, entities, parse_mode)) = caption.filter(|_| original.text.is_none()) {
            message.caption = Some(text);
            message.entities = entities;
            message.parse_mode = parse_mode;
        }
        message.message_thread_id = thread;
        message.reply_to_message_id = reply_to;
        (message.reply_markup, message.reply_keyboard) = keyboard;
        message.origin = Some((from_chat, message_id));
        message.forwarded = forward;
        let json = self.store(message);
        if forward {
            Ok(json)
        } else {
            Ok(json!({"message_id": json["message_id"]}))
        }
    }

    fn create_forum_topic(&mut self, p: &Params) -> Result<Value, Reply> {
        let chat_id = chat_id(p, "chat_id")?;
        if !self.is_forum(chat_id) {
            return Err(Reply::bad("Bad Request: the chat is not a forum"));
        }
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 128 {
            return Err(Reply::bad("Bad Request: TOPIC_TITLE_EMPTY"));
        }
        const COLORS: [i64; 6] = [
            7_322_096, 16_766_590, 13_338_331, 9_367_192, 16_749_490, 16_478_047,
        ];
        let color = p
            .get("icon_color")
            .and_then(Value::as_i64)
            .unwrap_or(COLORS[0]);
        if !COLORS.contains(&color) {
            return Err(Reply::bad("Bad Request: TOPIC_ICON_COLOR_INVALID"));
        }
        let mut message = self.blank_message(chat_id);
        message.media = Some((
            "forum_topic_created".into(),
            json!({"name": name, "icon_color": color}),
        ));
        let stored = self.store(message);
        let thread = stored["message_id"].as_i64().unwrap_or_default();
        self.chat_mut(chat_id)
            .topics
            .push((thread, name.to_owned()));
        Ok(json!({"message_thread_id": thread, "name": name, "icon_color": color}))
    }

    fn set_webhook(&mut self, p: &Params) -> Result<Value, Reply> {
        let url = p.get("url").and_then(Value::as_str).unwrap_or_default();
        if let Some(secret) = p.get("secret_token").and_then(Value::as_str) {
            let allowed = secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !allowed || secret.is_empty() || secret.len() > 256 {
                return Err(Reply::bad(
                    "Bad Request: secret token contains unallowed characters",
                ));
            }
        }
        if p.get("drop_pending_updates") == Some(&json!(true)) {
            self.updates.clear();
        }
        if url.is_empty() {
            self.webhook = None;
            return Ok(json!(true));
        }
        // Plain http is accepted (Telegram insists on https) so a test can point the
        // webhook at the bot's endpoint on 127.0.0.1.
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Reply::bad(
                "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
            ));
        }
        self.webhook = Some(Value::Object(p.clone()));
        Ok(json!(true))
    }

    fn set_my_commands(&mut self, p: &Params) -> Result<Value, Reply> {
        let commands = p
            .get("commands")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if commands.len() > 100 {
            return Err(Reply::bad("Bad Request: too many commands"));
        }
        for command in &commands {
            let name = command["command"].as_str().unwrap_or_default();
            let valid = (1..=32).contains(&name.len())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(Reply::bad("Bad Request: BOT_COMMAND_INVALID"));
            }
            let description = command["description"].as_str().unwrap_or_default();
            if description.is_empty() || description.chars().count() > 256 {
                return Err(Reply::bad("Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"));
            }
        }
        let scope = p
            .get("scope")
            .and_then(|s| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let language = p.get("language_code").and_then(Value::as_str).unwrap_or("");
        self.commands
            .insert(format!("{scope}/{language}"), Value::Array(commands));
        Ok(json!(true))
    }

    fn send_chat_action(&mut self, p: &Params) -> Result<Value, Reply> {
        const ACTIONS: &[&str] = &[
            "typing",
            "upload_photo",
            "record_video",
            "upload_video",
            "record_voice",
            "upload_voice",
            "upload_document",
            "choose_sticker",
            "find_location",
            "record_video_note",
            "upload_video_note",
        ];
        let chat_id = chat_id(p, "chat_id")?;
        let action = p.get("action").and_then(Value::as_str).unwrap_or_default();
        if !ACTIONS.contains(&action) {
            return Err(Reply::bad("Bad Request: wrong parameter action in request"));
        }
        self.chat_actions.push((chat_id, action.to_owned()));
        Ok(json!(true))
    }

    /// `message_thread_id` must name a topic of a forum, or a message of a group.
    fn check_thread(&self, chat_id: i64, p: &Params) -> Result<Option<i64>, Reply> {
        let Some(thread) = p.get("message_thread_id").and_then(Value::as_i64) else {
            return Ok(None);
        };
        let known = if self.is_forum(chat_id) {
            self.topics(chat_id).iter().any(|(t, _)| *t == thread)
        } else {
            chat_id < 0 && self.message(chat_id, thread).is_some()
        };
        if known {
            Ok(Some(thread))
        } else {
            Err(Reply::bad("Bad Request: message thread not found"))
        }
    }

    /// `reply_parameters.message_id` must exist unless `allow_sending_without_reply`.
    fn check_reply(&self, chat_id: i64, p: &Params) -> Result<Option<i64>, Reply> {
        let Some(reply) = p.get("reply_parameters") else {
            return Ok(None);
        };
        let target_chat = reply.get("chat_id").and_then(as_chat_id).unwrap_or(chat_id);
        let message_id = reply.get("message_id").and_then(Value::as_i64);
        let exists = message_id
            .and_then(|id| self.message(target_chat, id))
            .is_some_and(|m| !m.deleted);
        if exists {
            Ok(message_id.filter(|_| target_chat == chat_id))
        } else if reply.get("allow_sending_without_reply") == Some(&json!(true)) {
            Ok(None)
        } else {
            Err(Reply::bad("Bad Request: message to be replied not found"))
        }
    }

    fn blank_message(&self, chat_id: i64) -> StoredMessage {
        StoredMessage {
            chat_id,
            message_id: 0,
            from_bot: true,
            sender_id: self.bot_id,
            text: None,
            source_text: None,
            entities: Vec::new(),
            caption: None,
            parse_mode: None,
            media: None,
            file: None,
            reply_markup: None,
            reply_keyboard: None,
            reply_to_message_id: None,
            message_thread_id: None,
            origin: None,
            forwarded: false,
            deleted: false,
            edit_count: 0,
            date: unix_now(),
            json: Value::Null,
        }
    }

    /// Gives a new bot message its id, stores it and returns its JSON.
    fn store(&mut self, mut message: StoredMessage) -> Value {
        message.message_id = self.next_message_id(message.chat_id);
        message.json = self.render(&message, false);
        let json = message.json.clone();
        self.chat_mut(message.chat_id).messages.push(message);
        json
    }

    /// Stores an edited version of a message and returns its JSON.
    fn replace(&mut self, mut message: StoredMessage) -> Value {
        message.edit_count += 1;
        message.json = self.render(&message, false);
        let json = message.json.clone();
        if let Some(slot) = self.message_mut(message.chat_id, message.message_id) {
            *slot = message;
        }
        json
    }
}
