//! Reminders for leads silent mid-dialogue: end to end with the running bot, and round by round
//! (`reminders::step`) with a manual clock for the gaps, quiet hours and /stop; the daily digest's
//! pace of looking, round by round the same way.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use leadbot::app::{self, App};
use leadbot::clock::ManualClock;
use leadbot::config::QuietHours;
use leadbot::storage;
use leadbot::storage::leads::Lead;
use tokio::sync::Notify;

use crate::both_databases;
use crate::support::User;
use crate::support::app::{STAFF_CHAT, TestApp};

const WAIT: Duration = Duration::from_secs(15);
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Starts a dialogue for `user` and waits for the consent question.
async fn waiting_at_consent(app: &TestApp, user: &User) -> Lead {
    app.fake.push(user.command("start", "vk_ads"));
    app.fake
        .wait_for_message(user.id, WAIT, |m| {
            m.from_bot && m.visible_text().contains("согласие")
        })
        .await
        .expect("consent question");
    app.settle().await;
    storage::leads::by_telegram(&app.db, user.id)
        .await
        .expect("read lead")
        .expect("lead stored")
}

/// The bot's parts, on a manual clock, to run reminder rounds by hand.
fn manual_app(t: &TestApp, clock: &ManualClock) -> App {
    let catalog = app::load_catalog(&t.settings).expect("dialogues");
    App {
        db: t.db.clone(),
        clock: Arc::new(clock.clone()),
        scripts: app::scripts::Scripts::new(catalog),
        settings: t.settings.clone(),
        staff_chat: Arc::new(leadbot::staff::chat::StaffChat::new(STAFF_CHAT)),
        outbox_wake: Arc::new(Notify::new()),
        // Reminders answer no button presses.
        answers: leadbot::outbox::answers::Answers::channel().0,
        handover: None,
        metrics: Arc::new(leadbot::metrics::Metrics::new()),
        staff_forum: Arc::default(),
        digest_idle_until: Arc::default(),
        albums: Default::default(),
        delivering: Arc::new(true.into()),
    }
}

fn key(lead: &Lead, gap: usize) -> String {
    format!(
        "remind:{}:{gap}:{}:0",
        lead.id,
        lead.last_inbound_at.unwrap_or_default()
    )
}

async fn queued(t: &TestApp, key: &str) -> Option<storage::outbox::Row> {
    storage::outbox::by_key(&t.db, key).await.expect("outbox")
}

both_databases! {
    async fn a_silent_lead_gets_the_question_again_after_the_first_gap(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(9001).lang("ru");
        waiting_at_consent(&app, &user).await;
        app.clock.advance(Duration::from_secs(61 * 60));
        let reminder = app
            .fake
            .wait_for_message(user.id, WAIT, |m| m.from_bot && m.visible_text().contains("Напоминаем"))
            .await
            .expect("a reminder");
        assert!(reminder.visible_text().contains("согласие"), "{}", reminder.visible_text());
        // The reminder's buttons answer the question.
        app.fake.push(user.presses_button(&reminder, "Согласен"));
        app.fake
            .wait_for_message(user.id, WAIT, |m| m.from_bot && m.visible_text().contains("Как к вам обращаться"))
            .await
            .expect("the dialogue goes on");
        let n = app
            .fake
            .bot_messages_in(user.id)
            .iter()
            .filter(|m| m.visible_text().contains("Напоминаем"))
            .count();
        assert_eq!(n, 1);
    }
}

both_databases! {
    async fn each_gap_reminds_once_and_never_twice(backend: Backend) {
        let mut t = TestApp::spawn(backend).await;
        let lead = waiting_at_consent(&t, &User::new(9002).lang("ru")).await;
        t.stop().await;
        let silent = lead.last_inbound_at.expect("inbound time");
        let clock = ManualClock::new(silent + 59 * MIN);
        let a = manual_app(&t, &clock);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0, "not before the first gap");
        clock.set(silent + 61 * MIN);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 1);
        let first = queued(&t, &key(&lead, 0)).await.expect("first reminder queued");
        assert!(first.action.contains("Напоминаем"), "{}", first.action);
        assert!(first.action.contains("Согласен"), "the question's buttons come along");
        clock.set(silent + 62 * MIN);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0, "not twice for the same gap");
        clock.set(silent + 5 * HOUR);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0);
        clock.set(silent + 24 * HOUR + MIN);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 1);
        assert!(queued(&t, &key(&lead, 1)).await.is_some());
        clock.set(silent + 72 * HOUR);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0, "two gaps, two reminders");
        // A restart forgets nothing: the same rounds again send nothing new.
        let again = manual_app(&t, &clock);
        assert_eq!(app::reminders::step(&again).await.unwrap(), 0);
    }
}

both_databases! {
    async fn no_reminder_in_quiet_hours_then_one_when_they_end(backend: Backend) {
        let mut t = TestApp::spawn(backend).await;
        let lead = waiting_at_consent(&t, &User::new(9003).lang("ru")).await;
        t.stop().await;
        let silent = lead.last_inbound_at.expect("inbound time");
        let due = silent + 61 * MIN;
        let local = chrono_tz::Europe::Moscow
            .timestamp_millis_opt(due)
            .single()
            .expect("local time")
            .time();
        t.settings.quiet_hours = Some(QuietHours {
            from: local - chrono::TimeDelta::minutes(10),
            to: local + chrono::TimeDelta::minutes(50),
        });
        let clock = ManualClock::new(due);
        let a = manual_app(&t, &clock);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0, "quiet hours");
        clock.set(due + 49 * MIN);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0, "still quiet");
        clock.set(due + 51 * MIN);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 1, "sent when quiet hours end");
        assert!(queued(&t, &key(&lead, 0)).await.is_some());
    }
}

both_databases! {
    async fn no_reminder_after_stop(backend: Backend) {
        let mut t = TestApp::spawn(backend).await;
        let user = User::new(9004).lang("ru");
        waiting_at_consent(&t, &user).await;
        t.fake.push(user.command("stop", ""));
        t.fake
            .wait_for_message(user.id, WAIT, |m| m.from_bot && m.visible_text().contains("больше не будем"))
            .await
            .expect("stop confirmed");
        t.settle().await;
        t.stop().await;
        let lead = storage::leads::by_telegram(&t.db, user.id).await.unwrap().unwrap();
        assert!(lead.unsubscribed);
        let silent = lead.last_inbound_at.expect("inbound time");
        let clock = ManualClock::new(silent + 2 * HOUR);
        let a = manual_app(&t, &clock);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0);
        clock.set(silent + 25 * HOUR);
        assert_eq!(app::reminders::step(&a).await.unwrap(), 0);
        assert!(queued(&t, &key(&lead, 0)).await.is_none());
    }
}

both_databases! {
    async fn a_digest_look_that_finds_nothing_waits_ten_minutes_before_the_next(backend: Backend) {
        let mut t = TestApp::spawn(backend).await;
        let lead = waiting_at_consent(&t, &User::new(9005).lang("ru")).await;
        t.stop().await;
        // A minute before the lead came there was nothing to report (the hour is past 0 always).
        let clock = ManualClock::new(lead.created_at - MIN);
        let mut a = manual_app(&t, &clock);
        a.settings.digest_hour = Some(0);
        assert!(!leadbot::staff::digest::step(&a).await.unwrap(), "nothing to report");
        // The lead is there now, but the look waits out its ten minutes.
        clock.set(lead.created_at + MIN);
        assert!(!leadbot::staff::digest::step(&a).await.unwrap(), "no look before ten minutes");
        clock.set(lead.created_at - MIN + 10 * MIN);
        assert!(leadbot::staff::digest::step(&a).await.unwrap(), "the digest once the ten minutes are over");
        clock.set(lead.created_at + 10 * MIN);
        assert!(!leadbot::staff::digest::step(&a).await.unwrap(), "once a day");
    }
}
