//! Prometheus metrics served at `/metrics`: counters of what this process did (updates received,
//! steps, alerts, Telegram errors, Bot API latency, CRM deliveries) and gauges read from the
//! database at scrape time (leads by temperature, outbox depth and age), so every replica reports
//! the same shared state.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::outbox::Action;
use crate::storage::{Db, StorageError, ops};

/// Label: how an update arrived (`polling` or `webhook`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntakeLabel {
    pub intake: &'static str,
}

/// Label: a lead temperature.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TemperatureLabel {
    pub temperature: String,
}

/// Label: a class of Telegram error (`rate_limited`, `blocked`, `permanent`, `migrated`, `transient`, `polling`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorClassLabel {
    pub class: &'static str,
}

/// Label: a Bot API method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

/// Label: the outcome of a CRM delivery attempt (`delivered`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

type Latency = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// Every metric leadbot exports; one per process, shared through `App`.
pub struct Metrics {
    registry: Registry,
    /// Updates stored (new ones only), by intake.
    pub updates_received: Family<IntakeLabel, Counter>,
    /// Webhook requests refused for a missing or wrong secret.
    pub webhook_rejected: Counter,
    /// Dialogue steps entered.
    pub steps: Counter,
    /// Hot-lead alert cards delivered to the staff chat.
    pub alerts_sent: Counter,
    /// Telegram errors met by the outbox worker and the poller, by class.
    pub telegram_errors: Family<ErrorClassLabel, Counter>,
    /// Bot API request latency, by method.
    pub bot_api_latency: Latency,
    /// CRM delivery attempts, by outcome.
    pub crm_deliveries: Family<OutcomeLabel, Counter>,
    leads: Family<TemperatureLabel, Gauge>,
    outbox_depth: Gauge,
    outbox_oldest_due_age: Gauge<f64, AtomicU64>,
    crm_queue: Gauge,
    updates_pending: Gauge,
    broadcast_id: Gauge,
    broadcast_sent: Gauge,
    broadcast_failed: Gauge,
    broadcast_total: Gauge,
}

fn latency_histogram() -> Histogram {
    // 5 ms .. ~20 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `leadbot_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("leadbot");
        let m = Metrics {
            updates_received: Family::default(),
            webhook_rejected: Counter::default(),
            steps: Counter::default(),
            alerts_sent: Counter::default(),
            telegram_errors: Family::default(),
            bot_api_latency: Family::new_with_constructor(latency_histogram),
            crm_deliveries: Family::default(),
            leads: Family::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_due_age: Gauge::default(),
            crm_queue: Gauge::default(),
            updates_pending: Gauge::default(),
            broadcast_id: Gauge::default(),
            broadcast_sent: Gauge::default(),
            broadcast_failed: Gauge::default(),
            broadcast_total: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "updates_received",
            "Updates stored for processing, by intake",
            m.updates_received.clone(),
        );
        registry.register(
            "webhook_rejected",
            "Webhook requests refused for a missing or wrong secret token",
            m.webhook_rejected.clone(),
        );
        registry.register("steps", "Dialogue steps entered", m.steps.clone());
        registry.register(
            "alerts_sent",
            "Hot-lead alert cards delivered to the staff chat",
            m.alerts_sent.clone(),
        );
        registry.register(
            "telegram_errors",
            "Telegram errors, by class",
            m.telegram_errors.clone(),
        );
        registry.register(
            "bot_api_request_duration_seconds",
            "Bot API request latency, by method",
            m.bot_api_latency.clone(),
        );
        registry.register(
            "crm_deliveries",
            "CRM webhook delivery attempts, by outcome",
            m.crm_deliveries.clone(),
        );
        registry.register("leads", "Leads by temperature", m.leads.clone());
        registry.register(
            "outbox_depth",
            "Outbox rows waiting or being delivered",
            m.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_due_age_seconds",
            "How long the oldest due outbox row has waited",
            m.outbox_oldest_due_age.clone(),
        );
        registry.register(
            "crm_queue_depth",
            "CRM events not yet delivered",
            m.crm_queue.clone(),
        );
        registry.register(
            "updates_pending",
            "Stored updates not yet applied",
            m.updates_pending.clone(),
        );
        registry.register(
            "broadcast_id",
            "The broadcast the progress gauges describe (the latest one reported)",
            m.broadcast_id.clone(),
        );
        registry.register(
            "broadcast_sent",
            "Messages the latest broadcast has delivered",
            m.broadcast_sent.clone(),
        );
        registry.register(
            "broadcast_failed",
            "Messages the latest broadcast could not deliver",
            m.broadcast_failed.clone(),
        );
        registry.register(
            "broadcast_audience",
            "Recipients the latest broadcast addresses",
            m.broadcast_total.clone(),
        );
        // Known label values start at zero, so rates work from the first scrape.
        for intake in ["polling", "webhook"] {
            let _ = m.updates_received.get_or_create(&IntakeLabel { intake });
        }
        for class in [
            "rate_limited",
            "blocked",
            "permanent",
            "migrated",
            "transient",
            "polling",
        ] {
            let _ = m.telegram_errors.get_or_create(&ErrorClassLabel { class });
        }
        for outcome in ["delivered", "failed"] {
            let _ = m.crm_deliveries.get_or_create(&OutcomeLabel { outcome });
        }
        Metrics { registry, ..m }
    }

    /// Records one Bot API request's latency.
    pub fn observe_bot_api(&self, method: &'static str, took: Duration) {
        self.bot_api_latency
            .get_or_create(&MethodLabel { method })
            .observe(took.as_secs_f64());
    }

    /// Counts a Telegram error of a class.
    pub fn telegram_error(&self, class: &'static str) {
        self.telegram_errors
            .get_or_create(&ErrorClassLabel { class })
            .inc();
    }

    /// Counts stored updates.
    pub fn received(&self, intake: &'static str, n: u64) {
        self.updates_received
            .get_or_create(&IntakeLabel { intake })
            .inc_by(n);
    }

    /// Reports a broadcast's progress (for the broadcast sender to call after each batch).
    pub fn broadcast_progress(&self, broadcast_id: i64, sent: u64, failed: u64, total: u64) {
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.broadcast_id.set(broadcast_id);
        self.broadcast_sent.set(clamp(sent));
        self.broadcast_failed.set(clamp(failed));
        self.broadcast_total.set(clamp(total));
    }

    /// Reads the shared state gauges from the database.
    pub async fn refresh(&self, db: &Db, now_ms: i64) -> Result<(), StorageError> {
        let counts = ops::leads_by_temperature(db).await?;
        // A temperature no lead has any more reads 0, not its last value.
        for temperature in ["cold", "warm", "hot"] {
            let n = counts
                .iter()
                .find(|(t, _)| t == temperature)
                .map_or(0, |(_, n)| *n);
            self.leads
                .get_or_create(&TemperatureLabel {
                    temperature: temperature.to_owned(),
                })
                .set(n);
        }
        let backlog = ops::outbox_backlog(db).await?;
        self.outbox_depth.set(backlog.depth);
        let age_ms = backlog.oldest_due.map_or(0, |at| (now_ms - at).max(0));
        // Milliseconds to seconds; precision loss past 2^53 ms is irrelevant.
        self.outbox_oldest_due_age.set(age_ms as f64 / 1000.0);
        self.crm_queue.set(ops::crm_backlog(db).await?);
        self.updates_pending
            .set(crate::storage::updates::pending_count(db).await?);
        Ok(())
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The Bot API method an action calls, for latency labels.
pub fn method_of(action: &Action) -> &'static str {
    match action {
        Action::SendMessage { .. } => "sendMessage",
        Action::EditMessage { .. } => "editMessageText",
        Action::RemoveButtons { .. } => "editMessageReplyMarkup",
        Action::AnswerCallback { .. } => "answerCallbackQuery",
        Action::CopyMessage { .. } => "copyMessage",
        Action::SendDocument { .. } => "sendDocument",
        Action::SendPhoto { .. } => "sendPhoto",
        Action::DeleteMessage { .. } => "deleteMessage",
        Action::CreateTopic { .. } => "createForumTopic",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_family() {
        let m = Metrics::new();
        m.received("webhook", 3);
        m.telegram_error("rate_limited");
        m.observe_bot_api("sendMessage", Duration::from_millis(12));
        m.broadcast_progress(7, 10, 1, 20);
        let text = m.encode();
        assert!(
            text.contains("leadbot_updates_received_total{intake=\"webhook\"} 3"),
            "{text}"
        );
        assert!(text.contains("leadbot_telegram_errors_total{class=\"rate_limited\"} 1"));
        assert!(
            text.contains(
                "leadbot_bot_api_request_duration_seconds_count{method=\"sendMessage\"} 1"
            )
        );
        assert!(text.contains("leadbot_broadcast_id 7"));
        assert!(text.contains("leadbot_broadcast_sent 10"));
        assert!(text.contains("leadbot_broadcast_audience 20"));
        assert!(text.contains("leadbot_telegram_errors_total{class=\"blocked\"} 0"));
        assert!(text.contains("# TYPE leadbot_outbox_depth gauge"));
        assert!(text.ends_with("# EOF\n"));
    }
}
