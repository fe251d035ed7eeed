//! `leadbot broadcast create | list | show | cancel | recall`. Bad arguments print one clear
//! line and exit with code 2 before anything is written.

use std::process::ExitCode;

use anyhow::Context;

use super::draft::{self, Draft, Expiry};
use super::progress;
use crate::cli::{BroadcastCommand, BroadcastCreate};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::storage::Db;
use crate::storage::broadcasts::{self as store, Eligibility, NewBroadcast};

/// Runs a `broadcast` subcommand.
pub async fn execute(command: BroadcastCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    match command {
        BroadcastCommand::Create(args) => {
            let draft = match draft_of(&args) {
                Ok(d) => d,
                Err(msg) => return Ok(usage(&msg)),
            };
            let valid = match draft::validate(&draft, now) {
                Ok(v) => v,
                Err(e) => return Ok(usage(&e.to_string())),
            };
            let db = open(settings).await?;
            let e = Eligibility {
                now,
                max_per_week: settings.max_offers_per_week,
            };
            let audience = store::audience_size(&db, &valid.segment, e).await?;
            let id = store::insert(
                &db,
                &NewBroadcast {
                    text: &valid.text,
                    button: valid.button.as_deref(),
                    segment: &valid.segment,
                    score: valid.score,
                    start_at: valid.start_at,
                    expires_at: valid.expires_at,
                    created_by: "cli",
                },
                now,
            )
            .await?;
            db.close().await;
            println!(
                "broadcast #{id} scheduled: starts {}, expires {}; segment {}; {audience} leads qualify now.\n\
                 The running bot (leadbot run) sends it; follow it with `leadbot broadcast show {id}`.",
                super::local_time(settings, valid.start_at),
                super::local_time(settings, valid.expires_at),
                valid.segment,
            );
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::List => {
            let db = open(settings).await?;
            let list = store::list(&db, 50).await?;
            if list.is_empty() {
                println!("no broadcasts yet");
            }
            for b in list {
                let c = store::counts(&db, b.id).await?;
                println!(
                    "#{:<5} {:<10} sent {}/{}  clicks {}  starts {}  expires {}  segment {}",
                    b.id,
                    b.status,
                    c.sent,
                    c.total,
                    c.clicks,
                    super::local_time(settings, b.start_at),
                    super::local_time(settings, b.expires_at),
                    b.segment
                );
            }
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::Show { id } => {
            let db = open(settings).await?;
            let Some(b) = store::get(&db, id).await? else {
                db.close().await;
                return Ok(usage(&format!(
                    "there is no broadcast #{id} (see `leadbot broadcast list`)"
                )));
            };
            let p = snapshot(&db, settings, &b, now).await?;
            db.close().await;
            print!(
                "{}",
                progress::render_cli(
                    &b,
                    &p,
                    &super::local_time(settings, b.start_at),
                    &super::local_time(settings, b.expires_at)
                )
            );
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::Cancel { id } => {
            let db = open(settings).await?;
            let Some(b) = store::get(&db, id).await? else {
                db.close().await;
                return Ok(usage(&format!(
                    "there is no broadcast #{id} (see `leadbot broadcast list`)"
                )));
            };
            let cancelled = store::cancel(&db, id, now).await?;
            db.close().await;
            if cancelled {
                println!(
                    "broadcast #{id} cancelled; messages already sent stay (use `leadbot broadcast recall {id}` to delete them)"
                );
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: broadcast #{id} is {} and cannot be cancelled",
                    b.status
                );
                Ok(ExitCode::FAILURE)
            }
        }
        BroadcastCommand::Recall { id } => {
            let db = open(settings).await?;
            if store::get(&db, id).await?.is_none() {
                db.close().await;
                return Ok(usage(&format!(
                    "there is no broadcast #{id} (see `leadbot broadcast list`)"
                )));
            }
            let r = store::request_recall(&db, id, now).await?;
            db.close().await;
            println!(
                "broadcast #{id} recalled: {} messages will be deleted by the running bot{}",
                r.to_delete,
                if r.too_late > 0 {
                    format!(
                        "; {} were sent over 48 hours ago and cannot be deleted",
                        r.too_late
                    )
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The figures `show` prints (no staff chat needed).
async fn snapshot(
    db: &Db,
    settings: &Settings,
    b: &store::Broadcast,
    now: i64,
) -> anyhow::Result<progress::Progress> {
    let counts = store::counts(db, b.id).await?;
    let window = b
        .started_at
        .map(|s| (now - s).clamp(1, 10_000))
        .unwrap_or(10_000);
    let recent = store::sent_since(db, b.id, now - window).await?;
    let paused = (b.status == "running" && super::is_quiet(settings, now))
        .then(|| "paused: quiet hours".to_owned());
    Ok(progress::Progress::new(b, counts, recent, window, paused))
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

async fn open(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(&settings.database_url)
        .await
        .context("cannot open the database (DATABASE_URL)")?;
    db.migrate().await?;
    Ok(db)
}

fn draft_of(a: &BroadcastCreate) -> Result<Draft, String> {
    let text = match (&a.text.text, &a.text.text_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("--text-file {}: {e}", path.display()))?,
        (None, None) => return Err("give the offer's text with --text or --text-file".into()),
    };
    let start_at =
        a.at.as_deref()
            .map(draft::parse_time)
            .transpose()
            .map_err(|e| format!("--at: {e}"))?;
    let expires = match (&a.expires_in, &a.expires_at) {
        (Some(d), _) => Some(Expiry::In(
            draft::parse_lifetime(d).map_err(|e| format!("--expires-in: {e}"))?,
        )),
        (None, Some(t)) => Some(Expiry::At(
            draft::parse_time(t).map_err(|e| format!("--expires-at: {e}"))?,
        )),
        (None, None) => None,
    };
    Ok(Draft {
        text: text.trim_end().to_owned(),
        button: a.button.clone(),
        segment: a.segment.clone(),
        score: a.score,
        start_at,
        expires,
    })
}
