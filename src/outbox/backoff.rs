//! The retry policy for failed sends (pure).

use std::time::Duration;

/// Attempts after which a row that keeps failing with transient errors is given up.
pub const MAX_ATTEMPTS: i32 = 12;

/// Delay before attempt `attempts + 1`: 1 s, 2 s, 4 s, … capped at 5 minutes.
pub fn delay(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let secs = 1u64 << exp;
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_are_capped() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs(2));
        assert_eq!(delay(5), Duration::from_secs(16));
        assert_eq!(delay(30), Duration::from_secs(300));
        assert_eq!(delay(-3), Duration::from_secs(1));
    }
}
