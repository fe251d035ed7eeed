//! The prospect's side: private messages, commands, dialogue buttons, /stop, /mydata, /forget.
//!
//! Each handler runs inside the update's transaction: the engine decides, and the answer, the
//! session and the outgoing messages are written together.

use std::sync::Arc;

use serde_json::json;

use super::App;
use super::ctx::Ctx;
use super::event::{Content, Person};
use super::texts::{Key, Lang, t};
use crate::dialogue::{
    self, Effect, Fact, Input, InputKind, Keyboard, Position, Script, Session, StepKind, Transition,
};
use crate::domain::{CallbackData, Source};
use crate::outbox::{Action, Button, Markup};
use crate::storage::leads::{Lead, NewLead};
use crate::storage::{self, StorageError};

/// Errors while applying a prospect's update.
#[derive(Debug, thiserror::Error)]
pub enum ProspectError {
    #[error(transparent)]
    Storage(#[from] StorageError),
}

type Result<T> = std::result::Result<T, ProspectError>;

/// The system-text language for a lead.
pub fn lang_of(lead: &Lead, script: Option<&Script>) -> Lang {
    match script {
        Some(s) => Lang::from_code(Some(&s.locale)),
        None => Lang::from_code(lead.language_code.as_deref()),
    }
}

fn history_kind(content: &Content) -> (&'static str, String) {
    match content {
        Content::Command { name, args } if args.is_empty() => ("command", format!("/{name}")),
        Content::Command { name, args } => ("command", format!("/{name} {args}")),
        Content::Text(t) => ("text", t.clone()),
        Content::Contact { phone, .. } => ("contact", phone.clone()),
        Content::Media(kind) => ("media", format!("[{kind:?}]").to_lowercase()),
    }
}

async fn find_or_create(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    source: Option<&Source>,
) -> Result<Lead> {
    let existing = storage::leads::lock_by_telegram(&mut ctx.tx, from.id).await?;
    let created = existing.is_none();
    let mut lead = match existing {
        Some(l) => l,
        None => {
            let src = source.cloned().unwrap_or_else(Source::direct);
            let new = NewLead {
                telegram_id: from.id,
                chat_id: from.id,
                username: from.username.as_deref(),
                first_name: Some(&from.first_name),
                last_name: from.last_name.as_deref(),
                language_code: from.language_code.as_deref(),
                source: src.as_str(),
            };
            let lead = storage::leads::insert(&mut ctx.tx, &new, ctx.now).await?;
            tracing::info!(lead_id = lead.id, source = %src, "new lead");
            lead
        }
    };
    lead.username = from.username.clone();
    lead.first_name = Some(from.first_name.clone());
    lead.last_name = from.last_name.clone();
    if from.language_code.is_some() {
        lead.language_code = from.language_code.clone();
    }
    if created {
        crate::crm::record(app, ctx, crate::crm::LeadEvent::Created, &lead).await?;
    }
    Ok(lead)
}

fn session_of(lead: &Lead) -> Session {
    serde_json::from_str(&lead.session).unwrap_or_default()
}

async fn pinned_script(app: &App, ctx: &mut Ctx, lead: &Lead) -> Result<Option<Arc<Script>>> {
    match &lead.dialogue_version {
        Some(v) => Ok(app.scripts.version(&mut ctx.tx, v).await?),
        None => Ok(None),
    }
}

/// A message in the private chat.
/// `album_seen`: the message is a later item of an album whose first item was answered already;
/// it is kept and passed on, but not answered again.
pub async fn on_message(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    message_id: i32,
    content: Content,
    album_seen: bool,
) -> Result<()> {
    if let Content::Command { name, args } = &content
        && crate::staff::commands::COMMANDS.contains(&name.as_str())
    {
        if app.settings.managers.contains(&from.id) {
            return crate::staff::commands::run(app, ctx, from.id, from, name, args, None).await;
        }
        tracing::warn!(user_id = from.id, command = %name, "staff command from a non-manager; refused");
    }
    if let Content::Text(text) = &content
        && app.settings.managers.contains(&from.id)
        && crate::broadcast::flow::on_text(app, ctx, from.id, from, text, None).await?
    {
        return Ok(());
    }
    let payload_source = match &content {
        Content::Command { name, args } if name == "start" && !args.is_empty() => {
            Source::parse(args).ok()
        }
        _ => None,
    };
    let mut lead = find_or_create(app, ctx, from, payload_source.as_ref()).await?;
    lead.last_activity_at = ctx.now;
    lead.last_inbound_at = Some(ctx.now);
    let (kind, text) = history_kind(&content);
    record_inbound(ctx, &lead, kind, &text).await?;

    let script = pinned_script(app, ctx, &lead).await?;
    let session = session_of(&lead);
    let lang = lang_of(&lead, script.as_deref());
    // «Стоп» or "unsubscribe" typed as a message is /stop, unless it answers the question asked.
    let content = match content {
        Content::Text(text)
            if asks_to_stop(&text)
                && !script
                    .as_deref()
                    .is_some_and(|s| dialogue::picks_a_choice(s, &session, &text)) =>
        {
            Content::Command {
                name: "stop".into(),
                args: String::new(),
            }
        }
        other => other,
    };

    match content {
        Content::Command { name, .. } => match name.as_str() {
            "start" => {
                if lead.unsubscribed {
                    lead.unsubscribed = false;
                    ctx.send_to_lead(
                        &lead,
                        Action::text(t(lang, Key::Resubscribed), Markup::None),
                    )?;
                }
                match (&script, session.position) {
                    (Some(script), Position::Waiting(_)) => {
                        let tr = dialogue::advance(script, &session, Input::Start);
                        apply(app, ctx, &mut lead, script, tr).await?;
                    }
                    (Some(_), Position::Ended(_)) => {
                        let markup = Markup::Inline {
                            rows: vec![
                                vec![Button {
                                    text: t(lang, Key::StartOver).into(),
                                    data: CallbackData::Restart.to_string(),
                                }],
                                vec![Button {
                                    text: t(lang, Key::WriteManager).into(),
                                    data: CallbackData::Manager.to_string(),
                                }],
                            ],
                        };
                        ctx.send_to_lead(&lead, Action::text(t(lang, Key::WelcomeBack), markup))?;
                    }
                    _ => begin(app, ctx, &mut lead).await?,
                }
            }
            "help" => {
                ctx.send_to_lead(&lead, Action::text(t(lang, Key::Help), Markup::None))?;
            }
            "stop" => {
                lead.unsubscribed = true;
                ctx.send_to_lead(&lead, Action::text(t(lang, Key::Stopped), Markup::None))?;
            }
            "mydata" => send_my_data(ctx, &lead, lang).await?,
            "forget" => {
                let markup = Markup::Inline {
                    rows: vec![vec![
                        Button {
                            text: t(lang, Key::ForgetYes).into(),
                            data: CallbackData::ForgetYes.to_string(),
                        },
                        Button {
                            text: t(lang, Key::ForgetNo).into(),
                            data: CallbackData::ForgetNo.to_string(),
                        },
                    ]],
                };
                ctx.send_to_lead(&lead, Action::text(t(lang, Key::ForgetConfirm), markup))?;
            }
            _ => {
                ctx.send_to_lead(
                    &lead,
                    Action::text(t(lang, Key::UnknownCommand), Markup::None),
                )?;
            }
        },
        other => {
            let input = match other {
                Content::Text(text) => Input::Text(text),
                Content::Contact { phone, user_id } => Input::Contact {
                    phone,
                    own: user_id == Some(from.id),
                },
                Content::Media(kind) => Input::Media(kind),
                Content::Command { .. } => Input::Start,
            };
            // After an offer click asked for a phone, a number is kept rather than relayed.
            let phone_taken = match (session.position, phone_candidate(&input)) {
                (Position::Waiting(_), _) | (_, None) => false,
                (_, Some(candidate)) => {
                    crate::broadcast::offer::take_phone(ctx, &mut lead, candidate, lang).await?
                }
            };
            match (&script, session.position) {
                _ if phone_taken => {
                    // The managers see the number the offer asked for.
                    let content = Content::Contact {
                        phone: lead.phone.clone().unwrap_or_default(),
                        user_id: Some(from.id),
                    };
                    crate::staff::relay::lead_to_staff(app, ctx, &lead, message_id, &content)
                        .await?;
                }
                // The photos after an album's first: the question was asked again once.
                (Some(_), Position::Waiting(_))
                    if album_seen && matches!(input, Input::Media(_)) => {}
                (Some(script), Position::Waiting(_)) => {
                    let tr = dialogue::advance(script, &session, input);
                    apply(app, ctx, &mut lead, script, tr).await?;
                }
                (Some(_), Position::Ended(_)) => {
                    let original = match input {
                        Input::Text(t) => Content::Text(t),
                        Input::Contact { phone, .. } => Content::Contact {
                            phone,
                            user_id: None,
                        },
                        Input::Media(k) => Content::Media(k),
                        _ => Content::Text(String::new()),
                    };
                    crate::staff::relay::lead_to_staff(app, ctx, &lead, message_id, &original)
                        .await?;
                    if !album_seen {
                        ctx.send_to_lead(
                            &lead,
                            Action::text(t(lang, Key::Acknowledged), Markup::None),
                        )?;
                    }
                }
                _ => begin(app, ctx, &mut lead).await?,
            }
        }
    }
    storage::leads::save(&mut ctx.tx, &lead);
    Ok(())
}

/// Messages that ask the bot to stop writing, whole (any case, `ё` as `е`, punctuation around
/// them ignored): people type these rather than /stop.
const STOP_REQUESTS: [&str; 9] = [
    "стоп",
    "отписаться",
    "отпишитесь",
    "отпишите",
    "отпишите меня",
    "отписка",
    "stop",
    "unsubscribe",
    "unsubscribe me",
];

fn asks_to_stop(text: &str) -> bool {
    STOP_REQUESTS.contains(&crate::domain::words(text).join(" ").as_str())
}

/// A typed number or the sender's own shared contact.
fn phone_candidate(input: &Input) -> Option<&str> {
    match input {
        Input::Text(t) => Some(t),
        Input::Contact { phone, own: true } => Some(phone),
        _ => None,
    }
}

/// An edited message: edits are not read, so say so and ask again.
pub async fn on_edited(app: &App, ctx: &mut Ctx, from: &Person) -> Result<()> {
    let Some(mut lead) = storage::leads::lock_by_telegram(&mut ctx.tx, from.id).await? else {
        return Ok(());
    };
    record_inbound(ctx, &lead, "edited", "[edited message]").await?;
    let script = pinned_script(app, ctx, &lead).await?;
    let lang = lang_of(&lead, script.as_deref());
    ctx.send_to_lead(&lead, Action::text(t(lang, Key::Edited), Markup::None))?;
    let session = session_of(&lead);
    if let (Some(script), Position::Waiting(_)) = (&script, session.position) {
        let tr = dialogue::advance(script, &session, Input::Start);
        apply(app, ctx, &mut lead, script, tr).await?;
    }
    storage::leads::save(&mut ctx.tx, &lead);
    Ok(())
}

/// The message whose button was pressed, as the press names it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pressed {
    pub chat_id: Option<i64>,
    pub message_id: Option<i32>,
}

/// A button press in the private chat.
pub async fn on_callback(
    app: &App,
    ctx: &mut Ctx,
    from: &Person,
    query_id: &str,
    data: Option<&str>,
    pressed: Pressed,
) -> Result<()> {
    let chat_id = from.id;
    let parsed = data.map(CallbackData::parse);
    // A choice pressed under a question whose delivery is not recorded yet proves it delivered.
    if let (Some(Ok(CallbackData::Choice { .. })), Some(data), Some(message_id)) =
        (&parsed, data, pressed.message_id)
        && pressed.chat_id == Some(chat_id)
    {
        let worker_idle = !app.delivering.load(std::sync::atomic::Ordering::Relaxed);
        storage::outbox::record_pressed(
            &mut ctx.tx,
            chat_id,
            i64::from(message_id),
            data,
            ctx.now,
            worker_idle,
        );
    }
    let Some(mut lead) = storage::leads::lock_by_telegram(&mut ctx.tx, from.id).await? else {
        ctx.answer_callback(
            chat_id,
            query_id,
            Some(t(
                Lang::from_code(from.language_code.as_deref()),
                Key::StaleButton,
            )),
        );
        return Ok(());
    };
    lead.last_activity_at = ctx.now;
    lead.last_inbound_at = Some(ctx.now);
    let script = pinned_script(app, ctx, &lead).await?;
    let lang = lang_of(&lead, script.as_deref());
    let session = session_of(&lead);
    let mut notice: Option<&str> = None;
    match parsed {
        Some(Ok(CallbackData::Choice {
            version,
            step,
            index,
        })) => {
            let current = lead
                .dialogue_version
                .as_deref()
                .map(CallbackData::version_prefix);
            match (&script, current == Some(version.as_str())) {
                (Some(script), true) if matches!(session.position, Position::Waiting(_)) => {
                    let label = choice_label(script, step, index);
                    record_inbound(ctx, &lead, "button", label.as_deref().unwrap_or("[button]"))
                        .await?;
                    let tr = dialogue::advance(
                        script,
                        &session,
                        Input::Choice {
                            step: dialogue::StepId(step),
                            index,
                        },
                    );
                    apply(app, ctx, &mut lead, script, tr).await?;
                }
                _ => notice = Some(t(lang, Key::StaleButton)),
            }
        }
        Some(Ok(CallbackData::Restart)) => {
            record_inbound(ctx, &lead, "button", t(lang, Key::StartOver)).await?;
            match (&script, session.position) {
                (Some(script), Position::Ended(_)) => {
                    let tr = dialogue::advance(script, &session, Input::Restart);
                    apply(app, ctx, &mut lead, script, tr).await?;
                }
                (Some(script), Position::Waiting(_)) => {
                    let tr = dialogue::advance(script, &session, Input::Start);
                    apply(app, ctx, &mut lead, script, tr).await?;
                }
                _ => begin(app, ctx, &mut lead).await?,
            }
        }
        Some(Ok(CallbackData::Manager)) => {
            record_inbound(ctx, &lead, "button", t(lang, Key::WriteManager)).await?;
            ctx.send_to_lead(
                &lead,
                Action::text(t(lang, Key::WriteManagerPrompt), Markup::None),
            )?;
        }
        Some(Ok(CallbackData::ForgetYes)) => {
            ctx.answer_callback(chat_id, query_id, None);
            forget(ctx, &mut lead, lang).await?;
            storage::leads::save(&mut ctx.tx, &lead);
            return Ok(());
        }
        Some(Ok(CallbackData::ForgetNo)) => {
            ctx.send_to_lead(
                &lead,
                Action::text(t(lang, Key::ForgetCancelled), Markup::None),
            )?;
        }
        Some(Ok(CallbackData::Unsubscribe)) => {
            lead.unsubscribed = true;
            record_inbound(ctx, &lead, "button", "unsubscribe").await?;
            ctx.send_to_lead(
                &lead,
                Action::text(t(lang, Key::Unsubscribed), Markup::None),
            )?;
        }
        Some(Ok(CallbackData::Take(_) | CallbackData::Won(_) | CallbackData::Lost(_))) => {
            tracing::warn!(
                user_id = from.id,
                "staff button pressed outside the staff chat; refused"
            );
            notice = Some(t(lang, Key::NotForYou));
        }
        Some(Ok(CallbackData::Offer(id))) => {
            record_inbound(ctx, &lead, "button", "offer").await?;
            let n =
                crate::broadcast::offer::on_click(app, ctx, &mut lead, script.as_deref(), lang, id)
                    .await?;
            notice = Some(n);
        }
        Some(Err(_)) | None => {
            tracing::warn!(user_id = from.id, "unrecognised button press; refused");
            notice = Some(t(lang, Key::StaleButton));
        }
    }
    ctx.answer_callback(chat_id, query_id, notice);
    storage::leads::save(&mut ctx.tx, &lead);
    Ok(())
}

/// The user blocked or unblocked the bot.
pub async fn on_membership(ctx: &mut Ctx, user_id: i64, blocked: bool) -> Result<()> {
    if let Some(mut lead) = storage::leads::lock_by_telegram(&mut ctx.tx, user_id).await? {
        lead.blocked = blocked;
        storage::leads::save(&mut ctx.tx, &lead);
    }
    Ok(())
}

fn choice_label(script: &Script, step: u16, index: u8) -> Option<String> {
    let s = script.steps.get(usize::from(step))?;
    match &s.kind {
        StepKind::Choice { choices, .. } => {
            choices.get(usize::from(index)).map(|c| c.label.clone())
        }
        _ => None,
    }
}

async fn record_inbound(ctx: &mut Ctx, lead: &Lead, kind: &str, text: &str) -> Result<()> {
    storage::messages::record(
        &mut ctx.tx,
        &storage::messages::NewMessage {
            lead_id: lead.id,
            direction: "in",
            kind,
            text: Some(text),
            update_id: Some(ctx.update_id),
            outbox_id: None,
            telegram_message_id: None,
            author_id: lead.telegram_id,
        },
        ctx.now,
    );
    Ok(())
}

/// Starts the dialogue for a lead that has none (or had its pinned version removed).
async fn begin(app: &App, ctx: &mut Ctx, lead: &mut Lead) -> Result<()> {
    let Some(script) = app
        .scripts
        .select(&lead.source, lead.language_code.as_deref())
    else {
        let lang = lang_of(lead, None);
        tracing::error!(
            lead_id = lead.id,
            "no dialogue is loaded; the lead was told to try later"
        );
        ctx.send_to_lead(lead, Action::text(t(lang, Key::NoDialogue), Markup::None))?;
        return Ok(());
    };
    lead.dialogue_id = Some(script.id.clone());
    lead.dialogue_version = Some(script.version.clone());
    let tr = dialogue::advance(&script, &Session::default(), Input::Start);
    apply(app, ctx, lead, &script, tr).await
}

/// Carries out a transition: messages to the outbox, answers and consents onto the lead, funnel
/// events, the hot flag; then stores the session.
async fn apply(
    app: &App,
    ctx: &mut Ctx,
    lead: &mut Lead,
    script: &Script,
    tr: Transition,
) -> Result<()> {
    let before = session_of(lead).temperature(&script.thresholds);
    let mut turned_hot = false;
    let mut qualified = false;
    for effect in &tr.effects {
        match effect {
            Effect::Send(reply) => {
                let markup = markup_for(script, &reply.keyboard);
                ctx.send_to_lead(lead, Action::text(reply.text.clone(), markup))?;
            }
            Effect::Answered { answer, .. } => {
                if let Some(step) = script.step_by_name(&answer.step)
                    && let StepKind::Input { kind, .. } = &script.step(step).kind
                {
                    match kind {
                        InputKind::Name => lead.name = Some(answer.value.clone()),
                        InputKind::Phone | InputKind::Contact => {
                            lead.phone = Some(answer.value.clone())
                        }
                        InputKind::Email => lead.email = Some(answer.value.clone()),
                        _ => {}
                    }
                }
            }
            Effect::Set { key, value } => {
                let on = matches!(value, Fact::Bool(true));
                match key.as_str() {
                    "consent" => {
                        lead.consent_at = on.then_some(ctx.now);
                        lead.consent_version = on.then(|| script.version.clone());
                    }
                    "marketing_consent" => {
                        lead.marketing_consent_at = on.then_some(ctx.now);
                        lead.marketing_consent_version = on.then(|| script.version.clone());
                    }
                    _ => {}
                }
            }
            Effect::Entered(step) => {
                let name = &script.step(*step).name;
                storage::messages::step_entered(&mut ctx.tx, lead.id, &script.id, name, ctx.now);
                app.metrics.steps.inc();
            }
            Effect::TurnedHot => turned_hot = true,
            Effect::Ended(_) => {
                if matches!(lead.status.as_str(), "new" | "qualifying") {
                    lead.status = "qualified".into();
                    qualified = true;
                }
            }
        }
    }
    let session = tr.session;
    lead.score = session.score;
    let temp = session.temperature(&script.thresholds);
    lead.temperature = temp.as_str().to_owned();
    if lead.status == "new" {
        lead.status = "qualifying".into();
    }
    if temp == crate::domain::Temperature::Hot && lead.hot_at.is_none() {
        lead.hot_at = Some(ctx.now);
    }
    lead.session =
        serde_json::to_string(&session).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    if qualified {
        crate::crm::record(app, ctx, crate::crm::LeadEvent::Qualified, lead).await?;
    }
    if turned_hot || (temp == crate::domain::Temperature::Hot && before != temp) {
        app.on_turned_hot(ctx, lead).await?;
    }
    Ok(())
}

/// The keyboard of a dialogue message.
pub(crate) fn markup_for(script: &Script, keyboard: &Keyboard) -> Markup {
    match keyboard {
        Keyboard::None => Markup::None,
        Keyboard::Choices(choices) => Markup::Inline {
            rows: choices
                .iter()
                .map(|(label, r)| {
                    vec![Button {
                        text: label.clone(),
                        data: CallbackData::Choice {
                            version: CallbackData::version_prefix(&script.version).to_owned(),
                            step: r.step.0,
                            index: r.index,
                        }
                        .to_string(),
                    }]
                })
                .collect(),
        },
        Keyboard::RequestContact { label } => Markup::RequestContact {
            label: label.clone(),
        },
        Keyboard::Remove => Markup::Remove,
    }
}

/// Everything stored about a lead, as JSON.
pub async fn my_data_json(ctx: &mut Ctx, lead: &Lead) -> Result<serde_json::Value> {
    let history = storage::messages::history_in(&mut ctx.tx, lead.id, 10_000).await?;
    let session = session_of(lead);
    let ms = |t: Option<i64>| {
        t.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| d.to_rfc3339())
    };
    Ok(json!({
        "telegram_id": lead.telegram_id,
        "username": lead.username,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "language_code": lead.language_code,
        "name": lead.name,
        "phone": lead.phone,
        "email": lead.email,
        "source": lead.source,
        "score": lead.score,
        "temperature": lead.temperature,
        "status": lead.status,
        "unsubscribed": lead.unsubscribed,
        "consent": { "at": ms(lead.consent_at), "dialogue_version": lead.consent_version },
        "marketing_consent": { "at": ms(lead.marketing_consent_at), "dialogue_version": lead.marketing_consent_version },
        "dialogue": { "id": lead.dialogue_id, "version": lead.dialogue_version },
        "answers": session.answers,
        "score_breakdown": session.breakdown,
        "created_at": ms(Some(lead.created_at)),
        "history": history.iter().map(|m| json!({
            "at": ms(Some(m.created_at)),
            "direction": m.direction,
            "kind": m.kind,
            "text": m.text,
        })).collect::<Vec<_>>(),
    }))
}

async fn send_my_data(ctx: &mut Ctx, lead: &Lead, lang: Lang) -> Result<()> {
    let data = my_data_json(ctx, lead).await?;
    let session = session_of(lead);
    let dash = "—";
    let mut text = match lang {
        Lang::Ru => format!(
            "Ваши данные:\nИмя: {}\nТелефон: {}\nE-mail: {}\nИсточник: {}\nСогласие на обработку данных: {}\nСогласие на рассылку: {}\n",
            lead.name.as_deref().unwrap_or(dash),
            lead.phone.as_deref().unwrap_or(dash),
            lead.email.as_deref().unwrap_or(dash),
            lead.source,
            if lead.consent_at.is_some() {
                "да"
            } else {
                "нет"
            },
            if lead.marketing_consent_at.is_some() {
                "да"
            } else {
                "нет"
            },
        ),
        Lang::En => format!(
            "Your data:\nName: {}\nPhone: {}\nE-mail: {}\nSource: {}\nConsent to data processing: {}\nConsent to offers: {}\n",
            lead.name.as_deref().unwrap_or(dash),
            lead.phone.as_deref().unwrap_or(dash),
            lead.email.as_deref().unwrap_or(dash),
            lead.source,
            if lead.consent_at.is_some() {
                "yes"
            } else {
                "no"
            },
            if lead.marketing_consent_at.is_some() {
                "yes"
            } else {
                "no"
            },
        ),
    };
    for a in session.answers.values() {
        text.push_str(&format!("• {}: {}\n", a.question, a.value));
    }
    let text: String = text.chars().take(4000).collect();
    ctx.send_to_lead(lead, Action::text(text, Markup::None))?;
    let content =
        serde_json::to_string_pretty(&data).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    ctx.send_to_lead(
        lead,
        Action::SendDocument {
            file_name: "mydata.json".into(),
            content,
            caption: Some(t(lang, Key::MyDataCaption).into()),
        },
    )?;
    Ok(())
}

/// Erases personal data and history; anonymous counts (score, temperature, source, funnel) stay.
async fn forget(ctx: &mut Ctx, lead: &mut Lead, lang: Lang) -> Result<()> {
    let chat_id = lead.chat_id;
    storage::outbox::drop_pending_for_lead(&mut ctx.tx, lead.id).await?;
    // Events not yet delivered carry the personal data being erased.
    storage::crm::drop_pending_for_lead(&mut ctx.tx, lead.id).await?;
    storage::messages::erase(&mut ctx.tx, lead.id).await?;
    storage::broadcasts::forget_lead(&mut ctx.tx, lead.id).await?;
    if let Some(chat_id) = chat_id {
        // Not linked to the lead: it must survive the erasure it confirms.
        let key = ctx.next_key("forget");
        ctx.enqueue_keyed(
            &key,
            None,
            chat_id,
            &Action::text(t(lang, Key::Forgotten), Markup::None),
        )
        .await?;
    }
    let mut session = session_of(lead);
    session.answers.clear();
    session.facts.clear();
    lead.session =
        serde_json::to_string(&session).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    lead.telegram_id = None;
    lead.chat_id = None;
    lead.username = None;
    lead.first_name = None;
    lead.last_name = None;
    lead.name = None;
    lead.phone = None;
    lead.email = None;
    lead.erased = true;
    lead.unsubscribed = true;
    lead.consent_at = None;
    lead.marketing_consent_at = None;
    tracing::info!(lead_id = lead.id, "lead erased on request");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::asks_to_stop;

    #[test]
    fn a_typed_stop_request_is_recognised_whole_and_nothing_else() {
        for text in [
            "стоп",
            "Стоп!",
            "СТОП",
            "/стоп",
            "  отпишите меня. ",
            "Отписаться",
            "STOP",
            "Unsubscribe 🙏",
        ] {
            assert!(asks_to_stop(text), "{text}");
        }
        for text in [
            "стоп-кран",
            "не стоп",
            "stop sending me offers please",
            "Анна",
            "",
            "стопка",
        ] {
            assert!(!asks_to_stop(text), "{text}");
        }
    }
}
