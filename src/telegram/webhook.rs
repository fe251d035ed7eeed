//! Webhook mode: registering the endpoint with Telegram, removing it before polling again, and
//! reading the updates Telegram POSTs.

use teloxide::payloads::{DeleteWebhookSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::{AllowedUpdate, Update};

use crate::storage::updates::IncomingUpdate;

/// The updates leadbot asks Telegram for, in both modes.
pub const ALLOWED_UPDATES: [AllowedUpdate; 4] = [
    AllowedUpdate::Message,
    AllowedUpdate::EditedMessage,
    AllowedUpdate::CallbackQuery,
    AllowedUpdate::MyChatMember,
];

/// Tells Telegram to POST updates to `url` with `secret` in `X-Telegram-Bot-Api-Secret-Token`.
pub async fn register(
    bot: &teloxide::Bot,
    url: &str,
    secret: &str,
    token: &str,
) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad webhook URL: {e}"))?;
    bot.set_webhook(parsed)
        .secret_token(secret.to_owned())
        .allowed_updates(ALLOWED_UPDATES)
        .await
        .map(|_| ())
        .map_err(|e| super::redact(&e.to_string(), token))
}

/// Removes the webhook (Telegram refuses `getUpdates` while one is set). Pending updates stay.
pub async fn remove(bot: &teloxide::Bot, token: &str) -> Result<(), String> {
    bot.delete_webhook()
        .drop_pending_updates(false)
        .await
        .map(|_| ())
        .map_err(|e| super::redact(&e.to_string(), token))
}

/// Reads a webhook request body: its `update_id`, the user it concerns, and the JSON to store.
/// An update of a kind this version does not know is still stored (and skipped when applied),
/// so Telegram stops resending it.
pub fn intake(body: &[u8]) -> Result<IncomingUpdate, &'static str> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let update_id = value
        .get("update_id")
        .and_then(serde_json::Value::as_i64)
        .ok_or("the body has no update_id")?;
    // From the bytes: teloxide's Update does not decode from a `Value` (its kinds come out empty).
    let user_id = serde_json::from_slice::<Update>(body)
        .ok()
        .and_then(|u| super::update::user_of(&u));
    let payload = String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8")?;
    Ok(IncomingUpdate {
        update_id,
        user_id,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_update_names_its_user() {
        let body = br#"{"update_id":42,"message":{"message_id":1,"date":1700000000,
            "chat":{"id":7,"type":"private","first_name":"A"},
            "from":{"id":7,"is_bot":false,"first_name":"A"},"text":"hi"}}"#;
        let u = intake(body).unwrap();
        assert_eq!(u.update_id, 42);
        assert_eq!(u.user_id, Some(7));
    }

    #[test]
    fn an_unknown_kind_is_kept_without_a_user() {
        let u = intake(br#"{"update_id":5,"brand_new_kind":{"x":1}}"#).unwrap();
        assert_eq!((u.update_id, u.user_id), (5, None));
        assert!(intake(b"not json").is_err());
        assert!(intake(br#"{"message":{}}"#).is_err());
    }
}
