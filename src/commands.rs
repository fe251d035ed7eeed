//! What each subcommand does; `main` only parses and dispatches.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::{self, RunOptions};
use crate::cli::{Command, ExportFormat, LeadsCommand};
use crate::config::Settings;
use crate::storage::{self, Db};

/// Runs a subcommand to completion.
pub async fn execute(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => {
            app::run(settings, RunOptions::default(), shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let db = Db::connect(&settings.database_url)
                .await
                .context("cannot open the database (DATABASE_URL)")?;
            db.migrate().await?;
            db.close().await;
            println!("migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { path } => Ok(crate::dialogue_cli::check(
            path.as_deref().unwrap_or(&settings.dialogues),
        )),
        Command::Graph {
            dialogue_id,
            locale,
        } => Ok(crate::dialogue_cli::graph(
            &settings.dialogues,
            settings.dialogues_given,
            &dialogue_id,
            locale.as_deref(),
        )),
        Command::Try {
            dialogue_id,
            locale,
        } => Ok(crate::dialogue_cli::try_dialogue(
            &settings.dialogues,
            settings.dialogues_given,
            dialogue_id.as_deref(),
            locale.as_deref(),
        )),
        Command::Stats { since } => {
            let since = since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
            let db = Db::connect(&settings.database_url)
                .await
                .context("cannot open the database (DATABASE_URL)")?;
            db.migrate().await?;
            let scripts = app::load_catalog(&settings)
                .ok()
                .map(app::scripts::Scripts::new);
            let stats = crate::staff::stats::collect(&db, scripts.as_ref(), since).await?;
            let broadcasts = crate::broadcast::progress::results(&db, since).await?;
            db.close().await;
            print!("{}{broadcasts}", crate::staff::stats::render(&stats));
            Ok(ExitCode::SUCCESS)
        }
        Command::Broadcast { command } => crate::broadcast::cli::execute(command, &settings).await,
        Command::Leads {
            command:
                LeadsCommand::Export {
                    format,
                    temperature,
                    since,
                },
        } => {
            let mut temps = Vec::new();
            for t in temperature
                .iter()
                .map(|t| t.trim())
                .filter(|t| !t.is_empty())
            {
                let parsed = crate::domain::Temperature::parse(t).with_context(|| {
                    format!("--temperature: expected cold, warm or hot, got {t:?}")
                })?;
                temps.push(parsed.as_str().to_owned());
            }
            let since = since.as_deref().map(parse_since).transpose()?;
            let db = Db::connect(&settings.database_url)
                .await
                .context("cannot open the database (DATABASE_URL)")?;
            db.migrate().await?;
            let leads = storage::leads::export(
                &db,
                &storage::leads::ExportFilter {
                    temperatures: temps,
                    since,
                },
            )
            .await?;
            db.close().await;
            let mut out = std::io::stdout().lock();
            match format {
                ExportFormat::Csv => out.write_all(&crate::export::csv(&leads)?)?,
                ExportFormat::Json => writeln!(out, "{}", crate::export::json(&leads))?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 time → Unix ms.
pub fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            anyhow::anyhow!(
                "--since: expected a date such as 2026-11-01 or an RFC 3339 time, got {s:?}"
            )
        })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
