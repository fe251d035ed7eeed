//! Lead capture under pressure: several leads at once, redelivered updates, large update ids,
//! and what `leadbot leads export` makes of the result.

use std::process::Command;

use crate::both_databases;
use crate::prospect::{bot_says, count_bot, eventually, finish_hot, last_with_buttons, up_to_need};
use crate::support::User;
use crate::support::app::TestApp;
use leadbot::storage;

/// Walks the English default dialogue to the end as a cold lead with an e-mail-less contact.
async fn finish_cold_en(app: &TestApp, user: &User) {
    app.fake.push(user.command("start", "google_search"));
    let consent = bot_says(app, user.id, "your consent").await;
    app.fake.push(user.presses_button(&consent, "I agree"));
    bot_says(app, user.id, "What should we call you").await;
    app.fake.push(user.text("John Smith"));
    bot_says(app, user.id, "Leave your phone").await;
    app.fake.push(user.text("+44 20 7946 0958"));
    let need = bot_says(app, user.id, "Which is closer").await;
    app.fake.push(user.presses_button(&need, "Just looking"));
    let timing = bot_says(app, user.id, "When are you planning").await;
    app.fake.push(user.presses_button(&timing, "Not sure yet"));
    let offers = bot_says(app, user.id, "special offers").await;
    app.fake.push(user.presses_button(&offers, "No, thanks"));
    bot_says(app, user.id, "If you have any questions").await;
}

both_databases! {
    async fn many_leads_at_once_each_get_their_own_dialogue_in_order(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let hot: Vec<User> = (0..6).map(|i| User::new(2100 + i).lang("ru")).collect();
        let cold: Vec<User> = (0..6).map(|i| User::new(2200 + i).lang("en")).collect();
        let runs = hot
            .iter()
            .map(|u| {
                let app = &app;
                Box::pin(async move {
                    up_to_need(app, u).await;
                    finish_hot(app, u).await;
                }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>
            })
            .chain(cold.iter().map(|u| {
                let app = &app;
                Box::pin(finish_cold_en(app, u)) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>
            }));
        futures::future::join_all(runs).await;
        app.settle().await;

        for u in &hot {
            let lead = storage::leads::by_telegram(&app.db, u.id).await.unwrap().expect("stored");
            assert_eq!(lead.temperature, "hot");
            assert_eq!(lead.phone.as_deref(), Some("+79123456789"));
            assert_eq!(lead.source, "vk_ads");
            // Every question exactly once: nothing skipped, nothing doubled across interleaving.
            for q in ["согласие", "Как к вам обращаться", "Оставьте телефон", "Что вам сейчас ближе", "Когда планируете", "спецпредложения"] {
                assert_eq!(count_bot(&app, u.id, q).await, 1, "{q} for {}\n{}", u.id, app.fake.transcript(u.id));
            }
        }
        for u in &cold {
            let lead = storage::leads::by_telegram(&app.db, u.id).await.unwrap().expect("stored");
            assert_eq!(lead.temperature, "cold", "{}", app.fake.transcript(u.id));
            assert_eq!(lead.phone.as_deref(), Some("+442079460958"));
            assert_eq!(lead.name.as_deref(), Some("John Smith"));
            assert!(lead.marketing_consent_at.is_none());
            // The history holds every inbound and outbound message in the order they happened.
            let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
            let inbound = history.iter().filter(|m| m.direction == "in").count();
            assert_eq!(inbound, 7, "/start, consent, name, phone and three choices");
            let times: Vec<i64> = history.iter().map(|m| m.created_at).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "history is in order");
        }
        // One alert per hot lead, none for the cold ones.
        let alerts = app.fake.bot_messages_in(crate::support::app::STAFF_CHAT);
        assert_eq!(alerts.iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Горячий лид"))).count(), hot.len());
    }
}

both_databases! {
    async fn an_update_telegram_delivers_twice_is_applied_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(2301).lang("ru");
        app.fake.push(user.command("start", ""));
        let consent = bot_says(&app, user.id, "согласие").await;
        let press = app.fake.push(user.presses_button(&consent, "Согласен"));
        bot_says(&app, user.id, "Как к вам обращаться").await;
        let typed = app.fake.push(user.text("Анна"));
        bot_says(&app, user.id, "Оставьте телефон").await;

        // Telegram sends both again, as it does when it never saw the confirmation, to the poll
        // the bot has open (one opened later would confirm them first). The reply can reach the
        // chat before that poll opens: wait for it.
        app.fake
            .wait_until(crate::prospect::WAIT, |s| s.offset_confirmed() > typed.update_id)
            .await
            .expect("the bot polled past the name");
        let polls = app.fake.read(|s| s.polls_started());
        assert!(app.fake.redeliver(press.update_id));
        assert!(app.fake.redeliver(typed.update_id));
        // Wait until the bot fetched the redelivered updates and polled again past them.
        app.fake
            .wait_until(crate::prospect::WAIT, |s| s.pending_updates() == 0 && s.polls_started() >= polls + 2)
            .await
            .expect("the bot polled past the redelivered updates");
        let delivered = |id: i64| {
            app.fake.requests_for("getUpdates").iter().filter(|r| {
                r.response["result"].as_array().is_some_and(|a| a.iter().any(|u| u["update_id"] == id))
            }).count()
        };
        assert_eq!(delivered(press.update_id), 2, "the press reached the bot twice");
        assert_eq!(delivered(typed.update_id), 2, "the name reached the bot twice");
        let db = app.db.clone();
        eventually("nothing waits to be applied", || {
            let db = db.clone();
            async move { storage::updates::pending_count(&db).await.unwrap_or(1) == 0 }
        })
        .await;
        app.settle().await;

        assert_eq!(count_bot(&app, user.id, "Как к вам обращаться").await, 1);
        assert_eq!(count_bot(&app, user.id, "Оставьте телефон").await, 1, "{}", app.fake.transcript(user.id));
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().unwrap();
        let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
        assert_eq!(history.iter().filter(|m| m.direction == "in").count(), 3, "/start, the press, the name");

        // The dialogue goes on from where it was.
        app.fake.push(user.contact("+79123456789"));
        bot_says(&app, user.id, "Что вам сейчас ближе").await;
    }
}

both_databases! {
    async fn update_ids_near_the_32_bit_limit_are_confirmed(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.fake.set_next_update_id(i64::from(i32::MAX) - 3);
        let user = User::new(2401).lang("ru");
        app.fake.push(user.command("start", ""));
        let consent = bot_says(&app, user.id, "согласие").await;
        app.fake.push(user.presses_button(&consent, "Согласен"));
        bot_says(&app, user.id, "Как к вам обращаться").await;
        app.fake
            .wait_until(crate::prospect::WAIT, |s| s.offset_confirmed() >= i64::from(i32::MAX) - 1)
            .await
            .expect("the offset moved past the large ids");
        assert_eq!(count_bot(&app, user.id, "согласие").await, 1);
    }
}

/// Runs the real binary against the test database.
fn leadbot(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_leadbot"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.test_db.url)
        .env(
            "LEADBOT_DIALOGUES",
            crate::support::app::shipped_dialogues(),
        )
        .env("RUST_LOG", "warn")
        .output()
        .expect("the leadbot binary runs")
}

both_databases! {
    async fn leads_export_writes_what_was_collected(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let hot = User::new(2501).lang("ru").username("anna_k");
        up_to_need(&app, &hot).await;
        finish_hot(&app, &hot).await;
        let cold = User::new(2502).lang("en");
        finish_cold_en(&app, &cold).await;
        app.settle().await;

        let out = leadbot(&app, &["leads", "export", "--format", "csv"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout.starts_with(&[0xEF, 0xBB, 0xBF]), "CSV starts with a UTF-8 BOM");
        let mut reader = csv::Reader::from_reader(&out.stdout[3..]);
        let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
        assert_eq!(
            headers,
            ["id", "telegram_id", "username", "name", "phone", "email", "source", "score", "temperature", "status", "flags", "created", "last_activity", "answers"]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 2);
        let row = |tid: i64| rows.iter().find(|r| r[1] == tid.to_string()).expect("row for the lead").clone();
        let h = row(hot.id);
        assert_eq!(&h[2], "anna_k");
        assert_eq!(&h[3], "Анна");
        assert_eq!(&h[4], "+79123456789");
        assert_eq!(&h[6], "vk_ads");
        assert_eq!(&h[8], "hot");
        let answers: serde_json::Value = serde_json::from_str(&h[13]).expect("answers are JSON");
        assert_eq!(answers["name"], "Анна");
        assert!(answers.get("need").is_some(), "{answers}");
        let c = row(cold.id);
        assert_eq!(&c[8], "cold");
        assert_eq!(&c[6], "google_search");

        // Filters: only the hot one.
        let out = leadbot(&app, &["leads", "export", "--format", "json", "--temperature", "hot"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON export parses");
        let leads = json.as_array().expect("an array");
        assert_eq!(leads.len(), 1);
        assert_eq!(leads[0]["telegram_id"], hot.id);
        assert_eq!(leads[0]["phone"], "+79123456789");
        // --since in the future leaves nothing.
        let out = leadbot(&app, &["leads", "export", "--format", "json", "--since", "2999-01-01"]);
        assert!(out.status.success());
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(0));

        // Bad arguments: a clear error, a failing exit code, nothing written to stdout.
        let out = leadbot(&app, &["leads", "export", "--temperature", "boiling"]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--temperature"));
        let out = leadbot(&app, &["leads", "export", "--since", "yesterday"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("since"));
        let _ = last_with_buttons;
    }
}

both_databases! {
    async fn other_odd_updates_get_a_short_reply_or_are_ignored(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(2601).lang("ru");
        app.fake.push(user.command("start", ""));
        let consent = bot_says(&app, user.id, "согласие").await;
        app.fake.push(user.presses_button(&consent, "Согласен"));
        bot_says(&app, user.id, "Как к вам обращаться").await;

        // Media at a text question: a specific reply naming what was sent, then the question again.
        app.fake.push(user.photo(Some("это я")));
        bot_says(&app, user.id, "фото").await;
        app.fake.push(user.document("price.pdf"));
        bot_says(&app, user.id, "файлы").await;
        app.fake.push(user.location(55.75, 37.62));
        bot_says(&app, user.id, "геопозицию").await;

        // The consent button again, now outdated: the lead is told and asked the current question.
        app.fake.push(user.presses_button(&consent, "Согласен"));
        bot_says(&app, user.id, "кнопка уже не действует").await;
        // Forged and garbage callback data: answered, nothing changes.
        app.fake.push(user.presses(&consent, "c:zzzzzzzz:99:99"));
        app.fake.push(user.presses(&consent, "\u{0}\u{1}garbage"));
        app.fake
            .wait_for_request(crate::prospect::WAIT, |r| {
                r.method == "answerCallbackQuery" && r.params.to_string().contains("больше не действует")
            })
            .await
            .expect("a forged press is answered as outdated");
        // An unknown update type and a message in a group the bot does not serve: ignored.
        app.fake.push(crate::support::Update::unknown());
        let group = crate::support::Chat::group(-4242, "Random group");
        app.fake.push(user.in_chat(&group).text("/start"));
        // A command it does not know.
        app.fake.push(user.command("price", ""));
        bot_says(&app, user.id, "Такой команды я не знаю").await;

        let db = app.db.clone();
        eventually("every update is applied", || {
            let db = db.clone();
            async move { storage::updates::pending_count(&db).await.unwrap_or(1) == 0 }
        })
        .await;
        app.settle().await;
        assert!(app.fake.bot_messages_in(-4242).is_empty(), "nothing is said in a foreign group");
        // Still at the name question: the dialogue did not skip or repeat a step.
        app.fake.push(user.text("Ольга"));
        bot_says(&app, user.id, "Оставьте телефон").await;
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().unwrap();
        assert_eq!(lead.name.as_deref(), Some("Ольга"));
        assert_eq!(count_bot(&app, user.id, "согласие").await, 1);
        // Every callback was answered (Telegram shows a spinner until it is).
        let answered = app.fake.requests_for("answerCallbackQuery").len();
        assert!(answered >= 4, "{answered} callbacks answered");
    }
}

both_databases! {
    async fn a_429_storm_does_not_use_up_a_messages_attempts(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(2701).lang("ru");
        // Fifteen 429s in a row (more than the attempts a message gets), then a dropped connection:
        // the reply still arrives, after a short backoff rather than minutes.
        app.fake.fail_next(15, crate::support::Fault::TooManyRequests { retry_after: 0 });
        app.fake.fail_next(1, crate::support::Fault::CloseConnection);
        app.fake.push(user.command("start", ""));
        // Each 429 is honoured for at least a second, so this takes about 15 s.
        app.fake
            .wait_for_message(user.id, std::time::Duration::from_secs(60), |m| {
                m.from_bot && m.visible_text().contains("согласие")
            })
            .await
            .expect("the reply arrives after the storm");
        app.settle().await;
        assert!(app.fake.too_many_requests() >= 15);
        let failed = storage::outbox::count_by_status(&app.db, "failed").await.unwrap();
        assert_eq!(failed, 0, "nothing was given up");
    }
}

/// Makes writing `text` into the history fail (the database refuses it) until it is dropped.
/// Waits until the one update pending has been tried and put back.
async fn until_the_one_pending_update_was_tried(db: &storage::Db) {
    eventually("the failing update was tried and put back", || {
        let db = db.clone();
        async move {
            storage::updates::pending(&db, 10, 100)
                .await
                .is_ok_and(|p| p.len() == 1 && p[0].attempts >= 1)
        }
    })
    .await;
}

/// Waits until `n` updates are stored and not applied.
async fn until_pending(db: &storage::Db, n: i64, what: &str) {
    eventually(what, || {
        let db = db.clone();
        async move {
            storage::updates::pending_count(&db)
                .await
                .is_ok_and(|c| c == n)
        }
    })
    .await;
}

async fn refuse_history_text(db: &storage::Db, text: &str) {
    match db {
        storage::Db::Sqlite(p) => {
            sqlx::query(&format!(
                "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.text = '{text}'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            ))
            .execute(p)
            .await
            .expect("creating the trigger");
        }
        storage::Db::Postgres(p) => {
            sqlx::query(&format!(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
                   IF NEW.text = '{text}' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                   RETURN NEW; END $$ LANGUAGE plpgsql"
            ))
            .execute(p)
            .await
            .expect("creating the function");
            sqlx::query("CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse()")
                .execute(p)
                .await
                .expect("creating the trigger");
        }
    }
}

async fn stop_refusing(db: &storage::Db) {
    match db {
        storage::Db::Sqlite(p) => {
            sqlx::query("DROP TRIGGER refuse")
                .execute(p)
                .await
                .expect("dropping the trigger");
        }
        storage::Db::Postgres(p) => {
            sqlx::query("DROP TRIGGER refuse ON messages")
                .execute(p)
                .await
                .expect("dropping the trigger");
        }
    }
}

both_databases! {
    async fn an_update_that_fails_does_not_hold_back_others_delivered_with_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let users: Vec<User> = (0..8).map(|i| User::new(2500 + i).lang("ru")).collect();
        let mut consents = Vec::new();
        for u in &users {
            app.fake.push(u.command("start", ""));
            consents.push(bot_says(&app, u.id, "согласие").await);
        }
        // One prospect's message cannot be stored; the others' answers arrive in the same batch
        // (on SQLite they are applied in one shared transaction).
        refuse_history_text(&app.db, "boom").await;
        let (failing, fine) = users.split_first().expect("eight users");
        let mut batch = vec![failing.text("boom")];
        batch.extend(fine.iter().zip(&consents[1..]).map(|(u, c)| u.presses_button(c, "Согласен")));
        app.fake.push_all(batch);

        for u in fine {
            bot_says(&app, u.id, "Как к вам обращаться").await;
        }
        let db = app.db.clone();
        until_the_one_pending_update_was_tried(&db).await;
        // Once the database accepts it again, the update is applied after its backoff.
        stop_refusing(&app.db).await;
        until_pending(&db, 0, "the failing update was applied in the end").await;
        app.settle().await;
        for u in fine {
            assert_eq!(count_bot(&app, u.id, "Как к вам обращаться").await, 1, "{}", app.fake.transcript(u.id));
            let lead = storage::leads::by_telegram(&app.db, u.id).await.unwrap().expect("stored");
            let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
            assert_eq!(history.iter().filter(|m| m.direction == "in").count(), 2, "/start and the press, once each");
        }
        let lead = storage::leads::by_telegram(&app.db, failing.id).await.unwrap().expect("stored");
        let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
        assert_eq!(history.iter().filter(|m| m.text.as_deref() == Some("boom")).count(), 1, "stored once, in the end");
    }
}

both_databases! {
    async fn a_message_polled_while_an_earlier_one_waits_is_applied_after_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let u = User::new(2600).lang("ru");
        app.fake.push(u.command("start", ""));
        let consent = bot_says(&app, u.id, "согласие").await;
        refuse_history_text(&app.db, "boom").await;
        app.fake.push(u.text("boom"));
        let db = app.db.clone();
        until_the_one_pending_update_was_tried(&db).await;
        // The next message comes in a batch of its own: a batch is applied as it is stored, but
        // not this message, which must wait for the one before it.
        app.fake.push(u.presses_button(&consent, "Согласен"));
        until_pending(&db, 2, "the later message is stored and waits").await;
        stop_refusing(&app.db).await;
        bot_says(&app, u.id, "Как к вам обращаться").await;
        until_pending(&db, 0, "both were applied").await;
        let lead = storage::leads::by_telegram(&app.db, u.id).await.unwrap().expect("stored");
        let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
        let incoming: Vec<i64> = history.iter().filter(|m| m.direction == "in").filter_map(|m| m.update_id).collect();
        assert_eq!(incoming.len(), 3, "/start, the refused text and the press: {history:?}");
        assert!(incoming.is_sorted(), "applied in the order sent: {incoming:?}");
    }
}

/// The idempotency keys of outbox rows, in their order.
fn keys(rows: &[storage::outbox::Row]) -> Vec<&str> {
    rows.iter().map(|r| r.idempotency_key.as_str()).collect()
}

/// PostgreSQL runs an update's transaction and the outbox worker's recording side by side: the
/// update enqueues the chat's next message behind the one in flight while the worker records that
/// one as delivered and releases what waited behind it, blind to the update's uncommitted row.
/// The message must still go out at once, not when the timer's safety net finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_enqueued_while_the_one_before_is_recorded_is_released_at_commit() {
    use storage::outbox;
    let Some(backend) = crate::support::app::Backend::postgres(
        "capture::a_message_enqueued_while_the_one_before_is_recorded_is_released_at_commit",
    ) else {
        return;
    };
    let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
    let now = 1_800_000_000_000;
    // A chat's message enqueued and claimed: in flight.
    let in_flight = |key: &'static str, chat: i64| {
        let db = db.clone();
        async move {
            let mut tx = db.begin().await.expect("begin");
            outbox::enqueue(&mut tx, key, None, chat, "{}", true, now)
                .await
                .expect("enqueue");
            tx.commit().await.expect("commit");
            let claimed = outbox::claim_due(&db, now, 10).await.expect("claim");
            assert_eq!(keys(&claimed), vec![key]);
            claimed
        }
    };
    // The worker's transaction recording a delivery and releasing what waits behind it, open
    // (it claims nothing here, so that the claims below show what was released).
    let recording = |row: &outbox::Row, mid: i64| {
        let (db, id, chat) = (db.clone(), row.id, row.chat_id);
        async move {
            let mut record = db.begin().await.expect("begin");
            let delivered = outbox::Delivered {
                sent: &[(id, Some(mid))],
                linked: &[],
                chats: &[chat],
                now,
            };
            let claimed = outbox::record_delivered_in(&mut record, &delivered, 0, None)
                .await
                .expect("record");
            assert!(claimed.is_empty());
            record
        }
    };
    let chat = 7101;
    let q1 = in_flight("q1", chat).await;

    // The update's transaction: q2 and q3 wait behind q1, which is in flight (q2 is written
    // before q3, which is written at once).
    let mut update = db.begin().await.expect("begin");
    outbox::enqueue_at_commit(&mut update, "q2", None, chat, "{}".into(), true, now);
    outbox::enqueue(&mut update, "q3", None, chat, "{}", true, now)
        .await
        .expect("enqueue");
    // Meanwhile the worker records q1 and releases the chat's next row: it cannot see q2 yet.
    let record = recording(&q1[0], 11).await;
    record.commit().await.expect("commit");
    assert_eq!(
        outbox::promote(&db, &[chat]).await.expect("promote"),
        0,
        "q2 is not committed yet"
    );
    update.commit().await.expect("commit");

    let status = |key: &'static str| {
        let db = db.clone();
        async move { outbox::by_key(&db, key).await.unwrap().map(|r| r.status) }
    };
    assert_eq!(
        status("q2").await.as_deref(),
        Some("pending"),
        "released when its transaction committed"
    );
    assert_eq!(
        status("q3").await.as_deref(),
        Some("queued"),
        "still behind q2"
    );
    let claimed = outbox::claim_due(&db, now, 10).await.expect("claim");
    assert_eq!(keys(&claimed), vec!["q2"]);

    // The other way round, in another chat: the worker's recording of r1 commits last, after
    // the update that enqueued r2 found r1 still in flight. The worker promotes again after its
    // commit, as `outbox::promote` asks.
    let chat = 7102;
    let r1 = in_flight("r1", chat).await;
    let record = recording(&r1[0], 12).await;
    let mut update = db.begin().await.expect("begin");
    outbox::enqueue(&mut update, "r2", None, chat, "{}", true, now)
        .await
        .expect("enqueue");
    update.commit().await.expect("commit");
    record.commit().await.expect("commit");
    assert_eq!(
        status("r2").await.as_deref(),
        Some("queued"),
        "neither saw the other's rows"
    );
    assert_eq!(outbox::promote(&db, &[chat]).await.expect("promote"), 1);
    assert_eq!(status("r2").await.as_deref(), Some("pending"));
}

both_databases! {
    async fn a_chats_messages_keep_their_order_while_callback_answers_go_out_at_once(backend: Backend) {
        use storage::{messages, outbox};
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_800_000_000_000;
        let (chat, other) = (7001, 7002);
        let mut tx = db.begin().await.expect("begin");
        let lead = storage::leads::insert(&mut tx, &storage::leads::NewLead {
            telegram_id: chat, chat_id: chat, username: None, first_name: Some("Anna"),
            last_name: None, language_code: Some("ru"), source: "direct",
        }, now).await.expect("lead");
        // Written at commit: a question and its history entry, then a callback answer.
        outbox::enqueue_at_commit(&mut tx, "q1", Some(lead.id), chat, "{}".into(), true, now);
        let entry = |text: &'static str| messages::NewMessage {
            lead_id: lead.id, direction: "out", kind: "text", text: Some(text), update_id: None,
            outbox_id: None, telegram_message_id: None, author_id: None,
        };
        messages::record_reply(&mut tx, &entry("first question"), "q1", now);
        outbox::enqueue_at_commit(&mut tx, "cb1", None, chat, "{}".into(), false, now);
        // Enqueued at once: the rows written at commit keep their place before it.
        let q2 = outbox::enqueue(&mut tx, "q2", Some(lead.id), chat, "{}", true, now).await.expect("enqueue").expect("new");
        outbox::enqueue(&mut tx, "d1", None, other, "{}", true, now).await.expect("enqueue");
        tx.commit().await.expect("commit");

        let q1 = outbox::by_key(&db, "q1").await.unwrap().expect("q1 written at commit");
        let cb1 = outbox::by_key(&db, "cb1").await.unwrap().expect("cb1 written at commit");
        assert!(q1.id < cb1.id && cb1.id < q2, "the order of enqueueing is kept");
        let history = messages::history(&db, lead.id, 10).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!((history[0].outbox_id, history[0].text.as_deref()), (Some(q1.id), Some("first question")));

        // The chat's first question, the callback answer and the other chat's message go out
        // together. On SQLite the chat's second question is claimed behind its first (one chain,
        // sent one after the other by the worker); on PostgreSQL it waits for its first.
        let chained = !db.is_postgres();
        let claimed = outbox::claim_due(&db, now, 10).await.expect("claim");
        let mut claimed_keys = keys(&claimed);
        claimed_keys.sort();
        let mut expected = vec!["cb1", "d1", "q1"];
        if chained {
            expected.push("q2");
        }
        assert_eq!(claimed_keys, expected);
        assert!(outbox::claim_due(&db, now, 10).await.expect("claim").is_empty(), "q2 in flight or waiting for q1");
        assert_eq!(
            outbox::by_key(&db, "q2").await.unwrap().map(|r| r.status).as_deref(),
            Some(if chained { "sending" } else { "queued" })
        );
        // Recording q1's delivery, as the outbox worker does, links its history entry, lets q2
        // go and claims it in the same transaction (unless it is in flight already).
        let mut tx = db.begin().await.expect("begin");
        let record = outbox::Delivered { sent: &[(q1.id, Some(11))], linked: &[(q1.id, 11)], chats: &[chat], now };
        let next = outbox::record_delivered_in(&mut tx, &record, 10, Some(3)).await.expect("record");
        tx.commit().await.expect("commit");
        let next: Vec<(i64, &str)> = next.iter().map(|r| (r.id, r.status.as_str())).collect();
        assert_eq!(next, if chained { vec![] } else { vec![(q2, "sending")] });
        let q1_now = outbox::by_key(&db, "q1").await.unwrap().expect("q1");
        assert_eq!((q1_now.status.as_str(), q1_now.telegram_message_id), ("sent", Some(11)));
        assert_eq!(messages::history(&db, lead.id, 10).await.unwrap()[0].telegram_message_id, Some(11));
        // With no room, a record claims nothing.
        let mut tx = db.begin().await.expect("begin");
        let record = outbox::Delivered { sent: &[(cb1.id, None)], linked: &[], chats: &[chat], now };
        assert!(outbox::record_delivered_in(&mut tx, &record, 0, None).await.expect("record").is_empty());
        tx.commit().await.expect("commit");

        // A chat's next row waits as queued; giving up the one before it lets it go, and the
        // timer's sweep finds nothing left behind.
        let mut tx = db.begin().await.expect("begin");
        let q4 = outbox::enqueue(&mut tx, "q4", Some(lead.id), chat, "{}", true, now).await.expect("enqueue").expect("new");
        tx.commit().await.expect("commit");
        assert_eq!(outbox::by_key(&db, "q4").await.unwrap().map(|r| r.status).as_deref(), Some("queued"));
        outbox::mark_failed(&db, q2, "refused").await.expect("fail");
        assert_eq!(outbox::claim_due(&db, now, 10).await.expect("claim").iter().map(|r| r.id).collect::<Vec<_>>(), vec![q4]);
        assert_eq!(outbox::promote_stranded(&db).await.expect("sweep"), 0);

        // A replayed update enqueues nothing twice and records no second history entry.
        let mut tx = db.begin().await.expect("begin");
        outbox::enqueue_at_commit(&mut tx, "q1", Some(lead.id), chat, "{}".into(), true, now);
        messages::record_reply(&mut tx, &entry("first question"), "q1", now);
        tx.commit().await.expect("commit");
        assert_eq!(messages::history(&db, lead.id, 10).await.unwrap().len(), 1);
        assert!(outbox::claim_due(&db, now, 10).await.expect("claim").is_empty());
        // A transaction rolled back writes nothing it buffered.
        let mut tx = db.begin().await.expect("begin");
        outbox::enqueue_at_commit(&mut tx, "q3", Some(lead.id), chat, "{}".into(), true, now);
        messages::record_reply(&mut tx, &entry("never sent"), "q3", now);
        drop(tx);
        assert!(outbox::by_key(&db, "q3").await.unwrap().is_none());
        assert_eq!(messages::history(&db, lead.id, 10).await.unwrap().len(), 1);
        // A queued row whose turn came without the promotion (a crash between the two writes of
        // a give-up) is released by the timer's sweep.
        let mut tx = db.begin().await.expect("begin");
        let q5 = outbox::enqueue(&mut tx, "q5", Some(lead.id), chat, "{}", true, now).await.expect("enqueue").expect("new");
        tx.commit().await.expect("commit");
        let mut tx = db.begin().await.expect("begin");
        outbox::mark_sent_in(&mut tx, &[(q4, Some(12))], now).await.expect("mark");
        tx.commit().await.expect("commit");
        assert!(outbox::claim_due(&db, now, 10).await.expect("claim").is_empty(), "q5 is stranded");
        assert_eq!(outbox::promote_stranded(&db).await.expect("sweep"), 1);
        assert_eq!(outbox::claim_due(&db, now, 10).await.expect("claim").iter().map(|r| r.id).collect::<Vec<_>>(), vec![q5]);
        db.close().await;
    }
}

both_databases! {
    async fn a_press_of_a_questions_button_records_its_delivery_when_nothing_else_could_be_that_message(backend: Backend) {
        use storage::{messages, outbox};
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_800_000_000_000;
        let chat = 7201;
        let mut tx = db.begin().await.expect("begin");
        let lead = storage::leads::insert(&mut tx, &storage::leads::NewLead {
            telegram_id: chat, chat_id: chat, username: None, first_name: Some("Anna"),
            last_name: None, language_code: Some("ru"), source: "direct",
        }, now).await.expect("lead");
        tx.commit().await.expect("commit");
        let question = |data: &str| format!(r#"{{"type":"send_message","text":"Q","markup":{{"inline":[[{{"label":"A","data":"{data}"}}]]}}}}"#);
        let (a, b) = ("c:0badf00d:2:0", "c:0badf00d:3:1");
        let enqueue = |key: &'static str, action: String| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.expect("begin");
                let id = outbox::enqueue(&mut tx, key, Some(lead.id), chat, &action, true, now).await.expect("enqueue").expect("new");
                let entry = messages::NewMessage {
                    lead_id: lead.id, direction: "out", kind: "text", text: Some(key), update_id: None,
                    outbox_id: Some(id), telegram_message_id: None, author_id: None,
                };
                messages::record(&mut tx, &entry, now);
                tx.commit().await.expect("commit");
                id
            }
        };
        let press = |message_id: i64, data: &'static str, worker_idle: bool| {
            let db = db.clone();
            async move {
                let sent = outbox::count_by_status(&db, "sent").await.expect("count");
                let mut tx = db.begin().await.expect("begin");
                outbox::record_pressed(&mut tx, chat, message_id, data, now + 1, worker_idle);
                tx.commit().await.expect("commit");
                outbox::count_by_status(&db, "sent").await.expect("count") > sent
            }
        };
        let row = |key: &'static str| {
            let db = db.clone();
            async move { outbox::by_key(&db, key).await.expect("row").expect("a row") }
        };
        // An earlier copy of the question was delivered and recorded as message 20.
        let q0 = enqueue("q0", question(a)).await;
        assert_eq!(keys(&outbox::claim_due(&db, now, 10).await.expect("claim")), vec!["q0"]);
        let mut tx = db.begin().await.expect("begin");
        let record = outbox::Delivered { sent: &[(q0, Some(20))], linked: &[(q0, 20)], chats: &[chat], now };
        outbox::record_delivered_in(&mut tx, &record, 0, None).await.expect("record");
        tx.commit().await.expect("commit");
        // The question asked again, and a question behind it.
        let q1 = enqueue("q1", question(a)).await;
        let q2 = enqueue("q2", question(b)).await;
        assert!(!press(21, a, true).await, "q1 was never sent: the press is of something else");
        // On SQLite q2 is claimed behind q1, to be sent once Telegram accepted q1.
        let chained = !db.is_postgres();
        let mut claimed = outbox::claim_due(&db, now, 10).await.expect("claim");
        claimed.sort_unstable_by_key(|r| r.id);
        assert_eq!(keys(&claimed), if chained { vec!["q1", "q2"] } else { vec!["q1"] });
        assert!(!press(20, a, true).await, "message 20 is q0's, recorded already");
        assert!(!press(21, "c:0badf00d:9:9", true).await, "no message of the chat has such a button");
        assert_eq!(row("q1").await.status, "sending");
        // A press of q1's button under a message newer than any recorded: q1 was delivered. On
        // PostgreSQL a running worker records the row it is sending itself (an update's
        // transaction holding the row would hold up the worker's whole recording); at start-up,
        // before the worker runs, the press proves it.
        assert_eq!(press(21, a, false).await, !db.is_postgres());
        if db.is_postgres() {
            assert!(press(21, a, true).await);
        }
        let sent = row("q1").await;
        assert_eq!((sent.status.as_str(), sent.telegram_message_id), ("sent", Some(21)));
        let history = messages::history(&db, lead.id, 10).await.unwrap();
        assert_eq!(history.iter().map(|m| (m.outbox_id, m.telegram_message_id)).collect::<Vec<_>>(),
                   vec![(Some(q0), Some(20)), (Some(q1), Some(21)), (Some(q2), None)]);
        if chained {
            assert_eq!(row("q2").await.status, "sending", "q2, claimed behind q1, is still in flight");
        } else {
            assert_eq!(row("q2").await.status, "pending", "the chat's next message is released");
            assert_eq!(keys(&outbox::claim_due(&db, now, 10).await.expect("claim")), vec!["q2"]);
        }
        assert!(!press(21, a, true).await, "proved once");
        // The worker's own outcome for q1, coming later, changes nothing: a timeout after
        // Telegram took it does not send it again, nor does a refusal give it up.
        outbox::retry_at(&db, q1, now, "timed out").await.expect("retry");
        outbox::pause(&db, q1, now, "429").await.expect("pause");
        outbox::mark_failed(&db, q1, "refused").await.expect("fail");
        assert_eq!(row("q1").await.status, "sent");
        // A message put back after an attempt whose outcome is unknown (a timeout, or a crash and
        // a restart) is proved the same way.
        outbox::retry_at(&db, q2, now + 60_000, "timed out").await.expect("retry");
        assert!(press(22, b, false).await);
        assert_eq!((row("q2").await.status.as_str(), row("q2").await.telegram_message_id), ("sent", Some(22)));
        assert!(outbox::claim_due(&db, now + 60_000, 10).await.expect("claim").is_empty());

        // SQLite: a text and the question behind it, sent as one chain and put back by a crash: a
        // press of the question proves the text too (the question was only sent once Telegram
        // had accepted the text), which is recorded with no message id.
        if chained {
        let chain = 7203;
        let mut tx = db.begin().await.expect("begin");
        outbox::enqueue(&mut tx, "s1", None, chain, r#"{"type":"send_message","text":"Hello"}"#, true, now).await.expect("enqueue");
        outbox::enqueue(&mut tx, "s2", None, chain, &question(a), true, now).await.expect("enqueue");
        outbox::enqueue(&mut tx, "s3", None, chain, &question(b), true, now).await.expect("enqueue");
        tx.commit().await.expect("commit");
        let mut claimed = outbox::claim_due(&db, now, 10).await.expect("claim");
        claimed.sort_unstable_by_key(|r| r.id);
        assert_eq!(keys(&claimed), vec!["s1", "s2", "s3"]);
        // s3 was never tried (the chain stopped at s2): it waits again, and its button proves
        // nothing.
        outbox::unclaim(&db, &[row("s3").await.id]).await.expect("unclaim");
        assert_eq!((row("s3").await.status.as_str(), row("s3").await.attempts), ("queued", 0));
        storage::ops::release_orphans(&db, 99).await.expect("release");
        assert_eq!(row("s1").await.status, "pending");
        let press_in = |chat: i64, message_id: i64, data: &'static str| {
            let db = db.clone();
            async move {
                let mut tx = db.begin().await.expect("begin");
                outbox::record_pressed(&mut tx, chat, message_id, data, now + 1, true);
                tx.commit().await.expect("commit");
            }
        };
        press_in(chain, 31, b).await;
        assert_eq!(row("s1").await.status, "pending", "s3 was never sent: its button proves nothing");
        press_in(chain, 31, a).await;
        let (s1, s2, s3) = (row("s1").await, row("s2").await, row("s3").await);
        assert_eq!((s1.status.as_str(), s1.telegram_message_id), ("sent", None));
        assert_eq!((s2.status.as_str(), s2.telegram_message_id), ("sent", Some(31)));
        assert_eq!(s3.status, "pending", "the chat's next message is released");
        assert_eq!(keys(&outbox::claim_due(&db, now, 10).await.expect("claim")), vec!["s3"]);
        }
        // In one transaction, as an update's: the press, then the next question it leads to,
        // which goes out at once rather than waiting behind the message just proved.
        let other = 7202;
        let mut tx = db.begin().await.expect("begin");
        outbox::enqueue(&mut tx, "r1", None, other, &question(a), true, now).await.expect("enqueue");
        tx.commit().await.expect("commit");
        assert_eq!(keys(&outbox::claim_due(&db, now, 10).await.expect("claim")), vec!["r1"]);
        let mut tx = db.begin().await.expect("begin");
        outbox::record_pressed(&mut tx, other, 5, a, now, true);
        outbox::enqueue_at_commit(&mut tx, "r2", None, other, question(b), true, now);
        tx.commit().await.expect("commit");
        assert_eq!(row("r1").await.status, "sent");
        assert_eq!(row("r2").await.status, "pending");
    }
}

both_databases! {
    async fn a_transaction_reads_each_lead_once_and_writes_its_changes_at_commit(backend: Backend) {
        use leadbot::storage::leads::{self, NewLead};
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_700_000_000_000;
        let new = |telegram_id| NewLead {
            telegram_id,
            chat_id: telegram_id,
            username: None,
            first_name: Some("Анна"),
            last_name: None,
            language_code: Some("ru"),
            source: "vk_ads",
        };
        let mut tx = db.begin().await.expect("begin");
        let first = leads::insert(&mut tx, &new(501), now).await.expect("insert");
        tx.commit().await.expect("commit");

        // A batch reads its users' leads at once; a user with no lead is known to have none.
        let mut tx = db.begin().await.expect("begin");
        leads::prefetch(&mut tx, &[501, 502, 501]).await.expect("prefetch");
        let mut lead = leads::lock_by_telegram(&mut tx, 501).await.expect("read").expect("lead");
        assert_eq!(lead, first);
        assert!(leads::lock_by_telegram(&mut tx, 502).await.expect("read").is_none());
        // A change is seen by the rest of the transaction before it is written...
        lead.score = 42;
        lead.name = Some("Анна «Ромашка»".into());
        leads::save(&mut tx, &lead);
        assert_eq!(leads::lock_by_telegram(&mut tx, 501).await.expect("read"), Some(lead.clone()));
        // ...and by a statement that reads the table (the change is written before it).
        assert_eq!(leads::get_in(&mut tx, lead.id).await.expect("read").map(|l| l.score), Some(42));
        // An erased lead no longer holds its Telegram user, who may start afresh in the same batch.
        lead.telegram_id = None;
        lead.erased = true;
        leads::save(&mut tx, &lead);
        assert!(leads::lock_by_telegram(&mut tx, 501).await.expect("read").is_none());
        let again = leads::insert(&mut tx, &new(501), now).await.expect("insert again");
        assert_ne!(again.id, lead.id);
        let mut other = leads::insert(&mut tx, &new(502), now).await.expect("insert");
        other.temperature = "hot".into();
        other.unsubscribed = true;
        leads::save(&mut tx, &other);
        tx.commit().await.expect("commit");

        let erased = leads::get(&db, lead.id).await.expect("read").expect("kept");
        assert_eq!((erased.telegram_id, erased.erased, erased.score), (None, true, 42));
        assert_eq!(erased.name.as_deref(), Some("Анна «Ромашка»"));
        assert_eq!(leads::by_telegram(&db, 501).await.expect("read").map(|l| l.id), Some(again.id));
        assert_eq!(leads::by_telegram(&db, 502).await.expect("read"), Some(other.clone()));

        // A transaction rolled back writes none of its changes.
        let mut tx = db.begin().await.expect("begin");
        let mut changed = leads::lock_by_telegram(&mut tx, 502).await.expect("read").expect("lead");
        changed.score = 99;
        leads::save(&mut tx, &changed);
        drop(tx);
        assert_eq!(leads::by_telegram(&db, 502).await.expect("read"), Some(other));

        // Two transactions create the same user's lead at once (PostgreSQL; SQLite's writers take
        // turns): the second finds the Telegram id taken and gets the first one's lead.
        if db.is_postgres() {
            let mut first_tx = db.begin().await.expect("begin");
            let created = leads::insert(&mut first_tx, &new(505), now).await.expect("insert");
            let second = tokio::spawn({
                let db = db.clone();
                async move {
                    let mut tx = db.begin().await.expect("begin");
                    let lead = leads::insert(&mut tx, &new(505), now).await.expect("insert");
                    tx.commit().await.expect("commit");
                    lead
                }
            });
            first_tx.commit().await.expect("commit");
            assert_eq!(second.await.expect("second creation").id, created.id);
        }
        db.close().await;
    }
}

both_databases! {
    async fn a_lead_changed_across_several_writes_in_one_transaction_keeps_every_change(backend: Backend) {
        use leadbot::storage::leads::{self, NewLead};
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_700_000_000_000;
        let new = NewLead {
            telegram_id: 601,
            chat_id: 601,
            username: Some("anna"),
            first_name: Some("Анна"),
            last_name: None,
            language_code: Some("ru"),
            source: "vk_ads",
        };
        let mut tx = db.begin().await.expect("begin");
        let mut lead = leads::insert(&mut tx, &new, now).await.expect("insert");
        lead.session = r#"{"step":"name"}"#.into();
        lead.score = 10;
        leads::save(&mut tx, &lead);
        // A statement that reads the table writes the change first and forgets what was read.
        assert_eq!(leads::get_in(&mut tx, lead.id).await.expect("read").map(|l| l.score), Some(10));
        let mut again = leads::lock_by_telegram(&mut tx, 601).await.expect("read").expect("lead");
        assert_eq!(again, lead);
        // A column set back to what the table holds, another changed, a third changed twice.
        again.score = 0;
        again.phone = Some("+79001234567".into());
        again.session = r#"{"step":"phone"}"#.into();
        leads::save(&mut tx, &again);
        again.session = r#"{"step":"done"}"#.into();
        leads::save(&mut tx, &again);
        tx.commit().await.expect("commit");
        assert_eq!(leads::get(&db, again.id).await.expect("read"), Some(again.clone()));

        // A lead saved by a transaction that did not read it is written whole.
        let mut outside = leads::get(&db, again.id).await.expect("read").expect("lead");
        outside.temperature = "warm".into();
        outside.name = Some("Анна".into());
        let mut tx = db.begin().await.expect("begin");
        leads::save(&mut tx, &outside);
        tx.commit().await.expect("commit");
        assert_eq!(leads::get(&db, again.id).await.expect("read"), Some(outside.clone()));

        // Saving a lead unchanged writes nothing and changes nothing.
        let mut tx = db.begin().await.expect("begin");
        let same = leads::lock_by_telegram(&mut tx, 601).await.expect("read").expect("lead");
        leads::save(&mut tx, &same);
        tx.commit().await.expect("commit");
        assert_eq!(leads::get(&db, again.id).await.expect("read"), Some(outside));
        db.close().await;
    }
}

both_databases! {
    async fn a_batch_leaves_users_another_replica_holds_and_skips_updates_applied_already(backend: Backend) {
        use storage::updates::{self, IncomingUpdate};
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_700_000_000_000;
        let update = |update_id, user_id| IncomingUpdate { update_id, user_id: Some(user_id), payload: "{}".into() };
        updates::store_batch(&db, &[&update(1, 601), &update(2, 601), &update(3, 602), &update(4, 603)], 5, now)
            .await
            .expect("store");
        // Update 4 was applied before.
        let mut tx = db.begin().await.expect("begin");
        assert!(updates::begin_apply(&mut tx, 4, now).await.expect("begin apply"));
        tx.commit().await.expect("commit");

        let batch = [(1, 601), (2, 601), (3, 602), (4, 603)];
        if db.is_postgres() {
            // Another replica holds user 601 (its transaction stays open meanwhile).
            let mut other = db.begin().await.expect("begin");
            assert_eq!(
                updates::lock_and_begin_apply(&mut other, 9, 601, now).await.expect("lock"),
                updates::Begun::Done,
                "no update 9: the lock is taken, nothing is marked"
            );
            let mut tx = db.begin().await.expect("begin");
            let begun = updates::begin_apply_many(&mut tx, &batch, now).await.expect("begin many");
            assert_eq!(begun.fresh, [3].into_iter().collect());
            assert_eq!(begun.busy, [601].into_iter().collect());
            tx.commit().await.expect("commit");
            other.commit().await.expect("commit");
        }
        let mut tx = db.begin().await.expect("begin");
        let begun = updates::begin_apply_many(&mut tx, &batch, now).await.expect("begin many");
        let expected: std::collections::HashSet<i64> =
            if db.is_postgres() { [1, 2].into_iter().collect() } else { [1, 2, 3].into_iter().collect() };
        assert_eq!(begun.fresh, expected);
        assert!(begun.busy.is_empty());
        tx.commit().await.expect("commit");
        assert_eq!(updates::pending_count(&db).await.expect("count"), 0);
        db.close().await;
    }
}

/// Runs `leadbot try` in `dir` with `input` on stdin and only `env` set.
fn try_in(dir: &std::path::Path, env: &[(&str, &str)], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_leadbot"))
        .arg("try")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the leadbot binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("the transcript is written");
    child.wait_with_output().expect("leadbot try finishes")
}

#[test]
fn try_outside_the_source_tree_chats_with_the_dialogue_built_into_the_binary() {
    let empty = tempfile::tempdir().expect("temp dir");
    let out = try_in(empty.path(), &[], "1\nАнна\n+79123456789\n3\n1\n1\n");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("using the dialogues built into leadbot"),
        "{stderr}"
    );
    assert!(stdout.contains("Здравствуйте!"), "{stdout}");
    assert!(stdout.contains("Горячий лид"), "{stdout}");
    assert!(
        stdout.contains("Спасибо! Менеджер свяжется с вами"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(empty.path()).expect("read dir").count(),
        0,
        "try writes no files"
    );

    // A folder named on purpose must exist: no silent fallback.
    let out = try_in(
        empty.path(),
        &[("LEADBOT_DIALOGUES", "my-dialogues")],
        "1\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("my-dialogues") && stderr.contains("cannot read the dialogue folder"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing is said without a dialogue");
}
