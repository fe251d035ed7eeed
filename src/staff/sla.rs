//! SLA: a hot lead nobody took within `LEADBOT_HOT_SLA` is re-announced as a reply to its card,
//! at most three times. [`step`] is one round, callable from tests.

use super::alert::alert_key;
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::outbox::{Action, Markup};
use crate::storage::{self, StorageError};

/// Re-announcements per lead.
pub const MAX_REMINDERS: i32 = 3;

/// One round: re-announces every overdue hot lead. Returns how many were re-announced.
pub async fn step(app: &App) -> Result<usize, StorageError> {
    let now = app.clock.now_ms();
    let sla = i64::try_from(app.settings.hot_sla.as_millis()).unwrap_or(i64::MAX);
    let due = storage::leads::sla_due(&app.db, now, sla, MAX_REMINDERS).await?;
    let mut n = 0;
    for candidate in due {
        let tx = app.db.begin().await?;
        let mut ctx = Ctx::new(tx, now, 0);
        let Some(mut lead) = storage::leads::lock_by_id(&mut ctx.tx, candidate.id).await? else {
            continue;
        };
        // Re-check under the lock: another replica or a Take may have come first.
        let Some(hot_at) = lead.hot_at else { continue };
        if lead.manager_id.is_some()
            || lead.sla_reminders >= MAX_REMINDERS
            || hot_at + sla * i64::from(lead.sla_reminders + 1) > now
        {
            continue;
        }
        lead.sla_reminders += 1;
        let card = storage::outbox::by_key_in(&mut ctx.tx, &alert_key(lead.id)).await?;
        let reply_to = card
            .and_then(|r| r.telegram_message_id)
            .and_then(|m| i32::try_from(m).ok());
        let minutes = (now - hot_at) / 60_000;
        let text = format!(
            "⏰ Горячий лид #{} ждёт уже {} мин — никто не взял. Нажмите «Взять» на карточке.",
            lead.id, minutes
        );
        let key = format!("sla:{}:{}", lead.id, lead.sla_reminders);
        let action = Action::SendMessage {
            text,
            html: false,
            markup: Markup::None,
            reply_to,
            thread_id: None,
            lead_topic: true,
        };
        ctx.enqueue_keyed(&key, Some(lead.id), app.staff_chat.id(), &action)
            .await?;
        storage::leads::save(&mut ctx.tx, &lead);
        ctx.tx.commit().await?;
        n += 1;
    }
    if n > 0 {
        app.outbox_wake.notify_one();
    }
    Ok(n)
}
