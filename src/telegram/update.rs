//! Telegram update → [`Event`].

use teloxide::types::{
    ChatMemberKind, ChatMigration, MediaKind as TgMedia, Message, MessageKind, Update, UpdateKind,
    User,
};

use crate::app::event::{Content, Event, Person};
use crate::dialogue::MediaKind;
use crate::storage::updates::IncomingUpdate;

/// One update as Telegram sent it: the row to store and what it means.
#[derive(Debug, Clone)]
pub struct Received {
    pub incoming: IncomingUpdate,
    pub event: Event,
}

/// Reads one update's JSON, kept as sent. The user id (each lead's ordering) and the event come
/// from teloxide's own reading of it; an update of a kind this version does not know, or one that
/// does not read as its kind, is still stored (and skipped when applied), so that Telegram stops
/// resending it. Only JSON without a numeric `update_id` is refused.
pub fn decode(raw: &str) -> Result<Received, &'static str> {
    match serde_json::from_str::<Update>(raw) {
        Ok(update) => Ok(Received {
            incoming: IncomingUpdate {
                update_id: i64::from(update.id.0),
                user_id: user_of(&update),
                payload: raw.to_owned(),
            },
            event: to_event(&update),
        }),
        Err(_) => {
            #[derive(serde::Deserialize)]
            struct Id {
                update_id: i64,
            }
            let id = serde_json::from_str::<Id>(raw).map_err(|e| {
                if e.is_data() {
                    "the update has no update_id"
                } else {
                    "the update is not JSON"
                }
            })?;
            Ok(Received {
                incoming: IncomingUpdate {
                    update_id: id.update_id,
                    user_id: None,
                    payload: raw.to_owned(),
                },
                event: Event::Ignored(UNDECODABLE),
            })
        }
    }
}

/// Why an update that does not read as one is skipped.
const UNDECODABLE: &str = "undecodable update";

/// What a stored update means; one that no longer reads as an update is skipped, with a warning.
pub fn event_of(payload: &str) -> Event {
    match serde_json::from_str::<Update>(payload) {
        Ok(update) => to_event(&update),
        Err(e) => {
            tracing::warn!(error = %e, "stored update does not decode; skipped");
            Event::Ignored(UNDECODABLE)
        }
    }
}

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
    if let Some(migration) = m.chat_migration() {
        let (from, to) = match migration {
            ChatMigration::To { chat_id } => (m.chat.id.0, chat_id.0),
            ChatMigration::From { chat_id } => (chat_id.0, m.chat.id.0),
        };
        return Event::ChatUpgraded { from, to };
    }
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
            album: m.media_group_id().map(|g| g.0.clone()),
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
    fn a_message_update_names_its_user_and_is_kept_as_sent() {
        let raw = r#"{"update_id":42,"message":{"message_id":1,"date":1700000000,
            "chat":{"id":7,"type":"private","first_name":"A"},
            "from":{"id":7,"is_bot":false,"first_name":"A"},"text":"hi","future_field":1}}"#;
        let r = decode(raw).unwrap();
        assert_eq!(r.incoming.update_id, 42);
        assert_eq!(r.incoming.user_id, Some(7));
        assert_eq!(r.incoming.payload, raw);
        assert!(matches!(r.event, Event::Private { message_id: 1, .. }));
        assert_eq!(event_of(&r.incoming.payload), r.event);
    }

    #[test]
    fn telegram_s_notices_of_a_group_upgrade_name_both_chats() {
        let notice = |chat: &str, field: &str, other: i64| {
            format!(
                r#"{{"update_id":3,"message":{{"message_id":9,"date":1700000000,{chat},
                "from":{{"id":7,"is_bot":false,"first_name":"A"}},"{field}":{other}}}}}"#
            )
        };
        let old = r#""chat":{"id":-4001,"type":"group","title":"M"}"#;
        let new = r#""chat":{"id":-1009,"type":"supergroup","title":"M"}"#;
        let upgraded = Event::ChatUpgraded {
            from: -4001,
            to: -1009,
        };
        assert_eq!(
            decode(&notice(old, "migrate_to_chat_id", -1009))
                .unwrap()
                .event,
            upgraded
        );
        assert_eq!(
            decode(&notice(new, "migrate_from_chat_id", -4001))
                .unwrap()
                .event,
            upgraded
        );
    }

    #[test]
    fn an_update_of_an_unknown_kind_or_shape_is_kept_without_a_user() {
        let r = decode(r#"{"update_id":5,"brand_new_kind":{"x":1}}"#).unwrap();
        assert_eq!((r.incoming.update_id, r.incoming.user_id), (5, None));
        assert!(matches!(r.event, Event::Ignored(_)));
        // A message missing its required fields: stored, skipped.
        let r = decode(r#"{"update_id":6,"message":{"text":"hi"}}"#).unwrap();
        assert_eq!((r.incoming.update_id, r.incoming.user_id), (6, None));
        assert!(matches!(r.event, Event::Ignored(_)));
        // An update id beyond Telegram's 32 bits is still an id.
        let r = decode(r#"{"update_id":5000000000}"#).unwrap();
        assert_eq!(r.incoming.update_id, 5_000_000_000);
        assert_eq!(decode("not json").unwrap_err(), "the update is not JSON");
        assert_eq!(
            decode(r#"{"message":{}}"#).unwrap_err(),
            "the update has no update_id"
        );
        assert_eq!(
            decode(r#"{"update_id":"7"}"#).unwrap_err(),
            "the update has no update_id"
        );
        assert_eq!(event_of("[]"), Event::Ignored(UNDECODABLE));
    }

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
