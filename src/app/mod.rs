//! The running bot: intake, the update processor, the outbox worker, wired together.

pub mod albums;
pub mod ctx;
pub mod event;
pub mod process;
pub mod prospect;
pub mod reminders;
pub mod scripts;
pub mod texts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, Secret, Settings};
use crate::dialogue::Catalog;
use crate::metrics::Metrics;
use crate::outbox::worker::Worker;
use crate::storage::{self, Db, StorageError};
use crate::telegram;

use ctx::Ctx;
use scripts::Scripts;
use storage::leads::Lead;

/// Outbox rows claimed and not yet recorded, at most. Recording is one transaction per group of
/// deliveries, and the bigger the groups the fewer the transactions: with 64 the worker recorded
/// about 32 rows per transaction in the benchmark's closed loop, with 256 about 130 (see
/// bench/optimisations.md).
const OUTBOX_UNRECORDED: i64 = 256;

/// Requests to Telegram the outbox worker makes at once: each holds a connection (about 50 KB),
/// and 32 are more than Telegram's limits let a bot use (30 messages/s, ~0.1 s per request).
const OUTBOX_SENDS: usize = 32;

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
    /// This process cannot join the database (a second process on one SQLite file).
    #[error(transparent)]
    Replica(#[from] storage::ops::JoinError),
    /// The HTTP server could not listen.
    #[error("LEADBOT_HTTP_ADDR: cannot listen on {0}")]
    Http(String),
    /// The CRM client could not be built.
    #[error("LEADBOT_CRM_WEBHOOK_URL: {0}")]
    Crm(String),
}

/// A listening socket handed to `run` instead of binding `LEADBOT_HTTP_ADDR` (tests bind port 0
/// and build the webhook URL from the port they got). Taken once.
#[derive(Clone, Default)]
pub struct HttpListener(Arc<std::sync::Mutex<Option<std::net::TcpListener>>>);

impl HttpListener {
    /// Wraps a bound listener.
    pub fn new(listener: std::net::TcpListener) -> HttpListener {
        HttpListener(Arc::new(std::sync::Mutex::new(Some(listener))))
    }

    fn take(&self) -> Option<std::net::TcpListener> {
        self.0.lock().ok().and_then(|mut l| l.take())
    }
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
    /// An already bound HTTP listener to use instead of `LEADBOT_HTTP_ADDR`.
    pub http_listener: Option<HttpListener>,
    /// How long the CRM receiver may take to answer one event.
    pub crm_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            clock: Arc::new(SystemClock),
            poll_timeout_secs: 25,
            request_timeout: Duration::from_secs(35),
            timer_tick: Duration::from_secs(5),
            http_listener: None,
            crm_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared state of the running bot.
pub struct App {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub scripts: Scripts,
    pub settings: Settings,
    /// The managers' chat (its id follows an upgrade to a supergroup).
    pub staff_chat: Arc<crate::staff::chat::StaffChat>,
    /// Wakes the outbox worker.
    pub outbox_wake: Arc<Notify>,
    /// Answers to button presses, sent after the commit that decided them.
    pub answers: crate::outbox::answers::Answers,
    /// Rows claimed for this process's outbox worker by the transaction that enqueued them;
    /// `None` leaves them to the worker's own claims.
    pub handover: Option<Arc<crate::outbox::handover::Handover>>,
    /// Whether the staff chat is a forum (a topic per lead).
    pub staff_forum: Arc<crate::staff::topics::ForumFlag>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Until when (clock ms) the daily digest is not looked for again: a look that found nothing
    /// to report waits a while instead of querying at every timer tick.
    pub digest_idle_until: Arc<std::sync::atomic::AtomicI64>,
    /// The last album each prospect sent, so that an album gets one answer.
    pub albums: albums::Albums,
    /// Whether this process's outbox worker runs: not yet while start-up reads the updates kept
    /// while the bot was down (see `telegram::poll::Poller::caught_up`).
    pub delivering: Arc<std::sync::atomic::AtomicBool>,
}

impl App {
    /// Called inside the update's transaction when a lead turns hot.
    pub async fn on_turned_hot(&self, ctx: &mut Ctx, lead: &Lead) -> Result<(), StorageError> {
        crate::staff::alert::enqueue_alert(self, ctx, lead).await?;
        crate::crm::record(self, ctx, crate::crm::LeadEvent::Hot, lead).await
    }
}

/// Loads dialogues from the configured folder, or the shipped ones when `LEADBOT_DIALOGUES` is
/// unset and there is no `dialogues` folder.
pub fn load_catalog(settings: &Settings) -> Result<Catalog, RunError> {
    let (catalog, shipped) =
        Catalog::load_configured(&settings.dialogues, settings.dialogues_given).map_err(
            |diags| {
                RunError::Dialogues(
                    diags
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            },
        )?;
    if shipped {
        tracing::info!(
            "no dialogues folder here and LEADBOT_DIALOGUES is unset; using the dialogues built into leadbot"
        );
    }
    Ok(catalog)
}

/// Stops start-up when the staff chat cannot get alerts: a mistyped id or a group the bot is not
/// in. A group Telegram upgraded to a supergroup is followed (with a warning to set the new id);
/// the chat id to use is returned. A Bot API that cannot be asked now lets the bot start.
async fn check_staff_chat(
    bot: &telegram::Client,
    staff_chat_id: i64,
    me: &telegram::Me,
    token: &str,
    within: Duration,
) -> Result<i64, RunError> {
    use telegram::StaffChatCheck;
    let refused = |why: String| Err(RunError::Telegram(format!("LEADBOT_STAFF_CHAT_ID: {why}")));
    match telegram::check_staff_chat(bot, staff_chat_id, me.user_id, token, within).await {
        StaffChatCheck::Member { admin } => {
            tracing::info!(admin, "the bot is in the staff chat");
            if !admin && !me.reads_all_group_messages {
                tracing::warn!(
                    "the bot's privacy mode is on and it is not an admin of the staff chat: it sees only commands and replies to its own messages there, so managers' other messages may not reach leads; in @BotFather use /setprivacy -> Disable and add the bot to the group again, or make it an admin"
                );
            }
            Ok(staff_chat_id)
        }
        StaffChatCheck::NotMember(why) => refused(format!(
            "the bot is not in the chat {staff_chat_id} ({why}); add it to the managers' group again"
        )),
        StaffChatCheck::Migrated(to) => {
            tracing::warn!(
                from = staff_chat_id,
                to,
                "LEADBOT_STAFF_CHAT_ID: the group was upgraded to a supergroup; alerts go to the new chat (set LEADBOT_STAFF_CHAT_ID to its id)"
            );
            Ok(to)
        }
        StaffChatCheck::NotFound => refused(format!(
            "Telegram knows no chat {staff_chat_id} with the bot in it; add the bot to the managers' group and check the id (supergroup ids start with -100)"
        )),
        StaffChatCheck::Unknown(e) => {
            tracing::warn!(error = %e, "cannot check the staff chat with getChatMember; starting anyway");
            Ok(staff_chat_id)
        }
    }
}

/// Runs the bot until `shutdown` resolves: migrations, then polling, processing and delivery.
pub async fn run(
    settings: Settings,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let token = settings.require_token()?.clone();
    let mut staff_chat_id = settings.require_staff_chat()?;
    let catalog = load_catalog(&settings)?;
    let bot = telegram::client(&token, settings.api_url.as_deref(), options.request_timeout)
        .map_err(RunError::Telegram)?;
    // A mistyped or revoked token stops start-up here, before anything is created; a Bot API that
    // cannot be reached now is retried by polling, as at any other time.
    let within = options.request_timeout.min(Duration::from_secs(10));
    match telegram::check_token(&bot, token.expose(), within).await {
        telegram::TokenCheck::Accepted(me) => {
            tracing::info!(
                bot = me.username.as_deref().unwrap_or("(no username)"),
                "Telegram accepted the token"
            );
            staff_chat_id =
                check_staff_chat(&bot, staff_chat_id, &me, token.expose(), within).await?;
        }
        telegram::TokenCheck::Refused => return Err(RunError::Telegram(
            "TELOXIDE_TOKEN: Telegram refused the token (401 Unauthorized); copy it again from @BotFather (the value is not shown)".to_owned(),
        )),
        telegram::TokenCheck::Unknown(e) => tracing::warn!(
            error = %e,
            "cannot check the token with getMe; starting anyway"
        ),
    }
    let db = Db::connect(&settings.database_url).await?;
    db.migrate().await?;
    // Held until `run` returns: on SQLite it keeps a second process out, on PostgreSQL it tells
    // the other replicas this one is alive.
    let instance = storage::ops::join(&db, &settings.database_url).await?;
    let instance_id = instance.id;
    let clock = options.clock.clone();
    let scripts = Scripts::new(catalog);
    scripts.remember_all(&db, clock.now_ms()).await?;

    let http_listener = match options.http_listener.as_ref().and_then(HttpListener::take) {
        Some(l) => Some(l),
        None => match settings.http_addr {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .map_err(|e| RunError::Http(format!("{addr}: {e}")))?,
            ),
            None => None,
        },
    };
    let webhook_secret = match (&settings.webhook_url, &settings.webhook_secret) {
        (None, _) => None,
        (Some(_), Some(s)) => Some(s.clone()),
        (Some(_), None) => Some(Secret::new(
            storage::ops::webhook_secret(&db, &storage::ops::generate_secret()).await?,
        )),
    };

    let metrics = Arc::new(Metrics::new());
    let outbox_wake = Arc::new(Notify::new());
    let handover = Arc::new(crate::outbox::handover::Handover::new(
        OUTBOX_UNRECORDED,
        Some(instance_id),
    ));
    let stored = Arc::new(Notify::new());
    let staff_forum = Arc::new(crate::staff::topics::ForumFlag::default());
    let staff_chat = Arc::new(crate::staff::chat::StaffChat::new(staff_chat_id));
    let (answers, answer_queue) = crate::outbox::answers::Answers::channel();
    let app = Arc::new(App {
        db: db.clone(),
        clock: clock.clone(),
        scripts,
        settings,
        staff_chat: staff_chat.clone(),
        outbox_wake: outbox_wake.clone(),
        answers,
        handover: Some(handover.clone()),
        staff_forum: staff_forum.clone(),
        metrics: metrics.clone(),
        digest_idle_until: Arc::default(),
        albums: albums::Albums::default(),
        delivering: Arc::default(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);

    let (caught_up, caught_up_rx) = tokio::sync::oneshot::channel();
    let poller = telegram::poll::Poller {
        bot: bot.clone(),
        app: app.clone(),
        stored: stored.clone(),
        timeout_secs: options.poll_timeout_secs,
        token: token.expose().to_owned(),
        caught_up: Some(caught_up),
    };
    // The outbox worker and the callback answers share the limit of requests at once.
    let sends = Arc::new(tokio::sync::Semaphore::new(OUTBOX_SENDS));
    let answer_sender = crate::outbox::answers::Sender {
        bot: bot.clone(),
        token: token.expose().to_owned(),
        sends: sends.clone(),
        metrics: metrics.clone(),
    };
    let worker = Worker {
        bot: bot.clone(),
        db: db.clone(),
        clock: clock.clone(),
        token: token.expose().to_owned(),
        wake: outbox_wake.clone(),
        handover: Some(handover),
        batch: OUTBOX_UNRECORDED,
        sends: sends.clone(),
        staff_chat,
        staff_forum,
        owner: Some(instance_id),
        metrics: metrics.clone(),
    };
    let sender = crate::broadcast::sender::Sender {
        app: app.clone(),
        bot: bot.clone(),
        token: token.expose().to_owned(),
        tick: options.timer_tick,
    };
    let processor = process::Processor {
        app: app.clone(),
        stored: stored.clone(),
        deferred: Default::default(),
    };

    tracing::info!("leadbot is running");
    // A JoinSet aborts its tasks when dropped, so aborting `run` stops everything at once (which
    // is also how tests simulate a crash).
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = http_listener {
        let addr = listener
            .local_addr()
            .map_err(|e| RunError::Http(e.to_string()))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RunError::Http(format!("{addr}: {e}")))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| RunError::Http(format!("{addr}: {e}")))?;
        let intake = match (&app.settings.webhook_url, &webhook_secret) {
            (Some(url), Some(secret)) => Some(crate::http::WebhookIntake {
                path: webhook_path(url),
                secret: secret.clone(),
                stored: stored.clone(),
            }),
            _ => None,
        };
        let router = crate::http::router(app.clone(), intake);
        let mut stop = stop_rx.clone();
        tracing::info!(%addr, "HTTP server listening (/healthz, /metrics)");
        tasks.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the HTTP server stopped");
            }
        });
    }
    match (&app.settings.webhook_url, &webhook_secret) {
        (Some(url), Some(secret)) => {
            drop(poller);
            tasks.spawn(register_webhook(
                db.clone(),
                bot.clone(),
                url.clone(),
                secret.clone(),
                token.expose().to_owned(),
                stop_rx.clone(),
            ));
        }
        _ => {
            tasks.spawn(poller.run(stop_rx.clone()));
        }
    }
    // With a webhook the poller was dropped above, which lets the worker start at once.
    let mut stop = stop_rx.clone();
    let delivering = app.delivering.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = caught_up_rx => {}
            _ = tokio::time::sleep(CATCH_UP_WAIT) => {}
            _ = stop.changed() => return,
        }
        delivering.store(true, std::sync::atomic::Ordering::Relaxed);
        release_orphans_at_start(&worker.db, instance_id, stop.clone()).await;
        worker.run(stop).await;
    });
    if let (Some(url), Some(secret)) = (&app.settings.crm_webhook_url, &app.settings.crm_secret) {
        let crm = crate::crm::CrmWorker::new(
            db.clone(),
            clock.clone(),
            url.clone(),
            secret.clone(),
            instance_id,
            metrics.clone(),
            options.crm_timeout,
        )
        .map_err(RunError::Crm)?;
        tasks.spawn(crm.run(stop_rx.clone()));
    }
    tasks.spawn(answer_sender.run(answer_queue, stop_rx.clone()));
    tasks.spawn(processor.run(stop_rx.clone()));
    tasks.spawn(timers(
        app.clone(),
        instance.lease(),
        options.timer_tick,
        stop_rx.clone(),
    ));
    tasks.spawn(sender.run(stop_rx.clone()));
    // SQLite: the log is copied into the database file beside the writers rather than by one of
    // them inside its commit (see `storage::checkpoint`).
    if let Db::Sqlite(pool) = &db {
        match storage::checkpoint::Checkpointer::open(pool).await {
            Ok(checkpointer) => {
                tasks.spawn(checkpointer.run(stop_rx.clone()));
            }
            Err(e) => tracing::warn!(
                error = %e,
                "cannot open a connection for checkpoints; writers checkpoint the SQLite log themselves"
            ),
        }
    }

    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "a task ended abnormally");
        }
    }
    db.close().await;
    drop(instance);
    tracing::info!("stopped");
    Ok(())
}

/// How long the outbox worker waits at start-up for the updates Telegram kept while the bot was
/// stopped (see `telegram::poll::Poller::caught_up`).
const CATCH_UP_WAIT: Duration = Duration::from_secs(10);

/// Puts back the messages the last run was sending when it stopped (on PostgreSQL: the ones of
/// replicas that are gone), for the worker to send again, retrying while the database is away.
async fn release_orphans_at_start(db: &Db, me: i64, mut shutdown: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(200);
    loop {
        match storage::ops::release_orphans(db, me).await {
            Ok(0) => return,
            Ok(requeued) => {
                tracing::warn!(
                    requeued,
                    "messages in flight at the last stop whose delivery is unknown are sent again"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot put back the messages in flight at the last stop; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// The path Telegram posts to: the path of the webhook URL (`/` when it has none).
fn webhook_path(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/".to_owned())
}

/// Registers the webhook, retrying with backoff until Telegram accepts it.
async fn register_webhook(
    db: Db,
    bot: telegram::Client,
    url: String,
    secret: Secret,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        match telegram::webhook::register(&bot, &url, secret.expose(), &token).await {
            Ok(()) => {
                tracing::info!("webhook registered; Telegram will post updates");
                if let Err(e) = storage::ops::note_webhook_registered(&db, &url).await {
                    tracing::warn!(error = %e, "cannot note the webhook; polling later may start late");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "setWebhook failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// Periodic work: SLA re-announcements, reminders, the daily digest, and taking over the claims of
/// replicas that died.
async fn timers(
    app: Arc<App>,
    lease: storage::ops::Lease,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = lease.keep_alive(&app.db).await {
            tracing::warn!(error = %e, "cannot renew this replica's liveness lock");
        }
        let me = lease.id();
        // SQLite has one process, whose leftovers were put back at start-up. On PostgreSQL this
        // replica's worker does it as it starts: until then start-up reads the updates kept
        // while the bot was down, and a button press among them proves its message delivered,
        // which a take-over of the same rows beside it would hide (the row held, the message
        // sent again).
        let delivering = app.delivering.load(std::sync::atomic::Ordering::Relaxed);
        let orphans = if app.db.is_postgres() && delivering {
            storage::ops::release_orphans(&app.db, me).await
        } else {
            Ok(0)
        };
        match orphans {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    rows = n,
                    "work claimed by a stopped replica is put back for delivery"
                );
                app.outbox_wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "cannot check for stopped replicas"),
        }
        match storage::outbox::promote_stranded(&app.db).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(rows = n, "queued messages whose turn had come are released");
                app.outbox_wake.notify_one();
            }
            Err(e) => tracing::warn!(error = %e, "cannot check the outbox's queued messages"),
        }
        if let Err(e) = crate::staff::sla::step(&app).await {
            tracing::warn!(error = %e, "SLA round failed; retrying");
        }
        if let Err(e) = crate::staff::digest::step(&app).await {
            tracing::warn!(error = %e, "daily digest round failed; retrying");
        }
        if let Err(e) = reminders::step(&app).await {
            tracing::warn!(error = %e, "reminder round failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}
