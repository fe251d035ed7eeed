//! The managers' side: the alert card, claiming and closing leads, staff commands and relay.

pub mod alert;
pub mod card;
pub mod chart;
pub mod chat;
pub mod commands;
pub mod digest;
pub mod relay;
pub mod sla;
pub mod stats;
pub mod topics;

use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::event::{Content, Person};
use crate::app::prospect::ProspectError;
use crate::domain::CallbackData;
use crate::storage;

/// A button press in the staff chat (or by a listed manager in private).
pub async fn on_callback(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    query_id: &str,
    data: Option<&str>,
    _message_id: Option<i32>,
) -> Result<(), ProspectError> {
    let chat = app.staff_chat.id();
    let parsed = data.map(CallbackData::parse);
    let notice = match parsed {
        Some(Ok(CallbackData::Take(id))) => alert::take(app, ctx, id, from).await?,
        Some(Ok(CallbackData::Won(id))) => alert::close(app, ctx, id, from, "won").await?,
        Some(Ok(CallbackData::Lost(id))) => alert::close(app, ctx, id, from, "lost").await?,
        _ => {
            tracing::warn!(
                user_id = from.id,
                "unrecognised staff button press; refused"
            );
            "Эта кнопка не действует.".to_owned()
        }
    };
    ctx.answer_callback(chat, query_id, Some(&notice));
    Ok(())
}

/// A message in the staff chat: staff commands and replies to leads.
pub async fn on_message(
    app: &App,
    ctx: &mut Ctx,
    from: Option<&Person>,
    message_id: i32,
    thread_id: Option<i32>,
    reply_to: Option<i32>,
    content: Content,
) -> Result<(), ProspectError> {
    let Some(from) = from else { return Ok(()) };
    if let Content::Command { name, args } = &content
        && commands::COMMANDS.contains(&name.as_str())
    {
        return commands::run(app, ctx, app.staff_chat.id(), from, name, args, thread_id).await;
    }
    if let Content::Text(text) = &content
        && reply_to.is_none()
        && crate::broadcast::flow::on_text(app, ctx, app.staff_chat.id(), from, text, thread_id)
            .await?
    {
        return Ok(());
    }
    let mut relayed = false;
    if let Some(reply_to) = reply_to {
        relayed = relay::staff_to_lead(app, ctx, from, message_id, reply_to, &content).await?;
    }
    if !relayed && let Some(thread_id) = thread_id {
        relay::topic_to_lead(app, ctx, from, message_id, thread_id, &content).await?;
    }
    Ok(())
}

/// The display name of a manager.
pub fn manager_name(p: &Person) -> String {
    match &p.username {
        Some(u) => format!("{} (@{u})", p.full_name()),
        None => p.full_name(),
    }
}

/// Keeps a manager's action in the lead's history.
pub async fn record_action(
    ctx: &mut Ctx,
    lead_id: i64,
    who: &Person,
    what: &str,
) -> Result<(), ProspectError> {
    storage::messages::record(
        &mut ctx.tx,
        &storage::messages::NewMessage {
            lead_id,
            direction: "staff",
            kind: "action",
            text: Some(what),
            update_id: Some(ctx.update_id),
            outbox_id: None,
            telegram_message_id: None,
            author_id: Some(who.id),
        },
        ctx.now,
    );
    Ok(())
}
