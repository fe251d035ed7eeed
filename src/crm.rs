//! The CRM webhook: lead events (created, qualified, hot, taken, won, lost) POSTed as signed JSON
//! to `LEADBOT_CRM_WEBHOOK_URL`.
//!
//! An event is written to `crm_events` in the transaction of the change that caused it, so it is
//! never lost nor sent for a change that was rolled back. The [`CrmWorker`] delivers events in
//! order per lead, with an `Idempotency-Key` header and `X-Leadbot-Signature: sha256=<hex>` (HMAC-
//! SHA256 of the body with `LEADBOT_CRM_SECRET`), and retries with exponential backoff for a week,
//! so a receiver that is down for hours loses nothing.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

use crate::app::App;
use crate::app::ctx::Ctx;
use crate::clock::Clock;
use crate::config::Secret;
use crate::dialogue::Session;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::storage::leads::Lead;
use crate::storage::{self, Db, StorageError};

/// Events older than this are given up (a receiver down for a week needs a replay from the
/// database, see README).
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// The longest pause between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A lead event a CRM receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadEvent {
    Created,
    Qualified,
    Hot,
    Taken,
    Won,
    Lost,
}

impl LeadEvent {
    /// The event's name in payloads (`lead.created`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LeadEvent::Created => "lead.created",
            LeadEvent::Qualified => "lead.qualified",
            LeadEvent::Hot => "lead.hot",
            LeadEvent::Taken => "lead.taken",
            LeadEvent::Won => "lead.won",
            LeadEvent::Lost => "lead.lost",
        }
    }
}

fn iso(ms: i64) -> Value {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// The JSON body of an event: the lead, its answers, its source and its score breakdown.
pub fn payload(event: LeadEvent, key: &str, lead: &Lead, now: i64) -> Value {
    let session: Session = serde_json::from_str(&lead.session).unwrap_or_default();
    let answers: Vec<Value> = session
        .answers
        .iter()
        .map(|(k, a)| json!({"key": k, "step": a.step, "question": a.question, "value": a.value}))
        .collect();
    let breakdown: Vec<Value> = session
        .breakdown
        .iter()
        .map(|i| json!({"step": i.step, "answer": i.answer, "points": i.points, "forced_hot": i.hot}))
        .collect();
    json!({
        "event": event.name(),
        "event_id": key,
        "occurred_at": iso(now),
        "lead": {
            "id": lead.id,
            "telegram_id": lead.telegram_id,
            "username": lead.username,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "name": lead.name,
            "phone": lead.phone,
            "email": lead.email,
            "language_code": lead.language_code,
            "temperature": lead.temperature,
            "status": lead.status,
            "dialogue_id": lead.dialogue_id,
            "dialogue_version": lead.dialogue_version,
            "created_at": iso(lead.created_at),
            "hot_at": lead.hot_at.map(iso),
            "manager": lead.manager_id.map(|id| json!({"id": id, "name": lead.manager_name})),
            "taken_at": lead.taken_at.map(iso),
            "closed_at": lead.closed_at.map(iso),
        },
        "source": lead.source,
        "answers": answers,
        "score": {"total": lead.score, "breakdown": breakdown},
    })
}

/// Enqueues an event in the change's transaction (nothing when no CRM is configured).
/// Created and hot happen once per lead; the others once per update that caused them.
pub async fn record(
    app: &App,
    ctx: &mut Ctx,
    event: LeadEvent,
    lead: &Lead,
) -> Result<(), StorageError> {
    if app.settings.crm_webhook_url.is_none() || lead.erased {
        return Ok(());
    }
    let key = match event {
        LeadEvent::Created | LeadEvent::Hot => format!("{}:{}", event.name(), lead.id),
        _ => format!("{}:{}:u{}", event.name(), lead.id, ctx.update_id),
    };
    let body = payload(event, &key, lead, ctx.now).to_string();
    storage::crm::enqueue(&mut ctx.tx, &key, event.name(), lead.id, &body, ctx.now).await?;
    Ok(())
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error arm cannot happen.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The pause before attempt `attempts + 1`: 1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`].
pub fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Duration::from_secs(1u64 << exp).min(MAX_BACKOFF)
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    Done(usize),
    Empty,
}

/// Delivers CRM events.
pub struct CrmWorker {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub http: reqwest::Client,
    pub url: String,
    pub secret: Secret,
    /// The instance id stamped on claimed events.
    pub owner: i64,
    pub metrics: Arc<Metrics>,
}

impl CrmWorker {
    /// Builds the worker with an HTTP client that gives up on a request after `timeout`.
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        url: String,
        secret: Secret,
        owner: i64,
        metrics: Arc<Metrics>,
        timeout: Duration,
    ) -> Result<CrmWorker, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the CRM HTTP client: {e}"))?;
        Ok(CrmWorker {
            db,
            clock,
            http,
            url,
            secret,
            owner,
            metrics,
        })
    }

    /// One round: claim due events (one per lead), POST them, record outcomes.
    pub async fn step(&self) -> Result<Round, StorageError> {
        let events = storage::crm::claim_due(&self.db, self.clock.now_ms(), 32, self.owner).await?;
        if events.is_empty() {
            return Ok(Round::Empty);
        }
        let n = events.len();
        let results = futures::future::join_all(events.iter().map(|e| self.deliver(e))).await;
        for r in results {
            r?;
        }
        Ok(Round::Done(n))
    }

    #[tracing::instrument(skip_all, fields(crm_event_id = event.id, lead_id = event.lead_id))]
    async fn deliver(&self, event: &storage::crm::Event) -> Result<(), StorageError> {
        let body = event.payload.clone().into_bytes();
        let sig = signature(self.secret.expose(), &body);
        let result = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", &event.idempotency_key)
            .header("x-leadbot-event", &event.event)
            .header("x-leadbot-signature", sig)
            .body(body)
            .send()
            .await;
        // A receiver asking to wait (429/503 with Retry-After in seconds) is given that long.
        let mut asked_wait = None;
        let error = match result {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => {
                asked_wait = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(3600)));
                Some(format!("the CRM answered {}", r.status()))
            }
            Err(e) if e.is_timeout() => Some("the CRM did not answer in time".to_owned()),
            Err(e) => Some(format!("cannot reach the CRM: {}", e.without_url())),
        };
        let now = self.clock.now_ms();
        match error {
            None => {
                self.metrics
                    .crm_deliveries
                    .get_or_create(&OutcomeLabel {
                        outcome: "delivered",
                    })
                    .inc();
                storage::crm::mark_delivered(&self.db, event.id, now).await
            }
            Some(error) => {
                self.metrics
                    .crm_deliveries
                    .get_or_create(&OutcomeLabel { outcome: "failed" })
                    .inc();
                if now - event.created_at > RETENTION_MS {
                    tracing::error!(error = %error, "CRM event older than a week; given up");
                    storage::crm::mark_failed(&self.db, event.id, &error).await
                } else {
                    let delay = backoff(event.attempts).max(asked_wait.unwrap_or_default());
                    tracing::warn!(error = %error, attempts = event.attempts, retry_in_s = delay.as_secs(), "CRM delivery failed; will retry");
                    let at = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    storage::crm::retry_at(&self.db, event.id, at, &error).await
                }
            }
        }
    }

    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // After a failed round, events may be `sending` for this process with no round to
        // deliver them: a claim whose commit PostgreSQL applied though the bot saw an error, or an
        // outcome not recorded. Between rounds the worker holds none, so they are put back (sent
        // again, under the same idempotency key).
        let mut lost = false;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if lost {
                match storage::ops::release_lost(
                    &self.db,
                    storage::ops::Claimed::CrmEvents,
                    Some(self.owner),
                )
                .await
                {
                    Ok(n) => {
                        if n > 0 {
                            tracing::warn!(
                                events = n,
                                "CRM events whose round failed are put back to be delivered"
                            );
                        }
                        lost = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot put back CRM events yet; retrying")
                    }
                }
            }
            match self.step().await {
                Ok(Round::Done(_)) => continue,
                Ok(Round::Empty) => {}
                Err(e) => {
                    lost = true;
                    tracing::warn!(error = %e, "CRM round failed; retrying");
                }
            }
            let idle = match storage::crm::next_due(&self.db).await {
                Ok(Some(at)) => {
                    Duration::from_millis(u64::try_from(at - self.clock.now_ms()).unwrap_or(0))
                        .clamp(Duration::from_millis(20), Duration::from_millis(500))
                }
                _ => Duration::from_millis(500),
            };
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("CRM worker stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), MAX_BACKOFF);
        // A receiver down for a day is retried about 300 times, never dropped.
        let mut elapsed = Duration::ZERO;
        let mut attempts = 0;
        while elapsed < Duration::from_secs(24 * 3600) {
            attempts += 1;
            elapsed += backoff(attempts);
        }
        assert!(Duration::from_millis(RETENTION_MS as u64) > elapsed);
        assert!(attempts > 200, "{attempts}");
    }
}
