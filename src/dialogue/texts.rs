//! The engine's own words: hints after an unexpected answer and button labels, per language.
//!
//! Russian for `locale: ru`, English for everything else; plain text, polite, short.

use super::{MediaKind, Rejection};

/// The texts the engine adds to a dialogue's own.
#[derive(Debug)]
pub struct Texts {
    /// The reply-keyboard button that shares the user's phone number.
    pub share_number: &'static str,
    /// Said after a shared or typed phone when the next question has buttons of its own.
    pub phone_saved: &'static str,
    not_a_choice: &'static str,
    stale_button: &'static str,
    invalid_phone: &'static str,
    foreign_contact: &'static str,
    invalid_email: &'static str,
    invalid_name: &'static str,
    invalid_number: &'static str,
    empty_text: &'static str,
    too_long: &'static str,
    unsupported: fn(MediaKind) -> String,
}

const RU: Texts = Texts {
    share_number: "📱 Отправить номер",
    phone_saved: "Спасибо, номер записан.",
    not_a_choice: "Пожалуйста, выберите вариант кнопкой ниже.",
    stale_button: "Эта кнопка уже не действует. Пожалуйста, ответьте на вопрос ниже.",
    invalid_phone: "Не получилось разобрать номер. Напишите его, например, так: +7 912 345-67-89.",
    foreign_contact: "Похоже, это чужой контакт. Нажмите «📱 Отправить номер» или напишите свой номер.",
    invalid_email: "Похоже, в адресе ошибка. Напишите e-mail, например: name@example.com.",
    invalid_name: "Напишите, пожалуйста, имя буквами — до 64 символов.",
    invalid_number: "Напишите, пожалуйста, число, например 1500 или 2,5.",
    empty_text: "Напишите, пожалуйста, ответ текстом.",
    too_long: "Сообщение слишком длинное. Пожалуйста, ответьте короче.",
    unsupported: ru_unsupported,
};

const EN: Texts = Texts {
    share_number: "📱 Share my number",
    phone_saved: "Thank you, your number is saved.",
    not_a_choice: "Please choose one of the buttons below.",
    stale_button: "That button is no longer active. Please answer the question below.",
    invalid_phone: "I couldn't read that number. Please type it with the country code, e.g. +44 20 7946 0958.",
    foreign_contact: "That looks like someone else's contact. Press \"📱 Share my number\" or type your own number.",
    invalid_email: "That address doesn't look right. Please type an e-mail like name@example.com.",
    invalid_name: "Please type your name in letters, up to 64 characters.",
    invalid_number: "Please type a number, e.g. 1500 or 2.5.",
    empty_text: "Please type your answer.",
    too_long: "That message is too long. Please answer more briefly.",
    unsupported: en_unsupported,
};

fn ru_unsupported(kind: MediaKind) -> String {
    let what = match kind {
        MediaKind::Sticker => "стикеры",
        MediaKind::Photo => "фото",
        MediaKind::Voice => "голосовые сообщения",
        MediaKind::Video => "видео",
        MediaKind::Audio => "аудио",
        MediaKind::Document => "файлы",
        MediaKind::Location => "геопозицию",
        MediaKind::Other => "такие сообщения",
    };
    format!("Я пока не умею читать {what} — пожалуйста, ответьте текстом или кнопкой.")
}

fn en_unsupported(kind: MediaKind) -> String {
    let what = match kind {
        MediaKind::Sticker => "stickers",
        MediaKind::Photo => "photos",
        MediaKind::Voice => "voice messages",
        MediaKind::Video => "videos",
        MediaKind::Audio => "audio",
        MediaKind::Document => "files",
        MediaKind::Location => "locations",
        MediaKind::Other => "this kind of message",
    };
    format!("I can't read {what} yet — please answer with text or a button.")
}

impl Texts {
    /// The texts for a dialogue's locale (`ru`, `ru-RU` → Russian; anything else → English).
    pub fn for_locale(locale: &str) -> &'static Texts {
        if primary_subtag(locale).eq_ignore_ascii_case("ru") {
            &RU
        } else {
            &EN
        }
    }

    /// The hint that explains a rejection.
    pub fn hint(&self, rejection: &Rejection) -> String {
        match rejection {
            Rejection::NotAChoice => self.not_a_choice.to_owned(),
            Rejection::StaleButton => self.stale_button.to_owned(),
            Rejection::InvalidPhone => self.invalid_phone.to_owned(),
            Rejection::ForeignContact => self.foreign_contact.to_owned(),
            Rejection::InvalidEmail => self.invalid_email.to_owned(),
            Rejection::InvalidName => self.invalid_name.to_owned(),
            Rejection::InvalidNumber => self.invalid_number.to_owned(),
            Rejection::EmptyText => self.empty_text.to_owned(),
            Rejection::TooLong => self.too_long.to_owned(),
            Rejection::Unsupported(kind) => (self.unsupported)(*kind),
        }
    }
}

/// The language part of a language tag: `ru-RU` → `ru`.
pub fn primary_subtag(tag: &str) -> &str {
    tag.split(['-', '_']).next().unwrap_or(tag).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_locales_get_russian_texts_and_others_english() {
        assert_eq!(Texts::for_locale("ru").share_number, "📱 Отправить номер");
        assert_eq!(
            Texts::for_locale("ru-RU").share_number,
            "📱 Отправить номер"
        );
        assert_eq!(Texts::for_locale("en").share_number, "📱 Share my number");
        assert_eq!(Texts::for_locale("de").share_number, "📱 Share my number");
    }

    #[test]
    fn the_media_hint_names_what_was_sent() {
        let hint = Texts::for_locale("ru").hint(&Rejection::Unsupported(MediaKind::Sticker));
        assert!(
            hint.starts_with("Я пока не умею читать стикеры — "),
            "{hint}"
        );
        let hint = Texts::for_locale("en").hint(&Rejection::Unsupported(MediaKind::Voice));
        assert!(hint.contains("voice messages"), "{hint}");
    }
}
