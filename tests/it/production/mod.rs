//! Production mode (SPEC 3 and 9): the HTTP server (`/healthz`, `/metrics`, the webhook), replicas
//! sharing one PostgreSQL database, the SQLite single-process rule, and the CRM webhook.
//!
//! This file holds the harness: nodes (`leadbot run` in the test process) sharing a fake Telegram,
//! a database and a clock; the test modules below are by subject.

mod crm;
mod health;
mod metrics;
mod replicas;
mod webhook;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use leadbot::app::{self, HttpListener, RunError, RunOptions};
use leadbot::clock::{Clock, OffsetClock};
use leadbot::config::{Secret, Settings};
use leadbot::storage::{self, Db};
use sha2::Sha256;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::both_databases;
use crate::support::app::{Backend, STAFF_CHAT, TestDb, settings, shipped_dialogues};
use crate::support::{FakeTelegram, Fault, StoredMessage, Update, User};

const WAIT: Duration = Duration::from_secs(20);
const WEBHOOK_PATH: &str = "/telegram/updates";

/// Binds 127.0.0.1 on a free port for a bot's HTTP server.
fn bind() -> (std::net::TcpListener, SocketAddr) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("bound address");
    (l, addr)
}

/// One `leadbot run` inside the test process.
struct Node {
    addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

impl Node {
    fn start(
        settings: &Settings,
        clock: &OffsetClock,
        listener: Option<std::net::TcpListener>,
        crm_timeout: Duration,
    ) -> Node {
        let addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let options = RunOptions {
            clock: Arc::new(clock.clone()),
            poll_timeout_secs: 1,
            request_timeout: Duration::from_secs(5),
            timer_tick: Duration::from_millis(50),
            http_listener: listener.map(HttpListener::new),
            crm_timeout,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app::run(settings.clone(), options, async move {
            let _ = rx.await;
        }));
        Node {
            addr,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr.expect("the node serves HTTP"))
    }

    async fn stop(&mut self) {
        if let (Some(tx), Some(handle)) = (self.stop.take(), self.handle.take()) {
            let _ = tx.send(());
            match tokio::time::timeout(WAIT, handle).await {
                Ok(Ok(Ok(()))) => {}
                other => panic!("the bot did not stop cleanly: {other:?}"),
            }
        }
    }

    /// Stops the process without a graceful shutdown (a crash).
    async fn kill(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// A fake Telegram, a database and a clock shared by the nodes of a test.
struct World {
    fake: FakeTelegram,
    db: Db,
    clock: OffsetClock,
    base: Settings,
    _test_db: TestDb,
}

impl World {
    async fn new(backend: &Backend) -> World {
        let fake = FakeTelegram::start().await;
        let test_db = TestDb::create(backend).await;
        let base = settings(&fake, &test_db.url, shipped_dialogues());
        let db = Db::connect(&test_db.url).await.expect("test database");
        db.migrate().await.expect("migrations");
        World {
            fake,
            db,
            clock: OffsetClock::new(),
            base,
            _test_db: test_db,
        }
    }

    /// A node in webhook mode on its own port.
    fn webhook_node(&self) -> Node {
        let (listener, addr) = bind();
        let mut s = self.base.clone();
        s.http_addr = Some(addr);
        s.webhook_url = Some(format!("http://{addr}{WEBHOOK_PATH}"));
        Node::start(&s, &self.clock, Some(listener), Duration::from_secs(5))
    }

    /// A node in polling mode serving `/healthz` and `/metrics`.
    fn polling_node(&self, settings: &Settings, crm_timeout: Duration) -> Node {
        let (listener, addr) = bind();
        let mut s = settings.clone();
        s.http_addr = Some(addr);
        Node::start(&s, &self.clock, Some(listener), crm_timeout)
    }

    /// The secret every replica checks (generated once, stored in the database).
    async fn webhook_secret(&self) -> String {
        eventually("the webhook secret is stored", || async {
            self.db
                .kv_get("webhook_secret")
                .await
                .ok()
                .flatten()
                .is_some()
        })
        .await;
        self.db
            .kv_get("webhook_secret")
            .await
            .unwrap()
            .expect("webhook secret")
    }
}

/// Polls a condition until it holds or the deadline passes (a condition wait, not a fixed sleep).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(url: &str, body: &str, secret: Option<&str>) -> u16 {
    let mut r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = secret {
        r = r.header("x-telegram-bot-api-secret-token", s);
    }
    r.send()
        .await
        .expect("the bot answers HTTP")
        .status()
        .as_u16()
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("the bot answers HTTP");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// How updates reach the bot: queued for polling, or POSTed to one of several webhook endpoints
/// picked at random (a fixed seed, so a failure replays).
struct Intake<'a> {
    fake: &'a FakeTelegram,
    endpoints: Vec<String>,
    secret: String,
    seed: AtomicU64,
    /// How long each webhook POST took to be answered, microseconds.
    answered_us: Mutex<Vec<u64>>,
}

impl<'a> Intake<'a> {
    fn polling(fake: &'a FakeTelegram) -> Intake<'a> {
        Intake {
            fake,
            endpoints: Vec::new(),
            secret: String::new(),
            seed: AtomicU64::new(0),
            answered_us: Mutex::new(Vec::new()),
        }
    }

    fn webhooks(fake: &'a FakeTelegram, endpoints: Vec<String>, secret: String) -> Intake<'a> {
        Intake {
            fake,
            endpoints,
            secret,
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            answered_us: Mutex::new(Vec::new()),
        }
    }

    fn pick(&self) -> usize {
        // xorshift64: enough randomness to split updates between replicas.
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        usize::try_from(x % self.endpoints.len() as u64).unwrap_or(0)
    }

    async fn send(&self, update: Update) {
        if self.endpoints.is_empty() {
            self.fake.push(update);
            return;
        }
        let (_, body) = self.fake.webhook_body(update);
        let url = &self.endpoints[self.pick()];
        let started = std::time::Instant::now();
        assert_eq!(post(url, &body, Some(&self.secret)).await, 200, "{url}");
        let took = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.answered_us.lock().expect("timings").push(took);
    }

    /// Median and slowest webhook answer, milliseconds.
    fn answer_times_ms(&self) -> (f64, f64) {
        let mut t = self.answered_us.lock().expect("timings").clone();
        t.sort_unstable();
        let at = |i: usize| t.get(i).copied().unwrap_or(0) as f64 / 1000.0;
        (at(t.len() / 2), at(t.len().saturating_sub(1)))
    }
}

async fn bot_says(fake: &FakeTelegram, chat: i64, needle: &str) -> StoredMessage {
    let n = needle.to_owned();
    fake.wait_for_message(chat, WAIT, |m| {
        m.from_bot && m.text.as_deref().is_some_and(|t| t.contains(&n))
    })
    .await
    .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}\n{}", fake.transcript(chat)))
}

fn last_with_buttons(fake: &FakeTelegram, chat: i64) -> StoredMessage {
    fake.bot_messages_in(chat)
        .into_iter()
        .rev()
        .find(|m| !m.button_labels().is_empty())
        .unwrap_or_else(|| panic!("no message with buttons\n{}", fake.transcript(chat)))
}

/// Walks the Russian default dialogue to a hot lead.
async fn walk_hot(intake: &Intake<'_>, user: &User, phone: &str) {
    let fake = intake.fake;
    intake.send(user.command("start", "vk_ads")).await;
    let consent = bot_says(fake, user.id, "согласие").await;
    intake.send(user.presses_button(&consent, "Согласен")).await;
    bot_says(fake, user.id, "Как к вам обращаться").await;
    intake.send(user.text("Анна")).await;
    bot_says(fake, user.id, "Оставьте телефон").await;
    intake.send(user.contact(phone)).await;
    bot_says(fake, user.id, "Что вам сейчас ближе").await;
    let need = last_with_buttons(fake, user.id);
    intake
        .send(user.presses_button(&need, "Готов купить, нужен счёт"))
        .await;
    bot_says(fake, user.id, "Когда планируете").await;
    let timing = last_with_buttons(fake, user.id);
    intake
        .send(user.presses_button(&timing, "В этом месяце"))
        .await;
    bot_says(fake, user.id, "спецпредложения").await;
    let offers = last_with_buttons(fake, user.id);
    intake
        .send(user.presses_button(&offers, "Да, присылайте"))
        .await;
    bot_says(fake, user.id, "Менеджер свяжется").await;
}

async fn settle(db: &Db) {
    eventually("the outbox is drained", || async {
        let p = storage::outbox::count_by_status(db, "pending")
            .await
            .unwrap_or(1);
        let s = storage::outbox::count_by_status(db, "sending")
            .await
            .unwrap_or(1);
        let q = storage::outbox::count_by_status(db, "queued")
            .await
            .unwrap_or(1);
        p + s + q == 0
    })
    .await;
}

pub(crate) async fn scalar(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
    }
    .expect(sql)
}

/// Reads the Prometheus text exposition into `name{labels}` → value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn pg_only(test: &str) -> Option<Backend> {
    Backend::postgres(test)
}
