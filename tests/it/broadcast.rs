//! Broadcasts end to end: the real bot and sender, a fake Bot API over HTTP, SQLite and
//! PostgreSQL. Leads are seeded directly through the storage API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::both_databases;
use crate::support::app::{Backend, STAFF_CHAT, TestApp, shipped_dialogues};
use crate::support::{RateLimits, StoredMessage, User};
use leadbot::broadcast::segment::Segment;
use leadbot::clock::Clock;
use leadbot::config::QuietHours;
use leadbot::storage::broadcasts::{self as store, Eligibility, NewBroadcast};
use leadbot::storage::leads::{self, NewLead};
use leadbot::storage::{self, Db, ops};

const WAIT: Duration = Duration::from_secs(30);

/// A lead to seed.
#[derive(Clone, Debug)]
struct Seed {
    telegram_id: i64,
    temperature: &'static str,
    score: i32,
    source: &'static str,
    consent: bool,
    unsubscribed: bool,
    blocked: bool,
    erased: bool,
}

impl Seed {
    fn consenting(telegram_id: i64) -> Seed {
        Seed {
            telegram_id,
            temperature: "cold",
            score: 10,
            source: "vk_ads",
            consent: true,
            unsubscribed: false,
            blocked: false,
            erased: false,
        }
    }
}

/// Inserts leads in one transaction; returns their ids in order.
async fn seed(db: &Db, seeds: &[Seed], now: i64) -> Vec<i64> {
    let mut tx = db.begin().await.expect("begin");
    let mut ids = Vec::new();
    for s in seeds {
        let new = NewLead {
            telegram_id: s.telegram_id,
            chat_id: s.telegram_id,
            username: None,
            first_name: Some("Лид"),
            last_name: None,
            language_code: Some("ru"),
            source: s.source,
        };
        let mut l = leads::insert(&mut tx, &new, now)
            .await
            .expect("insert lead");
        l.temperature = s.temperature.into();
        l.score = s.score;
        // The session carries the score the engine adds to.
        l.session = format!(
            r#"{{"position":{{"at":"not_started"}},"score":{}}}"#,
            s.score
        );
        l.status = "qualified".into();
        l.marketing_consent_at = s.consent.then_some(now);
        l.consent_at = Some(now);
        l.unsubscribed = s.unsubscribed;
        l.blocked = s.blocked;
        l.erased = s.erased;
        leads::save(&mut tx, &l);
        ids.push(l.id);
    }
    tx.commit().await.expect("commit");
    ids
}

/// Schedules a broadcast starting now.
async fn create(
    app: &TestApp,
    text: &str,
    button: Option<&str>,
    segment: &str,
    expires_in: Duration,
) -> i64 {
    let now = app.clock.now_ms();
    let segment = Segment::parse(segment).expect("segment");
    store::insert(
        &app.db,
        &NewBroadcast {
            text,
            button,
            segment: &segment,
            score: 30,
            start_at: now,
            expires_at: now + expires_in.as_millis() as i64,
            created_by: "test",
        },
        now,
    )
    .await
    .expect("insert broadcast")
}

/// Polls a condition until it holds or the deadline passes (a condition wait, not a fixed sleep).
async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn status_of(db: &Db, id: i64) -> String {
    store::get(db, id)
        .await
        .ok()
        .flatten()
        .map(|b| b.status)
        .unwrap_or_default()
}

async fn wait_done(app: &TestApp, id: i64, deadline: Duration) {
    eventually(&format!("broadcast #{id} is done"), deadline, || async {
        status_of(&app.db, id).await == "done"
    })
    .await;
}

/// Offers the fake holds per chat (bot messages with the unsubscribe button).
fn offers_per_chat(app: &TestApp) -> HashMap<i64, usize> {
    app.fake.read(|s| {
        let mut per: HashMap<i64, usize> = HashMap::new();
        for r in s.requests_for("sendMessage") {
            let ok = r.status == Some(200);
            let chat = r
                .params
                .get("chat_id")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            let is_offer = r.params.to_string().contains("\"callback_data\":\"u\"");
            if ok && is_offer {
                *per.entry(chat).or_default() += 1;
            }
        }
        per
    })
}

/// Fault target: offers (messages to private chats), not the staff chat's progress.
fn to_leads() -> crate::support::fake_telegram::FaultTarget {
    crate::support::fake_telegram::FaultTarget::Matching(std::sync::Arc::new(
        |method: &str, params: &serde_json::Value| {
            method == "sendMessage"
                && params
                    .get("chat_id")
                    .and_then(|c| c.as_i64())
                    .is_some_and(|c| c > 0)
        },
    ))
}

/// Waits for a button press to be answered with a notice containing `words`.
async fn answered(app: &TestApp, words: &str) {
    let words = words.to_owned();
    app.fake
        .wait_for_request(WAIT, |r| {
            r.method == "answerCallbackQuery"
                && r.params
                    .get("text")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.contains(&words))
        })
        .await
        .unwrap_or_else(|e| panic!("no answer with {words:?}: {e}"));
}

fn offer_message(app: &TestApp, chat: i64) -> StoredMessage {
    app.fake
        .bot_messages_in(chat)
        .into_iter()
        .find(|m| m.callback_data("Не присылать предложения").is_some())
        .unwrap_or_else(|| panic!("no offer in chat {chat}\n{}", app.fake.transcript(chat)))
}

both_databases! {
    async fn only_consenting_reachable_leads_under_the_weekly_limit_get_offers(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.max_offers_per_week = 1;
        })
        .await;
        let now = app.clock.now_ms();
        let mut seeds = vec![
            Seed::consenting(5001),                                   // gets it
            Seed { consent: false, ..Seed::consenting(5002) },        // no marketing consent
            Seed { unsubscribed: true, ..Seed::consenting(5003) },    // /stop
            Seed { blocked: true, ..Seed::consenting(5004) },         // blocked the bot
            Seed { erased: true, ..Seed::consenting(5005) },          // /forget
            Seed { temperature: "hot", score: 90, ..Seed::consenting(5006) }, // outside the segment
            Seed { source: "weekly", ..Seed::consenting(5007) },      // already had this week's offer
            Seed { temperature: "warm", score: 40, source: "VK_stories", ..Seed::consenting(5008) },
        ];
        seeds.push(Seed { source: "google", ..Seed::consenting(5009) }); // outside the source
        seed(&app.db, &seeds, now).await;

        let first = create(&app, "Первое предложение", None, "source=weekly", Duration::from_secs(3600)).await;
        wait_done(&app, first, WAIT).await;

        let segment = Segment::parse("temperature=cold|warm,source=vk_*|weekly").unwrap();
        let e = Eligibility { now: app.clock.now_ms(), max_per_week: 1 };
        assert_eq!(store::audience_size(&app.db, &segment, e).await.unwrap(), 2);

        let id = create(&app, "<b>−20%</b> до пятницы &amp; только для вас", Some("Хочу скидку"),
            "temperature=cold|warm,source=vk_*|weekly", Duration::from_secs(3600)).await;
        wait_done(&app, id, WAIT).await;
        let per = offers_per_chat(&app);
        assert_eq!(per.get(&5001), Some(&1));
        assert_eq!(per.get(&5008), Some(&1));
        assert_eq!(per.get(&5007), Some(&1), "the weekly limit allows no second offer");
        for chat in [5002, 5003, 5004, 5005, 5006, 5009] {
            assert_eq!(per.get(&chat), None, "chat {chat} must not get offers");
        }
        let offer = offer_message(&app, 5001);
        assert_eq!(offer.text.as_deref(), Some("−20% до пятницы & только для вас"));
        assert_eq!(offer.parse_mode.as_deref(), Some("HTML"));
        assert_eq!(offer.callback_data("Хочу скидку"), Some(format!("o:{id}")));
        assert_eq!(offer.callback_data("Не присылать предложения").as_deref(), Some("u"));
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.total, c.sent), (2, 2));
        // The offer is kept in the lead's history.
        let lead = leads::by_telegram(&app.db, 5001).await.unwrap().unwrap();
        let history = storage::messages::history(&app.db, lead.id, 100).await.unwrap();
        assert!(history.iter().any(|m| m.kind == "offer" && m.telegram_message_id.is_some()));
    }
}

both_databases! {
    async fn thousands_of_recipients_are_each_served_exactly_once_without_429(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 400;
        })
        .await;
        app.fake.set_rate_limits(RateLimits {
            global_per_second: Some(600),
            private_chat_per_second: Some(1),
            group_per_minute: None,
        });
        let n = 2500;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(100_000 + i)).collect();
        let seeded = Instant::now();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let seeding = seeded.elapsed();
        let started = Instant::now();
        let id = create(&app, "Скидка <b>20%</b>", Some("Хочу"), "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, Duration::from_secs(120)).await;
        let took = started.elapsed();
        let per = offers_per_chat(&app);
        assert_eq!(per.len(), n as usize, "every recipient served");
        assert!(per.values().all(|k| *k == 1), "nobody served twice");
        assert_eq!(app.fake.too_many_requests(), 0, "no 429 from the fake");
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.total, c.sent, c.unknown, c.failed), (n, n, 0, 0));
        eprintln!(
            "MEASURED broadcast of {n}: seeded in {:.2}s, sent in {:.2}s ({:.0} msg/s at LEADBOT_BROADCAST_RATE=400)",
            seeding.as_secs_f64(),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        // The staff chat saw the progress message and its final report.
        let report = app
            .fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| {
                m.text.as_deref().is_some_and(|t| t.contains(&format!("Рассылка #{id} — завершена")))
            })
            .await
            .expect("final report");
        let text = report.text.unwrap_or_default();
        assert!(text.contains(&format!("Отправлено: {n}/{n}")), "{text}");
        assert!(text.contains("Нажатий на кнопку: 0"), "{text}");
        // Edited while it ran, but not more often than every 3 seconds.
        let edits = app.fake.read(|s| {
            s.requests_for("editMessageText")
                .filter(|r| r.params.get("chat_id").and_then(|c| c.as_i64()) == Some(STAFF_CHAT))
                .count()
        });
        let bound = (started.elapsed().as_secs_f64() / 3.0).ceil() as usize + 1;
        assert!(edits >= 1 && edits <= bound, "{edits} edits in {:?}", started.elapsed());
    }
}

both_databases! {
    async fn a_kill_mid_broadcast_and_a_restart_serve_nobody_twice(backend: Backend) {
        let mut app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 100;
        })
        .await;
        let n = 600;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(200_000 + i)).collect();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let id = create(&app, "Предложение дня", None, "all", Duration::from_secs(3600)).await;
        eventually("a quarter was sent", WAIT, || async {
            store::counts(&app.db, id).await.map(|c| c.sent >= n / 4).unwrap_or(false)
        })
        .await;
        // Three sends hang in flight: Telegram got the request, the bot never heard back.
        app.fake.fail(3, crate::support::Fault::Hang, to_leads());
        app.fake
            .wait_until(WAIT, |s| s.requests_for("sendMessage").filter(|r| r.status.is_none()).count() >= 3)
            .await
            .expect("three sends in flight");
        app.kill().await;
        let at_kill = store::counts(&app.db, id).await.unwrap();
        assert!(at_kill.pending > 0, "killed mid-way: {at_kill:?}");
        app.start().await;
        wait_done(&app, id, Duration::from_secs(60)).await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!(c.total, n);
        assert_eq!(c.sent + c.unknown, n, "{c:?}");
        // Sends in flight at the kill (claims the database had already accepted included) are
        // counted unknown and never sent again.
        assert!((3..=64).contains(&c.unknown), "the sends in flight: {c:?} {at_kill:?}");
        let per = offers_per_chat(&app);
        assert!(per.values().all(|k| *k == 1), "nobody served twice");
        assert!(per.len() as i64 >= c.sent && per.len() as i64 <= c.sent + c.unknown, "{} chats got it: {c:?}", per.len());
    }
}

both_databases! {
    async fn a_lead_who_blocked_the_bot_is_marked_blocked(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        seed(&app.db, &[Seed::consenting(6001), Seed::consenting(6002), Seed::consenting(6003)], app.clock.now_ms()).await;
        app.fake.block_user(6002);
        let id = create(&app, "Предложение", None, "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, WAIT).await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.sent, c.blocked, c.failed), (2, 1, 0));
        let lead = leads::by_telegram(&app.db, 6002).await.unwrap().unwrap();
        assert!(lead.blocked);
        // A blocked lead is out of the next audience.
        let e = Eligibility { now: app.clock.now_ms(), max_per_week: 10 };
        assert_eq!(store::audience_size(&app.db, &Segment::default(), e).await.unwrap(), 2);
    }
}

/// Quiet hours that hold now and end within 90 minutes (business time zone).
fn quiet_now() -> QuietHours {
    let local = chrono::Utc::now()
        .with_timezone(&chrono_tz::Europe::Moscow)
        .time();
    QuietHours {
        from: local - chrono::TimeDelta::minutes(30),
        to: local + chrono::TimeDelta::minutes(90),
    }
}

both_databases! {
    async fn quiet_hours_hold_sending_until_they_end(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.quiet_hours = Some(quiet_now());
        })
        .await;
        seed(&app.db, &[Seed::consenting(7001), Seed::consenting(7002)], app.clock.now_ms()).await;
        let id = create(&app, "Утреннее предложение", None, "all", Duration::from_secs(48 * 3600)).await;
        let paused = app
            .fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| {
                m.text.as_deref().is_some_and(|t| t.contains(&format!("Рассылка #{id}")) && t.contains("тихие часы"))
            })
            .await
            .expect("progress shows the quiet-hours pause");
        assert!(paused.text.unwrap_or_default().contains("Отправлено: 0/2"));
        assert_eq!(store::counts(&app.db, id).await.unwrap().sent, 0);
        assert!(offers_per_chat(&app).is_empty());
        app.clock.advance(Duration::from_secs(2 * 3600));
        wait_done(&app, id, WAIT).await;
        assert_eq!(offers_per_chat(&app).len(), 2);
    }
}

both_databases! {
    async fn an_offer_that_expires_during_quiet_hours_is_not_sent_late(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.quiet_hours = Some(quiet_now());
        })
        .await;
        seed(&app.db, &[Seed::consenting(7101)], app.clock.now_ms()).await;
        let id = create(&app, "Только час", None, "all", Duration::from_secs(3600)).await;
        eventually("the broadcast started", WAIT, || async { status_of(&app.db, id).await == "running" }).await;
        app.clock.advance(Duration::from_secs(2 * 3600));
        wait_done(&app, id, WAIT).await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.sent, c.expired), (0, 1));
        assert!(offers_per_chat(&app).is_empty());
    }
}

both_databases! {
    async fn a_click_before_expiry_scores_once_asks_for_a_phone_and_alerts_when_hot(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(8001).lang("ru").first_name("Ольга");
        seed(&app.db, &[Seed { temperature: "warm", score: 50, ..Seed::consenting(8001) }], app.clock.now_ms()).await;
        let id = create(&app, "Скидка до пятницы", Some("Хочу скидку"), "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, WAIT).await;
        let offer = offer_message(&app, 8001);

        app.fake.push(user.presses_button(&offer, "Хочу скидку"));
        app.fake
            .wait_for_message(8001, WAIT, |m| m.from_bot && m.visible_text().contains("номер телефона"))
            .await
            .expect("asks for a phone");
        app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| m.visible_text().contains("Горячий лид"))
            .await
            .expect("the lead turned hot and was alerted");
        let lead = leads::by_telegram(&app.db, 8001).await.unwrap().unwrap();
        assert_eq!((lead.score, lead.temperature.as_str()), (80, "hot"));

        // A second press counts no second click.
        app.fake.push(user.presses_button(&offer, "Хочу скидку"));
        answered(&app, "уже получили").await;
        let lead = leads::by_telegram(&app.db, 8001).await.unwrap().unwrap();
        assert_eq!(lead.score, 80);
        assert_eq!(store::counts(&app.db, id).await.unwrap().clicks, 1);

        // The phone the offer asked for is kept.
        app.fake.push(user.contact("+79123456780"));
        app.fake
            .wait_for_message(8001, WAIT, |m| m.from_bot && m.visible_text().contains("номер сохранён"))
            .await
            .expect("phone saved");
        let lead = leads::by_telegram(&app.db, 8001).await.unwrap().unwrap();
        assert_eq!(lead.phone.as_deref(), Some("+79123456780"));
        staff_sees(&app, "📱 +79123456780").await;
        assert_eq!(app.fake.bot_messages_in(STAFF_CHAT).iter().filter(|m| m.visible_text().contains("Горячий лид")).count(), 1);
        // Stats show the broadcast's results: sent, clicks, leads that turned hot.
        let results = leadbot::broadcast::progress::results(&app.db, 0).await.unwrap();
        assert!(results.contains(&format!("#{id} завершена: 1/1 / 1 / 1")), "{results}");
    }
}

both_databases! {
    async fn the_offer_unsubscribe_button_keeps_the_lead_out_of_later_offers(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(8201).lang("ru");
        seed(&app.db, &[Seed::consenting(8201), Seed::consenting(8202)], app.clock.now_ms()).await;
        let first = create(&app, "Первое", None, "all", Duration::from_secs(3600)).await;
        wait_done(&app, first, WAIT).await;
        let offer = offer_message(&app, 8201);
        app.fake.push(user.presses_button(&offer, "Не присылать предложения"));
        app.fake
            .wait_for_message(8201, WAIT, |m| m.from_bot && m.visible_text().contains("отписаны"))
            .await
            .expect("unsubscribed");
        let second = create(&app, "Второе", None, "all", Duration::from_secs(3600)).await;
        wait_done(&app, second, WAIT).await;
        assert_eq!(offers_per_chat(&app).get(&8201), Some(&1));
        assert_eq!(offers_per_chat(&app).get(&8202), Some(&2));
    }
}

both_databases! {
    async fn forget_removes_what_links_an_offer_to_the_person(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(8301).lang("ru");
        let ids = seed(&app.db, &[Seed::consenting(8301)], app.clock.now_ms()).await;
        let id = create(&app, "Предложение", None, "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, WAIT).await;
        let mut tx = app.db.begin().await.unwrap();
        let before = store::recipient_of(&mut tx, id, ids[0]).await.unwrap();
        drop(tx);
        assert!(matches!(before, Some((ref s, Some(_))) if s == "sent"), "{before:?}");
        app.fake.push(user.command("forget", ""));
        let confirm = app
            .fake
            .wait_for_message(8301, WAIT, |m| m.from_bot && m.visible_text().contains("Удалить все"))
            .await
            .expect("forget asks to confirm");
        app.fake.push(user.presses_button(&confirm, "Да, удалить"));
        app.fake
            .wait_for_message(8301, WAIT, |m| m.from_bot && m.visible_text().contains("данные удалены"))
            .await
            .expect("forgotten");
        let mut tx = app.db.begin().await.unwrap();
        let after = store::recipient_of(&mut tx, id, ids[0]).await.unwrap();
        drop(tx);
        assert_eq!(after, Some(("sent".to_owned(), None)), "the count stays, the link goes");
    }
}

both_databases! {
    async fn a_click_after_expiry_says_the_offer_ended_and_removes_the_button(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(8101).lang("ru");
        seed(&app.db, &[Seed::consenting(8101)], app.clock.now_ms()).await;
        let id = create(&app, "Скидка на час", Some("Хочу"), "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, WAIT).await;
        let offer = offer_message(&app, 8101);
        app.clock.advance(Duration::from_secs(3601));
        app.fake.push(user.presses_button(&offer, "Хочу"));
        answered(&app, "закончилось").await;
        app.fake
            .wait_until(WAIT, |s| {
                s.message(8101, offer.message_id).is_some_and(|m| m.reply_markup.is_none() || m.button_labels().is_empty())
            })
            .await
            .expect("the button is removed");
        let lead = leads::by_telegram(&app.db, 8101).await.unwrap().unwrap();
        assert_eq!(lead.score, 10, "no points after expiry");
        assert_eq!(store::counts(&app.db, id).await.unwrap().clicks, 0);
    }
}

both_databases! {
    async fn cancel_stops_a_running_broadcast_and_recall_deletes_what_was_sent(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 20;
        })
        .await;
        let n = 300;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(300_000 + i)).collect();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let id = create(&app, "Отменяемое предложение", None, "all", Duration::from_secs(3600)).await;
        eventually("some were sent", WAIT, || async {
            store::counts(&app.db, id).await.map(|c| c.sent >= 10).unwrap_or(false)
        })
        .await;
        assert!(store::cancel(&app.db, id, app.clock.now_ms()).await.unwrap());
        eventually("nothing is in flight", WAIT, || async {
            store::counts(&app.db, id).await.map(|c| c.sending == 0).unwrap_or(false)
        })
        .await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!(c.pending, 0);
        assert!(c.cancelled > 0 && c.sent < n, "{c:?}");
        assert_eq!(status_of(&app.db, id).await, "cancelled");
        let sent = c.sent;

        let r = store::request_recall(&app.db, id, app.clock.now_ms()).await.unwrap();
        assert_eq!((r.to_delete, r.too_late), (sent, 0));
        eventually("every sent offer is deleted", WAIT, || async {
            store::counts(&app.db, id).await.map(|c| c.recalled == sent).unwrap_or(false)
        })
        .await;
        let deleted = app.fake.read(|s| s.requests_for("deleteMessage").filter(|r| r.status == Some(200)).count());
        assert_eq!(deleted as i64, sent);
        assert_eq!(offers_per_chat(&app).len() as i64, sent, "no sends after the cancel");
    }
}

/// Waits for a bot message in the staff chat containing `needle`.
async fn staff_sees(app: &TestApp, needle: &str) -> StoredMessage {
    app.fake
        .wait_for_message(STAFF_CHAT, WAIT, |m| {
            m.from_bot && m.visible_text().contains(needle)
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "waiting for {needle:?}: {e}\n{}",
                app.fake.transcript(STAFF_CHAT)
            )
        })
}

/// Runs `leadbot ARGS` against a database; returns the exit code, stdout and stderr.
fn leadbot(db_url: &str, args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadbot"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("LEADBOT_QUIET_HOURS", "off")
        .current_dir(dir.path())
        .output()
        .expect("run leadbot");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_databases! {
    async fn the_cli_refuses_bad_arguments_with_exit_code_2_and_changes_nothing(backend: Backend) {
        let (test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let long = "x".repeat(65);
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["--text", "Hi", "--segment", "tempreature=cold"], "segment error at position 1"),
            (vec!["--text", "Hi", "--segment", "temperature=cold|lukewarm"], "position 18"),
            (vec!["--text", "<div>Hi</div>", "--segment", "all"], "does not accept <div>"),
            (vec!["--text", "Tom & Jerry", "--segment", "all"], "&amp;"),
            (vec!["--text", "Hi", "--button", &long, "--segment", "all"], "button"),
            (vec!["--text", "Hi", "--segment", "all", "--at", "tomorrow"], "--at"),
            (vec!["--text", "Hi", "--segment", "all", "--expires-in", "soon"], "--expires-in"),
            (vec!["--text", "Hi", "--segment", "all", "--expires-at", "2020-01-01T00:00:00Z"], "expire"),
            (vec!["--text", "Hi", "--text-file", "x.html", "--segment", "all"], "cannot be used with"),
            (vec!["--text", "Hi"], "--segment"),
            (vec!["--text-file", "missing.html", "--segment", "all"], "--text-file"),
        ];
        for (args, words) in cases {
            let mut full = vec!["broadcast", "create"];
            full.extend(args.iter());
            let (code, _, err) = leadbot(&test_db.url, &full);
            assert_eq!(code, 2, "{full:?}: {err}");
            assert!(err.contains(words), "{full:?}: {err}");
        }
        for sub in ["show", "cancel", "recall"] {
            let (code, _, err) = leadbot(&test_db.url, &["broadcast", sub, "999"]);
            assert_eq!(code, 2, "{sub}: {err}");
            assert!(err.contains("no broadcast #999"), "{sub}: {err}");
        }
        assert!(store::list(&db, 10).await.unwrap().is_empty(), "nothing was written");

        let (code, out, err) = leadbot(&test_db.url, &[
            "broadcast", "create", "--text", "<b>−20%</b> до пятницы", "--button", "Хочу",
            "--segment", "temperature=cold|warm,inactive=7d", "--expires-in", "2h",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("broadcast #1 scheduled"), "{out}");
        let b = store::get(&db, 1).await.unwrap().expect("stored");
        assert_eq!(b.segment, "temperature=cold|warm,inactive=7d");
        assert_eq!(b.expires_at - b.start_at, 2 * 3_600_000);
        let (code, out, _) = leadbot(&test_db.url, &["broadcast", "list"]);
        assert_eq!(code, 0);
        assert!(out.contains("#1") && out.contains("scheduled"), "{out}");
        let (code, out, _) = leadbot(&test_db.url, &["broadcast", "show", "1"]);
        assert_eq!(code, 0);
        assert!(out.contains("sent: 0/0") && out.contains("button: Хочу"), "{out}");
        let (code, _, _) = leadbot(&test_db.url, &["broadcast", "cancel", "1"]);
        assert_eq!(code, 0);
        assert_eq!(status_of(&db, 1).await, "cancelled");
        let (code, _, err) = leadbot(&test_db.url, &["broadcast", "cancel", "1"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot be cancelled"), "{err}");
        db.close().await;
    }
}

both_databases! {
    async fn a_manager_creates_a_broadcast_in_the_staff_chat_step_by_step(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        seed(&app.db, &[Seed::consenting(9501), Seed::consenting(9502), Seed { temperature: "hot", ..Seed::consenting(9503) }], app.clock.now_ms()).await;
        let staff = crate::support::Chat::supergroup(STAFF_CHAT, "Managers");
        let manager = User::new(4242).first_name("Мария");
        let says = |text: &str| manager.in_chat(&staff).text(text);
        app.fake.push(manager.in_chat(&staff).command("broadcast", ""));
        staff_sees(&app, "Пришлите текст").await;
        app.fake.push(says("<div>Скидка</div>"));
        staff_sees(&app, "Текст не принят").await;
        app.fake.push(says("<b>Скидка 15%</b> только до воскресенья"));
        staff_sees(&app, "Текст кнопки").await;
        app.fake.push(says("Забрать скидку"));
        staff_sees(&app, "Кому отправить").await;
        app.fake.push(says("temperature=cold|lukewarm"));
        staff_sees(&app, "позиция 18").await;
        app.fake.push(says("temperature=cold|warm"));
        staff_sees(&app, "сейчас подходит лидов — 2").await;
        app.fake.push(says("24h"));
        staff_sees(&app, "Когда начать").await;
        app.fake.push(says("сейчас"));
        staff_sees(&app, "получателей сейчас: 2").await;
        assert!(store::list(&app.db, 10).await.unwrap().is_empty(), "nothing before confirmation");
        app.fake.push(says("да"));
        staff_sees(&app, "Рассылка #1 запланирована").await;
        let b = store::get(&app.db, 1).await.unwrap().expect("created");
        assert_eq!(b.button.as_deref(), Some("Забрать скидку"));
        assert_eq!(b.expires_at - b.start_at, 24 * 3_600_000);
        wait_done(&app, 1, WAIT).await;
        assert_eq!(offers_per_chat(&app).len(), 2);
        app.fake.push(manager.in_chat(&staff).command("broadcasts", ""));
        staff_sees(&app, "отправлено 2/2").await;
        // Like the CLI: show, cancel, recall.
        app.fake.push(manager.in_chat(&staff).command("broadcast", "show 1"));
        staff_sees(&app, "Нажатий на кнопку: 0").await;
        app.fake.push(manager.in_chat(&staff).command("broadcast", "cancel 1"));
        staff_sees(&app, "отменять нечего").await;
        app.fake.push(manager.in_chat(&staff).command("broadcast", "recall 1"));
        staff_sees(&app, "удалим сообщений — 2").await;
        eventually("both offers are deleted", WAIT, || async {
            store::counts(&app.db, 1).await.map(|c| c.recalled == 2).unwrap_or(false)
        })
        .await;
    }
}

both_databases! {
    async fn a_429_pauses_the_broadcast_and_failed_sends_are_retried_yet_everyone_is_served_once(backend: Backend) {
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 50;
        })
        .await;
        // Telegram allows far less than the bot was told to send: it answers 429.
        app.fake.set_rate_limits(RateLimits {
            global_per_second: Some(10),
            private_chat_per_second: Some(1),
            group_per_minute: None,
        });
        // And drops the connection on three offers.
        app.fake.fail(3, crate::support::Fault::CloseConnection, to_leads());
        let n = 40;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(400_000 + i)).collect();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let id = create(&app, "Предложение", Some("Хочу"), "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, Duration::from_secs(60)).await;
        assert!(app.fake.too_many_requests() > 0, "the fake did rate-limit");
        let b = store::get(&app.db, id).await.unwrap().unwrap();
        assert!(b.paused_until.is_some(), "the broadcast was paused for retry_after");
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.sent, c.failed, c.unknown), (n, 0, 0), "{c:?}");
        let per = offers_per_chat(&app);
        assert_eq!(per.len() as i64, n);
        assert!(per.values().all(|k| *k == 1), "nobody served twice");
    }
}

both_databases! {
    async fn two_bots_on_one_database_share_a_broadcast_and_serve_each_recipient_once(backend: Backend) {
        // On PostgreSQL the second replica counts; on SQLite it is refused (one process).
        let replicas = if matches!(backend, Backend::Postgres(_)) { 2 } else { 1 };
        let app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 100;
        })
        .await;
        // A second replica on the same database and Bot API.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = leadbot::app::RunOptions {
            clock: std::sync::Arc::new(app.clock.clone()),
            poll_timeout_secs: 1,
            request_timeout: Duration::from_secs(5),
            timer_tick: Duration::from_millis(50),
            ..leadbot::app::RunOptions::default()
        };
        let second = tokio::spawn(leadbot::app::run(app.settings.clone(), options, async move {
            let _ = stopped.await;
        }));
        // Telegram's limit is the configured rate and a little for the staff chat's progress
        // messages: two replicas each sending at the whole rate would meet 429s.
        app.fake.set_rate_limits(RateLimits {
            global_per_second: Some(105),
            private_chat_per_second: Some(1),
            group_per_minute: None,
        });
        eventually("the second replica registered", Duration::from_secs(20), || async {
            ops::live_replicas(&app.db).await.ok() == Some(replicas)
        })
        .await;
        let n = 400;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(500_000 + i)).collect();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let started = Instant::now();
        let id = create(&app, "Для двух реплик", None, "all", Duration::from_secs(3600)).await;
        wait_done(&app, id, Duration::from_secs(60)).await;
        let took = started.elapsed();
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), second).await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.total, c.sent, c.unknown), (n, n, 0), "{c:?}");
        let per = offers_per_chat(&app);
        assert_eq!(per.len() as i64, n);
        assert!(per.values().all(|k| *k == 1), "nobody served twice");
        // Together the replicas kept to the configured rate: no one-second window over it.
        assert_eq!(app.fake.too_many_requests(), 0, "no 429 from the fake");
        eprintln!(
            "MEASURED broadcast of {n} by {replicas} replica(s) at LEADBOT_BROADCAST_RATE=100: {:.1} s",
            took.as_secs_f64()
        );
        // The stopped replica no longer counts.
        eventually("the second replica gone", Duration::from_secs(20), || async {
            ops::live_replicas(&app.db).await.ok() == Some(1)
        })
        .await;
    }
}

both_databases! {
    async fn a_recall_after_48_hours_deletes_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        seed(&app.db, &[Seed::consenting(8401), Seed::consenting(8402)], app.clock.now_ms()).await;
        let id = create(&app, "Старое предложение", None, "all", Duration::from_secs(3 * 86_400)).await;
        wait_done(&app, id, WAIT).await;
        app.clock.advance(Duration::from_secs(49 * 3600));
        let r = store::request_recall(&app.db, id, app.clock.now_ms()).await.unwrap();
        assert_eq!((r.to_delete, r.too_late), (0, 2));
        let (code, out, _) = leadbot(&app.test_db.url, &["broadcast", "show", &id.to_string()]);
        assert_eq!(code, 0);
        assert!(out.contains("recalled (deleted): 0"), "{out}");
        assert_eq!(app.fake.read(|s| s.requests_for("deleteMessage").count()), 0);
        assert_eq!(offers_per_chat(&app).len(), 2);
    }
}

both_databases! {
    async fn a_listed_manager_can_draft_a_broadcast_in_private_and_cancel_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let manager = User::new(crate::support::app::LISTED_MANAGER).lang("ru");
        let says = |needle: &'static str| {
            let app = &app;
            async move {
                app.fake
                    .wait_for_message(manager.id, WAIT, |m| m.from_bot && m.visible_text().contains(needle))
                    .await
                    .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"))
            }
        };
        app.fake.push(manager.command("broadcast", ""));
        says("Пришлите текст").await;
        app.fake.push(manager.text("Скидка"));
        says("Текст кнопки").await;
        app.fake.push(manager.text("отмена"));
        says("рассылка не создана").await;
        assert!(store::list(&app.db, 10).await.unwrap().is_empty());
        // Drafting in private made no lead of the manager.
        assert!(leads::by_telegram(&app.db, manager.id).await.unwrap().is_none(), "no lead was made of the manager's drafting");
    }
}

both_databases! {
    async fn a_claim_takes_due_recipients_in_order_up_to_its_limit_and_skips_who_no_longer_qualifies(backend: Backend) {
        let (_test_db, db) = crate::support::app::TestDb::migrated(&backend).await;
        let now = 1_800_000_000_000;
        let seeds: Vec<Seed> = (0..5).map(|i| Seed::consenting(9_100 + i)).collect();
        let ids = seed(&db, &seeds, now).await;
        let segment = Segment::default();
        let id = store::insert(&db, &NewBroadcast {
            text: "Предложение", button: None, segment: &segment, score: 30,
            start_at: now, expires_at: now + 3_600_000, created_by: "test",
        }, now).await.expect("insert");
        let e = Eligibility { now, max_per_week: 10 };
        assert_eq!(store::start(&db, id, &segment, e).await.expect("start"), Some(5));
        // The second lead unsubscribes after the start.
        let mut tx = db.begin().await.expect("begin");
        let mut lead = leads::by_telegram(&db, 9_101).await.unwrap().unwrap();
        lead.unsubscribed = true;
        leads::save(&mut tx, &lead);
        tx.commit().await.expect("commit");

        let first = store::claim_due(&db, id, e, 3).await.expect("claim");
        let leads_claimed: Vec<i64> = first.claimed.iter().map(|r| r.lead_id).collect();
        assert_eq!(leads_claimed, vec![ids[0], ids[2]], "in order, the unsubscribed one skipped");
        assert_eq!(first.skipped, 1);
        assert!(first.claimed.iter().all(|r| r.attempts == 1));
        let second = store::claim_due(&db, id, e, 10).await.expect("claim");
        assert_eq!(second.claimed.iter().map(|r| r.lead_id).collect::<Vec<_>>(), vec![ids[3], ids[4]]);
        assert!(store::claim_due(&db, id, e, 10).await.expect("claim").is_empty());
        let c = store::counts(&db, id).await.unwrap();
        assert_eq!((c.sending, c.skipped, c.pending), (4, 1, 0));

        // A claimed recipient put back without a request: due again, the attempt not counted.
        let back = &second.claimed[0];
        let mut tx = db.begin().await.expect("begin");
        store::retry_at(&mut tx, back.id, now + 500, None, true).await.expect("retry");
        tx.commit().await.expect("commit");
        assert!(store::claim_due(&db, id, e, 10).await.expect("claim").is_empty(), "not due yet");
        let later = Eligibility { now: now + 500, ..e };
        let again = store::claim_due(&db, id, later, 10).await.expect("claim");
        assert_eq!(again.claimed.len(), 1);
        assert_eq!((again.claimed[0].id, again.claimed[0].attempts), (back.id, 1));

        // Once the broadcast is cancelled, what is put back is cancelled rather than pending.
        assert!(store::cancel(&db, id, now + 600).await.expect("cancel"));
        let mut tx = db.begin().await.expect("begin");
        for r in &first.claimed {
            store::retry_at(&mut tx, r.id, now + 600, None, true).await.expect("retry");
        }
        tx.commit().await.expect("commit");
        let c = store::counts(&db, id).await.unwrap();
        assert_eq!((c.pending, c.cancelled, c.sending), (0, 2, 2), "{c:?}");
        db.close().await;
    }
}

both_databases! {
    async fn a_stop_mid_broadcast_gives_back_what_was_claimed_ahead_and_the_restart_serves_everyone_once(backend: Backend) {
        let mut app = TestApp::spawn_configured(backend, shipped_dialogues(), |s| {
            s.broadcast_rate = 200;
        })
        .await;
        let n = 800;
        let seeds: Vec<Seed> = (0..n).map(|i| Seed::consenting(600_000 + i)).collect();
        seed(&app.db, &seeds, app.clock.now_ms()).await;
        let id = create(&app, "Предложение до остановки", None, "all", Duration::from_secs(3600)).await;
        eventually("some were sent", WAIT, || async {
            store::counts(&app.db, id).await.map(|c| c.sent >= 100).unwrap_or(false)
        })
        .await;
        app.stop().await;
        let at_stop = store::counts(&app.db, id).await.unwrap();
        assert_eq!(at_stop.sending, 0, "claimed but not sent went back; sent were recorded: {at_stop:?}");
        assert!(at_stop.pending > 0, "stopped mid-way: {at_stop:?}");
        app.start().await;
        wait_done(&app, id, Duration::from_secs(60)).await;
        let c = store::counts(&app.db, id).await.unwrap();
        assert_eq!((c.total, c.sent, c.unknown), (n, n, 0), "{c:?}");
        let per = offers_per_chat(&app);
        assert_eq!(per.len() as i64, n);
        assert!(per.values().all(|k| *k == 1), "nobody served twice");
    }
}

both_databases! {
    /// Recipients claimed by a sender that then vanished (a replica that was never restarted, or
    /// a claim whose commit PostgreSQL applied though the bot saw an error) are counted unknown
    /// ten minutes on, never sent, and the broadcast finishes instead of running forever.
    async fn recipients_claimed_by_a_sender_that_vanished_are_counted_unknown_and_the_broadcast_finishes(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        // A first broadcast, to someone else, shows the sender running (at its start it counts
        // rows left `sending` by the last run unknown, which would do this test's work).
        let now = app.clock.now_ms();
        seed(&app.db, &[Seed { source: "warmup", ..Seed::consenting(8200) }], now).await;
        let first = create(&app, "Привет", None, "source=warmup", Duration::from_secs(3600)).await;
        wait_done(&app, first, WAIT).await;
        let ids: Vec<i64> = (8201..=8205).collect();
        let seeds: Vec<Seed> = ids.iter().map(|&i| Seed::consenting(i)).collect();
        seed(&app.db, &seeds, now).await;
        let segment = Segment::parse("source=vk_ads").expect("segment");
        let hour = 3_600_000;
        let id = store::insert(
            &app.db,
            &NewBroadcast {
                text: "Предложение недели",
                button: None,
                segment: &segment,
                score: 30,
                start_at: now + hour,
                expires_at: now + 24 * hour,
                created_by: "test",
            },
            now,
        )
        .await
        .expect("insert broadcast");
        // Another sender started it for an hour from now (nothing is due for this bot until
        // then), claimed two recipients and vanished.
        let then = Eligibility { now: now + hour, max_per_week: 2 };
        assert_eq!(store::start(&app.db, id, &segment, then).await.expect("start"), Some(5));
        let vanished = store::claim_due(&app.db, id, then, 2).await.expect("claim");
        assert_eq!(vanished.claimed.len(), 2);
        // An hour and eleven minutes on: the other three are sent, the two are counted unknown.
        app.clock.advance(Duration::from_secs(3600 + 11 * 60));
        wait_done(&app, id, WAIT).await;
        let c = store::counts(&app.db, id).await.expect("counts");
        assert_eq!((c.total, c.sent, c.unknown), (5, 3, 2), "{c:?}");
        let per = offers_per_chat(&app);
        for r in &vanished.claimed {
            assert!(!per.contains_key(&r.chat_id), "a recipient claimed elsewhere was sent again");
        }
        assert_eq!(per.len(), 4, "the three and the first broadcast's one");
        assert!(per.values().all(|k| *k == 1));
    }
}
