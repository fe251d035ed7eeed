//! The retry policy for failed sends (pure).

use std::time::Duration;

/// Attempts after which a row that keeps failing with transient errors is given up.
pub const MAX_ATTEMPTS: i32 = 12;

/// Delay before attempt `attempts + 1`: 250 ms, 500 ms, 1 s, 2 s, … capped at 5 minutes. A
/// prospect waits for each reply, and most Bot API failures (a dropped connection, a 5xx) pass in
/// well under a second, so the first retries come quickly.
pub fn delay(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let ms = 250u64 << exp;
    Duration::from_millis(ms.min(300_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        assert_eq!(delay(1), Duration::from_millis(250));
        assert_eq!(delay(2), Duration::from_millis(500));
        assert_eq!(delay(5), Duration::from_secs(4));
        assert_eq!(delay(30), Duration::from_secs(300));
        assert_eq!(delay(-3), Duration::from_millis(250));
    }
}
