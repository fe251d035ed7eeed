//! Telegram's checks on what a bot sends: chat ids, texts and captions, keyboards.

use serde_json::{Map, Value};

use super::state::Reply;
use crate::support::html;

type Params = Map<String, Value>;

pub(super) fn too_many_requests(retry_after: u32) -> Reply {
    Reply::Error {
        code: 429,
        description: format!("Too Many Requests: retry after {retry_after}"),
        retry_after: Some(retry_after),
    }
}

pub(super) fn as_chat_id(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn chat_id(p: &Params, key: &str) -> Result<i64, Reply> {
    match p.get(key) {
        None => Err(Reply::bad("Bad Request: chat_id is empty")),
        // `@username` chats are channels the fake does not model.
        Some(value) => as_chat_id(value).ok_or_else(|| Reply::bad("Bad Request: chat not found")),
    }
}

/// Why a text or caption was refused.
#[derive(Debug)]
pub(super) enum TextError {
    Empty,
    TooLong,
    Entities(String),
}

impl TextError {
    pub(super) fn reply(self, too_long: &str) -> Reply {
        match self {
            Self::Empty => Reply::bad("Bad Request: message text is empty"),
            Self::TooLong => Reply::bad(too_long),
            Self::Entities(e) => Reply::bad(format!("Bad Request: can't parse entities: {e}")),
        }
    }
}

/// Parses a text or caption like Telegram: entities first, then the length of what is left
/// after trimming, counted in UTF-16 code units.
pub(super) fn message_text(
    raw: &str,
    parse_mode: Option<&str>,
    entities: Option<&Value>,
    limit: usize,
) -> Result<(String, Vec<Value>), TextError> {
    let (text, entities) = match parse_mode {
        Some(mode) if mode.eq_ignore_ascii_case("html") => {
            let parsed = html::parse(raw).map_err(TextError::Entities)?;
            (parsed.text, parsed.entities)
        }
        // Markdown modes are passed through unparsed: leadbot uses HTML.
        _ => (
            raw.to_owned(),
            entities
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        ),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TextError::Empty);
    }
    if html::utf16_len(trimmed) > limit {
        return Err(TextError::TooLong);
    }
    Ok((text, entities))
}

/// Checks a `reply_markup` like Telegram and splits it into the inline keyboard (part of the
/// message) and any other keyboard (shown to the user, not echoed in the message).
pub(super) fn validate_markup(
    markup: Option<&Value>,
) -> Result<(Option<Value>, Option<Value>), Reply> {
    let Some(markup) = markup else {
        return Ok((None, None));
    };
    if let Some(rows) = markup.get("inline_keyboard") {
        let rows = rows
            .as_array()
            .ok_or_else(|| Reply::bad("Bad Request: field \"inline_keyboard\" must be an Array"))?;
        for button in rows
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        {
            validate_inline_button(&button)?;
        }
        return Ok((Some(markup.clone()), None));
    }
    if let Some(rows) = markup.get("keyboard").and_then(Value::as_array) {
        for button in rows
            .iter()
            .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        {
            let text = button
                .as_str()
                .or_else(|| button.get("text").and_then(Value::as_str))
                .unwrap_or_default();
            if text.trim().is_empty() {
                return Err(Reply::bad("Bad Request: keyboard button text is empty"));
            }
        }
    }
    Ok((None, Some(markup.clone())))
}

fn validate_inline_button(button: &Value) -> Result<(), Reply> {
    const ACTIONS: &[&str] = &[
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    ];
    let text = button
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if text.trim().is_empty() {
        return Err(Reply::bad(
            "Bad Request: can't parse inline keyboard button: Text must be non-empty",
        ));
    }
    let actions = ACTIONS.iter().filter(|a| button.get(**a).is_some()).count();
    if actions != 1 {
        return Err(Reply::bad(
            "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must have exactly one optional field",
        ));
    }
    if let Some(data) = button.get("callback_data") {
        let len = data.as_str().map_or(0, str::len);
        if !(1..=64).contains(&len) {
            return Err(Reply::bad("Bad Request: BUTTON_DATA_INVALID"));
        }
    }
    if let Some(url) = button.get("url").and_then(Value::as_str) {
        let valid = ["http://", "https://", "tg://"]
            .iter()
            .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len());
        if !valid {
            return Err(Reply::bad("Bad Request: BUTTON_URL_INVALID"));
        }
    }
    Ok(())
}
