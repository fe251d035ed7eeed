//! Answers to button presses (`answerCallbackQuery`). They are not outbox rows: Telegram takes an
//! answer only for a few seconds after the press and the client's spinner stops by itself, so an
//! answer lost in a crash is not worth a durable row and its writes (SPEC §9 keeps the outbox for
//! what must not be lost or doubled). Each answer goes out right after the commit that decided it,
//! within the outbox worker's limit of requests at once, and is tried again after a network error
//! or a 429 while Telegram would still take it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::action::Action;
use crate::metrics::Metrics;
use crate::telegram::send::{self, SendError};

/// How long after the commit that decided it an answer is still tried: Telegram refuses late
/// answers.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How long a stopping bot waits for the answers it is still sending.
const DRAIN: Duration = Duration::from_secs(2);

/// An answer decided by an update's transaction, sent once it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The chat the button was pressed in.
    pub chat_id: i64,
    pub query_id: String,
    /// A short notice shown to the presser.
    pub text: Option<String>,
}

impl Answer {
    fn action(&self) -> Action {
        Action::AnswerCallback {
            query_id: self.query_id.clone(),
            text: self.text.clone(),
            alert: false,
        }
    }
}

/// Where committed transactions leave their answers for the sender ([`Sender::run`]).
#[derive(Clone)]
pub struct Answers {
    tx: mpsc::UnboundedSender<(Answer, Instant)>,
}

/// The sender's end of [`Answers`].
pub struct Queue(mpsc::UnboundedReceiver<(Answer, Instant)>);

impl Answers {
    pub fn channel() -> (Answers, Queue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Answers { tx }, Queue(rx))
    }

    /// Hands over the answers of a committed transaction. With the sender stopped they are
    /// dropped: the presses' spinners stop by themselves.
    pub fn send(&self, answers: Vec<Answer>) {
        let now = Instant::now();
        for answer in answers {
            if self.tx.send((answer, now)).is_err() {
                break;
            }
        }
    }
}

/// What to do after a try that failed with `error`, `elapsed` after the commit: wait this long
/// and try again, or give up (`None`).
pub fn retry(error: &SendError, tries: u32, elapsed: Duration) -> Option<Duration> {
    let wait = match error {
        SendError::RetryAfter(wait) => (*wait).max(Duration::from_secs(1)),
        SendError::Transient(_) => Duration::from_millis(500) * 2u32.saturating_pow(tries.min(4)),
        SendError::Blocked(_) | SendError::Permanent(_) | SendError::Migrated { .. } => {
            return None;
        }
    };
    (elapsed + wait < PATIENCE).then_some(wait)
}

/// What the sender needs to talk to Telegram.
pub struct Sender {
    pub bot: teloxide::Bot,
    pub token: String,
    /// Shared with the outbox worker: requests to Telegram at once, at most.
    pub sends: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

impl Sender {
    /// Sends answers as they come until shutdown, then waits briefly for those in flight. An
    /// answer gets its task once it has its turn to send, so a burst of presses waits in the
    /// queue (a few bytes each) rather than as tasks.
    pub async fn run(self, mut queue: Queue, mut shutdown: watch::Receiver<bool>) {
        let sender = Arc::new(self);
        let mut in_flight = JoinSet::new();
        loop {
            while in_flight.try_join_next().is_some() {}
            if *shutdown.borrow() {
                break;
            }
            let next = tokio::select! {
                next = queue.0.recv() => next,
                _ = shutdown.changed() => None,
            };
            let Some((answer, at)) = next else { break };
            let turn = tokio::select! {
                turn = sender.sends.clone().acquire_owned() => turn.ok(),
                _ = shutdown.changed() => break,
            };
            let sender = sender.clone();
            in_flight.spawn(async move { sender.answer(&answer, at, turn).await });
        }
        let drained = tokio::time::timeout(DRAIN, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::debug!(
                left = in_flight.len(),
                "stopped before every button press was answered"
            );
        }
        tracing::info!("callback answers stopped");
    }

    /// Sends one answer, trying again while [`retry`] says so; `turn` is the first try's.
    async fn answer(&self, answer: &Answer, at: Instant, mut turn: Option<OwnedSemaphorePermit>) {
        let action = answer.action();
        let mut tries = 0;
        loop {
            if at.elapsed() >= PATIENCE {
                tracing::debug!("a button press waited too long to be answered; given up");
                return;
            }
            let error = {
                // The semaphore is never closed; were it, the send would simply go ahead.
                let _turn = match turn.take() {
                    Some(turn) => Some(turn),
                    None => self.sends.clone().acquire_owned().await.ok(),
                };
                match send::perform_observed(
                    &self.bot,
                    answer.chat_id,
                    &action,
                    &self.token,
                    &self.metrics,
                )
                .await
                {
                    Ok(_) => return,
                    Err(e) => e,
                }
            };
            tries += 1;
            match retry(&error, tries, at.elapsed()) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    tracing::debug!(?error, "a button press was not answered");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_answer_is_not_tried_again() {
        let refused = SendError::Permanent("query is too old".into());
        assert_eq!(retry(&refused, 1, Duration::ZERO), None);
        assert_eq!(
            retry(&SendError::Blocked("blocked".into()), 1, Duration::ZERO),
            None
        );
    }

    #[test]
    fn network_errors_are_tried_again_with_growing_waits_while_telegram_would_take_the_answer() {
        let down = SendError::Transient("connection reset".into());
        assert_eq!(
            retry(&down, 1, Duration::ZERO),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry(&down, 2, Duration::from_secs(1)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry(&down, 3, Duration::from_secs(3)),
            Some(Duration::from_secs(4))
        );
        // The next wait would end past the patience: given up.
        assert_eq!(retry(&down, 4, Duration::from_secs(7)), None);
        assert_eq!(
            retry(&down, 40, Duration::ZERO),
            Some(Duration::from_secs(8))
        );
    }

    #[test]
    fn a_429_waits_as_told_unless_that_is_too_late() {
        let limited = SendError::RetryAfter(Duration::from_secs(3));
        assert_eq!(
            retry(&limited, 1, Duration::ZERO),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry(&limited, 1, Duration::from_secs(8)), None);
        let zero = SendError::RetryAfter(Duration::ZERO);
        assert_eq!(
            retry(&zero, 1, Duration::ZERO),
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test]
    async fn answers_of_a_commit_reach_the_queue_in_order_and_a_stopped_sender_drops_them() {
        let (answers, mut queue) = Answers::channel();
        let a = |q: &str| Answer {
            chat_id: 1,
            query_id: q.into(),
            text: None,
        };
        answers.send(vec![a("1"), a("2")]);
        assert_eq!(
            queue.0.recv().await.map(|(a, _)| a.query_id),
            Some("1".into())
        );
        assert_eq!(
            queue.0.recv().await.map(|(a, _)| a.query_id),
            Some("2".into())
        );
        drop(queue);
        // Nobody listens: nothing to do, no panic.
        answers.send(vec![a("3")]);
    }
}
