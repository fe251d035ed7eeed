//! The progress line of a broadcast and its final report (pure): used for the staff-chat
//! message and for `leadbot broadcast show`.

use crate::storage::broadcasts::{self as store, Broadcast, Counts};
use crate::storage::{Db, StorageError};

/// A snapshot of a broadcast, ready to print.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub id: i64,
    pub status: String,
    pub counts: Counts,
    /// Messages per second over the recent window.
    pub rate: f64,
    /// Seconds until every pending recipient is served, at the current rate.
    pub eta_secs: Option<i64>,
    pub paused: Option<String>,
}

impl Progress {
    /// Builds a snapshot; `recent` is how many were sent in the last `window_ms`.
    pub fn new(
        b: &Broadcast,
        counts: Counts,
        recent: i64,
        window_ms: i64,
        paused: Option<String>,
    ) -> Progress {
        let rate = if window_ms > 0 {
            recent as f64 * 1000.0 / window_ms as f64
        } else {
            0.0
        };
        let left = counts.pending + counts.sending;
        let eta_secs = if left == 0 {
            Some(0)
        } else if rate > 0.0 {
            Some((left as f64 / rate).ceil() as i64)
        } else {
            None
        };
        Progress {
            id: b.id,
            status: b.status.clone(),
            counts,
            rate,
            eta_secs,
            paused,
        }
    }

    /// Whether the broadcast has stopped sending.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "done" | "cancelled")
    }
}

/// `1 ч 05 мин`, `42 с`.
pub fn human_secs(s: i64) -> String {
    let s = s.max(0);
    if s >= 3600 {
        format!("{} ч {:02} мин", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} мин {:02} с", s / 60, s % 60)
    } else {
        format!("{s} с")
    }
}

fn status_ru(s: &str) -> &str {
    match s {
        "scheduled" => "запланирована",
        "running" => "идёт",
        "done" => "завершена",
        "cancelled" => "отменена",
        other => other,
    }
}

/// The staff-chat text (plain).
pub fn render(p: &Progress) -> String {
    let c = &p.counts;
    let served = c.sent + c.failed + c.blocked + c.unknown + c.skipped;
    let pct = if c.total > 0 {
        served * 100 / c.total
    } else {
        100
    };
    let mut s = format!(
        "📣 Рассылка #{} — {}\nОтправлено: {}/{} ({pct}%)\nОшибки: {} · заблокировали бота: {} · неизвестно: {} · пропущено: {}",
        p.id,
        status_ru(&p.status),
        c.sent,
        c.total,
        c.failed,
        c.blocked,
        c.unknown,
        c.skipped,
    );
    if c.expired > 0 || c.cancelled > 0 {
        s.push_str(&format!(
            "\nНе отправлено (истекло/отменено): {}",
            c.expired + c.cancelled
        ));
    }
    if !p.is_final() {
        s.push_str(&format!("\nСкорость: {:.1} сообщ./с", p.rate));
        match p.eta_secs {
            Some(e) => s.push_str(&format!(" · осталось ≈ {}", human_secs(e))),
            None => s.push_str(" · осталось: —"),
        }
        if let Some(why) = &p.paused {
            s.push_str(&format!("\n⏸ {why}"));
        }
    } else {
        s.push_str(&format!(
            "\nНажатий на кнопку: {} · стали горячими: {}",
            c.clicks, c.turned_hot
        ));
    }
    if c.recalled > 0 {
        s.push_str(&format!("\nОтозвано (удалено) сообщений: {}", c.recalled));
    }
    s
}

/// The `leadbot broadcast show` text (English, for the terminal).
pub fn render_cli(b: &Broadcast, p: &Progress, start: &str, expires: &str) -> String {
    let c = &p.counts;
    let mut s = format!(
        "broadcast #{id}: {status}\nsegment: {seg}\nbutton: {button}\nstarts: {start}\nexpires: {expires}\n\
         sent: {sent}/{total}\nfailed: {failed}\nblocked: {blocked}\nunknown: {unknown}\nskipped: {skipped}\n\
         pending: {pending}\nrate: {rate:.1} msg/s\neta: {eta}\nclicks: {clicks}\nturned hot: {hot}\n",
        id = b.id,
        status = b.status,
        seg = b.segment,
        button = b.button.as_deref().unwrap_or("(none)"),
        sent = c.sent,
        total = c.total,
        failed = c.failed,
        blocked = c.blocked,
        unknown = c.unknown,
        skipped = c.skipped,
        pending = c.pending + c.sending,
        rate = p.rate,
        eta = p
            .eta_secs
            .map(|e| format!("{e}s"))
            .unwrap_or_else(|| "-".into()),
        clicks = c.clicks,
        hot = c.turned_hot,
    );
    if c.expired + c.cancelled > 0 {
        s.push_str(&format!(
            "not sent (expired or cancelled): {}\n",
            c.expired + c.cancelled
        ));
    }
    if b.recall_requested_at.is_some() {
        s.push_str(&format!("recalled (deleted): {}\n", c.recalled));
    }
    s
}

/// Broadcast results for `leadbot stats` and `/stats`: the latest broadcasts created since
/// `since` (ms), with sends, clicks and leads that turned hot.
pub async fn results(db: &Db, since: i64) -> Result<String, StorageError> {
    let list: Vec<Broadcast> = store::list(db, 20)
        .await?
        .into_iter()
        .filter(|b| b.created_at >= since)
        .collect();
    if list.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from("Рассылки (отправлено / нажатий / стали горячими):\n");
    for b in list {
        let c = store::counts(db, b.id).await?;
        out.push_str(&format!(
            "  #{} {}: {}/{} / {} / {}\n",
            b.id,
            status_ru(&b.status),
            c.sent,
            c.total,
            c.clicks,
            c.turned_hot
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broadcast(status: &str) -> Broadcast {
        Broadcast {
            id: 7,
            text: "x".into(),
            button: None,
            segment: "all".into(),
            score: 30,
            status: status.into(),
            start_at: 0,
            expires_at: 1,
            created_at: 0,
            created_by: None,
            started_at: Some(0),
            finished_at: None,
            cancelled_at: None,
            recall_requested_at: None,
            total: 100,
            paused_until: None,
            progress_message_id: None,
            progress_at: None,
        }
    }

    #[test]
    fn running_progress_shows_rate_and_eta() {
        let counts = Counts {
            total: 100,
            sent: 40,
            pending: 60,
            failed: 0,
            ..Counts::default()
        };
        let p = Progress::new(&broadcast("running"), counts, 50, 10_000, None);
        assert_eq!(p.eta_secs, Some(12));
        let text = render(&p);
        assert!(text.contains("Отправлено: 40/100 (40%)"), "{text}");
        assert!(text.contains("5.0 сообщ./с"), "{text}");
        assert!(text.contains("12 с"), "{text}");
        assert!(!text.contains("Нажатий"), "{text}");
    }

    #[test]
    fn the_final_report_adds_clicks_and_hot_leads() {
        let counts = Counts {
            total: 3,
            sent: 2,
            blocked: 1,
            clicks: 2,
            turned_hot: 1,
            ..Counts::default()
        };
        let p = Progress::new(&broadcast("done"), counts, 0, 10_000, None);
        let text = render(&p);
        assert!(
            text.contains("Нажатий на кнопку: 2 · стали горячими: 1"),
            "{text}"
        );
        assert!(text.contains("заблокировали бота: 1"), "{text}");
    }
}
