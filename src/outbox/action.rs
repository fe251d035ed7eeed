//! What an outbox row asks Telegram to do, as plain data (stored as JSON).

use serde::{Deserialize, Serialize};

/// One inline button: a label and its callback data (at most 64 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    pub data: String,
}

/// The keyboard attached to a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Markup {
    /// No keyboard.
    #[default]
    None,
    /// Inline buttons, row by row.
    Inline { rows: Vec<Vec<Button>> },
    /// A one-button reply keyboard that shares the user's phone number.
    RequestContact { label: String },
    /// Removes a reply keyboard.
    Remove,
}

/// A Telegram call the outbox worker makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// sendMessage.
    SendMessage {
        text: String,
        /// Parse the text as HTML (staff cards); prospect texts are plain.
        #[serde(default)]
        html: bool,
        #[serde(default)]
        markup: Markup,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<i32>,
        /// In a forum staff chat: send into the topic of the row's lead (looked up at send time,
        /// as the topic may be created just before).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lead_topic: bool,
    },
    /// editMessageText.
    EditMessage {
        /// 0 with `of_key`: not known when the edit was queued.
        message_id: i32,
        text: String,
        #[serde(default)]
        html: bool,
        #[serde(default)]
        markup: Markup,
        /// The edited message is the one the outbox row with this key sent, looked up at send
        /// time: that row had not been recorded as sent when the edit was queued. The chat's
        /// order sends the edit after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        of_key: Option<String>,
    },
    /// editMessageReplyMarkup with no keyboard: removes the buttons of a message.
    RemoveButtons { message_id: i32 },
    /// deleteMessage (recalling an offer).
    DeleteMessage { message_id: i32 },
    /// answerCallbackQuery. Answers are now sent without a row (`outbox::answers`); rows stored by
    /// an earlier version are still delivered.
    AnswerCallback {
        query_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default)]
        alert: bool,
    },
    /// copyMessage: re-sends a message (text, photo, document...) from another chat.
    CopyMessage {
        from_chat_id: i64,
        message_id: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<i32>,
        /// As for `SendMessage`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lead_topic: bool,
    },
    /// createForumTopic: the lead's own topic in a forum staff chat (the row's lead gets its id).
    CreateTopic { name: String },
    /// sendPhoto with an in-memory image, kept in the outbox as hex.
    SendPhoto {
        file_name: String,
        hex: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<i32>,
    },
    /// sendDocument with an in-memory file.
    SendDocument {
        file_name: String,
        content: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
}

impl Action {
    /// A plain text message with an optional keyboard.
    pub fn text(text: impl Into<String>, markup: Markup) -> Action {
        Action::SendMessage {
            text: text.into(),
            html: false,
            markup,
            reply_to: None,
            thread_id: None,
            lead_topic: false,
        }
    }

    /// Whether the action keeps its place in the chat's order. A callback answer does not: it
    /// neither waits for the chat's earlier messages nor holds up later ones.
    pub fn in_chat_order(&self) -> bool {
        !matches!(self, Action::AnswerCallback { .. })
    }

    /// Whether a failure can be retried later. Callback answers expire within seconds, so they are
    /// tried once.
    pub fn retryable(&self) -> bool {
        !matches!(self, Action::AnswerCallback { .. })
    }
}
