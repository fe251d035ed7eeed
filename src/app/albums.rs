//! Albums: Telegram sends each photo or video of an album as a message of its own, all with the
//! same `media_group_id`. The bot answers the first and keeps the others without answering again.

use std::collections::HashMap;
use std::sync::Mutex;

/// Users remembered at most; past it the memory starts again (at worst a later photo of an album
/// gets one more answer).
const MAX_USERS: usize = 4096;

/// The last album seen from each user.
#[derive(Debug, Default)]
pub struct Albums(Mutex<HashMap<i64, String>>);

impl Albums {
    /// Whether `album` is the user's last album already (this message is a later item of it);
    /// remembers it either way.
    pub fn seen(&self, user: i64, album: String) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(&user) == Some(&album) {
            return true;
        }
        if last.len() >= MAX_USERS {
            last.clear();
        }
        last.insert(user, album);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_album_is_new_once_per_user() {
        let albums = Albums::default();
        assert!(!albums.seen(1, "a".into()));
        assert!(albums.seen(1, "a".into()));
        assert!(albums.seen(1, "a".into()));
        assert!(!albums.seen(2, "a".into()), "another user's");
        assert!(!albums.seen(1, "b".into()), "the next album");
        assert!(
            !albums.seen(1, "a".into()),
            "only the last album is remembered"
        );
    }

    #[test]
    fn the_memory_stays_bounded() {
        let albums = Albums::default();
        for user in 0..(MAX_USERS as i64 * 3) {
            albums.seen(user, "a".into());
        }
        let len = albums.0.lock().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(len <= MAX_USERS, "{len}");
    }
}
