//! Telegram update → [`Event`].

use teloxide::types::{
    ChatMemberKind, MediaKind as TgMedia, Message, MessageKind, Update, UpdateKind, User,
};

use crate::app::event::{Content, Event, Person};
use crate::dialogue::MediaKind;

/// The user an update concerns, for per-lead ordering.
pub fn user_of(update: &Update) -> Option<i64> {
    update.from().map(user_id)
}

fn user_id(u: &User) -> i64 {
    i64::try_from(u.id.0).unwrap_or(i64::MAX)
}

fn person(u: &User) -> Person {
    Person {
        id: user_id(u),
        is_bot: u.is_bot,
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        username: u.username.clone(),
        language_code: u.language_code.clone(),
    }
}

/// Classifies an update.
pub fn to_event(update: &Update) -> Event {
    match &update.kind {
        UpdateKind::Message(m) => message_event(m),
        UpdateKind::EditedMessage(m) => match &m.from {
            Some(from) if m.chat.is_private() && !from.is_bot => {
                Event::PrivateEdited { from: person(from) }
            }
            _ => Event::Ignored("edited message outside a private chat"),
        },
        UpdateKind::CallbackQuery(q) => Event::Callback {
            from: person(&q.from),
            query_id: q.id.0.clone(),
            data: q.data.clone(),
            chat_id: q.message.as_ref().map(|m| m.chat().id.0),
            message_id: q.message.as_ref().map(|m| m.id().0),
        },
        UpdateKind::MyChatMember(c) if c.chat.is_private() => Event::Membership {
            user_id: user_id(&c.from),
            blocked: matches!(
                c.new_chat_member.kind,
                ChatMemberKind::Banned(_) | ChatMemberKind::Left
            ),
        },
        UpdateKind::MyChatMember(_) => Event::Ignored("membership change in a group"),
        UpdateKind::Error(_) => Event::Ignored("unknown update type"),
        _ => Event::Ignored("update type leadbot does not use"),
    }
}

fn message_event(m: &Message) -> Event {
    let Some(from) = m.from.as_ref() else {
        return Event::Ignored("message without a sender");
    };
    if from.is_bot {
        return Event::Ignored("message from a bot");
    }
    if !matches!(m.kind, MessageKind::Common(_)) {
        return Event::Ignored("service message");
    }
    let content = content(m);
    if m.chat.is_private() {
        Event::Private {
            from: person(from),
            message_id: m.id.0,
            content,
        }
    } else if m.chat.is_group() || m.chat.is_supergroup() {
        Event::Group {
            chat_id: m.chat.id.0,
            from: Some(person(from)),
            message_id: m.id.0,
            thread_id: m.thread_id.map(|t| t.0.0),
            reply_to: m.reply_to_message().map(|r| r.id.0),
            content,
        }
    } else {
        Event::Ignored("message in a channel")
    }
}

fn content(m: &Message) -> Content {
    if let Some(text) = m.text() {
        return parse_text(text);
    }
    let MessageKind::Common(common) = &m.kind else {
        return Content::Media(MediaKind::Other);
    };
    match &common.media_kind {
        TgMedia::Contact(c) => Content::Contact {
            phone: c.contact.phone_number.clone(),
            user_id: c.contact.user_id.map(|u| user_id_raw(u.0)),
        },
        TgMedia::Sticker(_) => Content::Media(MediaKind::Sticker),
        TgMedia::Photo(_) => Content::Media(MediaKind::Photo),
        TgMedia::Voice(_) | TgMedia::VideoNote(_) => Content::Media(MediaKind::Voice),
        TgMedia::Video(_) | TgMedia::Animation(_) => Content::Media(MediaKind::Video),
        TgMedia::Audio(_) => Content::Media(MediaKind::Audio),
        TgMedia::Document(_) => Content::Media(MediaKind::Document),
        TgMedia::Location(_) | TgMedia::Venue(_) => Content::Media(MediaKind::Location),
        _ => Content::Media(MediaKind::Other),
    }
}

fn user_id_raw(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// Splits `/cmd@bot args` into a command; anything else is text.
pub fn parse_text(text: &str) -> Content {
    let trimmed = text.trim_start();
    if let Some(rest) = trimmed.strip_prefix('/') {
        let (head, args) = match rest.split_once(char::is_whitespace) {
            Some((h, a)) => (h, a.trim()),
            None => (rest, ""),
        };
        let name = head.split('@').next().unwrap_or(head);
        if !name.is_empty()
            && name.len() <= 32
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Content::Command {
                name: name.to_ascii_lowercase(),
                args: args.to_owned(),
            };
        }
    }
    Content::Text(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_lose_the_bot_suffix_and_keep_args() {
        assert_eq!(
            parse_text("/start@lead_bot vk_ads"),
            Content::Command {
                name: "start".into(),
                args: "vk_ads".into()
            }
        );
        assert_eq!(
            parse_text("/HELP"),
            Content::Command {
                name: "help".into(),
                args: String::new()
            }
        );
        assert_eq!(parse_text("/ hello"), Content::Text("/ hello".into()));
        assert_eq!(parse_text("hi /start"), Content::Text("hi /start".into()));
    }
}
