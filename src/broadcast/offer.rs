//! The offer button: before expiry a press records one click per lead, adds the offer's points
//! (turning the lead hot alerts the managers) and asks for a phone when none is known; after
//! expiry it says the offer has ended and removes the button from that message.

use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::texts::Lang;
use crate::dialogue::{Position, ScoreItem, Script, Session, Thresholds};
use crate::domain::{Phone, Temperature};
use crate::outbox::{Action, Markup};
use crate::storage::broadcasts as store;
use crate::storage::leads::Lead;
use crate::storage::{self, StorageError};

use super::texts;

/// How long after a click a typed or shared number is taken as the lead's phone.
const PHONE_WINDOW_MS: i64 = 48 * 3_600_000;

/// Handles a press of an offer's call-to-action; returns the notice for the press.
pub async fn on_click(
    app: &App,
    ctx: &mut Ctx,
    lead: &mut Lead,
    script: Option<&Script>,
    lang: Lang,
    broadcast_id: i64,
) -> Result<&'static str, StorageError> {
    let stale = crate::app::texts::t(lang, crate::app::texts::Key::StaleButton);
    let Some(b) = store::get_in(&mut ctx.tx, broadcast_id).await? else {
        tracing::warn!(
            lead_id = lead.id,
            broadcast_id,
            "press of an unknown offer; refused"
        );
        return Ok(stale);
    };
    let Some((status, message_id)) = store::recipient_of(&mut ctx.tx, b.id, lead.id).await? else {
        tracing::warn!(
            lead_id = lead.id,
            broadcast_id,
            "press of an offer the lead never got; refused"
        );
        return Ok(stale);
    };
    if ctx.now >= b.expires_at || b.recall_requested_at.is_some() {
        if let (Some(mid), Some(chat)) =
            (message_id.and_then(|m| i32::try_from(m).ok()), lead.chat_id)
        {
            let key = format!("offer-ended:{}:{}", b.id, lead.id);
            ctx.enqueue_keyed(
                &key,
                Some(lead.id),
                chat,
                &Action::RemoveButtons { message_id: mid },
            )
            .await?;
        }
        return Ok(texts::ended(lang));
    }
    if !matches!(status.as_str(), "sent" | "unknown") {
        return Ok(stale);
    }
    if !store::record_click(&mut ctx.tx, b.id, lead.id, ctx.now).await? {
        return Ok(texts::already_clicked(lang));
    }
    tracing::info!(lead_id = lead.id, broadcast_id, "offer clicked");
    let thresholds = script
        .map(|s| s.thresholds)
        .unwrap_or(Thresholds { warm: 30, hot: 70 });
    let mut session: Session = serde_json::from_str(&lead.session).unwrap_or_default();
    let before = session.temperature(&thresholds);
    session.add_score(ScoreItem {
        step: "offer".into(),
        answer: format!("offer #{}", b.id),
        points: b.score,
        hot: false,
    });
    let after = session.temperature(&thresholds);
    lead.score = session.score;
    lead.temperature = after.as_str().to_owned();
    lead.session =
        serde_json::to_string(&session).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let waiting = matches!(session.position, Position::Waiting(_));
    if lead.phone.is_none() && !waiting {
        let markup = Markup::RequestContact {
            label: texts::share_phone(lang).into(),
        };
        let key = format!("offer-phone:{}:{}", b.id, lead.id);
        send_keyed(
            ctx,
            lead,
            &key,
            Action::text(texts::ask_phone(lang), markup),
        )
        .await?;
    }
    if after == Temperature::Hot && before != Temperature::Hot {
        if lead.hot_at.is_none() {
            lead.hot_at = Some(ctx.now);
        }
        app.on_turned_hot(ctx, lead).await?;
    }
    Ok(texts::clicked(lang))
}

/// After an offer click asked for a phone: a typed number or the sender's own shared contact
/// is kept as the lead's phone. Returns true when the message was taken that way.
pub async fn take_phone(
    ctx: &mut Ctx,
    lead: &mut Lead,
    candidate: &str,
    lang: Lang,
) -> Result<bool, StorageError> {
    if lead.phone.is_some() {
        return Ok(false);
    }
    let Ok(phone) = Phone::parse(candidate) else {
        return Ok(false);
    };
    if !clicked_since(ctx, lead.id, ctx.now - PHONE_WINDOW_MS).await? {
        return Ok(false);
    }
    lead.phone = Some(phone.as_str().to_owned());
    let key = format!("offer-phone-saved:{}:{}", lead.id, ctx.update_id);
    send_keyed(
        ctx,
        lead,
        &key,
        Action::text(texts::phone_saved(lang), Markup::Remove),
    )
    .await?;
    Ok(true)
}

async fn clicked_since(ctx: &mut Ctx, lead_id: i64, since: i64) -> Result<bool, StorageError> {
    store::clicked_since(&mut ctx.tx, lead_id, since).await
}

/// Enqueues a message to the lead under a fixed idempotency key and keeps it in the history.
pub async fn send_keyed(
    ctx: &mut Ctx,
    lead: &Lead,
    key: &str,
    action: Action,
) -> Result<(), StorageError> {
    let Some(chat_id) = lead.chat_id else {
        return Ok(());
    };
    let text = match &action {
        Action::SendMessage { text, .. } => Some(text.clone()),
        _ => None,
    };
    let id = ctx
        .enqueue_keyed(key, Some(lead.id), chat_id, &action)
        .await?;
    if let (Some(id), Some(text)) = (id, text) {
        storage::messages::record(
            &mut ctx.tx,
            &storage::messages::NewMessage {
                lead_id: lead.id,
                direction: "out",
                kind: "text",
                text: Some(&text),
                update_id: None,
                outbox_id: Some(id),
                telegram_message_id: None,
                author_id: None,
            },
            ctx.now,
        );
    }
    Ok(())
}
