//! The only module that speaks teloxide: building the client, turning updates into events,
//! turning outbox actions into requests, and classifying Telegram's errors.

pub mod poll;
pub mod send;
pub mod update;
pub mod webhook;

use std::time::Duration;

use teloxide::Bot;

use crate::config::Secret;

pub use teloxide::Bot as Client;

/// Builds the Bot API client with a request timeout (long polls must fit inside it).
pub fn client(token: &Secret, api_url: Option<&str>, timeout: Duration) -> Result<Bot, String> {
    let http = teloxide::net::default_reqwest_settings()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let bot = Bot::with_client(token.expose(), http);
    match api_url {
        Some(url) => {
            let parsed = url.parse().map_err(|_| {
                "TELOXIDE_API_URL: expected a URL such as https://api.telegram.org".to_owned()
            })?;
            Ok(bot.set_api_url(parsed))
        }
        None => Ok(bot),
    }
}

/// The bot, as `getMe` describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Me {
    pub user_id: i64,
    pub username: Option<String>,
    /// False while the bot's privacy mode is on (BotFather's `/setprivacy`): in groups where it is
    /// not an admin it then gets only commands and replies to its own messages.
    pub reads_all_group_messages: bool,
}

/// What Telegram said of the token when the bot started.
#[derive(Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// `getMe` answered.
    Accepted(Me),
    /// Telegram refused the token (401 Unauthorized, or 404 for a token it cannot route).
    Refused,
    /// No answer to go by (network, timeout, an outage): the message, with the token removed.
    Unknown(String),
}

/// Asks Telegram who the bot is (`getMe`), waiting at most `within`.
pub async fn check_token(bot: &Bot, token: &str, within: Duration) -> TokenCheck {
    use teloxide::ApiError;
    use teloxide::RequestError;
    use teloxide::prelude::Requester;
    match tokio::time::timeout(within, bot.get_me()).await {
        Ok(Ok(me)) => TokenCheck::Accepted(Me {
            user_id: i64::try_from(me.user.id.0).unwrap_or(i64::MAX),
            username: me.user.username.clone(),
            reads_all_group_messages: me.can_read_all_group_messages,
        }),
        Ok(Err(RequestError::Api(ApiError::InvalidToken))) => TokenCheck::Refused,
        Ok(Err(e)) => TokenCheck::Unknown(redact(&e.to_string(), token)),
        Err(_) => TokenCheck::Unknown(format!("no answer within {} s", within.as_secs())),
    }
}

/// What Telegram said of the staff chat when the bot started.
#[derive(Debug, PartialEq, Eq)]
pub enum StaffChatCheck {
    /// The bot is in the chat, as an admin (or its owner) or not.
    Member { admin: bool },
    /// The chat exists but the bot is not in it: it left or was removed. Why, as Telegram put it.
    NotMember(String),
    /// The group became a supergroup with this new id; the old id is dead.
    Migrated(i64),
    /// Telegram knows no such chat with the bot in it (a mistyped id, or the bot never added).
    NotFound,
    /// No answer to go by (network, timeout, an outage): the message, with the token removed.
    Unknown(String),
}

/// Asks Telegram whether the bot (`bot_user_id`) is in the staff chat (`getChatMember`),
/// waiting at most `within`.
pub async fn check_staff_chat(
    bot: &Bot,
    chat_id: i64,
    bot_user_id: i64,
    token: &str,
    within: Duration,
) -> StaffChatCheck {
    use teloxide::ApiError;
    use teloxide::RequestError;
    use teloxide::prelude::Requester;
    use teloxide::types::{ChatId, UserId};
    let Ok(user) = u64::try_from(bot_user_id) else {
        return StaffChatCheck::Unknown(format!("the bot's user id {bot_user_id} is not valid"));
    };
    let request = bot.get_chat_member(ChatId(chat_id), UserId(user));
    match tokio::time::timeout(within, request).await {
        Ok(Ok(member)) if member.is_present() => StaffChatCheck::Member {
            admin: member.is_privileged(),
        },
        Ok(Ok(member)) => StaffChatCheck::NotMember(format!(
            "its status there is {}",
            if member.is_banned() { "kicked" } else { "left" }
        )),
        Ok(Err(RequestError::MigrateToChatId(to))) => StaffChatCheck::Migrated(to.0),
        Ok(Err(RequestError::Api(ApiError::ChatNotFound))) => StaffChatCheck::NotFound,
        // "Forbidden: bot was kicked from the group chat", "… is not a member of the supergroup
        // chat": the chat is there, the bot is not.
        Ok(Err(RequestError::Api(
            e @ (ApiError::BotKicked | ApiError::BotKickedFromSupergroup),
        ))) => StaffChatCheck::NotMember(e.to_string()),
        Ok(Err(RequestError::Api(ApiError::Unknown(description))))
            if description.starts_with("Forbidden") =>
        {
            StaffChatCheck::NotMember(description)
        }
        Ok(Err(e)) => StaffChatCheck::Unknown(redact(&e.to_string(), token)),
        Err(_) => StaffChatCheck::Unknown(format!("no answer within {} s", within.as_secs())),
    }
}

/// Removes the token from an error message (reqwest errors carry the request URL, which holds it).
pub fn redact(message: &str, token: &str) -> String {
    if token.is_empty() {
        message.to_owned()
    } else {
        message.replace(token, "[token]")
    }
}
