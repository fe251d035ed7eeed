//! The running bot: intake, the update processor, the outbox worker, wired together.

pub mod ctx;
pub mod event;
pub mod process;
pub mod prospect;
pub mod scripts;
pub mod texts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Settings};
use crate::dialogue::Catalog;
use crate::outbox::worker::Worker;
use crate::storage::{self, Db, StorageError};
use crate::telegram;

use ctx::Ctx;
use scripts::Scripts;
use storage::leads::Lead;

/// Why the bot could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database is unreachable or migrations failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The dialogue files do not compile.
    #[error("dialogue files have errors:\n{0}")]
    Dialogues(String),
    /// The Telegram client could not be built.
    #[error("{0}")]
    Telegram(String),
}

/// Knobs tests turn; production uses the defaults.
#[derive(Clone)]
pub struct RunOptions {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// `getUpdates` long-poll timeout, seconds.
    pub poll_timeout_secs: u32,
    /// HTTP timeout of every Bot API request (must exceed the long-poll timeout).
    pub request_timeout: Duration,
    /// How often timers (SLA reminders) are checked.
    pub timer_tick: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            clock: Arc::new(SystemClock),
            poll_timeout_secs: 25,
            request_timeout: Duration::from_secs(35),
            timer_tick: Duration::from_secs(5),
        }
    }
}

/// Shared state of the running bot.
pub struct App {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub scripts: Scripts,
    pub settings: Settings,
    pub staff_chat_id: i64,
    /// Wakes the outbox worker.
    pub outbox_wake: Arc<Notify>,
}

impl App {
    /// Called inside the update's transaction when a lead turns hot.
    pub async fn on_turned_hot(&self, ctx: &mut Ctx, lead: &Lead) -> Result<(), StorageError> {
        crate::staff::alert::enqueue_alert(self, ctx, lead).await
    }
}

/// Loads dialogues from the configured folder.
pub fn load_catalog(settings: &Settings) -> Result<Catalog, RunError> {
    Catalog::load(&settings.dialogues).map_err(|diags| {
        RunError::Dialogues(
            diags
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// Runs the bot until `shutdown` resolves: migrations, then polling, processing and delivery.
pub async fn run(
    settings: Settings,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let token = settings.require_token()?.clone();
    let staff_chat_id = settings.require_staff_chat()?;
    let catalog = load_catalog(&settings)?;
    let db = Db::connect(&settings.database_url).await?;
    db.migrate().await?;
    let clock = options.clock.clone();
    let scripts = Scripts::new(catalog);
    scripts.remember_all(&db, clock.now_ms()).await?;
    let requeued = storage::outbox::requeue_in_flight(&db).await?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            "messages in flight at the last stop will be sent again"
        );
    }
    let bot = telegram::client(&token, settings.api_url.as_deref(), options.request_timeout)
        .map_err(RunError::Telegram)?;

    let outbox_wake = Arc::new(Notify::new());
    let stored = Arc::new(Notify::new());
    let app = Arc::new(App {
        db: db.clone(),
        clock: clock.clone(),
        scripts,
        settings,
        staff_chat_id,
        outbox_wake: outbox_wake.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let poller = telegram::poll::Poller {
        bot: bot.clone(),
        db: db.clone(),
        clock: clock.clone(),
        stored: stored.clone(),
        timeout_secs: options.poll_timeout_secs,
        token: token.expose().to_owned(),
    };
    let worker = Worker {
        bot: bot.clone(),
        db: db.clone(),
        clock: clock.clone(),
        token: token.expose().to_owned(),
        wake: outbox_wake.clone(),
        batch: 128,
    };
    let processor = process::Processor {
        app: app.clone(),
        stored: stored.clone(),
    };

    tracing::info!("leadbot is running");
    // A JoinSet aborts its tasks when dropped, so aborting `run` stops everything at once (which
    // is also how tests simulate a crash).
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(poller.run(stop_rx.clone()));
    tasks.spawn(worker.run(stop_rx.clone()));
    tasks.spawn(processor.run(stop_rx.clone()));
    tasks.spawn(timers(app.clone(), options.timer_tick, stop_rx.clone()));

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "a task ended abnormally");
        }
    }
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Periodic work: SLA re-announcements.
async fn timers(app: Arc<App>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = crate::staff::sla::step(&app).await {
            tracing::warn!(error = %e, "SLA round failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}
