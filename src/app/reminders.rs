//! Reminders: a lead silent in the middle of a dialogue gets the dialogue's `remind_after`
//! nudges — the current question again with a short lead-in — never in quiet hours, never after
//! /stop, and never twice for the same silence (keyed by lead, gap and last inbound time).
//! [`step`] is one round, run by the timers task and callable from tests.

use super::App;
use super::ctx::Ctx;
use super::prospect::{lang_of, markup_for};
use crate::dialogue::{self, Effect, Input, Position, Session};
use crate::outbox::Action;
use crate::storage::{self, StorageError};

/// Leads looked at per round.
const BATCH: i64 = 200;
/// Silences longer than this get no more reminders (keeps each round to recent leads).
pub const HORIZON_MS: i64 = 30 * 86_400_000;

/// One round: sends every reminder that is due. Returns how many were sent.
pub async fn step(app: &App) -> Result<usize, StorageError> {
    let now = app.clock.now_ms();
    if crate::broadcast::is_quiet(&app.settings, now) {
        return Ok(0);
    }
    let ids = storage::reminders::candidates(&app.db, now, now - HORIZON_MS, now, BATCH).await?;
    let mut sent = 0;
    for id in ids {
        let tx = app.db.begin().await?;
        let mut ctx = Ctx::new(tx, now, 0);
        let Some(lead) = storage::leads::lock_by_id(&mut ctx.tx, id).await? else {
            continue;
        };
        // Re-check under the lock: the lead may have answered or pressed /stop meanwhile.
        let (Some(silent_since), Some(version)) =
            (lead.last_inbound_at, lead.dialogue_version.clone())
        else {
            continue;
        };
        if lead.unsubscribed || lead.blocked || lead.erased || lead.chat_id.is_none() {
            continue;
        }
        let session: Session = serde_json::from_str(&lead.session).unwrap_or_default();
        let script = match app.scripts.version(&mut ctx.tx, &version).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(lead_id = id, error = %e, "no script for a reminder");
                None
            }
        };
        let (Some(script), Position::Waiting(_)) = (script, session.position) else {
            storage::reminders::set(&mut ctx.tx, id, silent_since, 0, None, now).await?;
            ctx.tx.commit().await?;
            continue;
        };
        let mut gaps: Vec<i64> = script
            .remind_after
            .iter()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
            .collect();
        gaps.sort_unstable();
        let done = storage::reminders::sent_since(&mut ctx.tx, id, silent_since).await?;
        let elapsed = now - silent_since;
        // Only the latest due gap is sent: a nudge missed in quiet hours is not sent late twice.
        let due = gaps.iter().rposition(|g| *g <= elapsed);
        let mut now_done = done;
        if let Some(index) = due
            && u32::try_from(index).unwrap_or(u32::MAX) >= done
        {
            let lang = lang_of(&lead, Some(&script));
            let tr = dialogue::advance(&script, &session, Input::Start);
            let mut first = true;
            for (n, effect) in tr.effects.iter().enumerate() {
                if let Effect::Send(reply) = effect {
                    let text = if first {
                        format!(
                            "{}\n\n{}",
                            crate::broadcast::texts::reminder_lead_in(lang),
                            reply.text
                        )
                    } else {
                        reply.text.clone()
                    };
                    first = false;
                    let key = format!("remind:{id}:{index}:{silent_since}:{n}");
                    let action = Action::text(text, markup_for(&script, &reply.keyboard));
                    crate::broadcast::offer::send_keyed(&mut ctx, &lead, &key, action).await?;
                }
            }
            tracing::info!(lead_id = id, gap = index, "reminder sent");
            now_done = u32::try_from(index + 1).unwrap_or(u32::MAX);
            sent += 1;
        }
        let next_at = usize::try_from(now_done)
            .ok()
            .and_then(|i| gaps.get(i))
            .map(|g| silent_since + g);
        storage::reminders::set(&mut ctx.tx, id, silent_since, now_done, next_at, now).await?;
        ctx.tx.commit().await?;
        if ctx.enqueued {
            app.outbox_wake.notify_one();
        }
    }
    Ok(sent)
}
