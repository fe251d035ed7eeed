//! The alert card managers get when a lead turns hot (pure text rendering).

use crate::dialogue::ScoreItem;
use crate::domain::CallbackData;
use crate::outbox::{Button, Markup};

/// Everything the card shows.
#[derive(Clone, Debug, Default)]
pub struct Card {
    pub lead_id: i64,
    pub name: Option<String>,
    pub telegram_name: Option<String>,
    pub username: Option<String>,
    pub telegram_id: Option<i64>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub source: String,
    /// Questions with the answers given, in dialogue order.
    pub answers: Vec<(String, String)>,
    pub breakdown: Vec<ScoreItem>,
    pub score: i32,
    pub temperature: String,
    pub first_contact_ms: i64,
    pub now_ms: i64,
    /// The manager who took it and when (ms).
    pub owner: Option<(String, i64)>,
    /// `in_work`, `won`, `lost`... for the status line.
    pub status: String,
}

/// Telegram's limit, with room to spare for the status line edits add.
const MAX_LEN: usize = 3900;
const MAX_ANSWER: usize = 300;

/// Escapes text for Telegram's HTML parse mode.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A temperature as managers read it in the staff chat (`hot` → `горячий`); an unknown one as stored.
pub fn temperature_name(t: &str) -> &str {
    match t {
        "hot" => "горячий",
        "warm" => "тёплый",
        "cold" => "холодный",
        other => other,
    }
}

/// A lead's status as managers read it in the staff chat (`in_work` → `в работе`); an unknown one as
/// stored.
pub fn status_name(s: &str) -> &str {
    match s {
        "new" => "новый",
        "qualifying" => "в диалоге",
        "qualified" => "квалифицирован",
        "in_work" => "в работе",
        "won" => "выигран",
        "lost" => "проигран",
        other => other,
    }
}

/// Cuts a text to `max` characters with an ellipsis.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// "5 мин", "2 ч 10 мин", "3 дн".
pub fn since(from_ms: i64, now_ms: i64) -> String {
    let mins = (now_ms - from_ms).max(0) / 60_000;
    match mins {
        0 => "меньше минуты".to_owned(),
        m if m < 60 => format!("{m} мин"),
        m if m < 24 * 60 => format!("{} ч {} мин", m / 60, m % 60),
        m => format!("{} дн", m / (24 * 60)),
    }
}

fn breakdown_line(items: &[ScoreItem]) -> String {
    items
        .iter()
        .map(|i| {
            if i.hot {
                format!("🔥 {}: {}", i.step, i.answer)
            } else if i.points >= 0 {
                format!("+{} {}: {}", i.points, i.step, i.answer)
            } else {
                format!("{} {}: {}", i.points, i.step, i.answer)
            }
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The card in Telegram HTML; every user-supplied string is escaped.
pub fn html(c: &Card) -> String {
    render(c, true)
}

/// The card as plain text (for the terminal).
pub fn plain(c: &Card) -> String {
    render(c, false)
}

fn render(c: &Card, html: bool) -> String {
    let esc = |s: &str| if html { escape_html(s) } else { s.to_owned() };
    let bold = |s: &str| {
        if html {
            format!("<b>{s}</b>")
        } else {
            s.to_owned()
        }
    };
    let dash = "—".to_owned();
    let who = c
        .name
        .clone()
        .or_else(|| c.telegram_name.clone())
        .unwrap_or_else(|| format!("#{}", c.lead_id));
    let mut head = format!("🔥 {} #{}\n", bold("Горячий лид"), c.lead_id);
    head.push_str(&format!("{} {}\n", bold("Имя:"), esc(&cut(&who, 64))));
    let link = match (c.telegram_id, &c.username) {
        (_, Some(u)) if html => format!("<a href=\"https://t.me/{}\">@{}</a>", esc(u), esc(u)),
        (_, Some(u)) => format!("@{u} (https://t.me/{u})"),
        (Some(id), None) if html => format!(
            "<a href=\"tg://user?id={id}\">{}</a>",
            esc(&cut(c.telegram_name.as_deref().unwrap_or("профиль"), 64))
        ),
        (Some(id), None) => format!("tg://user?id={id}"),
        (None, None) => dash.clone(),
    };
    head.push_str(&format!("{} {}\n", bold("Telegram:"), link));
    head.push_str(&format!(
        "{} {}\n",
        bold("Телефон:"),
        esc(c.phone.as_deref().unwrap_or("—"))
    ));
    head.push_str(&format!(
        "{} {}\n",
        bold("E-mail:"),
        esc(c.email.as_deref().unwrap_or("—"))
    ));
    head.push_str(&format!("{} {}\n", bold("Источник:"), esc(&c.source)));
    head.push_str(&format!(
        "{} {} · {} {}\n",
        bold("Оценка:"),
        c.score,
        esc(temperature_name(&c.temperature)),
        esc(&format!(
            "· первый контакт {} назад",
            since(c.first_contact_ms, c.now_ms)
        ))
    ));
    let why = breakdown_line(&c.breakdown);
    let why_line = format!("{} {}\n", bold("Почему горячий:"), esc(&cut(&why, 600)));
    let mut tail = String::new();
    match (&c.owner, c.status.as_str()) {
        (_, "won") => tail.push_str(&format!("\n✅ {}", bold("Сделка выиграна"))),
        (_, "lost") => tail.push_str(&format!("\n❌ {}", bold("Сделка проиграна"))),
        _ => {}
    }
    if let Some((owner, at)) = &c.owner {
        let when = chrono::DateTime::from_timestamp_millis(*at)
            .map(|d| d.format("%d.%m %H:%M UTC").to_string())
            .unwrap_or_default();
        tail.push_str(&format!(
            "\n👤 {} {} ({})",
            bold("Взял:"),
            esc(&cut(owner, 64)),
            when
        ));
    }
    let mut body = String::new();
    if !c.answers.is_empty() {
        body.push('\n');
        body.push_str(&bold("Ответы:"));
        body.push('\n');
    }
    let budget = MAX_LEN.saturating_sub(
        head.chars().count() + why_line.chars().count() + tail.chars().count() + 20,
    );
    for (q, a) in &c.answers {
        let line = format!("• {} — {}\n", esc(&cut(q, 120)), esc(&cut(a, MAX_ANSWER)));
        if body.chars().count() + line.chars().count() > budget {
            body.push_str("…\n");
            break;
        }
        body.push_str(&line);
    }
    format!("{head}{why_line}{body}{tail}")
        .trim_end()
        .to_owned()
}

/// The card's buttons for a lead's status: Take while unclaimed, Won/Lost until closed.
pub fn buttons(lead_id: i64, status: &str, taken: bool) -> Markup {
    if matches!(status, "won" | "lost") {
        return Markup::Inline { rows: vec![] };
    }
    let mut row = Vec::new();
    if !taken {
        row.push(Button {
            text: "✋ Взять".into(),
            data: CallbackData::Take(lead_id).to_string(),
        });
    }
    row.push(Button {
        text: "✅ Выиграна".into(),
        data: CallbackData::Won(lead_id).to_string(),
    });
    row.push(Button {
        text: "❌ Проиграна".into(),
        data: CallbackData::Lost(lead_id).to_string(),
    });
    Markup::Inline { rows: vec![row] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Card {
        Card {
            lead_id: 7,
            name: Some("<b>Boss</b> & *_[".into()),
            telegram_name: Some("Иван".into()),
            username: None,
            telegram_id: Some(42),
            phone: Some("+79123456789".into()),
            email: None,
            source: "vk_ads".into(),
            answers: vec![("Когда планируете покупку?".into(), "В этом месяце".into())],
            breakdown: vec![
                ScoreItem {
                    step: "timing".into(),
                    answer: "В этом месяце".into(),
                    points: 40,
                    hot: false,
                },
                ScoreItem {
                    step: "need".into(),
                    answer: "Готов купить".into(),
                    points: 0,
                    hot: true,
                },
            ],
            score: 50,
            temperature: "hot".into(),
            first_contact_ms: 0,
            now_ms: 5 * 60_000,
            owner: None,
            status: "qualified".into(),
        }
    }

    #[test]
    fn hostile_names_are_escaped_in_html() {
        let h = html(&card());
        assert!(h.contains("&lt;b&gt;Boss&lt;/b&gt; &amp; *_["), "{h}");
        assert!(!h.contains("<b>Boss"));
        assert!(h.contains("+40 timing: В этом месяце"));
        assert!(h.contains("🔥 need: Готов купить"));
        assert!(h.contains("5 мин"));
        assert!(h.contains("50 · горячий ·"), "{h}");
    }

    #[test]
    fn temperatures_and_statuses_read_in_russian_and_unknown_ones_as_stored() {
        assert_eq!(temperature_name("warm"), "тёплый");
        assert_eq!(temperature_name("cold"), "холодный");
        assert_eq!(status_name("in_work"), "в работе");
        assert_eq!(status_name("qualifying"), "в диалоге");
        assert_eq!(status_name("<odd>"), "<odd>");
    }

    #[test]
    fn long_answers_keep_the_card_under_the_limit() {
        let mut c = card();
        c.answers = (0..100)
            .map(|i| (format!("Вопрос {i}"), "x".repeat(5000)))
            .collect();
        let h = html(&c);
        assert!(h.chars().count() <= 4096, "{}", h.chars().count());
        assert!(h.contains('…'));
    }

    #[test]
    fn buttons_follow_the_status() {
        let Markup::Inline { rows } = buttons(7, "qualified", false) else {
            panic!()
        };
        assert_eq!(rows[0].len(), 3);
        let Markup::Inline { rows } = buttons(7, "in_work", true) else {
            panic!()
        };
        assert_eq!(rows[0].len(), 2);
        let Markup::Inline { rows } = buttons(7, "won", true) else {
            panic!()
        };
        assert!(rows.is_empty());
    }
}
