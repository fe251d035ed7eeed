//! What a Rust developer would write by hand: the default dialogue's questions with teloxide's
//! dialogue state kept in its own SqliteStorage (JSON). TELOXIDE_TOKEN, TELOXIDE_API_URL and
//! PEER_SQLITE_PATH configure it.

use serde::{Deserialize, Serialize};
use teloxide::dispatching::dialogue::{SqliteStorage, serializer::Json};
use teloxide::prelude::*;
use teloxide::types::{
    ButtonRequest, InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, KeyboardMarkup,
};

#[derive(Clone, Default, Debug, Serialize, Deserialize)]
struct Answers {
    name: String,
    phone: String,
    need: String,
    timing: String,
}

#[derive(Clone, Default, Debug, Serialize, Deserialize)]
enum State {
    #[default]
    Start,
    Consent,
    Name,
    Phone(Answers),
    Need(Answers),
    Timing(Answers),
    Offers(Answers),
}

type Store = SqliteStorage<Json>;
type Dlg = Dialogue<State, Store>;
type HandlerResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

fn keyboard(prefix: &str, labels: &[&str]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(
        labels
            .iter()
            .enumerate()
            .map(|(i, l)| vec![InlineKeyboardButton::callback(*l, format!("{prefix}:{i}"))]),
    )
}

async fn start(bot: Bot, dialogue: Dlg, msg: Message) -> HandlerResult {
    dialogue.update(State::Consent).await?;
    bot.send_message(msg.chat.id, "Hello! I'll help you find the right option and pass your request to a manager. It takes a minute.").await?;
    bot.send_message(
        msg.chat.id,
        "To contact you we need your consent to process your personal data.",
    )
    .reply_markup(keyboard("consent", &["I agree", "I don't agree"]))
    .await?;
    Ok(())
}

async fn consent(bot: Bot, dialogue: Dlg, q: CallbackQuery) -> HandlerResult {
    bot.answer_callback_query(q.id.clone()).await?;
    let chat = dialogue.chat_id();
    if q.data.as_deref() == Some("consent:0") {
        dialogue.update(State::Name).await?;
        bot.send_message(chat, "What should we call you?").await?;
    } else {
        dialogue.exit().await?;
        bot.send_message(chat, "Understood. If you change your mind, press /start.")
            .await?;
    }
    Ok(())
}

async fn name(bot: Bot, dialogue: Dlg, msg: Message) -> HandlerResult {
    let Some(text) = msg.text() else {
        bot.send_message(msg.chat.id, "Please type your name.")
            .await?;
        return Ok(());
    };
    dialogue
        .update(State::Phone(Answers {
            name: text.to_owned(),
            ..Answers::default()
        }))
        .await?;
    bot.send_message(msg.chat.id, "Leave your phone number and a manager will call you back. Press the button below or type the number.")
        .reply_markup(
            KeyboardMarkup::new(vec![vec![KeyboardButton::new("Share my number").request(ButtonRequest::Contact)]])
                .resize_keyboard()
                .one_time_keyboard(),
        )
        .await?;
    Ok(())
}

async fn phone(bot: Bot, dialogue: Dlg, mut a: Answers, msg: Message) -> HandlerResult {
    let phone = match (msg.contact(), msg.text()) {
        (Some(c), _) => c.phone_number.clone(),
        (None, Some(t)) => t.to_owned(),
        _ => {
            bot.send_message(msg.chat.id, "Please share or type your phone number.")
                .await?;
            return Ok(());
        }
    };
    a.phone = phone;
    dialogue.update(State::Need(a)).await?;
    bot.send_message(msg.chat.id, "Which is closer to you right now?")
        .reply_markup(keyboard(
            "need",
            &[
                "Just looking",
                "Comparing options",
                "Ready to buy, need an invoice",
            ],
        ))
        .await?;
    Ok(())
}

async fn need(bot: Bot, dialogue: Dlg, mut a: Answers, q: CallbackQuery) -> HandlerResult {
    bot.answer_callback_query(q.id.clone()).await?;
    a.need = q.data.unwrap_or_default();
    dialogue.update(State::Timing(a)).await?;
    bot.send_message(dialogue.chat_id(), "When are you planning to buy?")
        .reply_markup(keyboard(
            "timing",
            &["This month", "Within 3 months", "Not sure yet"],
        ))
        .await?;
    Ok(())
}

async fn timing(bot: Bot, dialogue: Dlg, mut a: Answers, q: CallbackQuery) -> HandlerResult {
    bot.answer_callback_query(q.id.clone()).await?;
    a.timing = q.data.unwrap_or_default();
    dialogue.update(State::Offers(a)).await?;
    bot.send_message(
        dialogue.chat_id(),
        "May we send you special offers? No more than twice a week.",
    )
    .reply_markup(keyboard("offers", &["Yes, please", "No, thanks"]))
    .await?;
    Ok(())
}

async fn offers(bot: Bot, dialogue: Dlg, q: CallbackQuery) -> HandlerResult {
    bot.answer_callback_query(q.id.clone()).await?;
    dialogue.exit().await?;
    bot.send_message(
        dialogue.chat_id(),
        "Thank you! We'll send you a selection and our best terms.",
    )
    .await?;
    Ok(())
}

async fn other(bot: Bot, msg: Message) -> HandlerResult {
    bot.send_message(msg.chat.id, "Please use the buttons above.")
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let bot = Bot::from_env();
    let path = std::env::var("PEER_SQLITE_PATH").unwrap_or_else(|_| "peer-dialogue.sqlite".into());
    let storage = match Store::open(&path, Json).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot open {path}: {e}");
            std::process::exit(1);
        }
    };
    let handler = dptree::entry()
        .branch(
            Update::filter_message()
                .enter_dialogue::<Message, Store, State>()
                .branch(dptree::case![State::Start].endpoint(start))
                .branch(dptree::case![State::Name].endpoint(name))
                .branch(dptree::case![State::Phone(a)].endpoint(phone))
                .branch(dptree::endpoint(other)),
        )
        .branch(
            Update::filter_callback_query()
                .enter_dialogue::<CallbackQuery, Store, State>()
                .branch(dptree::case![State::Consent].endpoint(consent))
                .branch(dptree::case![State::Need(a)].endpoint(need))
                .branch(dptree::case![State::Timing(a)].endpoint(timing))
                .branch(dptree::case![State::Offers(a)].endpoint(offers)),
        );
    Dispatcher::builder(bot, handler)
        .dependencies(dptree::deps![storage])
        .default_handler(|_| async {})
        .build()
        .dispatch()
        .await;
}
