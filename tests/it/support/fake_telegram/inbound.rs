//! Updates pushed by tests: ids assigned, referenced messages filled in, chats kept.

use serde_json::{Value, json};

use super::state::{QueuedUpdate, State, StoredMessage, unix_now};
use crate::support::updates::Update;

impl State {
    /// Queues an update as Telegram would deliver it, returning its `update_id` and, for a new
    /// message, the `message_id` the fake gave it.
    pub(super) fn push(&mut self, update: Update) -> (i64, Option<i64>) {
        let (kind, mut body) = update.into_parts();
        let mut message_id = None;
        if body.get("date").is_none() && body.is_object() {
            body["date"] = json!(unix_now());
        }
        if let Some(user) = body.get("from").filter(|u| u.get("id").is_some())
            && let Some(id) = user["id"].as_i64()
        {
            self.users.insert(id, user.clone());
        }
        match kind.as_str() {
            "message" | "channel_post" => {
                let chat_id = self.register_chat(&body);
                let id = self.next_message_id(chat_id);
                body["message_id"] = json!(id);
                self.link_reply(&mut body, chat_id);
                if let Some(thread) = body.get("message_thread_id").and_then(Value::as_i64) {
                    let chat = self.chat_mut(chat_id);
                    if !chat.topics.iter().any(|(t, _)| *t == thread) {
                        chat.topics.push((thread, format!("Topic {thread}")));
                    }
                }
                let stored = user_message(chat_id, id, &body);
                self.chat_mut(chat_id).messages.push(stored);
                message_id = Some(id);
            }
            "edited_message" | "edited_channel_post" => {
                let chat_id = self.register_chat(&body);
                let id = body["message_id"].as_i64().unwrap_or_default();
                body["edit_date"] = json!(unix_now());
                self.link_reply(&mut body, chat_id);
                let date = self.message(chat_id, id).map(|m| m.date);
                if let Some(date) = date {
                    body["date"] = json!(date);
                }
                if let Some(stored) = self.message_mut(chat_id, id) {
                    let replacement = user_message(chat_id, id, &body);
                    *stored = StoredMessage {
                        edit_count: stored.edit_count + 1,
                        ..replacement
                    };
                }
            }
            "callback_query" => {
                let callback_id = self.next_callback_id.to_string();
                self.next_callback_id += 1;
                if body.get("id").is_none() {
                    body["id"] = json!(callback_id);
                }
                let chat_id = body["message"]["chat"]["id"].as_i64();
                let msg_id = body["message"]["message_id"].as_i64();
                if let (Some(chat_id), Some(msg_id)) = (chat_id, msg_id) {
                    if let Some(message) = self.message(chat_id, msg_id) {
                        body["message"] = self.render(message, false);
                    }
                    body["chat_instance"] = json!(format!("{}", chat_id.unsigned_abs()));
                }
                if let Some(id) = body["id"].as_str() {
                    self.callback_queries.insert(id.to_owned(), None);
                }
            }
            "my_chat_member" => {
                for key in ["old_chat_member", "new_chat_member"] {
                    if body[key].get("user").is_none() {
                        body[key]["user"] = self.bot_json();
                    }
                }
                let user_id = body["from"]["id"].as_i64();
                let status = body["new_chat_member"]["status"].as_str();
                if let (Some(user_id), Some(status)) = (user_id, status)
                    && body["chat"]["id"].as_i64() == Some(user_id)
                {
                    if status == "kicked" {
                        self.blocked.insert(user_id);
                    } else {
                        self.blocked.remove(&user_id);
                    }
                }
            }
            _ => {}
        }
        let id = self.next_update_id;
        self.next_update_id += 1;
        let mut json = json!({"update_id": id});
        json[kind.as_str()] = body;
        let queued = QueuedUpdate { id, kind, json };
        self.pushed.insert(id, queued.clone());
        self.updates.push_back(queued);
        (id, message_id)
    }

    /// Remembers the chat of a pushed message and returns its id.
    fn register_chat(&mut self, body: &Value) -> i64 {
        let chat_id = body["chat"]["id"].as_i64().unwrap_or_default();
        let chat_json = body["chat"].clone();
        let chat = self.chats.entry(chat_id).or_default();
        if chat_json.is_object() {
            chat.json = chat_json;
        }
        chat_id
    }

    /// Replaces a `reply_to_message` reference (`message_id` only) by the full message.
    fn link_reply(&self, body: &mut Value, chat_id: i64) {
        let Some(reply_id) = body["reply_to_message"]["message_id"].as_i64() else {
            return;
        };
        if let Some(original) = self.message(chat_id, reply_id) {
            body["reply_to_message"] = self.render(original, true);
        }
    }
}

/// A pushed user message, stored so the transcript shows both sides.
fn user_message(chat_id: i64, message_id: i64, body: &Value) -> StoredMessage {
    let media_keys = [
        "photo", "sticker", "voice", "document", "contact", "location", "video", "audio",
    ];
    let media = media_keys
        .iter()
        .find_map(|k| body.get(*k).map(|v| ((*k).to_owned(), v.clone())));
    StoredMessage {
        chat_id,
        message_id,
        from_bot: false,
        sender_id: body["from"]["id"].as_i64().unwrap_or_default(),
        text: body["text"].as_str().map(str::to_owned),
        source_text: None,
        entities: body
            .get("entities")
            .or(body.get("caption_entities"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        caption: body["caption"].as_str().map(str::to_owned),
        parse_mode: None,
        media,
        file: None,
        reply_markup: None,
        reply_keyboard: None,
        reply_to_message_id: body["reply_to_message"]["message_id"].as_i64(),
        message_thread_id: body["message_thread_id"].as_i64(),
        origin: None,
        forwarded: false,
        deleted: false,
        edit_count: 0,
        date: body["date"].as_i64().unwrap_or_else(unix_now),
        json: body.clone(),
    }
}
