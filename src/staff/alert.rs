//! Alerts: one card per lead turning hot, and the Take / Won / Lost buttons on it.

use super::card::{self, Card};
use super::{manager_name, record_action};
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::event::Person;
use crate::app::prospect::ProspectError;
use crate::dialogue::{Script, Session};
use crate::outbox::Action;
use crate::storage::leads::Lead;
use crate::storage::{self, StorageError};

/// The idempotency key of a lead's alert card: one per lead, ever.
pub fn alert_key(lead_id: i64) -> String {
    format!("alert:{lead_id}")
}

/// Builds the card of a lead.
pub fn card_of(lead: &Lead, script: Option<&Script>, now: i64) -> Card {
    let session: Session = serde_json::from_str(&lead.session).unwrap_or_default();
    let mut answers = Vec::new();
    match script {
        Some(script) => {
            for step in &script.steps {
                for a in session.answers.values().filter(|a| a.step == step.name) {
                    answers.push((a.question.clone(), a.value.clone()));
                }
            }
        }
        None => answers.extend(
            session
                .answers
                .values()
                .map(|a| (a.question.clone(), a.value.clone())),
        ),
    }
    let telegram_name = match (&lead.first_name, &lead.last_name) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (Some(f), None) => Some(f.clone()),
        _ => None,
    };
    Card {
        lead_id: lead.id,
        name: lead.name.clone(),
        telegram_name,
        username: lead.username.clone(),
        telegram_id: lead.telegram_id,
        phone: lead.phone.clone(),
        email: lead.email.clone(),
        source: lead.source.clone(),
        answers,
        breakdown: session.breakdown,
        score: lead.score,
        temperature: lead.temperature.clone(),
        first_contact_ms: lead.created_at,
        now_ms: now,
        owner: match (&lead.manager_name, lead.taken_at) {
            (Some(n), Some(at)) => Some((n.clone(), at)),
            _ => None,
        },
        status: lead.status.clone(),
    }
}

/// Enqueues the lead's alert card in the staff chat (once per lead).
pub async fn enqueue_alert(app: &App, ctx: &mut Ctx, lead: &Lead) -> Result<(), StorageError> {
    let script = match &lead.dialogue_version {
        Some(v) => app.scripts.version(&mut ctx.tx, v).await?,
        None => None,
    };
    let c = card_of(lead, script.as_deref(), ctx.now);
    if app.staff_forum.may_be_forum() {
        // Queued before the card in the same chat, so the topic exists when the card is sent.
        let topic = Action::CreateTopic {
            name: super::topics::topic_name(lead),
        };
        ctx.enqueue_keyed(
            &super::topics::topic_key(lead.id),
            Some(lead.id),
            app.staff_chat.id(),
            &topic,
        )
        .await?;
    }
    let action = Action::SendMessage {
        text: card::html(&c),
        html: true,
        markup: card::buttons(lead.id, &lead.status, lead.manager_id.is_some()),
        reply_to: None,
        thread_id: None,
        lead_topic: true,
    };
    let new = ctx
        .enqueue_keyed(
            &alert_key(lead.id),
            Some(lead.id),
            app.staff_chat.id(),
            &action,
        )
        .await?;
    if new.is_some() {
        tracing::info!(lead_id = lead.id, "hot lead alert queued");
    }
    Ok(())
}

async fn edit_card(app: &App, ctx: &mut Ctx, lead: &Lead) -> Result<(), StorageError> {
    let card_key = alert_key(lead.id);
    let Some(row) = storage::outbox::by_key_in(&mut ctx.tx, &card_key).await? else {
        return Ok(());
    };
    // A manager may press a button of the card before its delivery is recorded (Telegram had
    // accepted it a moment before): the edit then names the card's row, and the outbox looks
    // its message id up when it sends the edit, after the card.
    let (message_id, of_key) = match row.telegram_message_id.and_then(|m| i32::try_from(m).ok()) {
        Some(id) => (id, None),
        None if matches!(row.status.as_str(), "queued" | "pending" | "sending") => {
            (0, Some(card_key))
        }
        None => return Ok(()),
    };
    let script = match &lead.dialogue_version {
        Some(v) => app.scripts.version(&mut ctx.tx, v).await?,
        None => None,
    };
    let c = card_of(lead, script.as_deref(), ctx.now);
    let action = Action::EditMessage {
        message_id,
        text: card::html(&c),
        html: true,
        markup: card::buttons(lead.id, &lead.status, lead.manager_id.is_some()),
        of_key,
    };
    let key = ctx.next_key("card");
    ctx.enqueue_keyed(&key, Some(lead.id), app.staff_chat.id(), &action)
        .await?;
    Ok(())
}

async fn lock_lead(ctx: &mut Ctx, lead_id: i64) -> Result<Option<Lead>, StorageError> {
    storage::leads::lock_by_id(&mut ctx.tx, lead_id).await
}

/// Take: the first press owns the lead; later presses are told who has it.
pub async fn take(
    app: &App,
    ctx: &mut Ctx,
    lead_id: i64,
    who: &Person,
) -> Result<String, ProspectError> {
    let Some(mut lead) = lock_lead(ctx, lead_id).await? else {
        return Ok("Лид не найден.".into());
    };
    if let Some(owner) = &lead.manager_name {
        if lead.manager_id == Some(who.id) {
            return Ok("Этот лид уже ваш.".into());
        }
        return Ok(format!("Лид уже взял {owner}."));
    }
    lead.manager_id = Some(who.id);
    lead.manager_name = Some(manager_name(who));
    lead.taken_at = Some(ctx.now);
    if !matches!(lead.status.as_str(), "won" | "lost") {
        lead.status = "in_work".into();
    }
    storage::leads::save(&mut ctx.tx, &lead);
    record_action(ctx, lead.id, who, "took the lead").await?;
    edit_card(app, ctx, &lead).await?;
    crate::crm::record(app, ctx, crate::crm::LeadEvent::Taken, &lead).await?;
    tracing::info!(lead_id, manager_id = who.id, "lead taken");
    Ok("Лид ваш. Ответьте на карточку, чтобы написать клиенту.".into())
}

/// Won / Lost: closes the lead and edits the card.
pub async fn close(
    app: &App,
    ctx: &mut Ctx,
    lead_id: i64,
    who: &Person,
    outcome: &str,
) -> Result<String, ProspectError> {
    let Some(mut lead) = lock_lead(ctx, lead_id).await? else {
        return Ok("Лид не найден.".into());
    };
    if matches!(lead.status.as_str(), "won" | "lost") {
        return Ok("Лид уже закрыт.".into());
    }
    if lead.manager_id.is_none() {
        lead.manager_id = Some(who.id);
        lead.manager_name = Some(manager_name(who));
        lead.taken_at = Some(ctx.now);
    }
    lead.status = outcome.to_owned();
    lead.closed_at = Some(ctx.now);
    storage::leads::save(&mut ctx.tx, &lead);
    record_action(
        ctx,
        lead.id,
        who,
        if outcome == "won" {
            "closed as won"
        } else {
            "closed as lost"
        },
    )
    .await?;
    edit_card(app, ctx, &lead).await?;
    let event = if outcome == "won" {
        crate::crm::LeadEvent::Won
    } else {
        crate::crm::LeadEvent::Lost
    };
    crate::crm::record(app, ctx, event, &lead).await?;
    Ok(if outcome == "won" {
        "Отмечено: выиграна."
    } else {
        "Отмечено: проиграна."
    }
    .into())
}
