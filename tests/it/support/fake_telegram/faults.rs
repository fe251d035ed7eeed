//! Failures on demand (faults, chaos) and Telegram's flood limits.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// A failure the fake answers with instead of handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 `Internal Server Error`. teloxide sleeps 10 s before reading a 5xx body, so
    /// a client with a shorter timeout sees a network error rather than an API error.
    ServerError,
    /// Never answers; the request ends when the client gives up (or the fake is dropped).
    Hang,
    /// Closes the TCP connection without writing a response.
    CloseConnection,
    /// Does what was asked (a message is delivered) but never answers: the sender cannot know
    /// that Telegram accepted it.
    AcceptThenHang,
    /// HTTP 429 with `parameters.retry_after`, as a flood-limited Telegram answers.
    TooManyRequests {
        /// Seconds the client is told to wait.
        retry_after: u32,
    },
}

/// A test's own choice of requests to fail, over `(method, params)`.
pub type RequestPredicate = Arc<dyn Fn(&str, &Value) -> bool + Send + Sync>;

/// Which requests a fault rule applies to.
#[derive(Clone)]
pub enum FaultTarget {
    /// Every method except `getUpdates` and `getMe`: the bot polls all the time and checks its
    /// token with `getMe` as it starts, so a fault meant for a send would otherwise be swallowed
    /// by whichever of those came first.
    AnyExceptGetUpdates,
    /// One method (canonical camelCase name), `getUpdates` included.
    Method(String),
    /// Requests for which the predicate over `(method, params)` holds.
    Matching(RequestPredicate),
}

impl fmt::Debug for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyExceptGetUpdates => f.write_str("AnyExceptGetUpdates"),
            Self::Method(m) => f.debug_tuple("Method").field(m).finish(),
            Self::Matching(_) => f.write_str("Matching(..)"),
        }
    }
}

impl FaultTarget {
    pub(super) fn matches_request(&self, method: &str, params: &Value) -> bool {
        match self {
            Self::AnyExceptGetUpdates => !matches!(method, "getUpdates" | "getMe"),
            Self::Method(m) => m.eq_ignore_ascii_case(method),
            Self::Matching(predicate) => predicate(method, params),
        }
    }
}

/// A queued fault: the next `remaining` matching requests fail with `fault`.
#[derive(Debug, Clone)]
pub(super) struct FaultRule {
    pub(super) remaining: usize,
    pub(super) fault: Fault,
    pub(super) target: FaultTarget,
}

/// Random failures for chaos tests, reproducible through the seed.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// Probability in `0.0..=1.0` that a request (other than `getUpdates`) fails.
    pub rate: f64,
    /// Seed of the generator, so a failing run can be replayed.
    pub seed: u64,
    /// Faults to pick from, uniformly; empty means `ServerError`.
    pub faults: Vec<Fault>,
}

/// The chaos configuration plus its generator state.
#[derive(Debug, Clone)]
pub(super) struct ChaosState {
    pub(super) chaos: Chaos,
    rng: u64,
}

impl ChaosState {
    pub(super) fn new(chaos: Chaos) -> Self {
        let rng = chaos.seed;
        Self { chaos, rng }
    }

    /// splitmix64: tiny, good enough for picking failures, and needs no extra crate.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn roll(&mut self, method: &str) -> Option<Fault> {
        if method == "getUpdates" {
            return None;
        }
        let draw = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= self.chaos.rate {
            return None;
        }
        if self.chaos.faults.is_empty() {
            return Some(Fault::ServerError);
        }
        let len = self.chaos.faults.len() as u64;
        let index = usize::try_from(self.next_u64() % len).unwrap_or(0);
        self.chaos.faults.get(index).copied()
    }
}

/// Flood limits; every limit is off (`None`) unless a test opts in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Messages per second across all chats (Telegram: about 30).
    pub global_per_second: Option<u32>,
    /// Messages per second to one private chat (Telegram: 1 sustained).
    pub private_chat_per_second: Option<u32>,
    /// Messages per minute to one group or supergroup (Telegram: 20).
    pub group_per_minute: Option<u32>,
}

impl RateLimits {
    /// The limits Telegram documents for bots.
    pub fn telegram() -> Self {
        Self {
            global_per_second: Some(30),
            private_chat_per_second: Some(1),
            group_per_minute: Some(20),
        }
    }
}

/// Sliding windows of recent sends, used to answer 429 like Telegram.
#[derive(Debug, Default)]
pub(super) struct RateLimiter {
    pub(super) limits: RateLimits,
    global: VecDeque<Instant>,
    per_chat: HashMap<i64, VecDeque<Instant>>,
}

impl RateLimiter {
    /// Checks whether a message to `chat_id` may be sent now; `Err(seconds)` is the
    /// `retry_after` to answer with.
    pub(super) fn check(&mut self, chat_id: i64, now: Instant) -> Result<(), u32> {
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        let mut wait = None;
        if let Some(limit) = self.limits.global_per_second {
            wait = wait.max(over_limit(&mut self.global, limit, second, now));
        }
        let chat_limit = if chat_id > 0 {
            self.limits.private_chat_per_second.map(|l| (l, second))
        } else {
            self.limits.group_per_minute.map(|l| (l, minute))
        };
        if let Some((limit, window)) = chat_limit {
            let events = self.per_chat.entry(chat_id).or_default();
            wait = wait.max(over_limit(events, limit, window, now));
        }
        match wait {
            Some(wait) => Err(u32::try_from(wait.as_secs_f64().ceil() as u64)
                .unwrap_or(u32::MAX)
                .max(1)),
            None => Ok(()),
        }
    }

    /// Counts a message that was sent.
    pub(super) fn record(&mut self, chat_id: i64, now: Instant) {
        self.global.push_back(now);
        self.per_chat.entry(chat_id).or_default().push_back(now);
    }
}

/// How long until one more event fits in the window, or `None` if it fits now.
fn over_limit(
    events: &mut VecDeque<Instant>,
    limit: u32,
    window: Duration,
    now: Instant,
) -> Option<Duration> {
    while events
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
    {
        events.pop_front();
    }
    if events.len() < limit as usize {
        return None;
    }
    let oldest = *events.front()?;
    Some(window.saturating_sub(now.saturating_duration_since(oldest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_chat_limit_answers_retry_after_until_the_window_passes() {
        let mut limiter = RateLimiter {
            limits: RateLimits {
                private_chat_per_second: Some(1),
                ..RateLimits::default()
            },
            ..RateLimiter::default()
        };
        let start = Instant::now();
        assert_eq!(limiter.check(7, start), Ok(()));
        limiter.record(7, start);
        assert_eq!(limiter.check(7, start + Duration::from_millis(300)), Err(1));
        assert_eq!(limiter.check(8, start + Duration::from_millis(300)), Ok(()));
        assert_eq!(limiter.check(7, start + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn group_limit_is_per_minute() {
        let mut limiter = RateLimiter {
            limits: RateLimits::telegram(),
            ..RateLimiter::default()
        };
        let start = Instant::now();
        for i in 0..20 {
            let at = start + Duration::from_secs(i);
            assert_eq!(limiter.check(-5, at), Ok(()));
            limiter.record(-5, at);
        }
        assert_eq!(limiter.check(-5, start + Duration::from_secs(20)), Err(40));
    }

    #[test]
    fn chaos_is_reproducible_from_its_seed_and_close_to_its_rate() {
        let chaos = Chaos {
            rate: 0.2,
            seed: 7,
            faults: vec![],
        };
        let run = |mut state: ChaosState| {
            (0..1000)
                .map(|_| state.roll("sendMessage").is_some())
                .collect::<Vec<_>>()
        };
        let first = run(ChaosState::new(chaos.clone()));
        assert_eq!(first, run(ChaosState::new(chaos)));
        let failures = first.iter().filter(|&&f| f).count();
        assert!((150..250).contains(&failures), "{failures} failures");
    }

    #[test]
    fn chaos_never_fails_get_updates() {
        let mut state = ChaosState::new(Chaos {
            rate: 1.0,
            seed: 1,
            faults: vec![Fault::Hang],
        });
        assert_eq!(state.roll("getUpdates"), None);
        assert_eq!(state.roll("sendMessage"), Some(Fault::Hang));
    }
}
