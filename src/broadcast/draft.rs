//! A broadcast being composed, checked the same way by `leadbot broadcast create` and the staff
//! chat's `/broadcast` flow (pure).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::html::{self, HtmlError};
use super::segment::{Segment, SegmentError};

/// Default offer lifetime when no expiry is given.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(48 * 3600);
/// Default points an offer click adds.
pub const DEFAULT_SCORE: i32 = 30;
/// Telegram's limit on a button label.
pub const MAX_BUTTON: usize = 64;

/// When the offer ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// This long after the start.
    In(Duration),
    /// At this time (Unix ms).
    At(i64),
}

/// What the marketer typed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    pub text: String,
    pub button: Option<String>,
    pub segment: String,
    pub score: Option<i32>,
    /// Unix ms; `None`: now.
    pub start_at: Option<i64>,
    /// `None`: 48 hours after the start.
    pub expires: Option<Expiry>,
}

/// A draft that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Valid {
    pub text: String,
    pub button: Option<String>,
    pub segment: Segment,
    pub score: i32,
    pub start_at: i64,
    pub expires_at: i64,
}

/// Why a draft was refused, for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("text: {0}")]
    Text(HtmlError),
    #[error("button: {0}")]
    Button(String),
    #[error("segment: {0}")]
    Segment(SegmentError),
    #[error("{0}")]
    Time(String),
    #[error("score: {0}")]
    Score(String),
}

/// Checks every part of a draft at `now`.
pub fn validate(d: &Draft, now: i64) -> Result<Valid, DraftError> {
    html::check(&d.text).map_err(DraftError::Text)?;
    let button = match d.button.as_deref().map(str::trim) {
        None => None,
        Some(b) => {
            let n = b.chars().count();
            if n == 0 || n > MAX_BUTTON {
                return Err(DraftError::Button(format!(
                    "a button label is 1 to {MAX_BUTTON} characters, this one has {n}"
                )));
            }
            if b.chars().any(char::is_control) {
                return Err(DraftError::Button(
                    "a button label is one line of text".into(),
                ));
            }
            Some(b.to_owned())
        }
    };
    let segment = Segment::parse(&d.segment).map_err(DraftError::Segment)?;
    let score = d.score.unwrap_or(DEFAULT_SCORE);
    if !(0..=1000).contains(&score) {
        return Err(DraftError::Score(format!(
            "expected 0 to 1000 points, got {score}"
        )));
    }
    let start_at = d.start_at.unwrap_or(now);
    if start_at < now - 60_000 {
        return Err(DraftError::Time("the start time is in the past".into()));
    }
    let start_at = start_at.max(now);
    let expires_at = match &d.expires {
        None => start_at + ms(DEFAULT_LIFETIME),
        Some(Expiry::In(dur)) => start_at + ms(*dur),
        Some(Expiry::At(t)) => *t,
    };
    if expires_at <= start_at {
        return Err(DraftError::Time(
            "the offer would expire before it starts: the expiry must come after the start".into(),
        ));
    }
    Ok(Valid {
        text: d.text.clone(),
        button,
        segment,
        score,
        start_at,
        expires_at,
    })
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// An RFC 3339 time → Unix ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            format!("expected an RFC 3339 time such as 2026-12-01T10:00:00+03:00, got {s:?}")
        })
}

/// `48h`, `2d` → a lifetime.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
        .ok_or_else(|| format!("expected a duration such as 48h, 2d or 1w, got {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            text: "<b>−20%</b> до пятницы".into(),
            button: Some("Хочу скидку".into()),
            segment: "temperature=cold|warm".into(),
            ..Draft::default()
        }
    }

    #[test]
    fn a_good_draft_gets_defaults() {
        let v = validate(&draft(), 1_000_000).unwrap();
        assert_eq!(v.start_at, 1_000_000);
        assert_eq!(v.expires_at, 1_000_000 + 48 * 3_600_000);
        assert_eq!(v.score, 30);
    }

    #[test]
    fn each_bad_part_is_named() {
        let now = 10_000_000;
        let bad = [
            (
                Draft {
                    text: "<div>x</div>".into(),
                    ..draft()
                },
                "text:",
            ),
            (
                Draft {
                    button: Some("x".repeat(65)),
                    ..draft()
                },
                "button:",
            ),
            (
                Draft {
                    segment: "temp=cold".into(),
                    ..draft()
                },
                "segment:",
            ),
            (
                Draft {
                    start_at: Some(now - 3_600_000),
                    ..draft()
                },
                "past",
            ),
            (
                Draft {
                    expires: Some(Expiry::At(now - 1)),
                    ..draft()
                },
                "expire",
            ),
            (
                Draft {
                    score: Some(-5),
                    ..draft()
                },
                "score:",
            ),
        ];
        for (d, words) in bad {
            let e = validate(&d, now).unwrap_err().to_string();
            assert!(e.contains(words), "{e}");
        }
    }
}
