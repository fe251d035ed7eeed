//! The managers' side end to end: alerts, claims, SLA, relay (plain group and forum), staff
//! commands, and strangers refused.

use std::time::Duration;

use crate::both_databases;
use crate::prospect::{WAIT, bot_says, eventually, finish_hot, up_to_need};
use crate::support::app::{LISTED_MANAGER, STAFF_CHAT, TestApp};
use crate::support::{Chat, Fault, StoredMessage, User};
use leadbot::storage;

/// Takes a lead through the hot path and returns its id and alert card.
async fn hot_lead(app: &TestApp, user: &User) -> (i64, StoredMessage) {
    up_to_need(app, user).await;
    finish_hot(app, user).await;
    let card = bot_says(app, STAFF_CHAT, &format!("#{}", lead_id(app, user).await)).await;
    (lead_id(app, user).await, card)
}

async fn lead_id(app: &TestApp, user: &User) -> i64 {
    storage::leads::by_telegram(&app.db, user.id)
        .await
        .ok()
        .flatten()
        .map(|l| l.id)
        .unwrap_or(-1)
}

fn cards(app: &TestApp) -> usize {
    app.fake
        .bot_messages_in(STAFF_CHAT)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Горячий лид")))
        .count()
}

/// Waits for a staff-chat message (new or edited) matching a condition.
async fn staff_message(
    app: &TestApp,
    what: &str,
    check: impl Fn(&StoredMessage) -> bool,
) -> StoredMessage {
    app.fake
        .wait_for_message(STAFF_CHAT, WAIT, |m| m.from_bot && check(m))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "waiting for {what}: {e:?}\n{}",
                app.fake.transcript(STAFF_CHAT)
            )
        })
}

both_databases! {
    async fn the_alert_is_sent_once_even_when_the_bot_dies_while_sending_it(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        let user = User::new(3001).lang("ru");
        up_to_need(&app, &user).await;
        // The card's send hangs, and the bot is killed while it is in flight.
        app.fake.fail_when(1, Fault::Hang, |method, params| {
            method == "sendMessage" && params["chat_id"] == STAFF_CHAT
        });
        finish_hot(&app, &user).await;
        app.fake
            .wait_until(WAIT, |s| s.requests().iter().any(|r| r.method == "sendMessage" && r.params["chat_id"] == STAFF_CHAT && r.status.is_none()))
            .await
            .ok();
        app.kill().await;
        assert_eq!(cards(&app), 0, "the hung send delivered nothing");
        app.start().await;
        bot_says(&app, STAFF_CHAT, "Горячий лид").await;
        app.settle().await;
        // A duplicated update and another restart do not bring a second card.
        app.stop().await;
        app.start().await;
        app.fake.push(user.text("Жду звонка"));
        bot_says(&app, STAFF_CHAT, "Жду звонка").await;
        app.settle().await;
        assert_eq!(cards(&app), 1);
    }
}

both_databases! {
    async fn take_pressed_before_the_card_is_recorded_still_edits_the_card(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(3051).lang("ru");
        up_to_need(&app, &user).await;
        // Telegram delivers the card but its answer never comes: the bot cannot record the card
        // until it sends it again, and the manager presses Take on the first copy meanwhile.
        app.fake.fail_when(1, Fault::AcceptThenHang, |method, params| {
            method == "sendMessage" && params["chat_id"] == STAFF_CHAT
        });
        finish_hot(&app, &user).await;
        let first = bot_says(&app, STAFF_CHAT, "Горячий лид").await;
        let id = lead_id(&app, &user).await;
        let manager = User::new(3052).first_name("Олег");
        app.fake.push(manager.presses_button(&first, "✋ Взять"));
        eventually("the lead is taken", || async {
            storage::leads::get(&app.db, id).await.ok().flatten().is_some_and(|l| l.manager_id == Some(manager.id))
        })
        .await;
        // The card the bot recorded (sent again after the hang) shows the owner.
        let key = leadbot::staff::alert::alert_key(id);
        let card_of = || async { storage::outbox::by_key(&app.db, &key).await.ok().flatten().and_then(|r| r.telegram_message_id) };
        eventually("the card's delivery is recorded", || async { card_of().await.is_some() }).await;
        let card_id = card_of().await.expect("recorded");
        assert_ne!(card_id, first.message_id, "the first copy's answer never came");
        app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| m.message_id == card_id && m.text.as_deref().is_some_and(|t| t.contains("Олег")))
            .await
            .expect("the recorded card edited with the owner");
    }
}

both_databases! {
    async fn two_managers_press_take_at_the_same_moment_and_one_wins(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        let user = User::new(3101).lang("ru");
        let (id, card) = hot_lead(&app, &user).await;
        app.settle().await;
        // Both presses reach the bot in one batch and are applied concurrently.
        app.stop().await;
        let earlier = app.fake.requests_for("answerCallbackQuery").len();
        let managers: Vec<User> = (0..4).map(|i| User::new(3150 + i).first_name(&format!("Менеджер{i}"))).collect();
        let data = card.callback_data("✋ Взять").expect("a Take button");
        for m in &managers {
            app.fake.push(m.presses(&card, &data));
        }
        app.start().await;
        app.fake
            .wait_until(WAIT, |s| s.requests_for("answerCallbackQuery").count() >= earlier + managers.len())
            .await
            .expect("every press answered");
        app.settle().await;
        let lead = storage::leads::get(&app.db, id).await.unwrap().unwrap();
        let answers: Vec<String> = app.fake.requests_for("answerCallbackQuery").iter().skip(earlier).map(|r| r.params["text"].as_str().unwrap_or_default().to_owned()).collect();
        let owner = lead.manager_id.unwrap_or_else(|| panic!("someone owns the lead: {answers:?}"));
        assert!(managers.iter().any(|m| m.id == owner));
        assert_eq!(answers.iter().filter(|t| t.starts_with("Лид ваш")).count(), 1, "{answers:?}");
        assert_eq!(answers.iter().filter(|t| t.contains("уже взял")).count(), managers.len() - 1, "{answers:?}");
        let history = storage::messages::history(&app.db, id, 100).await.unwrap();
        assert_eq!(history.iter().filter(|m| m.kind == "action" && m.text.as_deref() == Some("took the lead")).count(), 1);
        // The card shows the owner.
        let edited = app.fake.read(|s| s.message(STAFF_CHAT, card.message_id).cloned()).unwrap();
        assert!(edited.text.as_deref().is_some_and(|t| t.contains(lead.manager_name.as_deref().unwrap_or("?"))));
    }
}

both_databases! {
    async fn an_untaken_hot_lead_is_reannounced_at_most_three_times(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(3201).lang("ru");
        let (id, card) = hot_lead(&app, &user).await;
        let is_reminder = |m: &StoredMessage| m.from_bot && m.text.as_deref().is_some_and(|t| t.contains("никто не взял"));
        let reminders = |app: &TestApp| app.fake.bot_messages_in(STAFF_CHAT).iter().filter(|m| is_reminder(m)).count();
        app.settle().await;
        assert_eq!(reminders(&app), 0, "nothing before the SLA");
        for n in 1..=3 {
            app.clock.advance(Duration::from_secs(15 * 60 + 1));
            app.fake
                .wait_until(WAIT, |s| s.bot_messages_in(STAFF_CHAT).filter(|m| is_reminder(m)).count() >= n)
                .await
                .unwrap_or_else(|e| panic!("re-announcement {n}: {e:?}"));
            app.settle().await;
        }
        let all: Vec<StoredMessage> = app.fake.bot_messages_in(STAFF_CHAT).into_iter().filter(|m| is_reminder(m)).collect();
        assert!(all.iter().all(|m| m.reply_to_message_id == Some(card.message_id)), "replies to the card");
        app.clock.advance(Duration::from_secs(3 * 60 * 60));
        let db = app.db.clone();
        eventually("the timer ran after the last jump", || {
            let db = db.clone();
            async move { storage::leads::get(&db, id).await.ok().flatten().is_some_and(|l| l.sla_reminders == 3) }
        })
        .await;
        app.settle().await;
        assert_eq!(reminders(&app), 3, "at most three");

        // A taken lead is not re-announced.
        let other = User::new(3202).lang("ru");
        let (_, card2) = hot_lead(&app, &other).await;
        app.fake.push(User::new(3250).first_name("Ира").presses_button(&card2, "✋ Взять"));
        staff_message(&app, "the card shows the owner", |m| m.message_id == card2.message_id && m.text.as_deref().is_some_and(|t| t.contains("Ира"))).await;
        app.clock.advance(Duration::from_secs(60 * 60));
        app.settle().await;
        assert!(app.fake.bot_messages_in(STAFF_CHAT).iter().all(|m| m.reply_to_message_id != Some(card2.message_id)));
    }
}

both_databases! {
    async fn in_a_forum_each_lead_gets_a_topic_and_talk_flows_both_ways(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let staff = Chat::forum(STAFF_CHAT, "Managers");
        app.fake.add_chat(&staff);
        let user = User::new(3301).lang("ru");
        let (id, card) = hot_lead(&app, &user).await;
        let topics = app.fake.read(|s| s.topics(STAFF_CHAT).to_vec());
        assert_eq!(topics.len(), 1, "{topics:?}");
        let (topic, title) = topics[0].clone();
        assert!(title.contains(&format!("#{id}")) && title.contains("Анна"), "{title}");
        assert_eq!(card.message_thread_id, Some(topic), "the card is in the lead's topic");
        let lead = storage::leads::get(&app.db, id).await.unwrap().unwrap();
        assert_eq!(lead.topic_id, Some(topic));

        // The lead writes after the dialogue: it comes back in the topic.
        app.fake.push(user.text("А доставка есть?"));
        let relayed = bot_says(&app, STAFF_CHAT, "А доставка есть?").await;
        assert_eq!(relayed.message_thread_id, Some(topic));
        // A manager writes in the topic (no explicit reply): it reaches the lead.
        let manager = User::new(3350).first_name("Олег");
        app.fake.push(manager.in_chat(&staff).in_topic(topic).text("Да, по всей России."));
        bot_says(&app, user.id, "по всей России").await;
        // A photo from the manager reaches the lead too.
        app.fake.push(manager.in_chat(&staff).in_topic(topic).photo(Some("Наш склад")));
        app.fake
            .wait_for_message(user.id, WAIT, |m| m.from_bot && m.caption.as_deref() == Some("Наш склад"))
            .await
            .expect("the photo is copied to the lead");
        let history = storage::messages::history(&app.db, id, 100).await.unwrap();
        assert!(history.iter().any(|m| m.direction == "staff" && m.author_id == Some(3350) && m.text.as_deref() == Some("Да, по всей России.")));

        // A second hot lead gets a second topic; chatter in the general topic goes nowhere.
        let second = User::new(3302).lang("ru");
        let (_, card2) = hot_lead(&app, &second).await;
        assert_eq!(app.fake.read(|s| s.topics(STAFF_CHAT).len()), 2);
        assert_ne!(card2.message_thread_id, Some(topic));
        app.fake.push(manager.in_chat(&staff).text("Всем привет"));
        app.settle().await;
        let before = app.fake.bot_messages_in(user.id).len();
        app.fake.push(manager.in_chat(&staff).command("leads", ""));
        bot_says(&app, STAFF_CHAT, "Лиды").await;
        app.settle().await;
        assert_eq!(app.fake.bot_messages_in(user.id).len(), before, "general chatter is not relayed");
    }
}

both_databases! {
    async fn in_a_plain_group_replies_relay_both_ways_and_closing_edits_the_card(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let staff = Chat::supergroup(STAFF_CHAT, "Managers");
        let user = User::new(3401).lang("ru");
        let (id, card) = hot_lead(&app, &user).await;
        assert!(app.fake.read(|s| s.topics(STAFF_CHAT).is_empty()));
        let manager = User::new(3450).first_name("Вера");
        // A reply to the card reaches the lead and takes the lead.
        app.fake.push(manager.in_chat(&staff).text("Добрый день! Когда удобно созвониться?").reply_to(&card));
        bot_says(&app, user.id, "Когда удобно созвониться").await;
        // The lead's answer comes back under the card.
        app.fake.push(user.text("Завтра после обеда"));
        let back = bot_says(&app, STAFF_CHAT, "Завтра после обеда").await;
        assert_eq!(back.reply_to_message_id, Some(card.message_id));
        // The bot finds the lead of a replied-to message by its recorded id: wait until it is recorded
        // (Telegram shows the message a moment before the bot has written down its id).
        app.settle().await;
        // A reply to the relayed message reaches the lead as well; a document too.
        app.fake.push(manager.in_chat(&staff).document("offer.pdf").reply_to(&back));
        app.fake
            .wait_for_message(user.id, WAIT, |m| m.from_bot && m.media.as_ref().is_some_and(|(k, _)| k == "document"))
            .await
            .expect("the document is copied to the lead");
        // Won closes the lead and edits the card; its buttons go.
        app.fake.push(manager.presses_button(&card, "✅ Выиграна"));
        let closed = staff_message(&app, "the closed card", |m| m.message_id == card.message_id && m.button_labels().is_empty()).await;
        assert!(closed.edit_count >= 1);
        let lead = storage::leads::get(&app.db, id).await.unwrap().unwrap();
        assert_eq!(lead.status, "won");
        assert_eq!(lead.manager_id, Some(3450));
        assert!(lead.first_reply_at.is_some());
        // Every manager action is in the history with who did it.
        let history = storage::messages::history(&app.db, id, 100).await.unwrap();
        let actions: Vec<(Option<i64>, String)> = history.iter().filter(|m| m.direction == "staff").map(|m| (m.author_id, m.text.clone().unwrap_or_default())).collect();
        assert!(actions.contains(&(Some(3450), "took the lead by replying".into())), "{actions:?}");
        assert!(actions.contains(&(Some(3450), "closed as won".into())), "{actions:?}");
        assert!(actions.iter().filter(|(who, _)| *who == Some(3450)).count() >= 4, "{actions:?}");
        // Lost after Won changes nothing.
        app.fake.push(manager.presses(&card, &format!("l:{id}")));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.params.to_string().contains("уже закрыт"))
            .await
            .expect("a closed lead stays closed");
    }
}

both_databases! {
    async fn staff_commands_answer_managers_and_nobody_else(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let staff = Chat::supergroup(STAFF_CHAT, "Managers");
        let hot = User::new(3501).lang("ru").first_name("Горячий");
        let (hot_id, card) = hot_lead(&app, &hot).await;
        let cold = User::new(3502).lang("ru");
        up_to_need(&app, &cold).await;
        let manager = User::new(3550).first_name("Лена");
        let says = |m: &User, text: &str| app.fake.push(m.in_chat(&staff).text(text));

        says(&manager, "/leads");
        let all = bot_says(&app, STAFF_CHAT, "Лиды").await;
        let text = all.text.clone().unwrap_or_default();
        let (hot_at, cold_at) = (text.find(&format!("/lead {hot_id}")), text.find(&format!("/lead {}", lead_id(&app, &cold).await)));
        assert!(hot_at.is_some() && cold_at.is_some() && hot_at < cold_at, "hot first: {text}");
        says(&manager, "/leads hot");
        let only_hot = staff_message(&app, "/leads hot", |m| m.message_id > all.message_id && m.text.as_deref().is_some_and(|t| t.contains("Лиды"))).await;
        assert!(!only_hot.text.unwrap_or_default().contains(&format!("/lead {}", lead_id(&app, &cold).await)));
        says(&manager, "/leads boiling");
        bot_says(&app, STAFF_CHAT, "Использование: /leads").await;

        app.fake.push(manager.presses_button(&card, "✋ Взять"));
        staff_message(&app, "the card shows the owner", |m| m.message_id == card.message_id && m.text.as_deref().is_some_and(|t| t.contains("Лена"))).await;
        says(&manager, "/leads mine");
        let mine = staff_message(&app, "/leads mine", |m| m.text.as_deref().is_some_and(|t| t.contains("Лиды") && t.contains("👤"))).await;
        assert!(mine.text.unwrap_or_default().contains(&format!("/lead {hot_id}")));

        says(&manager, &format!("/lead {hot_id}"));
        let one = bot_says(&app, STAFF_CHAT, "Последние сообщения").await;
        assert!(one.text.as_deref().is_some_and(|t| t.contains("+79123456789")));
        says(&manager, "/lead 999999");
        bot_says(&app, STAFF_CHAT, "Лид не найден").await;
        says(&manager, "/lead abc");
        bot_says(&app, STAFF_CHAT, "Использование: /lead ID").await;

        says(&manager, "/stats");
        bot_says(&app, STAFF_CHAT, "Воронка").await;
        app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| m.from_bot && m.media.as_ref().is_some_and(|(k, _)| k == "photo"))
            .await
            .expect("the funnel chart as a PNG");
        says(&manager, "/export");
        let doc = app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| m.from_bot && m.file.as_ref().is_some_and(|f| f.file_name.as_deref() == Some("leads.csv")))
            .await
            .expect("the CSV as a document");
        let csv = String::from_utf8(doc.file.unwrap().bytes).unwrap();
        assert!(csv.starts_with('\u{feff}') && csv.contains("+79123456789"));

        // A listed manager in private gets answers too.
        let listed = User::new(LISTED_MANAGER).first_name("Старший");
        app.fake.push(listed.command("leads", "hot"));
        bot_says(&app, LISTED_MANAGER, "Лиды").await;

        // A stranger in private: no data, the ordinary reply to an unknown command.
        let stranger = User::new(3599).lang("ru");
        app.fake.push(stranger.command("leads", ""));
        app.fake.push(stranger.command("export", ""));
        // Telegram only lets members of the staff chat press the card's buttons; a stranger can
        // only forge the data on a message of their own private chat.
        let own = bot_says(&app, stranger.id, "Такой команды я не знаю").await;
        app.fake.push(stranger.presses(&own, &format!("w:{hot_id}")));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.params.to_string().contains("только для менеджеров"))
            .await
            .expect("a forged Won is refused");
        app.settle().await;
        let seen: Vec<String> = app.fake.bot_messages_in(stranger.id).iter().map(|m| m.visible_text().to_owned()).collect();
        assert!(seen.iter().all(|t| !t.contains("Лиды") && !t.contains("+79")), "{seen:?}");
        assert!(app.fake.bot_messages_in(stranger.id).iter().all(|m| m.file.is_none()));
        let lead = storage::leads::get(&app.db, hot_id).await.unwrap().unwrap();
        assert_eq!(lead.status, "in_work", "the forged Won changed nothing");

        // Other bots in the staff chat are ignored.
        let bot = User::new(3598).first_name("OtherBot");
        let mut update = bot.in_chat(&staff).text("/leads");
        update = crate::support::Update::raw(update.kind(), {
            let mut body = update.body().clone();
            body["from"]["is_bot"] = serde_json::json!(true);
            body
        });
        // (The daily digest may be posted at any moment; it is not an answer.)
        let answers = |app: &TestApp| app.fake.bot_messages_in(STAFF_CHAT).iter().filter(|m| !m.text.as_deref().unwrap_or_default().contains("Сводка за сутки")).count();
        let before = answers(&app);
        app.fake.push(update);
        app.settle().await;
        let db = app.db.clone();
        eventually("the bot's message is applied", || {
            let db = db.clone();
            async move { storage::updates::pending_count(&db).await.unwrap_or(1) == 0 }
        })
        .await;
        app.settle().await;
        assert_eq!(answers(&app), before, "no answer to another bot");
    }
}

both_databases! {
    async fn a_hot_lead_still_waiting_after_the_reminders_is_in_the_daily_digest_once(backend: Backend) {
        // Posted after midnight: the test does not depend on the time of day it runs at.
        let app = TestApp::spawn_configured(backend, crate::support::app::shipped_dialogues(), |s| s.digest_hour = Some(0)).await;
        let user = User::new(3601).lang("ru");
        let (id, _card) = hot_lead(&app, &user).await;
        let is_digest = |m: &StoredMessage| m.from_bot && m.text.as_deref().is_some_and(|t| t.contains("Сводка за сутки"));
        // Move past three SLA periods so the re-announcements run out.
        for n in 1..=3 {
            app.clock.advance(Duration::from_secs(15 * 60 + 1));
            let db = app.db.clone();
            eventually("a re-announcement", || {
                let db = db.clone();
                async move { storage::leads::get(&db, id).await.ok().flatten().is_some_and(|l| l.sla_reminders >= n) }
            })
            .await;
        }
        // A day later the digest lists the lead. The wait is for the digest dated today by the
        // clock: run in the hour before midnight, the re-announcements above cross into the next
        // day, whose digest may list the lead too.
        app.clock.advance(Duration::from_secs(24 * 60 * 60));
        let needle = format!("/lead {id}");
        let today = {
            use chrono::TimeZone;
            use leadbot::clock::Clock;
            app.settings.timezone.timestamp_millis_opt(app.clock.now_ms()).single().map(|t| t.format("%d.%m.%Y").to_string()).unwrap_or_default()
        };
        let digest = app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| is_digest(m) && m.text.as_deref().is_some_and(|t| t.contains(&needle) && t.contains(&today)))
            .await
            .expect("the daily digest lists the waiting lead");
        let text = digest.text.clone().unwrap_or_default();
        assert!(text.contains("без менеджера"), "{text}");
        // One digest per date (the test may cross midnight once more than the day it advances).
        let dated: Vec<String> = app.fake.bot_messages_in(STAFF_CHAT).iter().filter(|m| is_digest(m))
            .filter_map(|m| m.text.as_deref().and_then(|t| t.split_once('(')).and_then(|(_, rest)| rest.split_once(')')).map(|(date, _)| date.to_owned()))
            .collect();
        let digests = dated.len();
        let mut dates = dated.clone();
        dates.sort();
        dates.dedup();
        assert_eq!(dates.len(), digests, "one digest per date: {dated:?}");
        assert!(digests <= 3, "{dated:?}");
        // Later ticks the same day post nothing more.
        app.clock.advance(Duration::from_secs(60));
        let ticks = app.fake.read(|s| s.polls_started());
        app.fake.wait_until(WAIT, |s| s.polls_started() >= ticks + 3).await.expect("the bot keeps running");
        app.settle().await;
        assert_eq!(app.fake.bot_messages_in(STAFF_CHAT).iter().filter(|m| is_digest(m)).count(), digests);
        // A taken lead leaves the digest.
        let lead = storage::leads::get(&app.db, id).await.unwrap().unwrap();
        assert!(lead.manager_id.is_none());
        assert_eq!(storage::leads::unclaimed_hot(&app.db, 3, 10).await.unwrap().len(), 1);
    }
}

/// The managers' basic group, and the supergroup Telegram makes of it when topics are turned on.
const OLD_GROUP: i64 = -4_001_234_567;
const NEW_SUPERGROUP: i64 = -1_009_876_543_210;

/// The bot with the basic group as its staff chat.
async fn with_basic_staff_group(backend: crate::support::app::Backend) -> TestApp {
    let app = TestApp::spawn_configured(backend, crate::support::app::shipped_dialogues(), |s| {
        s.staff_chat_id = Some(OLD_GROUP)
    })
    .await;
    app.fake.add_chat(&Chat::group(OLD_GROUP, "Менеджеры"));
    app.fake.add_chat(&Chat::forum(NEW_SUPERGROUP, "Менеджеры"));
    // Started: the staff chat was checked, so an upgrade from now on happens while it runs.
    app.fake
        .wait_for_request(WAIT, |r| r.method == "getUpdates")
        .await
        .expect("the bot polls");
    app
}

async fn outbox_row(app: &TestApp, key: &str) -> Option<storage::outbox::Row> {
    storage::outbox::by_key(&app.db, key).await.ok().flatten()
}

/// Requests naming the chat, by method.
fn requests_to(app: &TestApp, chat: i64) -> Vec<(String, Option<u16>)> {
    app.fake
        .requests()
        .into_iter()
        .filter(|r| r.params.get("chat_id").and_then(serde_json::Value::as_i64) == Some(chat))
        .map(|r| (r.method, r.status))
        .collect()
}

both_databases! {
    async fn a_staff_group_upgraded_while_the_bot_runs_gets_the_next_alert_in_a_topic_and_is_heard(backend: Backend) {
        let app = with_basic_staff_group(backend).await;
        let first = User::new(3401).lang("ru");
        up_to_need(&app, &first).await;
        finish_hot(&app, &first).await;
        bot_says(&app, OLD_GROUP, "Горячий лид").await;
        let earlier = requests_to(&app, OLD_GROUP).len();
        // A manager turns topics on: the group is now a supergroup with a new id, and the old
        // id refuses everything with the new one. Telegram's service messages have not arrived.
        app.fake.make_chat_gone(OLD_GROUP, crate::support::fake_telegram::Gone::Migrated(NEW_SUPERGROUP));
        let second = User::new(3402).lang("ru").first_name("Вера");
        up_to_need(&app, &second).await;
        finish_hot(&app, &second).await;
        let card = bot_says(&app, NEW_SUPERGROUP, "Горячий лид").await;
        let later = requests_to(&app, OLD_GROUP).split_off(earlier);
        assert_eq!(later, [("sendMessage".to_owned(), Some(400))], "one refused request shows the move");
        // Managers in the new chat are the staff: a press takes the lead, a command is answered.
        let manager = User::new(3403).first_name("Олег");
        app.fake.push(manager.in_chat(&Chat::forum(NEW_SUPERGROUP, "Менеджеры")).command("stats", ""));
        bot_says(&app, NEW_SUPERGROUP, "Температура").await;
        app.fake.push(manager.presses_button(&card, "✋ Взять"));
        let id = lead_id(&app, &second).await;
        eventually("the lead is taken", || async {
            storage::leads::get(&app.db, id).await.ok().flatten().is_some_and(|l| l.manager_id == Some(manager.id))
        })
        .await;
        // The basic group had no topics; the new chat has, and the next lead gets one.
        let third = User::new(3404).lang("ru");
        up_to_need(&app, &third).await;
        finish_hot(&app, &third).await;
        let id = lead_id(&app, &third).await;
        let card = bot_says(&app, NEW_SUPERGROUP, &format!("#{id}")).await;
        assert!(card.message_thread_id.is_some(), "the card is in the lead's topic");
    }
}

both_databases! {
    async fn telegram_s_notice_of_the_upgrade_moves_the_staff_chat_before_anything_is_refused(backend: Backend) {
        let app = with_basic_staff_group(backend).await;
        app.fake.make_chat_gone(OLD_GROUP, crate::support::fake_telegram::Gone::Migrated(NEW_SUPERGROUP));
        let manager = User::new(3411).first_name("Олег");
        let old = Chat::group(OLD_GROUP, "Менеджеры");
        let new = Chat::forum(NEW_SUPERGROUP, "Менеджеры");
        app.fake.push_all(old.upgraded_to(&new, &manager).into());
        app.fake.push(manager.in_chat(&new).command("stats", ""));
        bot_says(&app, NEW_SUPERGROUP, "Температура").await;
        let user = User::new(3412).lang("ru");
        up_to_need(&app, &user).await;
        finish_hot(&app, &user).await;
        bot_says(&app, NEW_SUPERGROUP, "Горячий лид").await;
        assert_eq!(
            requests_to(&app, OLD_GROUP),
            [("getChatMember".to_owned(), Some(200))],
            "checked at start-up, then nothing was sent to the old chat"
        );
        // Another group's upgrade changes nothing.
        app.fake.push_all(Chat::group(-4_999, "Другая").upgraded_to(&Chat::supergroup(-1_004_999, "Другая"), &manager).into());
        app.fake.push(manager.in_chat(&new).command("stats", ""));
        let answers = || app.fake.bot_messages_in(NEW_SUPERGROUP).iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Температура"))).count();
        eventually("the second /stats is answered in the same chat", || async { answers() == 2 }).await;
    }
}

both_databases! {
    async fn alerts_wait_while_the_bot_is_out_of_the_staff_chat_and_arrive_when_it_is_back(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        app.fake
            .wait_for_request(WAIT, |r| r.method == "getUpdates")
            .await
            .expect("the bot polls");
        // Someone removes the bot from the managers' group.
        app.fake.make_chat_gone(STAFF_CHAT, crate::support::fake_telegram::Gone::Kicked);
        let first = User::new(3431).lang("ru");
        let second = User::new(3432).lang("ru");
        for user in [&first, &second] {
            up_to_need(&app, user).await;
            finish_hot(&app, user).await;
        }
        // The staff chat's first message (the first lead's topic) is refused and waits a minute;
        // everything else for the chat waits behind it, untried.
        let topic = leadbot::staff::topics::topic_key(lead_id(&app, &first).await);
        eventually("the first message waits", || async {
            outbox_row(&app, &topic).await.is_some_and(|r| r.status == "pending" && r.last_error.as_deref().is_some_and(|e| e.contains("kicked")))
        })
        .await;
        let refused: Vec<_> = requests_to(&app, STAFF_CHAT).into_iter().filter(|(_, status)| *status == Some(403)).collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        for user in [&first, &second] {
            let key = leadbot::staff::alert::alert_key(lead_id(&app, user).await);
            let card = outbox_row(&app, &key).await.expect("card enqueued");
            assert_eq!(card.status, "queued");
        }
        assert_eq!(cards(&app), 0);
        // The bot is added back; within a minute both cards arrive, once each.
        app.fake.bring_chat_back(STAFF_CHAT);
        app.clock.advance(Duration::from_secs(61));
        for user in [&first, &second] {
            bot_says(&app, STAFF_CHAT, &format!("#{}", lead_id(&app, user).await)).await;
        }
        app.settle().await;
        assert_eq!(cards(&app), 2);
    }
}

both_databases! {
    async fn a_manager_is_told_under_their_reply_when_the_lead_blocked_the_bot(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(3441).lang("ru");
        let (id, card) = hot_lead(&app, &user).await;
        let staff = Chat::supergroup(STAFF_CHAT, "Менеджеры");
        let manager = User::new(3442).first_name("Олег");
        // The lead blocked the bot and Telegram has not told the bot yet: the copy is refused.
        app.fake.block_user(user.id);
        let pushed = app.fake.push(manager.in_chat(&staff).text("Добрый день! Когда удобно?").reply_to(&card));
        let notice = staff_message(&app, "the notice", |m| m.text.as_deref().is_some_and(|t| t.contains("Не доставлено"))).await;
        assert_eq!(notice.reply_to_message_id, pushed.message_id, "under the manager's message");
        eventually("the lead is marked blocked", || async {
            storage::leads::get(&app.db, id).await.ok().flatten().is_some_and(|l| l.blocked)
        })
        .await;
        // Known blocked: the next reply is not sent at all, and the manager is told at once.
        let copies = app.fake.requests_for("copyMessage").len();
        let pushed = app.fake.push(manager.in_chat(&staff).text("Вы здесь?").reply_to(&card));
        staff_message(&app, "the second notice", |m| m.reply_to_message_id == pushed.message_id && m.text.as_deref().is_some_and(|t| t.contains("Не доставлено"))).await;
        assert_eq!(app.fake.requests_for("copyMessage").len(), copies, "nothing more was tried");
    }
}
