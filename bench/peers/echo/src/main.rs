//! The ceiling: echoes every text, keeps nothing. Bot token and API URL come from
//! TELOXIDE_TOKEN and TELOXIDE_API_URL.

use teloxide::prelude::*;

#[tokio::main]
async fn main() {
    let bot = Bot::from_env();
    teloxide::repl(bot, |bot: Bot, msg: Message| async move {
        if let Some(text) = msg.text() {
            bot.send_message(msg.chat.id, text).await?;
        }
        Ok(())
    })
    .await;
}
