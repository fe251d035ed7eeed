//! Exact token buckets over the injected clock (pure): the broadcast's overall rate and the
//! one-message-per-second limit of each chat.
//!
//! A bucket is kept as its "theoretical arrival time" (GCRA): each admitted message pushes it one
//! emission interval further; a message is admitted when the bucket is no more than its
//! tolerance ahead of now. Over admissions at whole milliseconds, any window of one second holds
//! at most `1 + ⌊(999 ms + tolerance) / interval⌋` of them.
//!
//! The overall rate is a [`Pace`]: a bucket a little under the configured rate whose burst lets a
//! sender that woke late (a busy machine, a timer firing late) send at once what it owes, and a
//! log of the last second's admissions that caps every one-second window, aligned anywhere, a
//! little under the configured rate: the margin is for the jitter between our clock and the one
//! Telegram counts with.

use std::collections::{HashMap, VecDeque};

/// The overall pace, in thousandths of the configured rate.
const PACE_PER_MILLE: u64 = 980;
/// How much a late sender may catch up at once, in thousandths of the configured rate.
const BURST_PER_MILLE: u64 = 30;
/// Extra tolerance of the overall bucket: a timer firing up to this late loses nothing.
const SLACK_US: i64 = 5_000;
/// The margin under the configured rate that no one-second window reaches, in thousandths of it
/// (rounded down: none below 67/s, where the bucket alone keeps each second under the rate).
const MARGIN_PER_MILLE: u64 = 15;

/// One bucket: messages at a fixed interval, a few at once.
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
        if self.take_up_to(1, now_ms) == 1 {
            Ok(())
        } else {
            Err(self.wait_ms(now_ms).max(1))
        }
    }

    /// Admits as many of `n` messages as are due at `now_ms` (all the tokens a late wake-up is
    /// owed, up to the burst); returns how many.
    pub fn take_up_to(&mut self, n: u32, now_ms: i64) -> u32 {
        let now = now_ms.saturating_mul(1000);
        let base = self.tat_us.max(now);
        // Admitted while `base + (k - 1)·interval - tolerance <= now`.
        let room = now + self.tolerance_us - base;
        if room < 0 {
            return 0;
        }
        let due = room / self.interval_us + 1;
        let k = due.min(i64::from(n));
        if k > 0 {
            self.tat_us = base + k * self.interval_us;
        }
        u32::try_from(k).unwrap_or(0)
    }

    /// Milliseconds until a message would be admitted (0 when now).
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        let earliest = self.tat_us - self.tolerance_us;
        // Rounded up so that waiting that long is always enough.
        ((earliest - now_ms.saturating_mul(1000) + 999) / 1000).max(0)
    }
}

/// The admissions of the last second, so that no one-second window holds more than `cap`.
#[derive(Clone, Debug)]
struct Window {
    cap: u64,
    /// (millisecond, admissions in it), oldest first, all within the last second.
    recent: VecDeque<(i64, u64)>,
    count: u64,
}

impl Window {
    fn forget_before(&mut self, now_ms: i64) {
        while let Some((t, k)) = self.recent.front().copied() {
            if t > now_ms - 1000 {
                break;
            }
            self.recent.pop_front();
            self.count -= k;
        }
    }

    /// How many more may be admitted at `now_ms`.
    fn room(&mut self, now_ms: i64) -> u64 {
        self.forget_before(now_ms);
        self.cap.saturating_sub(self.count)
    }

    fn admit(&mut self, now_ms: i64, k: u64) {
        if k == 0 {
            return;
        }
        match self.recent.back_mut() {
            Some((t, n)) if *t == now_ms => *n += k,
            _ => self.recent.push_back((now_ms, k)),
        }
        self.count += k;
    }

    /// Milliseconds until one more may be admitted (0 when now).
    fn wait_ms(&self, now_ms: i64) -> i64 {
        if self.count < self.cap {
            return 0;
        }
        // Once enough of the oldest admissions leave the window, there is room again.
        let mut leaving = 0;
        for (t, k) in &self.recent {
            leaving += k;
            if self.count - leaving < self.cap {
                return (t + 1000 - now_ms).max(0);
            }
        }
        1000
    }
}

/// The broadcast's overall rate: a bucket at 98% of the configured rate that lets a late sender
/// catch up by up to 3% of it at once, under a cap of 98.5% of the rate (1,000/s: 985) on every
/// one-second window, aligned anywhere.
///
/// Replicas sending one broadcast each keep to their share of the rate ([`Pace::share`]).
#[derive(Clone, Debug)]
pub struct Pace {
    per_second: u32,
    replicas: u32,
    bucket: Bucket,
    window: Window,
}

impl Pace {
    /// The pace for a configured `per_second`.
    pub fn new(per_second: u32) -> Pace {
        let mut pace = Pace {
            per_second,
            replicas: 1,
            bucket: Bucket {
                interval_us: 1,
                tolerance_us: 0,
                tat_us: i64::MIN / 2,
            },
            window: Window {
                cap: 1,
                recent: VecDeque::new(),
                count: 0,
            },
        };
        pace.derive();
        pace
    }

    /// Keeps to one `replicas`-th of the configured rate from now on (at least one message a
    /// second). What was admitted stays counted: a smaller share waits until the last second's
    /// admissions fit under it.
    pub fn share(&mut self, replicas: u32) {
        let replicas = replicas.max(1);
        if replicas != self.replicas {
            self.replicas = replicas;
            self.derive();
        }
    }

    /// Admits nothing for the second after `now_ms`, as if this replica had just sent its full
    /// share: a replica that joins others already sending waits so, while they learn of it and
    /// take their smaller shares.
    pub fn hold(&mut self, now_ms: i64) {
        let room = self.window.room(now_ms);
        self.window.admit(now_ms, room);
    }

    /// The replicas the rate is shared among.
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// This replica's share of the rate, messages per second (at least one).
    pub fn share_per_second(&self) -> u32 {
        (self.per_second / self.replicas.max(1)).max(1)
    }

    /// Sets the bucket's interval and burst and the window's cap from the rate and the share.
    fn derive(&mut self) {
        let rate = u64::from(self.per_second.max(1));
        let replicas = u64::from(self.replicas.max(1));
        // Rounded up: the interval is never shorter than the pace asks.
        let interval_us = (1_000_000_000u64 * replicas).div_ceil(rate * PACE_PER_MILLE);
        let interval_us = i64::try_from(interval_us).unwrap_or(i64::MAX / 4);
        let burst = i64::try_from((rate * BURST_PER_MILLE / 1000 / replicas).max(1)).unwrap_or(1);
        self.bucket.interval_us = interval_us;
        self.bucket.tolerance_us = interval_us * (burst - 1) + SLACK_US;
        self.window.cap = ((rate - rate * MARGIN_PER_MILLE / 1000) / replicas).max(1);
    }

    /// Admits as many of `n` messages as the pace allows at `now_ms`; returns how many.
    pub fn take_up_to(&mut self, n: u32, now_ms: i64) -> u32 {
        let room = u32::try_from(self.window.room(now_ms)).unwrap_or(u32::MAX);
        let k = self.bucket.take_up_to(n.min(room), now_ms);
        self.window.admit(now_ms, u64::from(k));
        k
    }

    /// Admits one message at `now_ms`, or says how many milliseconds to wait.
    pub fn try_acquire(&mut self, now_ms: i64) -> Result<(), i64> {
        if self.take_up_to(1, now_ms) == 1 {
            Ok(())
        } else {
            Err(self.wait_ms(now_ms).max(1))
        }
    }

    /// Milliseconds until a message would be admitted (0 when now).
    pub fn wait_ms(&self, now_ms: i64) -> i64 {
        self.bucket.wait_ms(now_ms).max(self.window.wait_ms(now_ms))
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

    /// Milliseconds until `chat` may have a message (0 when now).
    pub fn wait_ms(&self, chat: i64, now_ms: i64) -> i64 {
        self.buckets.get(&chat).map_or(0, |b| b.wait_ms(now_ms))
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
    fn a_late_wake_up_gets_every_token_it_is_owed_up_to_the_burst() {
        // 1,000/s configured: 980/s, a burst of 30 and 5 ms of slack (about 4 more).
        let mut b = Pace::new(1000);
        assert_eq!(b.take_up_to(100, 0), 34);
        assert_eq!(b.take_up_to(100, 0), 0);
        // 4 ms later, about 4 more are due.
        assert_eq!(b.take_up_to(100, 4), 4);
        // Asking for fewer than are due takes only those.
        assert_eq!(b.take_up_to(1, 10), 1);
        assert_eq!(b.take_up_to(100, 10), 5);
        // After a 30 ms stall, all 30 owed at once.
        assert_eq!(b.take_up_to(100, 40), 30);
    }

    #[test]
    fn each_chat_gets_one_message_per_second() {
        let mut p = PerChat::new(1);
        assert_eq!(p.try_acquire(1, 0), Ok(()));
        assert_eq!(p.try_acquire(2, 0), Ok(()));
        assert_eq!(p.wait_ms(1, 500), 500);
        assert_eq!(p.wait_ms(3, 500), 0);
        assert_eq!(p.try_acquire(1, 500), Err(500));
        assert_eq!(p.try_acquire(1, 1000), Ok(()));
    }

    /// The most admissions any one-second window (starting at any millisecond) holds; `times`
    /// in order, one entry per admitted message.
    fn busiest_second(times: &[i64]) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..times.len() {
            while times[hi] - times[lo] >= 1000 {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    /// A sender as the broadcast's is: it asks for up to `want` tokens, then sleeps the wait the
    /// bucket names (at least 1 ms) plus a late timer's `late` ms, for `secs` of simulated time.
    fn simulate(rate: u32, want: u32, lateness: &[i64], secs: i64) -> Vec<i64> {
        let mut b = Pace::new(rate);
        let mut t = 0;
        let mut admitted = Vec::new();
        let mut i = 0;
        while t < secs * 1000 {
            let k = b.take_up_to(want, t);
            admitted.extend(std::iter::repeat_n(t, k as usize));
            let late = lateness
                .get(i % lateness.len().max(1))
                .copied()
                .unwrap_or(0);
            i += 1;
            t += b.wait_ms(t).max(1) + late;
        }
        admitted
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

        /// The overall bucket: whatever the pattern of attempts and however many tokens each
        /// asks for, no one-second window, aligned anywhere, holds more than the configured rate.
        #[test]
        fn the_overall_bucket_never_lets_a_second_exceed_the_configured_rate(
            rate in 1u32..3000,
            steps in prop::collection::vec((0i64..60, 1u32..40), 1..3000),
        ) {
            let mut b = Pace::new(rate);
            let mut t = 0;
            let mut admitted = Vec::new();
            for (s, want) in steps {
                t += s;
                let k = b.take_up_to(want, t);
                admitted.extend(std::iter::repeat_n(t, k as usize));
            }
            let busiest = busiest_second(&admitted);
            prop_assert!(busiest as u32 <= rate, "{busiest} in a second at a configured {rate}/s");
        }

        /// Replicas that each keep to their share, whatever their attempts, never let a second
        /// hold more than the configured rate together, also when one joins while the others
        /// send (it holds back a second; they learn of it within a housekeeping period). Each
        /// replica sends at least one message a second, so the rate is at least the replicas.
        #[test]
        fn shares_of_the_rate_never_add_up_to_more_than_it(
            rate in 3u32..2000,
            steps in prop::collection::vec((0usize..3, 0i64..30, 1u32..40), 1..2000),
            joins_at in 0usize..2000,
            learn_ms in 0i64..=250,
        ) {
            let mut paces = [Pace::new(rate), Pace::new(rate), Pace::new(rate)];
            // Two replicas run; a third joins at some step, holding back for a second, and the
            // others learn of it within a housekeeping period (250 ms).
            paces[0].share(2);
            paces[1].share(2);
            let mut joined = None;
            let mut t = 0;
            let mut admitted = Vec::new();
            for (i, (who, s, want)) in steps.into_iter().enumerate() {
                t += s;
                if i == joins_at {
                    paces[2].share(3);
                    paces[2].hold(t);
                    joined = Some(t);
                }
                if joined.is_some_and(|j| t >= j + learn_ms) {
                    paces[0].share(3);
                    paces[1].share(3);
                }
                if who == 2 && joined.is_none() {
                    continue;
                }
                let k = paces[who].take_up_to(want, t);
                admitted.extend(std::iter::repeat_n(t, k as usize));
            }
            let busiest = busiest_second(&admitted);
            prop_assert!(busiest as u32 <= rate, "{busiest} in a second at a configured {rate}/s");
        }

        /// A sender that always has messages waiting, whose timer fires up to 3 ms late, reaches
        /// at least 97% of the configured rate over 20 s, and never more than the rate in a second.
        #[test]
        fn a_late_timer_still_reaches_97_percent_of_the_rate(
            rate in 1u32..3000,
            lateness in prop::collection::vec(0i64..=3, 1..50),
        ) {
            let admitted = simulate(rate, 64, &lateness, 20);
            let wanted = f64::from(rate) * 20.0;
            // At 1/s the first message and the last second's cut limit what 20 s can hold.
            let floor = (0.97 * wanted).floor().min(wanted - 1.0);
            prop_assert!(admitted.len() as f64 >= floor, "{} of {wanted} at {rate}/s", admitted.len());
            prop_assert!(busiest_second(&admitted) as u32 <= rate);
        }
    }

    #[test]
    fn replicas_sharing_the_rate_together_keep_to_it() {
        // Two replicas at 1,000/s configured, each sending as fast as its share allows.
        let mut a = Pace::new(1000);
        let mut b = Pace::new(1000);
        a.share(2);
        b.share(2);
        let mut admitted = Vec::new();
        for t in 0..20_000 {
            for p in [&mut a, &mut b] {
                let k = p.take_up_to(64, t);
                admitted.extend(std::iter::repeat_n(t, k as usize));
            }
        }
        let rate = admitted.len() as f64 / 20.0;
        assert!((970.0..=1000.0).contains(&rate), "{rate}/s");
        assert!(
            busiest_second(&admitted) <= 985,
            "{}",
            busiest_second(&admitted)
        );
    }

    #[test]
    fn a_smaller_share_waits_for_what_the_last_second_admitted() {
        let mut p = Pace::new(100);
        // A full second at the whole rate...
        let mut admitted = 0;
        for t in 0..1000 {
            admitted += p.take_up_to(10, t);
        }
        assert!(admitted >= 97, "{admitted}");
        // ...then a second replica joins: nothing more until the window holds under half.
        assert_eq!(p.share_per_second(), 100);
        p.share(2);
        assert_eq!(p.replicas(), 2);
        assert_eq!(p.share_per_second(), 50);
        assert_eq!(p.take_up_to(10, 1000), 0);
        assert!(p.wait_ms(1000) > 0);
        let mut later = Vec::new();
        for t in 1000..5000 {
            later.extend(std::iter::repeat_n(t, p.take_up_to(10, t) as usize));
        }
        let last_three = later.iter().filter(|t| **t >= 2000).count();
        assert!(
            (145..=150).contains(&last_three),
            "{last_three} in 3 s at half of 100/s"
        );
        // The replica leaves again: the whole rate.
        p.share(1);
        let mut full = 0;
        for t in 6000..9000 {
            full += p.take_up_to(10, t);
        }
        assert!((291..=300).contains(&full), "{full} in 3 s at 100/s");
    }

    #[test]
    fn at_a_thousand_per_second_the_pace_stays_within_3_percent_and_15_under_the_rate() {
        // A timer that fires 1 ms late every time, and 3 ms late now and then.
        let admitted = simulate(1000, 64, &[1, 1, 1, 3, 0, 1, 2], 20);
        let rate = admitted.len() as f64 / 20.0;
        assert!((970.0..=1000.0).contains(&rate), "{rate}/s");
        assert!(busiest_second(&admitted) <= 985);
        // Stalled 30 ms every 250 ms (a busy machine): still within 3%, still 15 under the rate.
        let mut stalls = vec![1; 200];
        stalls.push(30);
        let admitted = simulate(1000, 64, &stalls, 20);
        let rate = admitted.len() as f64 / 20.0;
        assert!((970.0..=1000.0).contains(&rate), "{rate}/s with stalls");
        assert!(busiest_second(&admitted) <= 985);
    }
}
