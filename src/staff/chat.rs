//! The managers' chat, whose id changes when Telegram upgrades the group to a supergroup (turning
//! on topics, making it public or passing 200 members does). The bot follows the upgrade at once,
//! from the service message Telegram posts or from the first send refused with the new id, so
//! that alerts keep arriving; `LEADBOT_STAFF_CHAT_ID` should be set to the new id, but the old one
//! still works (start-up follows it too).

use std::sync::atomic::{AtomicI64, Ordering};

/// The staff chat's current id.
#[derive(Debug)]
pub struct StaffChat(AtomicI64);

/// What an upgrade of the group `from` to `to` meant for the staff chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// The staff chat moved to `to` now.
    Followed,
    /// It had moved to `to` already (another message of the old chat).
    Known,
    /// Not the staff chat's upgrade.
    Other,
}

impl StaffChat {
    pub fn new(id: i64) -> Self {
        Self(AtomicI64::new(id))
    }

    /// The id to send to and to recognise managers' messages by.
    pub fn id(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Follows the group `from` becoming the supergroup `to`.
    pub fn follow(&self, from: i64, to: i64) -> Upgrade {
        if from == to {
            return Upgrade::Other;
        }
        match self
            .0
            .compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                tracing::warn!(
                    from,
                    to,
                    "the staff chat was upgraded to a supergroup; alerts go to the new chat (set LEADBOT_STAFF_CHAT_ID to its id)"
                );
                Upgrade::Followed
            }
            Err(current) if current == to => Upgrade::Known,
            Err(_) => Upgrade::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_is_followed_from_the_staff_chat_only() {
        let chat = StaffChat::new(-4001);
        assert_eq!(
            chat.follow(-4002, -1009),
            Upgrade::Other,
            "another group's upgrade"
        );
        assert_eq!(chat.id(), -4001);
        assert_eq!(chat.follow(-4001, -1001), Upgrade::Followed);
        assert_eq!(chat.id(), -1001);
        assert_eq!(chat.follow(-4001, -1001), Upgrade::Known);
        assert_eq!(
            chat.follow(-4001, -1002),
            Upgrade::Other,
            "the old chat cannot move twice"
        );
        assert_eq!(chat.follow(-1001, -1001), Upgrade::Other);
        assert_eq!(chat.id(), -1001);
    }
}
