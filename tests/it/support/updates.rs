//! Builders for the updates Telegram sends, e.g. `fake.push(User::new(42).lang("ru").text("hi"))`.
//!
//! Builders leave `update_id`, `message_id`, `date` and callback ids out: the fake assigns
//! them when the update is pushed, like Telegram does, and fills in referenced messages
//! (`reply_to_message`, a callback's `message`) from the chat it keeps.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::fake_telegram::StoredMessage;

/// An update waiting to be pushed: its kind (`message`, `callback_query`, ...) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    kind: String,
    body: Value,
}

impl Update {
    /// An update of any kind, including ones teloxide does not know (to test that the bot
    /// survives them).
    pub fn raw(kind: &str, body: Value) -> Self {
        Self {
            kind: kind.to_owned(),
            body,
        }
    }

    /// An update type from a future Bot API version.
    pub fn unknown() -> Self {
        Self::raw("future_update_kind", json!({"something": "new"}))
    }

    /// The update kind, e.g. `message`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The update body (without `update_id`).
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// Splits the update into kind and body, for the fake.
    pub fn into_parts(self) -> (String, Value) {
        (self.kind, self.body)
    }

    /// Makes a message a reply to `message` (filled in from the chat when pushed).
    pub fn reply_to(self, message: &StoredMessage) -> Self {
        self.reply_to_id(message.message_id)
    }

    /// Makes a message a reply to the message with this id in the same chat.
    pub fn reply_to_id(mut self, message_id: i64) -> Self {
        self.body["reply_to_message"] = json!({
            "message_id": message_id,
            "chat": self.body["chat"].clone(),
            "date": 0,
        });
        self
    }
}

static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

fn file_ids() -> (String, String) {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    (format!("FAKEUSERFILE{n:06}"), format!("FAKEUNIQUE{n:06}"))
}

/// A Telegram user who talks to the bot.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Telegram user id (also the private chat id).
    pub id: i64,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
}

impl User {
    /// A user called `User<id>` with username `user<id>` and language `en`.
    pub fn new(id: i64) -> Self {
        Self {
            id,
            first_name: format!("User{id}"),
            last_name: None,
            username: Some(format!("user{id}")),
            language_code: Some("en".to_owned()),
        }
    }

    /// Sets the client language (`language_code`); an empty code removes it.
    pub fn lang(mut self, code: &str) -> Self {
        self.language_code = Some(code.to_owned()).filter(|c| !c.is_empty());
        self
    }

    /// Sets the first name.
    pub fn first_name(mut self, name: &str) -> Self {
        self.first_name = name.to_owned();
        self
    }

    /// Sets the last name.
    pub fn last_name(mut self, name: &str) -> Self {
        self.last_name = Some(name.to_owned());
        self
    }

    /// Sets the username (without `@`); an empty one removes it.
    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.to_owned()).filter(|u| !u.is_empty());
        self
    }

    /// The `User` JSON object.
    pub fn json(&self) -> Value {
        let mut user = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let Some(last) = &self.last_name {
            user["last_name"] = json!(last);
        }
        if let Some(username) = &self.username {
            user["username"] = json!(username);
        }
        if let Some(code) = &self.language_code {
            user["language_code"] = json!(code);
        }
        user
    }

    /// The private chat between this user and the bot.
    pub fn private_chat(&self) -> Value {
        let mut chat = json!({"id": self.id, "type": "private", "first_name": self.first_name});
        if let Some(last) = &self.last_name {
            chat["last_name"] = json!(last);
        }
        if let Some(username) = &self.username {
            chat["username"] = json!(username);
        }
        chat
    }

    /// This user writing in their private chat with the bot.
    pub fn in_private(&self) -> Sender {
        Sender {
            from: self.json(),
            chat: self.private_chat(),
            thread: None,
        }
    }

    /// This user writing in a group or supergroup.
    pub fn in_chat(&self, chat: &Chat) -> Sender {
        Sender {
            from: self.json(),
            chat: chat.json(),
            thread: None,
        }
    }

    /// A private text message; a leading `/command` gets its `bot_command` entity.
    pub fn text(&self, text: &str) -> Update {
        self.in_private().text(text)
    }

    /// `/command payload` in the private chat, e.g. `user.command("start", "vk_ads")`.
    pub fn command(&self, command: &str, payload: &str) -> Update {
        self.in_private().command(command, payload)
    }

    /// Shares a contact in the private chat: the user's own number.
    pub fn contact(&self, phone: &str) -> Update {
        self.in_private().contact(phone, Some(self.id))
    }

    /// Shares someone else's contact (`user_id` of that person, if on Telegram).
    pub fn foreign_contact(&self, phone: &str, user_id: Option<i64>) -> Update {
        self.in_private().contact(phone, user_id)
    }

    /// Sends a sticker in the private chat.
    pub fn sticker(&self) -> Update {
        self.in_private().sticker()
    }

    /// Sends a photo (optionally captioned) in the private chat.
    pub fn photo(&self, caption: Option<&str>) -> Update {
        self.in_private().photo(caption)
    }

    /// Sends a voice message in the private chat.
    pub fn voice(&self) -> Update {
        self.in_private().voice()
    }

    /// Sends an album of `n` photos in the private chat: a message per photo, one `media_group_id`.
    pub fn album(&self, n: usize) -> Vec<Update> {
        self.in_private().album(n)
    }

    /// Sends a document in the private chat.
    pub fn document(&self, file_name: &str) -> Update {
        self.in_private().document(file_name)
    }

    /// Sends a location in the private chat.
    pub fn location(&self, latitude: f64, longitude: f64) -> Update {
        self.in_private().location(latitude, longitude)
    }

    /// Edits one of this user's private messages to `text` (an `edited_message` update).
    pub fn edits(&self, message_id: i64, text: &str) -> Update {
        self.in_private().edits(message_id, text)
    }

    /// Presses an inline button with `data` under `message` (any chat).
    pub fn presses(&self, message: &StoredMessage, data: &str) -> Update {
        Update::raw(
            "callback_query",
            json!({
                "from": self.json(),
                "message": {"message_id": message.message_id, "chat": {"id": message.chat_id}},
                "data": data,
            }),
        )
    }

    /// Presses the inline button labelled `label` under `message`.
    ///
    /// Panics when there is no such button, listing the ones there are: the test's premise
    /// is wrong, not the bot's behaviour.
    pub fn presses_button(&self, message: &StoredMessage, label: &str) -> Update {
        let Some(data) = message.callback_data(label) else {
            panic!(
                "no callback button {label:?} under message {} (buttons: {:?})",
                message.message_id,
                message.button_labels()
            );
        };
        self.presses(message, &data)
    }

    /// Blocks the bot: a `my_chat_member` update from `member` to `kicked`.
    pub fn blocks_bot(&self) -> Update {
        self.chat_member_change("member", "kicked")
    }

    /// Unblocks the bot: a `my_chat_member` update from `kicked` to `member`.
    pub fn unblocks_bot(&self) -> Update {
        self.chat_member_change("kicked", "member")
    }

    fn chat_member_change(&self, old: &str, new: &str) -> Update {
        let member = |status: &str| {
            if status == "kicked" {
                json!({"status": status, "until_date": 0})
            } else {
                json!({"status": status})
            }
        };
        Update::raw(
            "my_chat_member",
            json!({
                "chat": self.private_chat(),
                "from": self.json(),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            }),
        )
    }
}

/// A group, supergroup or forum the bot is in (e.g. the staff chat).
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    /// Chat id (negative).
    pub id: i64,
    title: String,
    kind: &'static str,
    is_forum: bool,
}

impl Chat {
    /// A basic group.
    pub fn group(id: i64, title: &str) -> Self {
        Self {
            id,
            title: title.to_owned(),
            kind: "group",
            is_forum: false,
        }
    }

    /// A supergroup without topics.
    pub fn supergroup(id: i64, title: &str) -> Self {
        Self {
            kind: "supergroup",
            ..Self::group(id, title)
        }
    }

    /// A supergroup with forum topics.
    pub fn forum(id: i64, title: &str) -> Self {
        Self {
            is_forum: true,
            ..Self::supergroup(id, title)
        }
    }

    /// The service messages Telegram posts when `by` upgrades this group to the supergroup `to`
    /// (turning on topics does): one in the old chat, one in the new.
    pub fn upgraded_to(&self, to: &Chat, by: &User) -> [Update; 2] {
        [
            Update::raw(
                "message",
                json!({"from": by.json(), "chat": self.json(), "migrate_to_chat_id": to.id}),
            ),
            Update::raw(
                "message",
                json!({"from": by.json(), "chat": to.json(), "migrate_from_chat_id": self.id}),
            ),
        ]
    }

    /// The `Chat` JSON object.
    pub fn json(&self) -> Value {
        let mut chat = json!({"id": self.id, "type": self.kind, "title": self.title});
        if self.is_forum {
            chat["is_forum"] = json!(true);
        }
        chat
    }
}

/// Someone writing in a particular chat (and maybe topic); builds message updates.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    from: Value,
    chat: Value,
    thread: Option<i64>,
}

impl Sender {
    /// Writes in a forum topic (or reply thread).
    pub fn in_topic(mut self, message_thread_id: i64) -> Self {
        self.thread = Some(message_thread_id);
        self
    }

    fn message(&self, content: Value) -> Update {
        let mut body = json!({"from": self.from, "chat": self.chat});
        if let Some(thread) = self.thread {
            body["message_thread_id"] = json!(thread);
            if self.chat.get("is_forum") == Some(&json!(true)) {
                body["is_topic_message"] = json!(true);
            }
        }
        if let (Some(body), Value::Object(content)) = (body.as_object_mut(), content) {
            body.extend(content);
        }
        Update::raw("message", body)
    }

    /// A text message; a leading `/command` gets its `bot_command` entity, as clients send.
    pub fn text(&self, text: &str) -> Update {
        self.message(text_content(text))
    }

    /// `/command payload` (payload may be empty).
    pub fn command(&self, command: &str, payload: &str) -> Update {
        let command = command.trim_start_matches('/');
        if payload.is_empty() {
            self.text(&format!("/{command}"))
        } else {
            self.text(&format!("/{command} {payload}"))
        }
    }

    /// A shared contact; `user_id` equal to the sender's id means their own number.
    pub fn contact(&self, phone: &str, user_id: Option<i64>) -> Update {
        let mut contact = json!({"phone_number": phone, "first_name": self.from["first_name"]});
        if let Some(id) = user_id {
            contact["user_id"] = json!(id);
        }
        self.message(json!({"contact": contact}))
    }

    /// A sticker.
    pub fn sticker(&self) -> Update {
        let (id, unique) = file_ids();
        self.message(json!({"sticker": {
            "file_id": id, "file_unique_id": unique, "type": "regular",
            "width": 512, "height": 512, "is_animated": false, "is_video": false, "emoji": "👍",
        }}))
    }

    /// A photo, optionally captioned.
    pub fn photo(&self, caption: Option<&str>) -> Update {
        let (id, unique) = file_ids();
        let mut content = json!({"photo": [
            {"file_id": format!("{id}s"), "file_unique_id": format!("{unique}s"), "width": 90, "height": 90, "file_size": 1200},
            {"file_id": id, "file_unique_id": unique, "width": 1280, "height": 960, "file_size": 98000},
        ]});
        if let Some(caption) = caption {
            content["caption"] = json!(caption);
        }
        self.message(content)
    }

    /// An album of `n` photos: a message per photo, sharing a `media_group_id`, as clients send it.
    pub fn album(&self, n: usize) -> Vec<Update> {
        let group = format!("13{:016}", NEXT_FILE.fetch_add(1, Ordering::Relaxed));
        (0..n)
            .map(|_| {
                let Update { kind, mut body } = self.photo(None);
                body["media_group_id"] = json!(group);
                Update { kind, body }
            })
            .collect()
    }

    /// A voice message.
    pub fn voice(&self) -> Update {
        let (id, unique) = file_ids();
        self.message(json!({"voice": {
            "file_id": id, "file_unique_id": unique, "duration": 3, "mime_type": "audio/ogg", "file_size": 4200,
        }}))
    }

    /// A document.
    pub fn document(&self, file_name: &str) -> Update {
        let (id, unique) = file_ids();
        self.message(json!({"document": {
            "file_id": id, "file_unique_id": unique, "file_name": file_name,
            "mime_type": "application/octet-stream", "file_size": 1024,
        }}))
    }

    /// A location.
    pub fn location(&self, latitude: f64, longitude: f64) -> Update {
        self.message(json!({"location": {"latitude": latitude, "longitude": longitude}}))
    }

    /// An `edited_message` update: the message `message_id` now reads `text`.
    pub fn edits(&self, message_id: i64, text: &str) -> Update {
        let Update { body, .. } = self.text(text);
        let mut body = body;
        body["message_id"] = json!(message_id);
        Update::raw("edited_message", body)
    }
}

/// `text` plus the `bot_command` entity Telegram clients add for a leading command.
fn text_content(text: &str) -> Value {
    let mut content = json!({"text": text});
    if text.starts_with('/') {
        let command = text.split_whitespace().next().unwrap_or(text);
        content["entities"] = json!([{
            "type": "bot_command",
            "offset": 0,
            "length": command.encode_utf16().count(),
        }]);
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_command_carries_its_bot_command_entity() {
        let update = User::new(42).command("start", "vk_ads");
        assert_eq!(update.kind(), "message");
        assert_eq!(update.body()["text"], "/start vk_ads");
        assert_eq!(
            update.body()["entities"],
            json!([{"type": "bot_command", "offset": 0, "length": 6}])
        );
    }

    #[test]
    fn user_settings_show_in_the_message_sender() {
        let update = User::new(7)
            .lang("ru")
            .first_name("Иван")
            .username("")
            .text("hi");
        let from = &update.body()["from"];
        assert_eq!(from["language_code"], "ru");
        assert_eq!(from["first_name"], "Иван");
        assert!(from.get("username").is_none());
    }

    #[test]
    fn topic_messages_are_marked_as_such_in_forums() {
        let staff = Chat::forum(-1_001_234_567_890, "Staff");
        let update = User::new(5).in_chat(&staff).in_topic(77).text("hello");
        assert_eq!(update.body()["message_thread_id"], 77);
        assert_eq!(update.body()["is_topic_message"], true);
        assert_eq!(update.body()["chat"]["is_forum"], true);
    }
}
