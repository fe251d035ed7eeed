//! The daily digest: once a day, after `LEADBOT_DIGEST_HOUR` in the business time zone, the staff chat gets
//! the last day's figures and every hot lead still waiting for a manager after its SLA
//! re-announcements ran out. The idempotency key `digest:DATE` makes it once a day across restarts
//! and replicas. A look that finds nothing to report (or today's digest already queued) waits ten
//! minutes before the next, instead of querying at every timer tick.

use std::sync::atomic::Ordering;

use chrono::{NaiveDate, TimeZone, Timelike};

use super::card::{self, escape_html};
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::outbox::{Action, Markup};
use crate::storage::{self, StorageError};

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// How long after a look that found nothing to report the next look waits (timer ticks come every
/// few seconds; a digest found this much later is still the day's).
const IDLE_MS: i64 = 10 * 60 * 1000;

/// The idempotency key of a day's digest.
pub fn digest_key(date: NaiveDate) -> String {
    format!("digest:{date}")
}

/// One round: posts today's digest if it is time and it was not posted yet. True when posted.
pub async fn step(app: &App) -> Result<bool, StorageError> {
    let Some(hour) = app.settings.digest_hour else {
        return Ok(false);
    };
    let now = app.clock.now_ms();
    let Some(local) = app.settings.timezone.timestamp_millis_opt(now).single() else {
        return Ok(false);
    };
    if local.hour() < hour || now < app.digest_idle_until.load(Ordering::Relaxed) {
        return Ok(false);
    }
    let key = digest_key(local.date_naive());
    if storage::outbox::by_key(&app.db, &key).await?.is_some() {
        app.digest_idle_until
            .store(now.saturating_add(IDLE_MS), Ordering::Relaxed);
        return Ok(false);
    }
    let new = storage::leads::created_between(&app.db, now - DAY_MS, now).await?;
    let waiting = storage::leads::unclaimed_hot(&app.db, super::sla::MAX_REMINDERS, 30).await?;
    if new.total == 0 && waiting.is_empty() {
        app.digest_idle_until
            .store(now.saturating_add(IDLE_MS), Ordering::Relaxed);
        return Ok(false);
    }
    let mut text = format!(
        "📋 <b>Сводка за сутки</b> ({})\nНовых лидов: {} (горячих {}, тёплых {}, холодных {}).\n",
        local.format("%d.%m.%Y"),
        new.total,
        new.hot,
        new.warm,
        new.cold
    );
    if !waiting.is_empty() {
        text.push_str("\n<b>Горячие лиды без менеджера:</b>\n");
        for l in &waiting {
            let who = l
                .name
                .clone()
                .or_else(|| l.first_name.clone())
                .unwrap_or_else(|| "—".into());
            let line = format!(
                "🔥 /lead {} · {} · ждёт {}\n",
                l.id,
                escape_html(&card::cut(&who, 40)),
                card::since(l.hot_at.unwrap_or(l.created_at), now)
            );
            if text.chars().count() + line.chars().count() > 3900 {
                break;
            }
            text.push_str(&line);
        }
        text.push_str("Нажмите /lead ID, чтобы открыть карточку и взять лид.");
    }
    let tx = app.db.begin().await?;
    let mut ctx = Ctx::new(tx, now, 0);
    let action = Action::SendMessage {
        text,
        html: true,
        markup: Markup::None,
        reply_to: None,
        thread_id: None,
        lead_topic: false,
    };
    let queued = ctx
        .enqueue_keyed(&key, None, app.staff_chat.id(), &action)
        .await?;
    ctx.tx.commit().await?;
    if queued.is_some() {
        app.outbox_wake.notify_one();
        tracing::info!(waiting = waiting.len(), "daily digest queued");
    }
    Ok(queued.is_some())
}
