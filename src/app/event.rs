//! What an update means to leadbot, free of Telegram's types.

use crate::dialogue::MediaKind;

/// A Telegram user as the update describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub is_bot: bool,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
}

impl Person {
    /// First and last name as Telegram shows them.
    pub fn full_name(&self) -> String {
        match &self.last_name {
            Some(last) => format!("{} {}", self.first_name, last),
            None => self.first_name.clone(),
        }
    }
}

/// What a message carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// `/name args` (a `@botname` suffix is dropped).
    Command { name: String, args: String },
    /// Plain text.
    Text(String),
    /// A shared contact.
    Contact { phone: String, user_id: Option<i64> },
    /// Anything without readable text.
    Media(MediaKind),
}

/// An update, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A message in a private chat with the bot.
    Private {
        from: Person,
        message_id: i32,
        content: Content,
        /// The album (media group) it belongs to: Telegram sends each photo or video of an
        /// album as a message of its own.
        album: Option<String>,
    },
    /// A message edited in a private chat.
    PrivateEdited { from: Person },
    /// An inline button press.
    Callback {
        from: Person,
        query_id: String,
        data: Option<String>,
        chat_id: Option<i64>,
        message_id: Option<i32>,
    },
    /// The user blocked (or unblocked) the bot.
    Membership { user_id: i64, blocked: bool },
    /// A message in a group or supergroup.
    Group {
        chat_id: i64,
        from: Option<Person>,
        message_id: i32,
        thread_id: Option<i32>,
        reply_to: Option<i32>,
        content: Content,
    },
    /// The group `from` became the supergroup `to` (Telegram's service message, in either chat).
    ChatUpgraded { from: i64, to: i64 },
    /// Anything leadbot does not act on, with the reason.
    Ignored(&'static str),
}
