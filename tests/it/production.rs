//! Production mode (SPEC 3 and 9): the HTTP server (`/healthz`, `/metrics`, the webhook), replicas
//! sharing one PostgreSQL database, the SQLite single-process rule, and the CRM webhook.

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
        p + s == 0
    })
    .await;
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    match db {
        Db::Sqlite(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await,
    }
    .expect(sql)
}

both_databases! {
    async fn webhook_requests_without_the_right_secret_are_refused_and_nothing_is_stored(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.webhook_node();
        let hook = w
            .fake
            .wait_for_request(WAIT, |r| r.method == "setWebhook")
            .await
            .expect("the bot registers its webhook");
        let secret = w.webhook_secret().await;
        assert_eq!(hook.params["url"], node.url(WEBHOOK_PATH));
        assert_eq!(hook.params["secret_token"], secret.as_str());
        assert!(hook.params["allowed_updates"].to_string().contains("callback_query"));
        assert!((1..=256).contains(&secret.len()));

        let user = User::new(2001).lang("ru").first_name("Анна");
        let (_, body) = w.fake.webhook_body(user.command("start", "vk_ads"));
        assert_eq!(post(&node.url(WEBHOOK_PATH), &body, None).await, 401);
        assert_eq!(post(&node.url(WEBHOOK_PATH), &body, Some("wrong-secret")).await, 403);
        assert_eq!(scalar(&w.db, "SELECT COUNT(*) FROM updates").await, 0);
        assert!(w.fake.bot_messages_in(user.id).is_empty());

        // Telegram's own delivery carries the registered secret and is answered.
        let status = w.fake.deliver_to_webhook(user.text("Здравствуйте")).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(scalar(&w.db, "SELECT COUNT(*) FROM updates").await, 1);
        assert_eq!(post(&node.url(WEBHOOK_PATH), &body, Some(&secret)).await, 200);
        bot_says(&w.fake, user.id, "согласие").await;
        node.stop().await;
    }
}

both_databases! {
    async fn the_same_update_delivered_twice_is_applied_once(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.webhook_node();
        let secret = w.webhook_secret().await;
        let user = User::new(2002).lang("ru").first_name("Анна");
        let (update_id, body) = w.fake.webhook_body(user.command("start", "vk_ads"));
        let url = node.url(WEBHOOK_PATH);
        assert_eq!(post(&url, &body, Some(&secret)).await, 200);
        // Stored before the answer: the row is there the moment the 200 is.
        assert_eq!(
            scalar(&w.db, &format!("SELECT COUNT(*) FROM updates WHERE update_id = {update_id}")).await,
            1
        );
        bot_says(&w.fake, user.id, "согласие").await;
        settle(&w.db).await;
        assert_eq!(post(&url, &body, Some(&secret)).await, 200);
        // A later update proves the replay was looked at and changed nothing.
        let consent = last_with_buttons(&w.fake, user.id);
        let (_, press) = w.fake.webhook_body(user.presses_button(&consent, "Согласен"));
        assert_eq!(post(&url, &press, Some(&secret)).await, 200);
        bot_says(&w.fake, user.id, "Как к вам обращаться").await;
        settle(&w.db).await;
        let consents = w
            .fake
            .bot_messages_in(user.id)
            .iter()
            .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("согласие")))
            .count();
        assert_eq!(consents, 1, "{}", w.fake.transcript(user.id));
        assert_eq!(scalar(&w.db, "SELECT COUNT(*) FROM updates").await, 2);
        node.stop().await;
    }
}

both_databases! {
    async fn going_back_to_polling_removes_the_webhook_before_polling(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.webhook_node();
        w.fake
            .wait_for_request(WAIT, |r| r.method == "setWebhook")
            .await
            .expect("webhook registered");
        node.stop().await;
        assert!(w.fake.read(|s| s.webhook().is_some()));
        let before = w.fake.requests().len();

        let mut node = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
        let user = User::new(2003).lang("ru").first_name("Анна");
        w.fake.push(user.command("start", "vk_ads"));
        bot_says(&w.fake, user.id, "согласие").await;
        let after: Vec<String> = w.fake.requests()[before..]
            .iter()
            .map(|r| r.method.clone())
            .collect();
        let delete = after.iter().position(|m| m == "deleteWebhook").expect("deleteWebhook called");
        let poll = after.iter().position(|m| m == "getUpdates").expect("getUpdates called");
        assert!(delete < poll, "{after:?}");
        assert!(w.fake.read(|s| s.webhook().is_none()));
        node.stop().await;
    }
}

both_databases! {
    async fn healthz_answers_while_the_database_does(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.polling_node(&w.base, Duration::from_secs(5));
        let url = node.url("/healthz");
        eventually("the HTTP server answers", || async {
            reqwest::get(&url).await.is_ok()
        })
        .await;
        assert_eq!(get(&url).await, (200, "ok\n".to_owned()));
        let (status, _) = get(&node.url("/nowhere")).await;
        assert_eq!(status, 404);
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_when_the_database_is_gone() {
    let Some(backend) =
        Backend::postgres("production::healthz_answers_503_when_the_database_is_gone")
    else {
        return;
    };
    let w = World::new(&backend).await;
    let mut node = w.polling_node(&w.base, Duration::from_secs(5));
    let url = node.url("/healthz");
    eventually("healthy", || async { get(&url).await.0 == 200 }).await;
    w.db.close().await;
    let Backend::Postgres(admin) = &backend else {
        unreachable!()
    };
    let name = w
        ._test_db
        .url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pool = sqlx::PgPool::connect(admin)
        .await
        .expect("admin connection");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&pool)
        .await
        .expect("drop the bot's database");
    pool.close().await;
    eventually("unhealthy", || async { get(&url).await.0 == 503 }).await;
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_sqlite_file_is_refused() {
    let w = World::new(&Backend::Sqlite).await;
    let mut first = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
    let user = User::new(2004).lang("ru").first_name("Анна");
    w.fake.push(user.command("start", "vk_ads"));
    bot_says(&w.fake, user.id, "согласие").await;

    let options = RunOptions {
        clock: Arc::new(w.clock.clone()),
        ..RunOptions::default()
    };
    let second = tokio::time::timeout(
        WAIT,
        app::run(w.base.clone(), options.clone(), std::future::pending()),
    )
    .await
    .expect("the second process gives up at once");
    let message = match second {
        Err(e @ RunError::Replica(_)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains("PostgreSQL"), "{message}");

    // Once the first has stopped, the file is free again.
    first.stop().await;
    let mut again = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
    let consent = last_with_buttons(&w.fake, user.id);
    w.fake.push(user.presses_button(&consent, "Согласен"));
    bot_says(&w.fake, user.id, "Как к вам обращаться").await;
    again.stop().await;
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

both_databases! {
    async fn metrics_count_updates_steps_leads_alerts_and_telegram_errors(backend: Backend) {
        let w = World::new(&backend).await;
        let mut node = w.polling_node(&w.base, Duration::from_secs(5));
        let intake = Intake::polling(&w.fake);
        let user = User::new(2005).lang("ru").first_name("Анна");
        // One flood-limit answer on the way: counted as a Telegram error, then retried.
        w.fake.fail_next_method("sendMessage", 1, Fault::TooManyRequests { retry_after: 1 });
        walk_hot(&intake, &user, "+79123456781").await;
        bot_says(&w.fake, STAFF_CHAT, "Горячий лид").await;
        settle(&w.db).await;

        let (status, text) = get(&node.url("/metrics")).await;
        assert_eq!(status, 200);
        let m = parse_metrics(&text);
        let at = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(at("leadbot_updates_received_total{intake=\"polling\"}"), 7.0);
        assert!(at("leadbot_steps_total") >= 5.0);
        assert_eq!(at("leadbot_leads{temperature=\"hot\"}"), 1.0);
        assert_eq!(at("leadbot_alerts_sent_total"), 1.0);
        assert_eq!(at("leadbot_outbox_depth"), 0.0);
        assert_eq!(at("leadbot_outbox_oldest_due_age_seconds"), 0.0);
        assert_eq!(at("leadbot_telegram_errors_total{class=\"rate_limited\"}"), 1.0);
        assert!(at("leadbot_bot_api_request_duration_seconds_count{method=\"sendMessage\"}") >= 8.0);
        assert!(at("leadbot_bot_api_request_duration_seconds_sum{method=\"sendMessage\"}") > 0.0);
        assert!(text.contains("# TYPE leadbot_broadcast_sent gauge"));
        node.stop().await;
    }
}

/// The CRM receiver's behaviour for the n-th request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Fail,
    Hang,
}

/// A CRM receiver on 127.0.0.1: follows a script of failures, stays down until a time on the
/// bot's clock, then accepts (and records) events whose signature is right.
struct Receiver {
    script: Vec<Answer>,
    down_until_ms: AtomicI64,
    clock: OffsetClock,
    secret: String,
    requests: AtomicUsize,
    accepted: Mutex<Vec<(String, serde_json::Value)>>,
    bad_signatures: AtomicUsize,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    match r.script.get(n) {
        Some(Answer::Fail) => return StatusCode::INTERNAL_SERVER_ERROR,
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::OK;
        }
        None => {}
    }
    if r.clock.now_ms() < r.down_until_ms.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(r.secret.as_bytes()).expect("hmac key");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if header("x-leadbot-signature") != expected {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    r.accepted
        .lock()
        .expect("receiver lock")
        .push((header("idempotency-key"), json));
    StatusCode::OK
}

async fn start_receiver(receiver: Arc<Receiver>) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the CRM receiver");
    let addr = listener.local_addr().expect("receiver address");
    let router = axum::Router::new()
        .route("/crm", axum::routing::post(receive))
        .with_state(receiver);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/crm"), task)
}

both_databases! {
    async fn a_crm_that_fails_hangs_and_is_down_for_an_hour_still_gets_every_event_once_signed(backend: Backend) {
        let w = World::new(&backend).await;
        let secret = "crm-signing-key";
        let receiver = Arc::new(Receiver {
            script: vec![Answer::Fail, Answer::Fail, Answer::Hang],
            down_until_ms: AtomicI64::new(w.clock.now_ms() + 3_600_000),
            clock: w.clock.clone(),
            secret: secret.to_owned(),
            requests: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
            bad_signatures: AtomicUsize::new(0),
        });
        let (crm_url, server) = start_receiver(receiver.clone()).await;
        let mut s = w.base.clone();
        s.crm_webhook_url = Some(crm_url);
        s.crm_secret = Some(Secret::new(secret));
        let mut node = w.polling_node(&s, Duration::from_millis(300));

        let intake = Intake::polling(&w.fake);
        let user = User::new(2006).lang("ru").first_name("Анна");
        walk_hot(&intake, &user, "+79123456782").await;
        let card = bot_says(&w.fake, STAFF_CHAT, "Горячий лид").await;
        let manager = User::new(501).first_name("Мария");
        w.fake.push(manager.presses_button(&card, "✋ Взять"));
        w.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| {
                m.message_id == card.message_id && m.text.as_deref().is_some_and(|t| t.contains("Мария"))
            })
            .await
            .expect("card edited with the owner");
        let taken = w.fake.bot_messages_in(STAFF_CHAT).into_iter().find(|m| m.message_id == card.message_id).unwrap();
        let won = taken
            .button_labels()
            .into_iter()
            .find(|l| l.contains("Выиграна") || l.contains("выиграна") || l.contains("Won"))
            .unwrap_or_else(|| panic!("no Won button: {:?}", taken.button_labels()));
        w.fake.push(manager.presses_button(&taken, &won));
        eventually("the lead is won", || async {
            storage::leads::by_telegram(&w.db, user.id).await.ok().flatten().is_some_and(|l| l.status == "won")
        })
        .await;

        // The receiver fails, hangs, then is down for an hour of the bot's time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let events = storage::crm::all(&w.db).await.unwrap();
            if !events.is_empty() && events.iter().all(|e| e.status == "delivered") {
                break;
            }
            assert!(events.iter().all(|e| e.status != "failed"), "{events:?}");
            assert!(tokio::time::Instant::now() < deadline, "CRM events not delivered: {events:?}");
            w.clock.advance(Duration::from_secs(90));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }

        let events = storage::crm::all(&w.db).await.unwrap();
        let accepted = receiver.accepted.lock().unwrap().clone();
        let names: Vec<&str> = accepted.iter().map(|(_, b)| b["event"].as_str().unwrap_or("?")).collect();
        // Exactly once each, in the order they happened.
        assert_eq!(names.len(), events.len(), "{names:?}");
        let in_db: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, in_db);
        for needed in ["lead.created", "lead.qualified", "lead.hot", "lead.taken", "lead.won"] {
            assert_eq!(names.iter().filter(|n| **n == needed).count(), 1, "{needed} in {names:?}");
        }
        assert_eq!(names.first(), Some(&"lead.created"));
        assert_eq!(names.last(), Some(&"lead.won"));
        let keys: HashSet<&str> = accepted.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), accepted.len());
        for (key, body) in &accepted {
            assert_eq!(body["event_id"].as_str(), Some(key.as_str()));
            assert_eq!(body["source"], "vk_ads");
        }
        let (_, hot) = accepted.iter().find(|(_, b)| b["event"] == "lead.hot").unwrap();
        assert_eq!(hot["lead"]["phone"], "+79123456782");
        assert_eq!(hot["lead"]["name"], "Анна");
        assert!(hot["answers"].as_array().is_some_and(|a| a.len() >= 3), "{hot}");
        assert!(hot["score"]["breakdown"].as_array().is_some_and(|b| !b.is_empty()), "{hot}");
        let (_, won) = accepted.iter().find(|(_, b)| b["event"] == "lead.won").unwrap();
        assert_eq!(won["lead"]["manager"]["id"], 501);
        assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
        // It kept trying through the hour: many attempts on the first event, none dropped.
        assert!(events[0].attempts >= 10, "{:?}", events[0]);
        node.stop().await;
        server.abort();
    }
}

fn pg_only(test: &str) -> Option<Backend> {
    Backend::postgres(test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_split_updates_without_doubles_and_keep_each_leads_order() {
    let Some(backend) = pg_only("production::two_replicas_on_postgresql_split_updates") else {
        return;
    };
    let w = World::new(&backend).await;
    let mut a = w.webhook_node();
    let mut b = w.webhook_node();
    let secret = w.webhook_secret().await;
    eventually("both replicas registered the webhook", || async {
        w.fake.requests_for("setWebhook").len() >= 2
    })
    .await;
    let intake = Intake::webhooks(
        &w.fake,
        vec![a.url(WEBHOOK_PATH), b.url(WEBHOOK_PATH)],
        secret,
    );
    let users: Vec<User> = (0..6)
        .map(|i| User::new(3000 + i).lang("ru").first_name("Анна"))
        .collect();
    futures::future::join_all(users.iter().enumerate().map(|(i, u)| {
        let intake = &intake;
        async move { walk_hot(intake, u, &format!("+7912345670{i}")).await }
    }))
    .await;
    // A burst per lead, spread over both replicas without waiting for answers.
    for k in 0..6 {
        for u in &users {
            intake.send(u.text(&format!("burst {k}"))).await;
        }
    }
    eventually("every update is applied", || async {
        storage::updates::pending_count(&w.db).await.unwrap_or(1) == 0
    })
    .await;
    settle(&w.db).await;

    for (i, u) in users.iter().enumerate() {
        let lead = storage::leads::by_telegram(&w.db, u.id)
            .await
            .unwrap()
            .expect("lead");
        assert_eq!(lead.temperature, "hot");
        // One alert card per hot lead.
        let phone = format!("+7912345670{i}");
        let cards = w
            .fake
            .bot_messages_in(STAFF_CHAT)
            .iter()
            .filter(|m| {
                m.text
                    .as_deref()
                    .is_some_and(|t| t.contains("Горячий лид") && t.contains(&phone))
            })
            .count();
        assert_eq!(cards, 1, "lead {i}:\n{}", w.fake.transcript(STAFF_CHAT));
        // No doubled replies: every question once, and Telegram got exactly the outbox's rows.
        for q in [
            "согласие",
            "Как к вам обращаться",
            "Оставьте телефон",
            "Когда планируете",
        ] {
            let n = w
                .fake
                .bot_messages_in(u.id)
                .iter()
                .filter(|m| m.text.as_deref().is_some_and(|t| t.contains(q)))
                .count();
            assert_eq!(n, 1, "{q}:\n{}", w.fake.transcript(u.id));
        }
        let sent = scalar(
            &w.db,
            &format!("SELECT COUNT(*) FROM outbox WHERE chat_id = {} AND status = 'sent' AND action LIKE '%send_message%'", u.id),
        )
        .await;
        assert_eq!(
            w.fake.bot_messages_in(u.id).len() as i64,
            sent,
            "{}",
            w.fake.transcript(u.id)
        );
        // The lead's inbound history is in the order Telegram numbered the updates.
        let inbound: Vec<i64> = storage::messages::history(&w.db, lead.id, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.direction == "in")
            .filter_map(|m| m.update_id)
            .collect();
        let mut sorted = inbound.clone();
        sorted.sort_unstable();
        assert_eq!(inbound, sorted);
        assert!(inbound.len() >= 13, "{inbound:?}");
        let bursts: Vec<String> = storage::messages::history(&w.db, lead.id, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|m| m.text.filter(|t| t.starts_with("burst")))
            .collect();
        let expected: Vec<String> = (0..6).map(|k| format!("burst {k}")).collect();
        assert_eq!(bursts, expected);
    }
    let total_cards = w
        .fake
        .bot_messages_in(STAFF_CHAT)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Горячий лид")))
        .count();
    assert_eq!(total_cards, users.len());
    // Each replica counts what it received; together, every update once.
    let mut received = 0.0;
    for node in [&a, &b] {
        let (_, text) = get(&node.url("/metrics")).await;
        let m = parse_metrics(&text);
        let n = m["leadbot_updates_received_total{intake=\"webhook\"}"];
        assert!(n > 0.0, "both replicas took updates");
        received += n;
        // The shared state reads the same on both.
        assert_eq!(m["leadbot_leads{temperature=\"hot\"}"], users.len() as f64);
    }
    let posted = intake.answered_us.lock().expect("timings").len();
    assert_eq!(received, posted as f64);
    let (median, slowest) = intake.answer_times_ms();
    eprintln!(
        "webhook answers over {} POSTs: median {median:.1} ms, slowest {slowest:.1} ms",
        intake.answered_us.lock().expect("timings").len()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_dies_mid_delivery_leaves_its_messages_to_the_survivor() {
    let Some(backend) = pg_only("production::a_replica_that_dies_mid_delivery") else {
        return;
    };
    let w = World::new(&backend).await;
    let mut a = w.webhook_node();
    let secret = w.webhook_secret().await;
    let user = User::new(4001).lang("ru").first_name("Анна");
    // A's first send hangs: the row stays `sending`, claimed by A.
    w.fake.fail_next_method("sendMessage", 1, Fault::Hang);
    let (_, body) = w.fake.webhook_body(user.command("start", "vk_ads"));
    assert_eq!(post(&a.url(WEBHOOK_PATH), &body, Some(&secret)).await, 200);
    eventually("A claimed the reply", || async {
        storage::outbox::count_by_status(&w.db, "sending")
            .await
            .unwrap_or(0)
            == 1
    })
    .await;
    // A replica that is alive keeps its claim.
    let mut b = w.webhook_node();
    w.fake
        .wait_for_request(WAIT, |r| {
            r.method == "setWebhook" && r.params["url"] == b.url(WEBHOOK_PATH)
        })
        .await
        .expect("B registered");
    assert_eq!(storage::ops::release_orphans(&w.db, -1).await.unwrap(), 0);
    assert_eq!(
        storage::outbox::count_by_status(&w.db, "sending")
            .await
            .unwrap(),
        1
    );
    a.kill().await;
    bot_says(&w.fake, user.id, "согласие").await;
    settle(&w.db).await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_reminders_fire_once_across_replicas() {
    let Some(backend) = pg_only("production::sla_reminders_fire_once_across_replicas") else {
        return;
    };
    let w = World::new(&backend).await;
    let mut a = w.webhook_node();
    let mut b = w.webhook_node();
    let secret = w.webhook_secret().await;
    let intake = Intake::webhooks(
        &w.fake,
        vec![a.url(WEBHOOK_PATH), b.url(WEBHOOK_PATH)],
        secret,
    );
    let user = User::new(5001).lang("ru").first_name("Анна");
    walk_hot(&intake, &user, "+79123456789").await;
    bot_says(&w.fake, STAFF_CHAT, "Горячий лид").await;
    let reminders = || {
        w.fake
            .bot_messages_in(STAFF_CHAT)
            .iter()
            .filter(|m| {
                m.text
                    .as_deref()
                    .is_some_and(|t| t.contains("никто не взял"))
            })
            .count()
    };
    for round in 1..=2 {
        w.clock.advance(Duration::from_secs(16 * 60));
        eventually("the staff chat is reminded", || async {
            reminders() >= round
        })
        .await;
        settle(&w.db).await;
    }
    let lead = storage::leads::by_telegram(&w.db, user.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lead.sla_reminders, 2);
    assert_eq!(reminders(), 2, "{}", w.fake.transcript(STAFF_CHAT));
    a.stop().await;
    b.stop().await;
}

both_databases! {
    async fn forgetting_a_lead_drops_its_undelivered_crm_events(backend: Backend) {
        let w = World::new(&backend).await;
        let secret = "crm-signing-key";
        let receiver = Arc::new(Receiver {
            script: Vec::new(),
            // Down for a day: nothing is delivered during the test.
            down_until_ms: AtomicI64::new(w.clock.now_ms() + 86_400_000),
            clock: w.clock.clone(),
            secret: secret.to_owned(),
            requests: AtomicUsize::new(0),
            accepted: Mutex::new(Vec::new()),
            bad_signatures: AtomicUsize::new(0),
        });
        let (crm_url, server) = start_receiver(receiver.clone()).await;
        let mut s = w.base.clone();
        s.crm_webhook_url = Some(crm_url);
        s.crm_secret = Some(Secret::new(secret));
        let mut node = w.polling_node(&s, Duration::from_millis(300));

        let user = User::new(2007).lang("ru").first_name("Анна");
        w.fake.push(user.command("start", "vk_ads"));
        bot_says(&w.fake, user.id, "согласие").await;
        eventually("lead.created was tried", || async {
            receiver.requests.load(Ordering::SeqCst) >= 1
        })
        .await;
        w.fake.push(user.command("forget", ""));
        bot_says(&w.fake, user.id, "Удалить все ваши данные").await;
        let confirm = last_with_buttons(&w.fake, user.id);
        w.fake.push(user.presses_button(&confirm, "Да, удалить"));
        bot_says(&w.fake, user.id, "Ваши данные удалены").await;
        // Erased in the same transaction as the lead's data: nothing is left to deliver.
        assert!(storage::crm::all(&w.db).await.unwrap().is_empty());
        // Even after the receiver is back.
        receiver.down_until_ms.store(0, Ordering::SeqCst);
        let tried = receiver.requests.load(Ordering::SeqCst);
        w.clock.advance(Duration::from_secs(600));
        w.fake.push(User::new(2099).lang("ru").first_name("Пётр").command("start", ""));
        eventually("the next lead's event is delivered", || async {
            !receiver.accepted.lock().unwrap().is_empty()
        })
        .await;
        let accepted = receiver.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 1, "{accepted:?}");
        assert_eq!(accepted[0].1["lead"]["telegram_id"], 2099);
        assert!(receiver.requests.load(Ordering::SeqCst) > tried);
        node.stop().await;
        server.abort();
    }
}

both_databases! {
    async fn a_generated_webhook_secret_is_kept_across_restarts(backend: Backend) {
        let w = World::new(&backend).await;
        let mut first = w.webhook_node();
        let secret = w.webhook_secret().await;
        w.fake
            .wait_for_request(WAIT, |r| r.method == "setWebhook")
            .await
            .expect("registered");
        first.stop().await;
        let mut second = w.webhook_node();
        let url = second.url(WEBHOOK_PATH);
        w.fake
            .wait_for_request(WAIT, |r| r.method == "setWebhook" && r.params["url"] == url.as_str())
            .await
            .expect("registered again");
        assert_eq!(w.fake.read(|s| s.webhook().cloned()).unwrap()["secret_token"], secret.as_str());
        let user = User::new(2008).lang("ru").first_name("Анна");
        assert_eq!(w.fake.deliver_to_webhook(user.command("start", "")).await.unwrap(), 200);
        bot_says(&w.fake, user.id, "согласие").await;
        second.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_asking_to_retry_later_is_given_that_long() {
    let w = World::new(&Backend::Sqlite).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let router = axum::Router::new().route(
        "/crm",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")])
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut s = w.base.clone();
    s.crm_webhook_url = Some(format!("http://{addr}/crm"));
    s.crm_secret = Some(Secret::new("k"));
    let mut node = w.polling_node(&s, Duration::from_secs(5));
    let user = User::new(2010).lang("ru").first_name("Анна");
    w.fake.push(user.command("start", ""));
    eventually("the CRM was asked once and the event put back", || async {
        hits.load(Ordering::SeqCst) >= 1
            && storage::crm::all(&w.db)
                .await
                .unwrap()
                .first()
                .is_some_and(|e| e.status == "pending" && e.attempts == 1)
    })
    .await;
    let event = storage::crm::all(&w.db).await.unwrap().remove(0);
    let wait = event.next_attempt_at - w.clock.now_ms();
    assert!((110_000..=120_000).contains(&wait), "{wait} ms");
    assert_eq!(
        event.last_error.as_deref(),
        Some("the CRM answered 429 Too Many Requests")
    );
    node.stop().await;
    server.abort();
}

both_databases! {
    async fn a_webhook_set_elsewhere_is_removed_when_polling_is_refused(backend: Backend) {
        use teloxide::prelude::Requester;
        let w = World::new(&backend).await;
        let url = reqwest::Url::parse("https://elsewhere.example.com/hook").unwrap();
        w.fake.bot().set_webhook(url).await.expect("a webhook set by another tool");
        let mut node = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
        let user = User::new(2011).lang("ru").first_name("Анна");
        w.fake.push(user.command("start", ""));
        bot_says(&w.fake, user.id, "согласие").await;
        assert!(w.fake.read(|s| s.webhook().is_none()));
        let refused = w
            .fake
            .requests_for("getUpdates")
            .iter()
            .filter(|r| r.status != Some(200))
            .count();
        assert!(refused >= 1);
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_process_leaves_the_sqlite_file_free_at_once() {
    let w = World::new(&Backend::Sqlite).await;
    let user = User::new(2012).lang("ru").first_name("Анна");
    for round in 0..3 {
        let mut node = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
        if round == 0 {
            w.fake.push(user.command("start", "vk_ads"));
        }
        bot_says(&w.fake, user.id, "согласие").await;
        node.kill().await;
    }
    let mut node = Node::start(&w.base, &w.clock, None, Duration::from_secs(5));
    let consent = last_with_buttons(&w.fake, user.id);
    w.fake.push(user.presses_button(&consent, "Согласен"));
    bot_says(&w.fake, user.id, "Как к вам обращаться").await;
    node.stop().await;
}
