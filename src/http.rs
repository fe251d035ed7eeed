//! The HTTP server on `LEADBOT_HTTP_ADDR`: `/healthz`, `/metrics` and, in webhook mode, the
//! endpoint Telegram POSTs updates to.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::app::App;
use crate::config::Secret;
use crate::storage;

/// Webhook intake: where Telegram posts and the secret it must present.
pub struct WebhookIntake {
    /// The path of `LEADBOT_WEBHOOK_URL`.
    pub path: String,
    pub secret: Secret,
    /// Wakes the update processor.
    pub stored: Arc<Notify>,
}

struct HttpState {
    app: Arc<App>,
    webhook: Option<WebhookIntake>,
}

/// The routes.
pub fn router(app: Arc<App>, webhook: Option<WebhookIntake>) -> Router {
    let path = webhook.as_ref().map(|w| w.path.clone());
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    if let Some(path) = path {
        router = router.route(&path, post(telegram_update));
    }
    router.with_state(Arc::new(HttpState { app, webhook }))
}

/// 200 when the database answers a trivial query within two seconds, 503 otherwise.
async fn healthz(State(s): State<Arc<HttpState>>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), s.app.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out\n"),
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let app = &s.app;
    if let Err(e) = app.metrics.refresh(&app.db, app.clock.now_ms()).await {
        // Counters are still worth serving; the database gauges keep their last values.
        tracing::warn!(error = %e, "metrics: cannot read the database");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

/// Compares without leaking where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// An update from Telegram: checked, stored durably, then acknowledged.
async fn telegram_update(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(intake) = &s.webhook else {
        return StatusCode::NOT_FOUND;
    };
    let app = &s.app;
    match headers.get("x-telegram-bot-api-secret-token") {
        None => {
            app.metrics.webhook_rejected.inc();
            return StatusCode::UNAUTHORIZED;
        }
        Some(v) if !same_secret(v.as_bytes(), intake.secret.expose().as_bytes()) => {
            app.metrics.webhook_rejected.inc();
            tracing::warn!("webhook request with a wrong secret token refused");
            return StatusCode::FORBIDDEN;
        }
        Some(_) => {}
    }
    let update = match crate::telegram::webhook::intake(&body) {
        Ok(u) => u.incoming,
        Err(why) => {
            tracing::warn!(why, "webhook request refused");
            return StatusCode::BAD_REQUEST;
        }
    };
    // Stored before answering: a 200 is Telegram's signal to forget the update.
    match storage::updates::store_one(&app.db, &update, app.clock.now_ms()).await {
        Ok(new) => {
            if new {
                app.metrics.received("webhook", 1);
                intake.stored.notify_one();
            }
            StatusCode::OK
        }
        Err(e) => {
            tracing::error!(update_id = update.update_id, error = %e, "cannot store an update; Telegram will resend it");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
