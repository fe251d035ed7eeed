//! Forum topics: when the staff chat is a forum supergroup, each hot lead gets its own topic and
//! every message about the lead goes there.
//!
//! Whether the chat is a forum is learnt from Telegram itself: the first `createForumTopic` either
//! succeeds or is refused with "the chat is not a forum", and the answer is remembered until the
//! process restarts (so turning topics on in Telegram takes effect after a restart).

use std::sync::atomic::{AtomicU8, Ordering};

use super::card::cut;
use crate::storage::leads::Lead;

const UNKNOWN: u8 = 0;
const FORUM: u8 = 1;
const PLAIN: u8 = 2;

/// What the bot knows about the staff chat's topics.
#[derive(Debug, Default)]
pub struct ForumFlag(AtomicU8);

impl ForumFlag {
    /// Whether a topic should be tried for a new lead (a forum, or not known yet).
    pub fn may_be_forum(&self) -> bool {
        self.0.load(Ordering::Relaxed) != PLAIN
    }

    /// Records Telegram's answer to `createForumTopic`.
    pub fn learn(&self, is_forum: bool) {
        let value = if is_forum { FORUM } else { PLAIN };
        if self.0.swap(value, Ordering::Relaxed) != value {
            tracing::info!(is_forum, "learnt whether the staff chat is a forum");
        }
    }

    /// Whether it is known to be a forum.
    pub fn is_forum(&self) -> bool {
        self.0.load(Ordering::Relaxed) == FORUM
    }

    /// Forgets what was learnt (the staff chat changed).
    pub fn forget(&self) {
        self.0.store(UNKNOWN, Ordering::Relaxed);
    }

    /// Not known yet.
    pub fn is_unknown(&self) -> bool {
        self.0.load(Ordering::Relaxed) == UNKNOWN
    }
}

/// The idempotency key of a lead's topic: one per lead, ever.
pub fn topic_key(lead_id: i64) -> String {
    format!("topic:{lead_id}")
}

/// The topic's title: `🔥 #12 Анна` (Telegram allows 1–128 characters).
pub fn topic_name(lead: &Lead) -> String {
    let who = lead
        .name
        .clone()
        .or_else(|| lead.first_name.clone())
        .unwrap_or_default();
    let title = format!("🔥 #{} {}", lead.id, who.trim());
    cut(title.trim(), 100)
}

/// Whether Telegram's error says the chat has no topics.
pub fn is_not_a_forum(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.contains("not a forum") || e.contains("topics are disabled") || e.contains("chat_not_forum")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_starts_unknown_and_remembers_the_answer() {
        let f = ForumFlag::default();
        assert!(f.is_unknown() && f.may_be_forum() && !f.is_forum());
        f.learn(false);
        assert!(!f.may_be_forum());
        f.learn(true);
        assert!(f.is_forum() && f.may_be_forum());
    }

    #[test]
    fn telegram_refusals_are_recognised() {
        assert!(is_not_a_forum("Bad Request: the chat is not a forum"));
        assert!(is_not_a_forum("Bad Request: CHAT_NOT_FORUM"));
        assert!(!is_not_a_forum("Bad Request: TOPIC_TITLE_EMPTY"));
    }
}
