//! Limited-time offers to cold and warm leads (SPEC section 8).
//!
//! - [`segment`]: the segment language (pure parser; storage compiles it to SQL).
//! - [`html`]: the marketer's HTML checked against Telegram's HTML parse mode (pure).
//! - [`limiter`]: exact token buckets over the injected clock (pure).
//! - [`draft`]: a broadcast being composed, validated the same way by the CLI and the staff chat.
//! - [`sender`]: the sending engine run by `leadbot run`: starts, progress, completions, recalls.
//! - [`dispatch`]: claims in batches, pacing, requests; [`outcome`]: their outcomes, in batches.
//! - [`progress`]: the progress and final report text (pure).
//! - [`offer`]: the offer button: clicks, score, expiry.
//! - [`flow`]: the staff chat's guided `/broadcast`.
//! - [`cli`]: `leadbot broadcast …`.

pub mod cli;
pub mod dispatch;
pub mod draft;
pub mod flow;
pub mod html;
pub mod limiter;
pub mod offer;
pub mod outcome;
pub mod progress;
pub mod segment;
pub mod sender;
pub mod texts;

use chrono::TimeZone;

use crate::config::Settings;

/// Whether `now_ms` falls in `LEADBOT_QUIET_HOURS` (in `LEADBOT_TIMEZONE`).
pub fn is_quiet(settings: &Settings, now_ms: i64) -> bool {
    let Some(q) = settings.quiet_hours else {
        return false;
    };
    match settings.timezone.timestamp_millis_opt(now_ms).single() {
        Some(t) => q.contains(t.time()),
        None => false,
    }
}

/// Milliseconds from `now_ms` until quiet hours end (0 when not quiet).
pub fn quiet_left_ms(settings: &Settings, now_ms: i64) -> i64 {
    let Some(q) = settings.quiet_hours else {
        return 0;
    };
    let Some(t) = settings.timezone.timestamp_millis_opt(now_ms).single() else {
        return 0;
    };
    if !q.contains(t.time()) {
        return 0;
    }
    let left = (q.to - t.time()).num_milliseconds();
    if left > 0 { left } else { left + 86_400_000 }
}

/// Unix ms → `2026-12-01 14:00` in the business time zone.
pub fn local_time(settings: &Settings, ms: i64) -> String {
    settings
        .timezone
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(quiet: &str) -> Settings {
        let quiet = quiet.to_owned();
        Settings::from_lookup(move |k| match k {
            "LEADBOT_QUIET_HOURS" => Some(quiet.clone()),
            "LEADBOT_TIMEZONE" => Some("Europe/Moscow".into()),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_the_business_time_zone() {
        let s = settings("21:00-09:00");
        // 2026-12-01 18:30 UTC = 21:30 Moscow.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 1, 18, 30, 0)
            .unwrap()
            .timestamp_millis();
        assert!(is_quiet(&s, t));
        assert_eq!(quiet_left_ms(&s, t), 11 * 3_600_000 + 30 * 60_000);
        // 06:00 UTC = 09:00 Moscow: quiet hours are over.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 1, 6, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert!(!is_quiet(&s, t));
        assert!(!is_quiet(&settings("off"), t));
    }
}
