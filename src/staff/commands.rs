//! Staff commands: `/leads [hot|warm|cold|mine]`, `/lead ID`, `/stats`, `/export`.

use super::alert::card_of;
use super::card::{self, escape_html};
use crate::app::App;
use crate::app::ctx::Ctx;
use crate::app::event::Person;
use crate::app::prospect::ProspectError;
use crate::outbox::{Action, Markup};
use crate::storage;

/// The staff commands leadbot knows.
pub const COMMANDS: &[&str] = &[
    "leads",
    "lead",
    "stats",
    "export",
    "staffhelp",
    "broadcast",
    "broadcasts",
];

/// Runs a staff command; the answer goes to `chat_id` (the staff chat, or a manager's private chat).
pub async fn run(
    app: &App,
    ctx: &mut Ctx,
    chat_id: i64,
    from: &Person,
    name: &str,
    args: &str,
    thread_id: Option<i32>,
) -> Result<(), ProspectError> {
    let reply = |text: String| Action::SendMessage {
        text,
        html: true,
        markup: Markup::None,
        reply_to: None,
        thread_id,
        lead_topic: false,
    };
    match name {
        "leads" => {
            let arg = args.trim().to_ascii_lowercase();
            let (temp, mine) = match arg.as_str() {
                "" => (None, None),
                "hot" | "warm" | "cold" => (Some(arg.as_str()), None),
                "mine" => (None, Some(from.id)),
                _ => {
                    let key = ctx.next_key("staff");
                    ctx.enqueue_keyed(
                        &key,
                        None,
                        chat_id,
                        &reply("Использование: /leads [hot|warm|cold|mine]".into()),
                    )
                    .await?;
                    return Ok(());
                }
            };
            let leads = storage::leads::top(&app.db, temp, mine, 20).await?;
            let mut text = String::from("<b>Лиды</b> (до 20, по приоритету):\n");
            if leads.is_empty() {
                text.push_str("нет подходящих лидов");
            }
            for l in &leads {
                let who = l
                    .name
                    .clone()
                    .or_else(|| l.first_name.clone())
                    .unwrap_or_else(|| "—".into());
                let waiting = card::since(l.last_inbound_at.unwrap_or(l.created_at), ctx.now);
                let icon = match l.temperature.as_str() {
                    "hot" => "🔥",
                    "warm" => "🌤",
                    _ => "❄️",
                };
                text.push_str(&format!(
                    "{icon} /lead {} · {} · {} баллов · {} · ждёт {}{}\n",
                    l.id,
                    escape_html(&card::cut(&who, 40)),
                    l.score,
                    escape_html(&l.source),
                    waiting,
                    l.manager_name
                        .as_ref()
                        .map(|m| format!(" · 👤 {}", escape_html(m)))
                        .unwrap_or_default(),
                ));
            }
            let key = ctx.next_key("staff");
            ctx.enqueue_keyed(&key, None, chat_id, &reply(text)).await?;
        }
        "lead" => {
            let lead = match args.trim().trim_start_matches('#').parse::<i64>() {
                Ok(id) => storage::leads::get_in(&mut ctx.tx, id).await?,
                Err(_) => None,
            };
            let Some(lead) = lead.filter(|l| !l.erased) else {
                let key = ctx.next_key("staff");
                ctx.enqueue_keyed(
                    &key,
                    None,
                    chat_id,
                    &reply("Лид не найден. Использование: /lead ID".into()),
                )
                .await?;
                return Ok(());
            };
            let script = match &lead.dialogue_version {
                Some(v) => app.scripts.version(&mut ctx.tx, v).await?,
                None => None,
            };
            let mut text = card::html(&card_of(&lead, script.as_deref(), ctx.now));
            let history = storage::messages::history_in(&mut ctx.tx, lead.id, 10).await?;
            if !history.is_empty() {
                text.push_str("\n\n<b>Последние сообщения:</b>\n");
                for m in history {
                    let arrow = match m.direction.as_str() {
                        "in" => "←",
                        "out" => "→",
                        _ => "👤",
                    };
                    let line = format!(
                        "{arrow} {}\n",
                        escape_html(&card::cut(m.text.as_deref().unwrap_or(""), 150))
                    );
                    if text.chars().count() + line.chars().count() > 4000 {
                        break;
                    }
                    text.push_str(&line);
                }
            }
            let action = Action::SendMessage {
                text,
                html: true,
                markup: card::buttons(lead.id, &lead.status, lead.manager_id.is_some()),
                reply_to: None,
                thread_id,
                lead_topic: false,
            };
            let key = ctx.next_key("staff");
            ctx.enqueue_keyed(&key, Some(lead.id), chat_id, &action)
                .await?;
        }
        "stats" => {
            let stats = super::stats::collect(&app.db, Some(&app.scripts), 0).await?;
            let broadcasts = crate::broadcast::progress::results(&app.db, 0).await?;
            let text = escape_html(&format!("{}{broadcasts}", super::stats::render(&stats)));
            let key = ctx.next_key("staff");
            ctx.enqueue_keyed(&key, None, chat_id, &reply(text)).await?;
            match super::chart::png(&stats) {
                Ok(png) => {
                    let key = ctx.next_key("staff");
                    let photo = Action::SendPhoto {
                        file_name: "stats.png".into(),
                        hex: hex::encode(png),
                        caption: Some("Воронка и температура лидов".into()),
                        thread_id,
                    };
                    ctx.enqueue_keyed(&key, None, chat_id, &photo).await?;
                }
                Err(e) => tracing::error!(error = %e, "the stats chart could not be drawn"),
            }
        }
        "export" => {
            let leads =
                storage::leads::export(&app.db, &storage::leads::ExportFilter::default()).await?;
            let bytes = crate::export::csv(&leads).unwrap_or_default();
            let content = String::from_utf8(bytes).unwrap_or_default();
            let key = ctx.next_key("staff");
            ctx.enqueue_keyed(
                &key,
                None,
                chat_id,
                &Action::SendDocument {
                    file_name: "leads.csv".into(),
                    content,
                    caption: Some(format!("Лидов: {}", leads.len())),
                },
            )
            .await?;
        }
        "broadcast" => {
            crate::broadcast::flow::command(app, ctx, chat_id, from, args, thread_id).await?
        }
        "broadcasts" => crate::broadcast::flow::list(app, ctx, chat_id, thread_id).await?,
        _ => {
            let text = "Команды менеджеров:\n/leads [hot|warm|cold|mine] — лиды по приоритету\n/lead ID — карточка и история\n\
                        /stats — воронка, температуры, источники\n/export — выгрузка CSV\n\
                        /broadcast — новая рассылка (show|cancel|recall ID), /broadcasts — список рассылок\n\
                        Ответьте на карточку лида или его сообщение, чтобы написать ему."
                .to_owned();
            let key = ctx.next_key("staff");
            ctx.enqueue_keyed(&key, None, chat_id, &reply(escape_html(&text)))
                .await?;
        }
    }
    tracing::info!(manager_id = from.id, command = name, "staff command");
    Ok(())
}
