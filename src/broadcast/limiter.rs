//! Exact token buckets over the injected clock (pure): the broadcast's overall rate and the
//! one-message-per-second limit of each chat.
//!
//! A bucket is kept as its "theoretical arrival time" (GCRA): each admitted message pushes it one
//! emission interval further; a message is admitted when the bucket is no more than `burst - 1`
//! intervals ahead of now. With `burst = 1` no window of one second ever holds more than `rate`
//! messages plus the one at its edge.

use std::collections::HashMap;

/// One bucket: `rate` messages per second, at most `burst` at once.
#[derive(Clone, Debug)]
pub struct Bucket {
    interval_us: i64,
    tolerance_us: i64,
    tat_us: i64,
}

impl Bucket {
    /// A bucket admitting `per_second` messages per second, `burst` (≥ 1) at once.
    pub fn new(per_second: u32, burst: u32) -> Bucket {
        let interval_us = 1_000_000 / i64::from(per_second.max(1));
        Bucket {
            interval_us,
            tolerance_us: interval_us * i64::from(burst.max(1) - 1),
            tat_us: i64::MIN / 2,
        }
    }

    /// Admits one message at `now_ms`, or says how many milliseconds to wait.
    pub fn try_acquire(&mut self, now_ms: i64) -> Result<(), i64> {
        let now = now_ms.saturating_mul(1000);
        let earliest = self.tat_us - self.tolerance_us;
        if earliest > now {
            // Round up so that waiting that long is always enough.
            return Err((earliest - now + 999) / 1000);
        }
        self.tat_us = self.tat_us.max(now) + self.interval_us;
        Ok(())
    }

    /// Milliseconds until a message would be admitted (0 when now).
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        let earliest = self.tat_us - self.tolerance_us;
        ((earliest - now_ms.saturating_mul(1000) + 999) / 1000).max(0)
    }
}

/// One bucket per chat, created on first use and forgotten once idle.
#[derive(Debug)]
pub struct PerChat {
    per_second: u32,
    buckets: HashMap<i64, Bucket>,
}

impl PerChat {
    /// `per_second` messages per second to each chat.
    pub fn new(per_second: u32) -> PerChat {
        PerChat {
            per_second,
            buckets: HashMap::new(),
        }
    }

    /// Admits one message to `chat` at `now_ms`, or says how long to wait.
    pub fn try_acquire(&mut self, chat: i64, now_ms: i64) -> Result<(), i64> {
        if self.buckets.len() > 10_000 {
            let now_us = now_ms.saturating_mul(1000);
            self.buckets.retain(|_, b| b.tat_us > now_us);
        }
        let per_second = self.per_second;
        self.buckets
            .entry(chat)
            .or_insert_with(|| Bucket::new(per_second, 1))
            .try_acquire(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_busy_second_admits_exactly_the_rate() {
        let mut b = Bucket::new(25, 1);
        let admitted = (0..1000).filter(|t| b.try_acquire(*t).is_ok()).count();
        assert_eq!(admitted, 25);
    }

    #[test]
    fn waiting_the_answer_is_enough() {
        let mut b = Bucket::new(3, 1);
        assert_eq!(b.try_acquire(0), Ok(()));
        let wait = b.try_acquire(0).unwrap_err();
        assert_eq!(wait, 334);
        assert_eq!(b.try_acquire(wait - 1).map_err(|_| ()), Err(()));
        assert_eq!(b.try_acquire(wait), Ok(()));
    }

    #[test]
    fn burst_lets_a_few_through_at_once_then_paces() {
        let mut b = Bucket::new(10, 3);
        assert!((0..3).all(|_| b.try_acquire(1000).is_ok()));
        assert!(b.try_acquire(1000).is_err());
        assert_eq!(b.wait_ms(1000), 100);
    }

    #[test]
    fn each_chat_gets_one_message_per_second() {
        let mut p = PerChat::new(1);
        assert_eq!(p.try_acquire(1, 0), Ok(()));
        assert_eq!(p.try_acquire(2, 0), Ok(()));
        assert_eq!(p.try_acquire(1, 500), Err(500));
        assert_eq!(p.try_acquire(1, 1000), Ok(()));
    }

    proptest! {
        /// Whatever the pattern of attempts, no one-second window holds more than the rate
        /// (plus the burst allowance).
        #[test]
        fn no_window_exceeds_the_rate(rate in 1u32..200, burst in 1u32..4, steps in prop::collection::vec(0i64..40, 1..400)) {
            let mut b = Bucket::new(rate, burst);
            let mut t = 0;
            let mut admitted = Vec::new();
            for s in steps {
                t += s;
                if b.try_acquire(t).is_ok() {
                    admitted.push(t);
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                let in_window = admitted[i..].iter().take_while(|x| **x < start + 1000).count();
                prop_assert!(in_window as u32 <= rate + burst, "{in_window} in a second at rate {rate}");
            }
        }
    }
}
