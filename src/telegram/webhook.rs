//! Webhook mode: registering the endpoint with Telegram, removing it before polling again, and
//! reading the updates Telegram POSTs.

use teloxide::payloads::{DeleteWebhookSetters, SetWebhookSetters};
use teloxide::prelude::Requester;
use teloxide::types::AllowedUpdate;

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

/// Reads a webhook request body: the update to store, with its user, and what it means.
pub fn intake(body: &[u8]) -> Result<super::update::Received, &'static str> {
    let raw = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8")?;
    super::update::decode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_update_names_its_user() {
        let body = br#"{"update_id":42,"message":{"message_id":1,"date":1700000000,
            "chat":{"id":7,"type":"private","first_name":"A"},
            "from":{"id":7,"is_bot":false,"first_name":"A"},"text":"hi"}}"#;
        let u = intake(body).unwrap().incoming;
        assert_eq!(u.update_id, 42);
        assert_eq!(u.user_id, Some(7));
    }

    #[test]
    fn an_unknown_kind_is_kept_without_a_user() {
        let u = intake(br#"{"update_id":5,"brand_new_kind":{"x":1}}"#)
            .unwrap()
            .incoming;
        assert_eq!((u.update_id, u.user_id), (5, None));
        assert!(intake(b"not json").is_err());
        assert!(intake(b"{\"update_id\":1,\"x\":\"\xff\"}").is_err());
        assert!(intake(br#"{"message":{}}"#).is_err());
    }
}
