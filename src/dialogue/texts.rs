//! The engine's own words (hints on bad input, button labels), in Russian and English.

use super::{MediaKind, Rejection};

/// Whether a dialogue speaks Russian (otherwise the engine's words are English).
pub fn is_ru(locale: &str) -> bool {
    locale.to_ascii_lowercase().starts_with("ru")
}

/// The label of the "share my number" button.
pub fn share_phone(locale: &str) -> &'static str {
    if is_ru(locale) {
        "📱 Отправить мой номер"
    } else {
        "📱 Share my number"
    }
}

/// A short, specific hint for an input that was not accepted.
pub fn hint(locale: &str, r: &Rejection) -> String {
    let ru = is_ru(locale);
    let s = match r {
        Rejection::NotAChoice if ru => "Пожалуйста, выберите один из вариантов кнопкой ниже.",
        Rejection::NotAChoice => "Please choose one of the options with the buttons below.",
        Rejection::StaleButton if ru => {
            "Эта кнопка относится к прошлому вопросу. Ответьте, пожалуйста, на этот:"
        }
        Rejection::StaleButton => {
            "That button belongs to an earlier question. Please answer this one:"
        }
        Rejection::InvalidPhone if ru => {
            "Не получилось распознать номер. Напишите его в формате +7 912 345-67-89 или нажмите кнопку «Отправить мой номер»."
        }
        Rejection::InvalidPhone => {
            "I couldn't read that number. Please type it like +44 20 7946 0958 or press “Share my number”."
        }
        Rejection::ForeignContact if ru => {
            "Это чужой контакт. Пожалуйста, отправьте свой номер — кнопкой ниже или текстом."
        }
        Rejection::ForeignContact => {
            "That is someone else's contact. Please send your own number — with the button below or as text."
        }
        Rejection::InvalidEmail if ru => {
            "Похоже, в адресе ошибка. Напишите e-mail в виде name@example.com."
        }
        Rejection::InvalidEmail => {
            "That address looks mistyped. Please write it like name@example.com."
        }
        Rejection::InvalidName if ru => "Напишите, пожалуйста, имя — от 1 до 64 символов.",
        Rejection::InvalidName => "Please write a name of 1 to 64 characters.",
        Rejection::InvalidNumber if ru => "Нужно число, например 1500 или 1 500,50.",
        Rejection::InvalidNumber => "Please send a number, for example 1500 or 1,500.50.",
        Rejection::EmptyText if ru => "Напишите, пожалуйста, ответ текстом.",
        Rejection::EmptyText => "Please write your answer as text.",
        Rejection::TooLong if ru => {
            "Сообщение слишком длинное. Пожалуйста, ответьте короче (до 4096 символов)."
        }
        Rejection::TooLong => {
            "That message is too long. Please answer more briefly (up to 4096 characters)."
        }
        Rejection::Unsupported(kind) => return unsupported(ru, *kind),
    };
    s.to_owned()
}

fn unsupported(ru: bool, kind: MediaKind) -> String {
    let what = match (ru, kind) {
        (true, MediaKind::Sticker) => "стикеры",
        (true, MediaKind::Photo) => "фотографии",
        (true, MediaKind::Voice) => "голосовые сообщения",
        (true, MediaKind::Video) => "видео",
        (true, MediaKind::Audio) => "аудио",
        (true, MediaKind::Document) => "файлы",
        (true, MediaKind::Location) => "геопозицию",
        (true, MediaKind::Other) => "такие сообщения",
        (false, MediaKind::Sticker) => "stickers",
        (false, MediaKind::Photo) => "photos",
        (false, MediaKind::Voice) => "voice messages",
        (false, MediaKind::Video) => "videos",
        (false, MediaKind::Audio) => "audio",
        (false, MediaKind::Document) => "files",
        (false, MediaKind::Location) => "locations",
        (false, MediaKind::Other) => "messages like that",
    };
    if ru {
        format!("Я пока не умею читать {what}. Ответьте, пожалуйста, текстом или кнопкой.")
    } else {
        format!("I can't read {what} yet. Please answer with text or a button.")
    }
}
