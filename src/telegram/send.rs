//! Outbox [`Action`] → Bot API request, and the error classes the worker acts on.

use std::time::Duration;

use teloxide::ApiError;
use teloxide::RequestError;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, CopyMessageSetters, EditMessageTextSetters, SendDocumentSetters,
    SendMessageSetters, SendPhotoSetters,
};
use teloxide::prelude::Requester;
use teloxide::requests::{HasPayload, JsonRequest, Payload};
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, KeyboardButton, KeyboardMarkup,
    KeyboardRemove, MessageId, ParseMode, ReplyMarkup, ReplyParameters, ThreadId,
};

use crate::outbox::action::{Action, Markup};

/// `sendMessage` whose answer is read for the message id alone. teloxide reads a full `Message`,
/// trying every kind of media in turn: 6.7–8.4 µs per answer against 0.7–0.8 µs for the id (see
/// the optimisation log's twelfth round).
#[derive(serde::Serialize)]
#[serde(transparent)]
struct SendMessageForId(teloxide::payloads::SendMessage);

impl Payload for SendMessageForId {
    type Output = SentMessageId;
    const NAME: &'static str = <teloxide::payloads::SendMessage as Payload>::NAME;
}

/// The part of a sent message leadbot keeps.
#[derive(serde::Deserialize)]
struct SentMessageId {
    message_id: i32,
}

/// How a failed request should be handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// 429: wait this long before the next request to this chat.
    RetryAfter(Duration),
    /// 403: the user blocked the bot (or is gone); stop sending to them.
    Blocked(String),
    /// Telegram refused the request itself; retrying will not help.
    Permanent(String),
    /// The group became a supergroup with the id `to`: the old id takes no more messages.
    Migrated { to: i64, message: String },
    /// Network trouble, timeouts, 5xx: retry with backoff.
    Transient(String),
}

impl SendError {
    /// Classifies a teloxide error; `token` is removed from messages.
    pub fn classify(e: &RequestError, token: &str) -> SendError {
        let msg = super::redact(&e.to_string(), token);
        match e {
            RequestError::RetryAfter(s) => SendError::RetryAfter(s.duration()),
            RequestError::Api(api) => match api {
                ApiError::BotBlocked
                | ApiError::UserDeactivated
                | ApiError::CantInitiateConversation
                | ApiError::BotKicked
                | ApiError::BotKickedFromSupergroup
                | ApiError::CantTalkWithBots => SendError::Blocked(msg),
                ApiError::Unknown(desc) => {
                    if desc.starts_with("Forbidden") {
                        SendError::Blocked(msg)
                    } else if desc.starts_with("Bad Request") || desc.starts_with("Not Found") {
                        SendError::Permanent(msg)
                    } else {
                        SendError::Transient(msg)
                    }
                }
                _ => SendError::Permanent(msg),
            },
            RequestError::MigrateToChatId(to) => SendError::Migrated {
                to: to.0,
                message: msg,
            },
            RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_) => {
                SendError::Transient(msg)
            }
        }
    }
}

/// Whether Telegram refused because the bot cannot post in the chat at all (removed from it, the
/// chat gone, or the right to send taken away), not because of the message.
pub fn cannot_post(error: &SendError) -> bool {
    match error {
        SendError::Blocked(_) => true,
        SendError::Permanent(msg) => {
            let msg = msg.to_lowercase();
            ["chat not found", "rights to send", "chat_write_forbidden"]
                .iter()
                .any(|what| msg.contains(what))
        }
        _ => false,
    }
}

fn markup(m: &Markup) -> Option<ReplyMarkup> {
    match m {
        Markup::None => None,
        Markup::Inline { rows } => Some(ReplyMarkup::InlineKeyboard(inline(rows))),
        Markup::RequestContact { label } => Some(ReplyMarkup::Keyboard(
            KeyboardMarkup::new(vec![vec![
                KeyboardButton::new(label).request(teloxide::types::ButtonRequest::Contact),
            ]])
            .resize_keyboard()
            .one_time_keyboard(),
        )),
        Markup::Remove => Some(ReplyMarkup::KeyboardRemove(KeyboardRemove::new())),
    }
}

fn inline(rows: &[Vec<crate::outbox::action::Button>]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(rows.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.text.clone(), b.data.clone()))
            .collect::<Vec<_>>()
    }))
}

/// [`perform`], timed and counted in the metrics (Bot API latency per method, errors per class).
pub async fn perform_observed(
    bot: &teloxide::Bot,
    chat_id: i64,
    action: &Action,
    token: &str,
    metrics: &crate::metrics::Metrics,
) -> Result<Option<i32>, SendError> {
    let started = std::time::Instant::now();
    let outcome = perform(bot, chat_id, action, token).await;
    metrics.observe_bot_api(crate::metrics::method_of(action), started.elapsed());
    if let Err(e) = &outcome {
        metrics.telegram_error(match e {
            SendError::RetryAfter(_) => "rate_limited",
            SendError::Blocked(_) => "blocked",
            SendError::Permanent(_) => "permanent",
            SendError::Migrated { .. } => "migrated",
            SendError::Transient(_) => "transient",
        });
    }
    outcome
}

/// Performs an action in a chat. Returns the id of the message sent, when there is one.
pub async fn perform(
    bot: &teloxide::Bot,
    chat_id: i64,
    action: &Action,
    token: &str,
) -> Result<Option<i32>, SendError> {
    let chat = ChatId(chat_id);
    let result = match action {
        Action::SendMessage {
            text,
            html,
            markup: m,
            reply_to,
            thread_id,
            ..
        } => {
            let mut req = bot.send_message(chat, text.clone());
            if *html {
                req = req.parse_mode(ParseMode::Html);
            }
            if let Some(rm) = markup(m) {
                req = req.reply_markup(rm);
            }
            if let Some(r) = reply_to {
                req = req.reply_parameters(
                    ReplyParameters::new(MessageId(*r)).allow_sending_without_reply(),
                );
            }
            if let Some(t) = thread_id {
                req = req.message_thread_id(ThreadId(MessageId(*t)));
            }
            let payload = SendMessageForId(req.payload_ref().clone());
            JsonRequest::new(bot.clone(), payload)
                .await
                .map(|sent| Some(sent.message_id))
        }
        Action::EditMessage {
            message_id,
            text,
            html,
            markup: m,
            ..
        } => {
            let mut req = bot.edit_message_text(chat, MessageId(*message_id), text.clone());
            if *html {
                req = req.parse_mode(ParseMode::Html);
            }
            if let Markup::Inline { rows } = m {
                req = req.reply_markup(inline(rows));
            }
            req.await.map(|_| None)
        }
        Action::CreateTopic { name } => bot
            .create_forum_topic(chat, name.clone())
            .await
            .map(|topic| Some(topic.thread_id.0.0)),
        Action::RemoveButtons { message_id } => bot
            .edit_message_reply_markup(chat, MessageId(*message_id))
            .await
            .map(|_| None),
        Action::DeleteMessage { message_id } => bot
            .delete_message(chat, MessageId(*message_id))
            .await
            .map(|_| None),
        Action::AnswerCallback {
            query_id,
            text,
            alert,
        } => {
            let mut req =
                bot.answer_callback_query(teloxide::types::CallbackQueryId(query_id.clone()));
            if let Some(t) = text {
                req = req.text(t.clone());
            }
            if *alert {
                req = req.show_alert(true);
            }
            req.await.map(|_| None)
        }
        Action::CopyMessage {
            from_chat_id,
            message_id,
            reply_to,
            thread_id,
            ..
        } => {
            let mut req = bot.copy_message(chat, ChatId(*from_chat_id), MessageId(*message_id));
            if let Some(r) = reply_to {
                req = req.reply_parameters(
                    ReplyParameters::new(MessageId(*r)).allow_sending_without_reply(),
                );
            }
            if let Some(t) = thread_id {
                req = req.message_thread_id(ThreadId(MessageId(*t)));
            }
            req.await.map(|m| Some(m.0))
        }
        Action::SendDocument {
            file_name,
            content,
            caption,
        } => {
            let file = InputFile::memory(content.clone().into_bytes()).file_name(file_name.clone());
            let mut req = bot.send_document(chat, file);
            if let Some(c) = caption {
                req = req.caption(c.clone());
            }
            req.await.map(|m| Some(m.id.0))
        }
        Action::SendPhoto {
            file_name,
            hex,
            caption,
            thread_id,
        } => {
            let bytes = ::hex::decode(hex)
                .map_err(|e| SendError::Permanent(format!("the stored image is corrupt: {e}")))?;
            let file = InputFile::memory(bytes).file_name(file_name.clone());
            let mut req = bot.send_photo(chat, file);
            if let Some(c) = caption {
                req = req.caption(c.clone());
            }
            if let Some(t) = thread_id {
                req = req.message_thread_id(ThreadId(MessageId(*t)));
            }
            req.await.map(|m| Some(m.id.0))
        }
    };
    match result {
        Ok(id) => Ok(id),
        // Editing to the same content is a success from the user's point of view.
        Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(None),
        Err(e) => Err(SendError::classify(&e, token)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_the_bot_cannot_post_to_is_told_from_a_message_telegram_refused() {
        for refused in [
            SendError::Blocked("Forbidden: bot was kicked from the supergroup chat".into()),
            SendError::Permanent("A Telegram's error: Bad Request: chat not found".into()),
            SendError::Permanent(
                "Bad Request: not enough rights to send text messages to the chat".into(),
            ),
            SendError::Permanent("Bad Request: CHAT_WRITE_FORBIDDEN".into()),
        ] {
            assert!(cannot_post(&refused), "{refused:?}");
        }
        for message_at_fault in [
            SendError::Permanent("Bad Request: can't parse entities".into()),
            SendError::Permanent("Bad Request: message is too long".into()),
            SendError::Transient("connection reset".into()),
            SendError::RetryAfter(Duration::from_secs(3)),
        ] {
            assert!(!cannot_post(&message_at_fault), "{message_at_fault:?}");
        }
    }
}
