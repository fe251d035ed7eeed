//! `TestApp`: the real bot (library entry point) on its own database and its own fake Bot API.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use leadbot::app::{self, RunError, RunOptions};
use leadbot::clock::OffsetClock;
use leadbot::config::Settings;
use leadbot::storage::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::fake_telegram::FakeTelegram;

/// The staff chat id every test uses.
pub const STAFF_CHAT: i64 = -1_001_234_567_890;
/// A manager listed in `LEADBOT_MANAGERS`.
pub const LISTED_MANAGER: i64 = 777;

/// Which database a test runs on.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    /// PostgreSQL when `LEADBOT_TEST_POSTGRES` is set; otherwise a visible skip line and `None`.
    pub fn postgres(test: &str) -> Option<Backend> {
        match std::env::var("LEADBOT_TEST_POSTGRES") {
            Ok(url) if !url.trim().is_empty() => Some(Backend::Postgres(url)),
            _ => {
                // Written past the test harness's capture so the skip is visible.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test} on PostgreSQL: set LEADBOT_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432/postgres"
                );
                None
            }
        }
    }
}

/// A database made for one test and dropped after it.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn create(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("leadbot.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres(admin) => {
                let name = format!(
                    "leadbot_test_{}_{}",
                    std::process::id(),
                    NEXT_DB.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ) + &format!("_{}", chrono::Utc::now().timestamp_micros());
                let pool = sqlx::PgPool::connect(admin)
                    .await
                    .expect("connect to LEADBOT_TEST_POSTGRES");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("create database");
                pool.close().await;
                let base = admin
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap_or_else(|| admin.clone());
                TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg: Some((admin.clone(), name)),
                }
            }
        }
    }
}

impl TestDb {
    /// A fresh database with the migrations applied, and the handle that drops it at the end.
    pub async fn migrated(backend: &Backend) -> (TestDb, leadbot::storage::Db) {
        let test_db = TestDb::create(backend).await;
        let db = leadbot::storage::Db::connect(&test_db.url)
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        (test_db, db)
    }
}

static NEXT_DB: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg.take() {
            // Drop runs outside async context; use a short-lived runtime on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&pool)
                            .await;
                            pool.close().await;
                        }
                    });
                }
            })
            .join();
        }
    }
}

/// The dialogues shipped with the product.
pub fn shipped_dialogues() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dialogues")
}

/// Settings for a test: the fake's URL, the test database, short timeouts.
pub fn settings(fake: &FakeTelegram, db_url: &str, dialogues: PathBuf) -> Settings {
    let url = fake.api_url().to_string();
    let db = db_url.to_owned();
    let dir = dialogues.display().to_string();
    Settings::from_lookup(move |k| match k {
        "TELOXIDE_TOKEN" => Some("123456:TEST-token".to_owned()),
        "TELOXIDE_API_URL" => Some(url.clone()),
        "DATABASE_URL" => Some(db.clone()),
        "LEADBOT_STAFF_CHAT_ID" => Some(STAFF_CHAT.to_string()),
        "LEADBOT_MANAGERS" => Some(LISTED_MANAGER.to_string()),
        "LEADBOT_DIALOGUES" => Some(dir.clone()),
        "LEADBOT_QUIET_HOURS" => Some("off".to_owned()),
        // The daily digest would land at a moment set by the wall clock; its own test turns it on.
        "LEADBOT_DIGEST_HOUR" => Some("off".to_owned()),
        _ => None,
    })
    .expect("test settings are valid")
}

/// A running bot.
/// The running bot task and the sender that asks it to stop.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), RunError>>);

pub struct TestApp {
    pub fake: FakeTelegram,
    pub db: Db,
    pub clock: OffsetClock,
    pub settings: Settings,
    pub test_db: TestDb,
    running: Option<Running>,
    /// HTTP timeout of the bot's Bot API requests (fault tests shorten it).
    pub request_timeout: Duration,
}

impl TestApp {
    /// Starts the bot with the shipped dialogues.
    pub async fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, shipped_dialogues()).await
    }

    /// Starts the bot with the dialogues of a folder.
    pub async fn spawn_with(backend: Backend, dialogues: PathBuf) -> TestApp {
        TestApp::spawn_configured(backend, dialogues, |_| {}).await
    }

    /// Starts the bot with settings adjusted by `configure` (rates, quiet hours...).
    pub async fn spawn_configured(
        backend: Backend,
        dialogues: PathBuf,
        configure: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let fake = FakeTelegram::start().await;
        let test_db = TestDb::create(&backend).await;
        let mut settings = settings(&fake, &test_db.url, dialogues);
        configure(&mut settings);
        let db = Db::connect(&test_db.url).await.expect("test database");
        db.migrate().await.expect("migrations");
        let clock = OffsetClock::new();
        let mut app = TestApp {
            fake,
            db,
            clock,
            settings,
            test_db,
            running: None,
            request_timeout: Duration::from_secs(5),
        };
        app.start().await;
        app
    }

    fn options(&self) -> RunOptions {
        RunOptions {
            clock: Arc::new(self.clock.clone()),
            poll_timeout_secs: 1,
            request_timeout: self.request_timeout,
            timer_tick: Duration::from_millis(50),
            ..RunOptions::default()
        }
    }

    /// Starts (or restarts) the bot process.
    pub async fn start(&mut self) {
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app::run(
            self.settings.clone(),
            self.options(),
            async move {
                let _ = rx.await;
            },
        ));
        self.running = Some((tx, handle));
    }

    /// Stops the bot gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some((tx, handle)) = self.running.take() {
            let _ = tx.send(());
            let r = tokio::time::timeout(Duration::from_secs(20), handle).await;
            match r {
                Ok(Ok(Ok(()))) => {}
                other => panic!("the bot did not stop cleanly: {other:?}"),
            }
        }
    }

    /// Waits until the outbox has delivered everything it holds (nothing queued, pending or in flight).
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let pending = leadbot::storage::outbox::count_by_status(&self.db, "pending")
                .await
                .unwrap_or(1);
            let sending = leadbot::storage::outbox::count_by_status(&self.db, "sending")
                .await
                .unwrap_or(1);
            let queued = leadbot::storage::outbox::count_by_status(&self.db, "queued")
                .await
                .unwrap_or(1);
            if pending + sending + queued == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox did not drain"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True while the bot's `run` has not returned (it must never exit on its own).
    pub fn is_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|(_, handle)| !handle.is_finished())
    }

    /// Kills the bot without a graceful shutdown (in-flight work is dropped mid-way).
    pub async fn kill(&mut self) {
        if let Some((_tx, handle)) = self.running.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((_tx, handle)) = self.running.take() {
            handle.abort();
        }
    }
}

/// Runs a test body on SQLite and, when configured, on PostgreSQL.
#[macro_export]
macro_rules! both_databases {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident: Backend) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn body($backend: $crate::support::app::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body($crate::support::app::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(b) = $crate::support::app::Backend::postgres(concat!(module_path!())) {
                    body(b).await
                }
            }
        }
    };
}
