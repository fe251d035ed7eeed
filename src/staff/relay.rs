//! Relay: the lead's messages after the dialogue reach the staff chat under the lead's card, and a
//! manager's reply to a card or relayed message reaches the lead through the bot.

use super::card::{cut, escape_html};
use super::{alert::alert_key, manager_name, record_action};
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::event::{Content, Person};
use crate::app::prospect::ProspectError;
use crate::outbox::{Action, Markup};
use crate::storage::leads::Lead;
use crate::storage::{self, StorageError};

/// Forwards a lead's message to the staff chat: a header as a reply to the card, then a copy of
/// anything that is not plain text.
pub async fn lead_to_staff(
    app: &App,
    ctx: &mut Ctx,
    lead: &Lead,
    message_id: i32,
    content: &Content,
) -> Result<(), StorageError> {
    let card = storage::outbox::by_key_in(&mut ctx.tx, &alert_key(lead.id)).await?;
    let reply_to = card
        .and_then(|r| r.telegram_message_id)
        .and_then(|m| i32::try_from(m).ok());
    let who = lead
        .name
        .clone()
        .or_else(|| lead.first_name.clone())
        .unwrap_or_else(|| format!("#{}", lead.id));
    let body = match content {
        Content::Text(t) => escape_html(&cut(t, 3500)),
        Content::Command { name, args } => escape_html(&format!("/{name} {args}")),
        Content::Contact { phone, .. } => format!("📱 {}", escape_html(phone)),
        Content::Media(kind) => format!("[{}]", format!("{kind:?}").to_lowercase()),
    };
    let header = format!(
        "💬 <b>#{} {}</b>:\n{}",
        lead.id,
        escape_html(&cut(&who, 64)),
        body
    );
    let key = ctx.next_key("relay");
    let thread_id = lead.topic_id.and_then(|t| i32::try_from(t).ok());
    ctx.enqueue_keyed(
        &key,
        Some(lead.id),
        app.staff_chat.id(),
        &Action::SendMessage {
            text: header,
            html: true,
            markup: Markup::None,
            reply_to,
            thread_id,
            lead_topic: true,
        },
    )
    .await?;
    if let (Content::Media(_), Some(chat)) = (content, lead.chat_id) {
        let key = ctx.next_key("relay");
        ctx.enqueue_keyed(
            &key,
            Some(lead.id),
            app.staff_chat.id(),
            &Action::CopyMessage {
                from_chat_id: chat,
                message_id,
                reply_to,
                thread_id,
                lead_topic: true,
            },
        )
        .await?;
    }
    Ok(())
}

/// A manager replied in the staff chat to one of the bot's messages: if it belongs to a lead,
/// deliver the reply to the lead. Returns false when the reply was not about a lead.
pub async fn staff_to_lead(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    message_id: i32,
    reply_to: i32,
    content: &Content,
) -> Result<bool, ProspectError> {
    let Some(lead_id) =
        storage::outbox::lead_of_message(&mut ctx.tx, app.staff_chat.id(), i64::from(reply_to))
            .await?
    else {
        return Ok(false);
    };
    relay_to_lead(app, ctx, from, message_id, lead_id, content).await
}

/// A manager wrote in a lead's forum topic: deliver it to the lead. False when the topic is no lead's.
pub async fn topic_to_lead(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    message_id: i32,
    thread_id: i32,
    content: &Content,
) -> Result<bool, ProspectError> {
    let Some(lead_id) = storage::leads::by_topic(&mut ctx.tx, i64::from(thread_id)).await? else {
        return Ok(false);
    };
    relay_to_lead(app, ctx, from, message_id, lead_id, content).await
}

/// Told to a manager, under their message, when it cannot reach the lead.
pub fn undelivered(manager_message_id: i32) -> Action {
    Action::SendMessage {
        text: "Не доставлено: лид заблокировал бота. Написать ему можно будет, когда он снова \
               запустит бота."
            .into(),
        html: false,
        markup: Markup::None,
        reply_to: Some(manager_message_id),
        thread_id: None,
        lead_topic: true,
    }
}

/// Copies a manager's message to the lead and keeps it in the lead's history.
async fn relay_to_lead(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    message_id: i32,
    lead_id: i64,
    content: &Content,
) -> Result<bool, ProspectError> {
    let Some(mut lead) = storage::leads::lock_by_id(&mut ctx.tx, lead_id).await? else {
        return Ok(false);
    };
    if lead.blocked {
        // Telegram would refuse it: say so now rather than send.
        let key = ctx.next_key("staff");
        ctx.enqueue_keyed(
            &key,
            Some(lead.id),
            app.staff_chat.id(),
            &undelivered(message_id),
        )
        .await?;
        return Ok(true);
    }
    let Some(chat) = lead.chat_id else {
        let key = ctx.next_key("staff");
        ctx.enqueue_keyed(
            &key,
            None,
            app.staff_chat.id(),
            &Action::SendMessage {
                text: "Этот лид удалил свои данные — написать ему нельзя.".into(),
                html: false,
                markup: Markup::None,
                reply_to: Some(message_id),
                thread_id: None,
                lead_topic: false,
            },
        )
        .await?;
        return Ok(true);
    };
    let key = ctx.next_key("reply");
    let outbox_id = ctx
        .enqueue_keyed(
            &key,
            Some(lead.id),
            chat,
            &Action::CopyMessage {
                from_chat_id: app.staff_chat.id(),
                message_id,
                reply_to: None,
                thread_id: None,
                lead_topic: false,
            },
        )
        .await?;
    let text = match content {
        Content::Text(t) => t.clone(),
        Content::Command { name, args } => format!("/{name} {args}"),
        Content::Contact { phone, .. } => phone.clone(),
        Content::Media(kind) => format!("[{}]", format!("{kind:?}").to_lowercase()),
    };
    storage::messages::record(
        &mut ctx.tx,
        &storage::messages::NewMessage {
            lead_id: lead.id,
            direction: "staff",
            kind: "reply",
            text: Some(&text),
            update_id: Some(ctx.update_id),
            outbox_id,
            telegram_message_id: None,
            author_id: Some(from.id),
        },
        ctx.now,
    );
    if lead.first_reply_at.is_none() {
        lead.first_reply_at = Some(ctx.now);
    }
    if lead.manager_id.is_none() {
        lead.manager_id = Some(from.id);
        lead.manager_name = Some(manager_name(from));
        lead.taken_at = Some(ctx.now);
        if !matches!(lead.status.as_str(), "won" | "lost") {
            lead.status = "in_work".into();
        }
        record_action(ctx, lead.id, from, "took the lead by replying").await?;
    }
    lead.last_activity_at = ctx.now;
    storage::leads::save(&mut ctx.tx, &lead);
    Ok(true)
}
