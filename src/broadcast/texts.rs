//! What prospects read about offers and reminders, in Russian and English.

use crate::app::texts::Lang;

/// The unsubscribe button under every offer.
pub fn unsubscribe_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Не присылать предложения",
        Lang::En => "No more offers",
    }
}

/// The notice after an offer button press.
pub fn clicked(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Спасибо! Предложение за вами — менеджер свяжется с вами.",
        Lang::En => "Thank you! The offer is yours, and a manager will contact you.",
    }
}

/// The notice after a second press of the same offer.
pub fn already_clicked(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Мы уже получили ваш ответ на это предложение.",
        Lang::En => "We already have your answer to this offer.",
    }
}

/// The notice after a press once the offer has expired.
pub fn ended(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Это предложение закончилось.",
        Lang::En => "This offer has ended.",
    }
}

/// Asks for a phone after an offer click, when none is known.
pub fn ask_phone(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => {
            "Оставьте, пожалуйста, номер телефона — менеджер позвонит и расскажет о предложении. Нажмите кнопку ниже или напишите номер."
        }
        Lang::En => {
            "Please leave your phone number, and a manager will call you about the offer. Press the button below or type the number."
        }
    }
}

/// The label of the "share my number" button.
pub fn share_phone(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Отправить мой номер",
        Lang::En => "Share my number",
    }
}

/// After the phone was received.
pub fn phone_saved(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Спасибо, номер сохранён. Менеджер скоро свяжется с вами.",
        Lang::En => "Thank you, your number is saved. A manager will contact you soon.",
    }
}

/// The lead-in of a reminder, before the question is asked again.
pub fn reminder_lead_in(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "Напоминаем о нашем разговоре — ответьте, пожалуйста, когда будет удобно.",
        Lang::En => {
            "A gentle reminder about our conversation: please answer whenever it suits you."
        }
    }
}
