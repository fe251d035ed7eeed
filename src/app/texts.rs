//! What the bot itself says to prospects (outside dialogue files), in Russian and English.

/// The language of system texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ru,
    En,
}

impl Lang {
    /// `ru` for Russian locales (and when nothing is known), English otherwise.
    pub fn from_code(code: Option<&str>) -> Lang {
        match code {
            Some(c) if !c.is_empty() && !c.to_ascii_lowercase().starts_with("ru") => Lang::En,
            _ => Lang::Ru,
        }
    }
}

/// A system text by key.
pub fn t(lang: Lang, key: Key) -> &'static str {
    use Key::*;
    match (lang, key) {
        (Lang::Ru, Help) => {
            "Я помогу подобрать решение и передам вашу заявку менеджеру.\n\n\
            Отвечайте на вопросы кнопками или сообщением.\n\
            /start — начать или продолжить\n/stop — не присылать предложения и напоминания\n\
            /mydata — какие данные о вас хранятся\n/forget — удалить ваши данные"
        }
        (Lang::En, Help) => {
            "I will help you find the right option and pass your request to a manager.\n\n\
            Answer with the buttons or a message.\n\
            /start — begin or continue\n/stop — no more offers or reminders\n\
            /mydata — what we store about you\n/forget — erase your data"
        }
        (Lang::Ru, Stopped) => {
            "Готово: больше не будем присылать предложения и напоминания. \
            Если передумаете — нажмите /start."
        }
        (Lang::En, Stopped) => {
            "Done: no more offers or reminders. If you change your mind, press /start."
        }
        (Lang::Ru, Resubscribed) => {
            "Рады, что вы снова с нами! Предложения и напоминания включены."
        }
        (Lang::En, Resubscribed) => "Glad to have you back! Offers and reminders are on again.",
        (Lang::Ru, WelcomeBack) => {
            "С возвращением! Можем начать заново или передать ваш вопрос менеджеру."
        }
        (Lang::En, WelcomeBack) => {
            "Welcome back! We can start over, or pass your question to a manager."
        }
        (Lang::Ru, StartOver) => "Начать заново",
        (Lang::En, StartOver) => "Start over",
        (Lang::Ru, WriteManager) => "Написать менеджеру",
        (Lang::En, WriteManager) => "Write to a manager",
        (Lang::Ru, WriteManagerPrompt) => {
            "Напишите ваш вопрос сюда — менеджер ответит в этом чате."
        }
        (Lang::En, WriteManagerPrompt) => {
            "Write your question here, and a manager will answer in this chat."
        }
        (Lang::Ru, Acknowledged) => "Спасибо, ваше сообщение получено и передано менеджеру.",
        (Lang::En, Acknowledged) => {
            "Thank you, your message has been received and passed to a manager."
        }
        (Lang::Ru, ForgetConfirm) => {
            "Удалить все ваши данные и историю переписки? Это действие нельзя отменить."
        }
        (Lang::En, ForgetConfirm) => {
            "Erase all your data and the conversation history? This cannot be undone."
        }
        (Lang::Ru, ForgetYes) => "Да, удалить",
        (Lang::En, ForgetYes) => "Yes, erase",
        (Lang::Ru, ForgetNo) => "Отмена",
        (Lang::En, ForgetNo) => "Cancel",
        (Lang::Ru, Forgotten) => "Ваши данные удалены. Если захотите вернуться — нажмите /start.",
        (Lang::En, Forgotten) => {
            "Your data has been erased. If you want to come back, press /start."
        }
        (Lang::Ru, ForgetCancelled) => "Хорошо, ничего не удаляем.",
        (Lang::En, ForgetCancelled) => "All right, nothing was erased.",
        (Lang::Ru, UnknownCommand) => "Такой команды я не знаю. /help — что я умею.",
        (Lang::En, UnknownCommand) => "I don't know that command. /help shows what I can do.",
        (Lang::Ru, Edited) => {
            "Вижу, вы отредактировали сообщение — правки я не получаю. \
            Пожалуйста, отправьте ответ новым сообщением."
        }
        (Lang::En, Edited) => {
            "I see you edited a message, but edits don't reach me. \
            Please send your answer as a new message."
        }
        (Lang::Ru, StaleButton) => "Эта кнопка больше не действует.",
        (Lang::En, StaleButton) => "This button is no longer active.",
        (Lang::Ru, Unsubscribed) => "Вы отписаны от предложений. Вернуться — /start.",
        (Lang::En, Unsubscribed) => "You are unsubscribed from offers. To come back, press /start.",
        (Lang::Ru, MyDataCaption) => "Все данные о вас, которые мы храним (JSON).",
        (Lang::En, MyDataCaption) => "Everything we store about you (JSON).",
        (Lang::Ru, NoDialogue) => "Извините, сейчас я не могу начать разговор. Попробуйте позже.",
        (Lang::En, NoDialogue) => {
            "Sorry, I cannot start a conversation right now. Please try later."
        }
        (Lang::Ru, NotForYou) => "Эта кнопка только для менеджеров.",
        (Lang::En, NotForYou) => "This button is for managers only.",
    }
}

/// Keys of [`t`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Help,
    Stopped,
    Resubscribed,
    WelcomeBack,
    StartOver,
    WriteManager,
    WriteManagerPrompt,
    Acknowledged,
    ForgetConfirm,
    ForgetYes,
    ForgetNo,
    Forgotten,
    ForgetCancelled,
    UnknownCommand,
    Edited,
    StaleButton,
    Unsubscribed,
    MyDataCaption,
    NoDialogue,
    NotForYou,
}
