//! The staff chat's guided `/broadcast`: text, button, segment (with the audience size shown
//! before confirming), expiry, start time, confirmation — the same checks as the CLI. The draft
//! lives in `broadcast_drafts`, per chat and manager; `/broadcasts` lists the latest ones.

use serde::{Deserialize, Serialize};

use super::draft::{self, Draft, Expiry};
use super::html;
use super::segment::Segment;
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::event::Person;
use crate::outbox::{Action, Markup};
use crate::storage::broadcasts::{self as store, Eligibility, NewBroadcast};
use crate::storage::{StorageError, drafts};

/// A draft left alone this long is forgotten.
const DRAFT_TTL_MS: i64 = 3_600_000;

/// Where the guided flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Step {
    Text,
    Button,
    Segment,
    Expiry,
    Start,
    Confirm,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct State {
    step: Step,
    draft: Draft,
}

const CANCEL_WORDS: &[&str] = &["отмена", "cancel", "/cancel", "стоп"];
const YES_WORDS: &[&str] = &["да", "yes", "запустить", "ок", "ok"];
const NONE_WORDS: &[&str] = &["-", "—", "нет", "no", "без кнопки"];

fn prompt(step: Step) -> &'static str {
    match step {
        Step::Text => {
            "📣 Новая рассылка. Пришлите текст предложения (HTML Telegram: <b>, <i>, <u>, <s>, <a href=\"…\">, \
             <code>, <pre>, <blockquote>, <tg-spoiler>; символы < > & пишите как &lt; &gt; &amp;). \
             «отмена» — выйти."
        }
        Step::Button => "Текст кнопки предложения (до 64 символов) или «-», если кнопка не нужна.",
        Step::Segment => {
            "Кому отправить? Сегмент, например temperature=cold|warm,source=vk_*,inactive=7d \
             (ключи: temperature, source, status, score, has_phone, inactive, active, created, since) или all."
        }
        Step::Expiry => {
            "Сколько действует предложение? Например 48h, 3d или время 2026-12-05T18:00:00+03:00. «-» — 48 часов."
        }
        Step::Start => "Когда начать? «сейчас» или время, например 2026-12-02T10:00:00+03:00.",
        Step::Confirm => "Всё верно? Ответьте «да», чтобы запустить, или «отмена».",
    }
}

async fn reply(
    ctx: &mut Ctx,
    chat_id: i64,
    thread_id: Option<i32>,
    text: String,
) -> Result<(), StorageError> {
    let key = ctx.next_key("staff");
    let action = Action::SendMessage {
        text,
        html: false,
        markup: Markup::None,
        reply_to: None,
        thread_id,
        lead_topic: false,
    };
    ctx.enqueue_keyed(&key, None, chat_id, &action).await?;
    Ok(())
}

async fn save(ctx: &mut Ctx, chat_id: i64, user: i64, state: &State) -> Result<(), StorageError> {
    let json = serde_json::to_string(state).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    drafts::set(&mut ctx.tx, chat_id, user, &json, ctx.now).await
}

/// `/broadcast` starts a new draft; `/broadcast show|cancel|recall ID` work like the CLI.
pub async fn command(
    app: &App,
    ctx: &mut Ctx,
    chat_id: i64,
    from: &Person,
    args: &str,
    thread_id: Option<i32>,
) -> Result<(), StorageError> {
    let mut words = args.split_whitespace();
    let (Some(verb), id) = (words.next(), words.next()) else {
        return start(ctx, chat_id, from, thread_id).await;
    };
    let usage =
        "Использование: /broadcast — новая рассылка; /broadcast show ID | cancel ID | recall ID.";
    let Some(id) = id.and_then(|i| i.trim_start_matches('#').parse::<i64>().ok()) else {
        return reply(ctx, chat_id, thread_id, usage.into()).await;
    };
    let Some(b) = store::get_in(&mut ctx.tx, id).await? else {
        return reply(
            ctx,
            chat_id,
            thread_id,
            format!("Рассылки #{id} нет. /broadcasts — список."),
        )
        .await;
    };
    let text = match verb.to_lowercase().as_str() {
        "show" => {
            let p = super::sender::snapshot(app, &b, ctx.now).await?;
            super::progress::render(&p)
        }
        "cancel" => {
            if store::cancel_in(&mut ctx.tx, id, ctx.now).await? {
                tracing::info!(
                    broadcast_id = id,
                    manager_id = from.id,
                    "broadcast cancelled in the staff chat"
                );
                format!(
                    "Рассылка #{id} отменена; отправленное остаётся (/broadcast recall {id} — удалить)."
                )
            } else {
                format!(
                    "Рассылка #{id} уже не идёт ({}), отменять нечего.",
                    b.status
                )
            }
        }
        "recall" => {
            let r = store::request_recall_in(&mut ctx.tx, id, ctx.now).await?;
            tracing::info!(
                broadcast_id = id,
                manager_id = from.id,
                "broadcast recalled in the staff chat"
            );
            let mut t = format!(
                "Рассылка #{id} отозвана: удалим сообщений — {}.",
                r.to_delete
            );
            if r.too_late > 0 {
                t.push_str(&format!(
                    " Ещё {} отправлены больше 48 часов назад — их Telegram удалить не даёт.",
                    r.too_late
                ));
            }
            t
        }
        _ => usage.into(),
    };
    reply(ctx, chat_id, thread_id, text).await
}

/// `/broadcast`: starts a new draft.
pub async fn start(
    ctx: &mut Ctx,
    chat_id: i64,
    from: &Person,
    thread_id: Option<i32>,
) -> Result<(), StorageError> {
    let state = State {
        step: Step::Text,
        draft: Draft::default(),
    };
    save(ctx, chat_id, from.id, &state).await?;
    reply(ctx, chat_id, thread_id, prompt(Step::Text).into()).await
}

/// A manager's plain message: taken by the flow when a draft is open. Returns true when taken.
pub async fn on_text(
    app: &App,
    ctx: &mut Ctx,
    chat_id: i64,
    from: &Person,
    text: &str,
    thread_id: Option<i32>,
) -> Result<bool, StorageError> {
    let Some(json) = drafts::get(&mut ctx.tx, chat_id, from.id, ctx.now - DRAFT_TTL_MS).await?
    else {
        return Ok(false);
    };
    let Ok(mut state) = serde_json::from_str::<State>(&json) else {
        drafts::delete(&mut ctx.tx, chat_id, from.id).await?;
        return Ok(false);
    };
    let input = text.trim();
    let lower = input.to_lowercase();
    if CANCEL_WORDS.contains(&lower.as_str()) {
        drafts::delete(&mut ctx.tx, chat_id, from.id).await?;
        reply(
            ctx,
            chat_id,
            thread_id,
            "Хорошо, рассылка не создана.".into(),
        )
        .await?;
        return Ok(true);
    }
    let e = Eligibility {
        now: ctx.now,
        max_per_week: app.settings.max_offers_per_week,
    };
    let outcome: Result<Step, String> = match state.step {
        Step::Text => html::check(input)
            .map(|_| {
                state.draft.text = input.to_owned();
                Step::Button
            })
            .map_err(|e| format!("Текст не принят: {e}")),
        Step::Button => {
            if NONE_WORDS.contains(&lower.as_str()) {
                state.draft.button = None;
                Ok(Step::Segment)
            } else if input.chars().count() > draft::MAX_BUTTON {
                Err(format!("Кнопка длиннее {} символов.", draft::MAX_BUTTON))
            } else {
                state.draft.button = Some(input.to_owned());
                Ok(Step::Segment)
            }
        }
        Step::Segment => match Segment::parse(input) {
            Ok(segment) => {
                let n = store::audience_size(&app.db, &segment, e).await?;
                state.draft.segment = segment.to_string();
                reply(
                    ctx,
                    chat_id,
                    thread_id,
                    format!("Сегмент {segment}: сейчас подходит лидов — {n}."),
                )
                .await?;
                Ok(Step::Expiry)
            }
            Err(e) => Err(format!(
                "Сегмент не разобран — позиция {}: {}",
                e.position, e.message
            )),
        },
        Step::Expiry => {
            if NONE_WORDS.contains(&lower.as_str()) {
                state.draft.expires = None;
                Ok(Step::Start)
            } else if let Ok(d) = draft::parse_lifetime(input) {
                state.draft.expires = Some(Expiry::In(d));
                Ok(Step::Start)
            } else {
                match draft::parse_time(input) {
                    Ok(t) => {
                        state.draft.expires = Some(Expiry::At(t));
                        Ok(Step::Start)
                    }
                    Err(_) => Err(
                        "Не понял срок: напишите 48h, 3d или время 2026-12-05T18:00:00+03:00."
                            .into(),
                    ),
                }
            }
        }
        Step::Start => {
            let at = if ["сейчас", "now", "-"].contains(&lower.as_str()) {
                Ok(None)
            } else {
                draft::parse_time(input).map(Some).map_err(|_| {
                    "Не понял время: напишите «сейчас» или 2026-12-02T10:00:00+03:00.".to_owned()
                })
            };
            match at {
                Ok(at) => {
                    state.draft.start_at = at;
                    match draft::validate(&state.draft, ctx.now) {
                        Ok(v) => {
                            let n = store::audience_size(&app.db, &v.segment, e).await?;
                            let summary = format!(
                                "Проверьте рассылку:\n— сегмент: {}\n— получателей сейчас: {n}\n— кнопка: {}\n— начало: {}\n— действует до: {}\n— текст:\n{}",
                                v.segment,
                                v.button.as_deref().unwrap_or("нет"),
                                super::local_time(&app.settings, v.start_at),
                                super::local_time(&app.settings, v.expires_at),
                                v.text,
                            );
                            reply(ctx, chat_id, thread_id, summary).await?;
                            Ok(Step::Confirm)
                        }
                        Err(e) => Err(format!("Рассылка не принята: {e}")),
                    }
                }
                Err(msg) => Err(msg),
            }
        }
        Step::Confirm => {
            if !YES_WORDS.contains(&lower.as_str()) {
                Err("Ответьте «да», чтобы запустить, или «отмена».".into())
            } else {
                match draft::validate(&state.draft, ctx.now) {
                    Ok(v) => {
                        let who = format!("staff:{}", from.id);
                        let id = store::insert_in(
                            &mut ctx.tx,
                            &NewBroadcast {
                                text: &v.text,
                                button: v.button.as_deref(),
                                segment: &v.segment,
                                score: v.score,
                                start_at: v.start_at,
                                expires_at: v.expires_at,
                                created_by: &who,
                            },
                            ctx.now,
                        )
                        .await?;
                        drafts::delete(&mut ctx.tx, chat_id, from.id).await?;
                        tracing::info!(
                            broadcast_id = id,
                            manager_id = from.id,
                            "broadcast created in the staff chat"
                        );
                        reply(
                            ctx,
                            chat_id,
                            thread_id,
                            format!(
                                "Рассылка #{id} запланирована на {}. Прогресс появится здесь; /broadcasts — список.",
                                super::local_time(&app.settings, v.start_at)
                            ),
                        )
                        .await?;
                        return Ok(true);
                    }
                    Err(e) => Err(format!(
                        "Рассылка не принята: {e}. Начните заново: /broadcast"
                    )),
                }
            }
        }
    };
    match outcome {
        Ok(next) => {
            state.step = next;
            save(ctx, chat_id, from.id, &state).await?;
            reply(ctx, chat_id, thread_id, prompt(next).into()).await?;
        }
        Err(msg) => {
            save(ctx, chat_id, from.id, &state).await?;
            reply(
                ctx,
                chat_id,
                thread_id,
                format!("{msg}\n{}", prompt(state.step)),
            )
            .await?;
        }
    }
    Ok(true)
}

/// `/broadcasts`: the latest broadcasts with their figures.
pub async fn list(
    app: &App,
    ctx: &mut Ctx,
    chat_id: i64,
    thread_id: Option<i32>,
) -> Result<(), StorageError> {
    let list = store::list(&app.db, 10).await?;
    let mut text = String::from("📣 Последние рассылки:\n");
    if list.is_empty() {
        text.push_str("пока нет — создайте командой /broadcast");
    }
    for b in list {
        let c = store::counts(&app.db, b.id).await?;
        text.push_str(&format!(
            "#{} · {} · отправлено {}/{} · нажатий {} · до {} · {}\n",
            b.id,
            b.status,
            c.sent,
            c.total,
            c.clicks,
            super::local_time(&app.settings, b.expires_at),
            b.segment
        ));
    }
    reply(ctx, chat_id, thread_id, text).await
}
