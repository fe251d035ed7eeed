//! Faults: the Bot API fails a fifth of the requests (500, hangs past the client's timeout, closed
//! connections, 429 bursts) and the database goes away for seconds, while prospects go through the
//! dialogue. Everyone finishes, every answer is stored once, nothing is lost, the bot never exits.

use std::time::{Duration, Instant};

use crate::both_databases;
use crate::prospect::{WAIT, bot_says, count_bot, eventually, last_with_buttons, up_to_name};
use crate::support::app::{Backend, TestApp};
use crate::support::crowd::{self, Crowd};
#[allow(unused_imports)]
use crate::support::fake_telegram::{Chaos, Fault};
use crate::support::{StoredMessage, User};
#[allow(unused_imports)]
use crowd::settle;
use leadbot::storage;

/// Many finished leads write at once: each message is relayed to the staff chat (which reads the
/// lead's card inside the update's transaction) and acknowledged. On SQLite a read through a
/// second pooled connection inside the transaction waited for writers that waited for it, and
/// everything stalled for the 10 s busy timeout.
async fn relays_from_many_leads_at_once_do_not_stall(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut crowd = Crowd::new(12, 610_000, 1, 0.0);
    crowd
        .drive(&app.fake, Duration::from_secs(30), |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for p in &crowd.prospects {
        app.fake.push(p.user.text("Когда перезвоните?"));
    }
    for p in &crowd.prospects {
        app.fake
            .wait_for_message(p.user.id, Duration::from_secs(8), |m| {
                m.from_bot
                    && m.visible_text()
                        .contains("ваше сообщение получено и передано менеджеру")
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", app.fake.transcript(p.user.id)));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "12 relays took {took:?}: the database stalled"
    );
}

both_databases! {
    async fn relays_from_many_finished_leads_at_once_do_not_stall_the_database(backend: Backend) {
        relays_from_many_leads_at_once_do_not_stall(backend).await
    }
}

fn say(line: String) {
    // Past the harness's capture, so the figures show in CI logs.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

/// The bot with a short Bot API timeout, so a hung request costs 2 s rather than 5.
async fn bot_with_short_timeout(backend: Backend) -> TestApp {
    let mut app = TestApp::spawn(backend).await;
    app.stop().await;
    app.request_timeout = Duration::from_secs(2);
    app.start().await;
    app
}

both_databases! {
    async fn prospects_finish_while_a_fifth_of_bot_api_requests_fail(backend: Backend) {
        let app = bot_with_short_timeout(backend).await;
        let seed = crowd::seed();
        say(format!("faults: seed {seed} (replay with LEADBOT_CHAOS_SEED={seed})"));
        app.fake.set_chaos(Some(Chaos {
            rate: 0.2,
            seed,
            faults: vec![
                Fault::ServerError,
                Fault::Hang,
                Fault::CloseConnection,
                Fault::TooManyRequests { retry_after: 1 },
            ],
        }));
        let mut crowd = Crowd::new(12, 620_000, seed, 0.15);
        let started = Instant::now();
        let mut bursts = 0;
        let result = crowd
            .drive(&app.fake, Duration::from_secs(120), |crowd, fake| {
                // Now and then a burst: ten 429s in a row, and a few failed polls (dropped
                // connections: a 5xx costs any teloxide request a fixed 10 s pause before it
                // reads the answer, which sends below already meet).
                if crowd.tally.updates >= 30 * (bursts + 1) {
                    bursts += 1;
                    fake.fail_next(10, Fault::TooManyRequests { retry_after: 1 });
                    fake.fail_next_method("getUpdates", 2, Fault::CloseConnection);
                }
            })
            .await;
        if let Err(e) = result {
            panic!("{e}\nseed {seed}\n{}", crowd::backlog_report(&app.db).await);
        }
        app.fake.set_chaos(None);
        settle(&app.db, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}; seed {seed}"));
        let elapsed = started.elapsed();
        let failed = app.fake.read(|s| s.requests().iter().filter(|r| r.method != "getUpdates" && r.status != Some(200)).count());
        let total = app.fake.read(|s| s.requests().iter().filter(|r| r.method != "getUpdates").count());
        assert!(app.is_running(), "the bot stopped");
        let dups = crowd::check(&crowd, &app.fake, &app.db).await;
        say(format!(
            "faults: {} prospects finished in {elapsed:.1?}; {failed} of {total} Bot API calls failed, \
             {bursts} bursts of 429; duplicates {} (seed {seed})",
            crowd.finished(),
            dups.total()
        ));
        // A failed request never reached Telegram, so nothing may be doubled.
        assert_eq!(dups.total(), 0, "messages doubled; seed {seed}");
    }
}

/// Terminates every connection to `database` but this one, over and over, for `span`: the
/// database "goes away" for the bot. Returns how many connections were cut.
async fn cut_connections(admin_url: String, database: String, span: Duration) -> u64 {
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("admin connection");
    let until = Instant::now() + span;
    let mut cut = 0;
    while Instant::now() < until {
        let rows: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&database)
        .fetch_all(&admin)
        .await
        .unwrap_or_default();
        cut += rows.iter().filter(|(done,)| *done).count() as u64;
        // Between rounds the bot reconnects, and is cut again on the next round.
        tokio::task::yield_now().await;
    }
    admin.close().await;
    cut
}

/// How long each outage lasts (`LEADBOT_OUTAGE_SECS`, default 5).
fn outage_span() -> Duration {
    Duration::from_secs(
        std::env::var("LEADBOT_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_waits_out_a_postgres_outage_and_loses_no_update() {
    let Some(backend) = Backend::postgres("faults::the_bot_waits_out_a_postgres_outage") else {
        return;
    };
    let Backend::Postgres(admin_url) = backend.clone() else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let database = app
        .test_db
        .url
        .rsplit_once('/')
        .map(|(_, name)| name.to_owned())
        .unwrap_or_default();
    let seed = crowd::seed();
    say(format!(
        "outage: seed {seed} (replay with LEADBOT_CHAOS_SEED={seed})"
    ));
    let mut crowd = Crowd::new(20, 630_000, seed, 0.15);
    let mut outages: Vec<tokio::task::JoinHandle<u64>> = Vec::new();
    let started = Instant::now();
    let result = crowd
        .drive(&app.fake, Duration::from_secs(120), |crowd, _| {
            // Two outages of 3 s, a third and two thirds of the way through.
            let due = match crowd.tally.updates {
                n if n >= 100 => 2,
                n if n >= 40 => 1,
                _ => 0,
            };
            while outages.len() < due {
                outages.push(tokio::spawn(cut_connections(
                    admin_url.clone(),
                    database.clone(),
                    outage_span(),
                )));
            }
        })
        .await;
    let mut cut = 0;
    for outage in outages {
        cut += outage.await.unwrap_or(0);
    }
    if let Err(e) = result {
        panic!("{e}\nseed {seed}\n{}", crowd::backlog_report(&app.db).await);
    }
    if let Err(e) = settle(&app.db, Duration::from_secs(60)).await {
        panic!("{e}; seed {seed}\n{}", crowd::backlog_report(&app.db).await);
    }
    assert!(app.is_running(), "the bot stopped during the outage");
    assert!(
        cut > 0,
        "no connection was cut: the test did not test anything"
    );
    let dups = crowd::check(&crowd, &app.fake, &app.db).await;
    say(format!(
        "outage: {} prospects finished in {:.1?} through two {:?} outages ({cut} connections cut); \
         duplicates {} (seed {seed})",
        crowd.finished(),
        started.elapsed(),
        outage_span(),
        dups.total()
    ));
    // The bot was never killed, so nothing Telegram accepted may be sent again.
    assert_eq!(dups.total(), 0, "messages doubled; seed {seed}");
}

/// PostgreSQL applied a commit and the connection broke before the bot heard so: the bot sees an
/// error for a transaction that did happen. When that transaction claimed messages for this
/// process's worker (an update's hand-over, the worker's own claim, a recording that claims the
/// next messages), they were `sending` with no one to send them until a restart. They are put
/// back and sent, once each. A proxy in front of the database loses the answer to two commits of
/// each kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_claimed_by_a_commit_whose_answer_was_lost_are_sent_once() {
    use crate::support::pg_proxy::{PgProxy, Ran};
    let Some(backend) =
        Backend::postgres("faults::messages_claimed_by_a_commit_whose_answer_was_lost")
    else {
        return;
    };
    let Backend::Postgres(admin_url) = backend.clone() else {
        return;
    };
    let proxy = PgProxy::start(&admin_url).await;
    fn has(statements: &[Ran], sql: &str) -> bool {
        statements.iter().any(|(s, _)| s.contains(sql))
    }
    // A claim that took rows.
    fn claims(statements: &[Ran]) -> bool {
        statements
            .iter()
            .any(|(s, rows)| s.contains(CLAIM) && *rows > 0)
    }
    const CLAIM: &str = "UPDATE outbox SET status = 'sending'";
    const UPDATE: &str = "INSERT INTO updates";
    const SENT: &str = "UPDATE outbox SET status = 'sent'";
    proxy.lose_commits("an update's", 2, |s| claims(s) && has(s, UPDATE));
    proxy.lose_commits("a recording's", 2, |s| {
        claims(s) && has(s, SENT) && !has(s, UPDATE)
    });
    proxy.lose_commits("the worker's", 2, |s| s.len() == 1 && claims(s));
    let app = TestApp::spawn_configured(backend, crate::support::app::shipped_dialogues(), |s| {
        s.database_url = proxy.url(&s.database_url);
    })
    .await;
    let seed = crowd::seed();
    let mut crowd = Crowd::new(5, 660_000, seed, 0.0);
    let result = crowd
        .drive(&app.fake, Duration::from_secs(60), |_, _| {})
        .await;
    if let Err(e) = result {
        panic!("{e}\nseed {seed}\n{}", crowd::backlog_report(&app.db).await);
    }
    if let Err(e) = settle(&app.db, Duration::from_secs(30)).await {
        panic!("{e}; seed {seed}\n{}", crowd::backlog_report(&app.db).await);
    }
    for kind in ["an update's", "a recording's", "the worker's"] {
        assert_eq!(
            proxy.lost(kind),
            2,
            "{kind} commits lost: the test did not test that kind"
        );
    }
    let dups = crowd::check(&crowd, &app.fake, &app.db).await;
    assert_eq!(dups.total(), 0, "messages doubled; seed {seed}");
    assert!(app.is_running());
}

both_databases! {
    /// The sweep after a lost claim puts back this process's rows still `sending`, and nothing
    /// else: not another replica's, not a row delivered or waiting.
    async fn the_sweep_after_a_lost_claim_puts_back_only_this_processs_rows(backend: Backend) {
        use storage::outbox;
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_000;
        let mut tx = db.begin().await.expect("begin");
        for (key, chat) in [("mine", 1), ("theirs", 2), ("sent", 3), ("waiting", 4)] {
            let action = r#"{"type":"send_message","text":"Hi"}"#;
            outbox::enqueue(&mut tx, key, None, chat, action, true, now)
                .await
                .expect("enqueue");
        }
        tx.commit().await.expect("commit");
        let claim = |owner: i64| outbox::claim_due_by(&db, now, 1, Some(owner));
        let mine = claim(5).await.expect("claim");
        let theirs = claim(6).await.expect("claim");
        let sent = claim(5).await.expect("claim");
        assert_eq!((mine.len(), theirs.len(), sent.len()), (1, 1, 1));
        let mut tx = db.begin().await.expect("begin");
        outbox::mark_sent_in(&mut tx, &[(sent[0].id, Some(10))], now)
            .await
            .expect("mark sent");
        tx.commit().await.expect("commit");
        assert_eq!(storage::ops::release_lost(&db, storage::ops::Claimed::Outbox, Some(5)).await.expect("sweep"), 1);
        let status = |key: &'static str| {
            let db = db.clone();
            async move { outbox::by_key(&db, key).await.expect("row").expect("stored").status }
        };
        assert_eq!(status("mine").await, "pending");
        assert_eq!(status("theirs").await, "sending");
        assert_eq!(status("sent").await, "sent");
        assert_eq!(status("waiting").await, "pending");
        assert_eq!(storage::ops::release_lost(&db, storage::ops::Claimed::Outbox, Some(5)).await.expect("sweep"), 0);
    }
}

/// Highest `attempts` among stored updates.
async fn max_update_attempts(db: &leadbot::storage::Db) -> i32 {
    const SQL: &str = "SELECT COALESCE(MAX(attempts), 0) FROM updates";
    let row: Result<(i32,), _> = match db {
        leadbot::storage::Db::Sqlite(p) => sqlx::query_as(SQL).fetch_one(p).await,
        leadbot::storage::Db::Postgres(p) => sqlx::query_as(SQL).fetch_one(p).await,
    };
    row.map(|(n,)| n).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_failing_for_a_moment_is_retried_with_backoff_not_set_aside() {
    let Some(backend) = Backend::postgres("faults::an_update_failing_for_a_moment") else {
        return;
    };
    let app = TestApp::spawn(backend).await;
    let leadbot::storage::Db::Postgres(pool) = &app.db else {
        return;
    };
    // The lead's history table is away: every update fails (the database answers, so the
    // failure is counted against the update).
    sqlx::query("ALTER TABLE messages RENAME TO messages_away")
        .execute(pool)
        .await
        .expect("renaming the history table");
    let user = crate::support::User::new(640_001).lang("ru");
    app.fake.push(user.command("start", "outage"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while max_update_attempts(&app.db).await < 2 {
        assert!(Instant::now() < deadline, "the update was never tried");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The table stays away a little longer (the length of the fault, not a wait for something):
    // retried in a tight loop, the update used all its attempts within milliseconds.
    tokio::time::sleep(Duration::from_millis(400)).await;
    sqlx::query("ALTER TABLE messages_away RENAME TO messages")
        .execute(pool)
        .await
        .expect("renaming the history table back");
    app.fake
        .wait_for_message(user.id, Duration::from_secs(15), |m| {
            m.from_bot && m.visible_text().contains("согласие")
        })
        .await
        .unwrap_or_else(|e| panic!("the update was set aside: {e}"));
}

/// Runs the bot against `fake` on a fresh SQLite file until start-up stops by itself; its error,
/// and whether the database file was created.
async fn start_up_error(fake: &crate::support::FakeTelegram) -> (String, bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_file = dir.path().join("leadbot.db");
    let db_url = format!("sqlite://{}", db_file.display());
    let settings =
        crate::support::app::settings(fake, &db_url, crate::support::app::shipped_dialogues());
    let options = leadbot::app::RunOptions {
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let run = leadbot::app::run(settings, options, std::future::pending::<()>());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("start-up stops by itself");
    match result {
        Err(e) => (e.to_string(), db_file.exists()),
        Ok(()) => panic!("the bot ran though start-up should have stopped"),
    }
}

/// A staff chat that cannot get alerts stops start-up with a line saying why and what to set:
/// a mistyped id, a group the bot left or was removed from.
#[tokio::test]
async fn a_staff_chat_the_bot_cannot_post_to_stops_start_up_and_says_what_to_fix() {
    use crate::support::fake_telegram::Gone;
    let staff = crate::support::app::STAFF_CHAT;
    for (gone, expected) in [
        (Gone::NotFound, "knows no chat"),
        (
            Gone::Left,
            "not in the chat -1001234567890 (its status there is left)",
        ),
        (
            Gone::Kicked,
            "(Forbidden: bot was kicked from the supergroup chat)",
        ),
    ] {
        let fake = crate::support::FakeTelegram::start().await;
        fake.make_chat_gone(staff, gone);
        let (message, created) = start_up_error(&fake).await;
        assert!(
            message.starts_with("LEADBOT_STAFF_CHAT_ID: ") && message.contains(expected),
            "{gone:?}: {message}"
        );
        assert!(!created, "{gone:?}: no database is created");
        let methods: Vec<String> = fake.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, ["getMe", "getChatMember"], "{gone:?}");
    }
}

/// A staff group Telegram upgraded to a supergroup (turning on topics does) while the bot was
/// stopped: start-up follows it to the new id, and the alerts go there.
#[tokio::test]
async fn a_staff_group_upgraded_while_the_bot_was_stopped_is_followed_at_start_up() {
    use crate::support::fake_telegram::Gone;
    let old = crate::support::app::STAFF_CHAT;
    let new = -1_009_876_543_210;
    let app = TestApp::spawn_configured(
        Backend::Sqlite,
        crate::support::app::shipped_dialogues(),
        |_| {},
    )
    .await;
    let mut app = app;
    app.stop().await;
    app.fake.make_chat_gone(old, Gone::Migrated(new));
    app.start().await;
    let user = crate::support::User::new(3421).lang("ru");
    crate::prospect::up_to_need(&app, &user).await;
    crate::prospect::finish_hot(&app, &user).await;
    crate::prospect::bot_says(&app, new, "Горячий лид").await;
    let to_old: Vec<String> = app
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.params.get("chat_id").and_then(serde_json::Value::as_i64) == Some(old))
        .map(|r| r.method)
        .collect();
    assert_eq!(
        to_old,
        ["getChatMember", "getChatMember"],
        "asked at each start, never sent to"
    );
}

/// The log of one start of the bot against `fake` (until its first poll), as an operator sees it.
async fn start_up_log(fake: &crate::support::FakeTelegram) -> String {
    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}", dir.path().join("leadbot.db").display());
    let settings =
        crate::support::app::settings(fake, &db_url, crate::support::app::shipped_dialogues());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = leadbot::app::RunOptions {
        poll_timeout_secs: 1,
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let run = leadbot::app::run(settings, options, async move {
        let _ = stopped.await;
    });
    let polled = async {
        fake.wait_for_request(Duration::from_secs(10), |r| r.method == "getUpdates")
            .await
            .expect("the bot polls (a poll is seen when answered)");
        let _ = stop.send(());
    };
    let (result, ()) = tokio::join!(run, polled);
    result.expect("the bot runs and stops");
    let text = log.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&text).into_owned()
}

/// A bot whose privacy mode is on, and which is not an admin of the staff chat, would not see
/// managers' plain messages there: start-up says so and how to fix it. With privacy off, nothing.
#[tokio::test]
async fn start_up_warns_when_privacy_mode_would_hide_managers_messages() {
    let fake = crate::support::FakeTelegram::start().await;
    let log = start_up_log(&fake).await;
    assert!(
        log.contains("privacy mode is on") && log.contains("/setprivacy"),
        "{log}"
    );
    let fake = crate::support::FakeTelegram::start().await;
    fake.turn_privacy_off();
    let log = start_up_log(&fake).await;
    assert!(log.contains("the bot is in the staff chat"), "{log}");
    assert!(!log.contains("privacy mode"), "{log}");
}

/// A token Telegram does not know (mistyped, or revoked in @BotFather) stops start-up with a line
/// saying so, before a database is created or a single update is asked for; the token itself is
/// never shown.
#[tokio::test]
async fn a_token_telegram_refuses_stops_start_up_and_creates_nothing() {
    let fake = crate::support::FakeTelegram::start().await;
    fake.accept_only_token("999:THE-REAL-ONE");
    let (message, created) = start_up_error(&fake).await;
    assert!(
        message.contains("TELOXIDE_TOKEN") && message.contains("refused"),
        "{message}"
    );
    assert!(
        !message.contains("TEST-token"),
        "the token is not shown: {message}"
    );
    assert!(!created, "no database is created");
    let calls: Vec<(String, Option<u16>)> = fake
        .requests()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    assert_eq!(calls, [("getMe".to_owned(), Some(401))]);
}

/// A Bot API that cannot answer `getMe` as the bot starts (an outage, a hang) does not keep it
/// from starting: the check is skipped and polling retries as at any other time.
#[tokio::test]
async fn a_bot_api_failing_the_token_check_does_not_keep_the_bot_from_starting() {
    let mut app = TestApp::spawn_configured(
        Backend::Sqlite,
        crate::support::app::shipped_dialogues(),
        |_| {},
    )
    .await;
    app.stop().await;
    let started = app.fake.requests_for("getUpdates").len();
    // Longer than the test's 1 s long poll, as a bot's request timeout must be.
    app.request_timeout = Duration::from_secs(2);
    app.fake.fail_next_method("getMe", 1, Fault::Hang);
    app.start().await;
    app.fake
        .wait_until(Duration::from_secs(10), |s| {
            s.requests()
                .iter()
                .filter(|r| r.method == "getUpdates")
                .count()
                > started
        })
        .await
        .expect("the bot polls after the check gave up");
    assert!(app.is_running());
    let me = app.fake.requests_for("getMe");
    assert_eq!(me.len(), 2, "one check per start");
    assert_eq!(me[1].status, None, "the second check got no answer");
}

/// Walks a new prospect up to the phone question and makes Telegram take the question after it
/// («Что вам сейчас ближе») without answering: the bot cannot know it was delivered.
async fn need_question_delivered_unanswered(app: &TestApp, user: &User) -> StoredMessage {
    up_to_name(app, user).await;
    app.fake.push(user.text("Анна"));
    bot_says(app, user.id, "Оставьте телефон").await;
    let chat = user.id;
    app.fake
        .fail_when(1, Fault::AcceptThenHang, move |method, params| {
            method == "sendMessage"
                && params["chat_id"] == chat
                && params["text"].as_str().is_some_and(|t| t.contains(NEED))
        });
    app.fake.push(user.contact("+79123456789"));
    bot_says(app, user.id, NEED).await
}

const NEED: &str = "Что вам сейчас ближе";

/// The question's history entry carries the message id Telegram gave it.
async fn need_linked_to(app: &TestApp, user: &User, message_id: i64) {
    let lead = storage::leads::by_telegram(&app.db, user.id)
        .await
        .expect("lead")
        .expect("a lead");
    let history = storage::messages::history(&app.db, lead.id, 50)
        .await
        .expect("history");
    let linked: Vec<Option<i64>> = history
        .iter()
        .filter(|m| m.direction == "out" && m.text.as_deref().is_some_and(|t| t.contains(NEED)))
        .map(|m| m.telegram_message_id)
        .collect();
    assert_eq!(linked, vec![Some(message_id)]);
}

both_databases! {
    async fn on_sqlite_a_question_telegram_took_without_answering_is_not_sent_again_once_its_button_is_pressed(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(4301).lang("ru");
        let need = need_question_delivered_unanswered(&app, &user).await;
        // The prospect answers the question the bot is still waiting to hear about.
        app.fake.push(user.presses_button(&need, "Сравниваю варианты"));
        bot_says(&app, user.id, "Когда планируете").await;
        if app.db.is_postgres() {
            // PostgreSQL leaves a row being sent to the worker's own recording (see
            // `storage::outbox::record_pressed`): the question waited for the timeout and was
            // sent again, the window a press before the timeout cannot close there.
            assert_eq!(app.fake.read(|s| s.abandoned()), 1);
            assert_eq!(count_bot(&app, user.id, NEED).await, 2);
            return;
        }
        assert_eq!(app.fake.read(|s| s.abandoned()), 0, "the next question waited for the hung send");
        // The bot gives the hung request up (its timeout) and does not send the question again.
        app.fake.wait_until(WAIT, |s| s.abandoned() >= 1).await.expect("the hung send given up");
        let timing = last_with_buttons(&app, user.id);
        app.fake.push(user.presses_button(&timing, "Пока не знаю"));
        let offers = bot_says(&app, user.id, "спецпредложения").await;
        app.fake.push(user.presses_button(&offers, "Нет, спасибо"));
        bot_says(&app, user.id, "Спасибо").await;
        app.settle().await;
        assert_eq!(count_bot(&app, user.id, NEED).await, 1, "{}", app.fake.transcript(user.id));
        need_linked_to(&app, &user, need.message_id).await;
    }
}

both_databases! {
    async fn a_question_in_flight_at_a_crash_is_not_sent_again_when_its_button_was_pressed_meanwhile(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        let user = User::new(4302).lang("ru");
        let need = need_question_delivered_unanswered(&app, &user).await;
        // The bot dies before it hears back; the prospect answers while it is down.
        app.kill().await;
        app.fake.push(user.presses_button(&need, "Сравниваю варианты"));
        app.start().await;
        bot_says(&app, user.id, "Когда планируете").await;
        app.settle().await;
        assert_eq!(count_bot(&app, user.id, NEED).await, 1, "{}", app.fake.transcript(user.id));
        need_linked_to(&app, &user, need.message_id).await;
        // Without a press the question is sent again after a crash: its delivery is unknown.
        let other = User::new(4303).lang("ru");
        need_question_delivered_unanswered(&app, &other).await;
        app.kill().await;
        app.start().await;
        app.fake
            .wait_until(WAIT, |s| {
                s.requests_for("sendMessage").filter(|r| r.params["chat_id"] == other.id && r.params["text"].as_str().is_some_and(|t| t.contains(NEED))).count() == 2
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", app.fake.transcript(other.id)));
    }
}

/// PostgreSQL: a restarted bot's timers take over the work of replicas that are gone, but not
/// the stopped run's own while start-up still reads the updates Telegram kept: a button press
/// among them proves its message delivered, and a take-over running beside it held the row the
/// press looked for, so the question went out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bots_timers_leave_the_last_runs_messages_to_start_up() {
    let Some(backend) = Backend::postgres(
        "faults::a_restarted_bots_timers_leave_the_last_runs_messages_to_start_up",
    ) else {
        return;
    };
    let mut app = TestApp::spawn(backend).await;
    let storage::Db::Postgres(pool) = app.db.clone() else {
        return;
    };
    // A hot lead nobody takes: its re-announcement is queued by a timer round.
    let hot = User::new(4305).lang("ru");
    crate::prospect::up_to_need(&app, &hot).await;
    crate::prospect::finish_hot(&app, &hot).await;
    bot_says(&app, crate::support::app::STAFF_CHAT, "Горячий лид").await;
    let hot_id = storage::leads::by_telegram(&app.db, hot.id)
        .await
        .ok()
        .flatten()
        .map_or(-1, |l| l.id);
    let user = User::new(4306).lang("ru");
    need_question_delivered_unanswered(&app, &user).await;
    app.kill().await;
    // The stopped run is gone for good (its liveness lock is free).
    let held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    eventually("the stopped run's liveness lock is free", || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64,)>(held)
                .fetch_one(&pool)
                .await
                .is_ok_and(|(n,)| n == 0)
        }
    })
    .await;
    // Start-up's first poll hangs: the kept updates are not read yet. Timer rounds run.
    app.fake
        .fail_when(1, Fault::Hang, |method, _| method == "getUpdates");
    app.start().await;
    // Two re-announcements queued: two timer rounds ran, each first looking for work to take over.
    for n in 1..=2 {
        app.clock.advance(Duration::from_secs(15 * 60 + 1));
        eventually("a timer round queued the re-announcement", || {
            let db = app.db.clone();
            async move {
                storage::leads::get(&db, hot_id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.sla_reminders == n)
            }
        })
        .await;
    }
    let status = outbox_rows(&app, user.id)
        .await
        .pop()
        .map(|(status, _)| status);
    assert_eq!(
        status.as_deref(),
        Some("sending"),
        "the question in flight at the stop waits for start-up"
    );
    assert_eq!(count_bot(&app, user.id, NEED).await, 1);
}

both_databases! {
    async fn a_text_and_the_question_behind_it_go_out_in_order_when_the_text_fails_first(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(4401).lang("ru");
        let chat = user.id;
        // The greeting and the consent question are claimed together and sent one after the
        // other; the greeting's first send fails, so the question must wait for its retry.
        fail_greeting(&app, chat, Fault::CloseConnection);
        app.fake.push(user.command("start", "vk_ads"));
        bot_says(&app, user.id, "согласие").await;
        app.settle().await;
        let sends: Vec<(String, Option<u16>)> = app.fake.read(|s| {
            s.requests_for("sendMessage")
                .filter(|r| r.params["chat_id"] == chat)
                .map(|r| (r.params["text"].as_str().unwrap_or("").to_owned(), r.status))
                .collect()
        });
        let shape: Vec<(bool, bool, Option<u16>)> = sends
            .iter()
            .map(|(text, status)| (text.starts_with("Здравствуйте"), text.contains("согласие"), *status))
            .collect();
        assert_eq!(
            shape,
            vec![(true, false, None), (true, false, Some(200)), (false, true, Some(200))],
            "the greeting failed, then went out, then the question: {sends:?}"
        );
        // The question was tried once: the claim that stopped before it did not count.
        assert_eq!(outbox_attempts(&app, chat).await, [2, 1]);
    }
}

/// A chat's outbox rows, oldest first: status and attempts.
async fn outbox_rows(app: &TestApp, chat: i64) -> Vec<(String, i32)> {
    const SQL: &str = "SELECT status, attempts FROM outbox WHERE chat_id = $1 ORDER BY id";
    match &app.db {
        storage::Db::Sqlite(p) => sqlx::query_as(SQL).bind(chat).fetch_all(p).await,
        storage::Db::Postgres(p) => sqlx::query_as(SQL).bind(chat).fetch_all(p).await,
    }
    .expect("outbox rows")
}

/// The attempts of a chat's outbox rows, oldest first.
async fn outbox_attempts(app: &TestApp, chat: i64) -> Vec<i32> {
    outbox_rows(app, chat)
        .await
        .into_iter()
        .map(|(_, a)| a)
        .collect()
}

/// The chat's next greeting send meets `fault` (once).
fn fail_greeting(app: &TestApp, chat: i64, fault: Fault) {
    app.fake.fail_when(1, fault, move |method, params| {
        method == "sendMessage"
            && params["chat_id"] == chat
            && params["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Здравствуйте"))
    });
}

both_databases! {
    async fn while_a_text_hangs_the_question_behind_it_waits_unsent(backend: Backend) {
        let app = bot_with_short_timeout(backend).await;
        let user = User::new(4402).lang("ru");
        let chat = user.id;
        fail_greeting(&app, chat, Fault::Hang);
        app.fake.push(user.command("start", "vk_ads"));
        // On SQLite the question is claimed with the greeting (one chain), on PostgreSQL it
        // waits unclaimed; either way it is not sent while the greeting hangs.
        let claimed = if app.db.is_postgres() { 1 } else { 2 };
        let deadline = Instant::now() + WAIT;
        loop {
            let statuses: Vec<String> = outbox_rows(&app, chat).await.into_iter().map(|(s, _)| s).collect();
            if statuses.iter().filter(|s| *s == "sending").count() == claimed {
                break;
            }
            assert!(Instant::now() < deadline, "claims not seen: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count_bot(&app, user.id, "согласие").await, 0, "the question waits for the greeting");
        // The hung send is given up and tried again; the question, put back untried, follows it.
        bot_says(&app, user.id, "согласие").await;
        assert_eq!(app.fake.read(|s| s.abandoned()), 1);
        app.settle().await;
        let texts: Vec<String> = app.fake.read(|s| {
            s.requests_for("sendMessage")
                .filter(|r| r.params["chat_id"] == chat)
                .map(|r| r.params["text"].as_str().unwrap_or("").chars().take(12).collect())
                .collect()
        });
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].starts_with("Здравствуйте") && texts[1].starts_with("Здравствуйте"), "{texts:?}");
        assert_eq!(count_bot(&app, user.id, "согласие").await, 1);
        assert_eq!(outbox_attempts(&app, chat).await, [2, 1], "the question's claim behind the hung greeting is not counted");
    }
}
