//! Lead capture end to end: the real bot, a fake Bot API over HTTP, SQLite and PostgreSQL.

use std::time::Duration;

use crate::both_databases;
use crate::support::app::{LISTED_MANAGER, STAFF_CHAT, TestApp};
use crate::support::{Fault, StoredMessage, User};
use leadbot::storage;

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Waits for a bot message in a chat whose text contains `needle`, counting from message `after`.
pub(crate) async fn bot_says(app: &TestApp, chat: i64, needle: &str) -> StoredMessage {
    let needle = needle.to_owned();
    app.fake
        .wait_for_message(chat, WAIT, |m| {
            m.from_bot && m.text.as_deref().is_some_and(|t| t.contains(&needle))
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "waiting for {needle:?}: {e:?}\n{}",
                app.fake.transcript(chat)
            )
        })
}

/// Waits until the bot has sent exactly `n` messages with `needle` in a chat (and none more).
pub(crate) async fn count_bot(app: &TestApp, chat: i64, needle: &str) -> usize {
    app.fake
        .bot_messages_in(chat)
        .iter()
        .filter(|m| m.text.as_deref().is_some_and(|t| t.contains(needle)))
        .count()
}

/// Polls a condition until it holds or the deadline passes (a condition wait, not a fixed sleep).
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
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

/// The last bot message with buttons in a chat.
pub(crate) fn last_with_buttons(app: &TestApp, chat: i64) -> StoredMessage {
    app.fake
        .bot_messages_in(chat)
        .into_iter()
        .rev()
        .find(|m| !m.button_labels().is_empty())
        .unwrap_or_else(|| panic!("no message with buttons\n{}", app.fake.transcript(chat)))
}

/// Starts a prospect's dialogue from an ad and agrees, up to the name question.
pub(crate) async fn up_to_name(app: &TestApp, user: &User) {
    let consent = consent_question(app, user, "vk_ads").await;
    app.fake.push(user.presses_button(&consent, "Согласен"));
    bot_says(app, user.id, "Как к вам обращаться").await;
}

/// Starts a new prospect's dialogue (from an ad, `source`) and waits for the consent question.
async fn consent_question(app: &TestApp, user: &User, source: &str) -> StoredMessage {
    app.fake.push(user.command("start", source));
    bot_says(app, user.id, "согласие").await
}

/// Walks the Russian default dialogue up to the `need` question.
pub(crate) async fn up_to_need(app: &TestApp, user: &User) {
    up_to_name(app, user).await;
    app.fake.push(user.text("Анна"));
    bot_says(app, user.id, "Оставьте телефон").await;
    app.fake.push(user.contact("+79123456789"));
    bot_says(app, user.id, "Что вам сейчас ближе").await;
}

pub(crate) async fn finish_hot(app: &TestApp, user: &User) {
    let need = last_with_buttons(app, user.id);
    app.fake
        .push(user.presses_button(&need, "Готов купить, нужен счёт"));
    bot_says(app, user.id, "Когда планируете").await;
    let timing = last_with_buttons(app, user.id);
    app.fake.push(user.presses_button(&timing, "В этом месяце"));
    bot_says(app, user.id, "спецпредложения").await;
    let offers = last_with_buttons(app, user.id);
    app.fake
        .push(user.presses_button(&offers, "Да, присылайте"));
    bot_says(app, user.id, "Менеджер свяжется").await;
}

both_databases! {
    async fn a_hot_lead_goes_through_the_dialogue_and_is_alerted_once(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1001).lang("ru").first_name("Анна");
        up_to_need(&app, &user).await;
        finish_hot(&app, &user).await;

        let card = bot_says(&app, STAFF_CHAT, "Горячий лид").await;
        let text = card.text.clone().unwrap_or_default();
        assert!(text.contains("+79123456789"), "{text}");
        assert!(text.contains("vk_ads"), "{text}");
        assert!(text.contains("need: Готов купить"), "{text}");
        assert_eq!(card.button_labels().len(), 3);
        assert_eq!(count_bot(&app, STAFF_CHAT, "Горячий лид").await, 1);

        let lead = storage::leads::by_telegram(&app.db, 1001).await.unwrap().expect("lead stored");
        assert_eq!(lead.source, "vk_ads");
        assert_eq!(lead.phone.as_deref(), Some("+79123456789"));
        assert_eq!(lead.name.as_deref(), Some("Анна"));
        assert_eq!(lead.temperature, "hot");
        assert_eq!(lead.status, "qualified");
        assert!(lead.consent_at.is_some() && lead.consent_version.is_some());
        assert!(lead.marketing_consent_at.is_some());
        let history = storage::messages::history(&app.db, lead.id, 1000).await.unwrap();
        assert!(history.iter().any(|m| m.direction == "in" && m.text.as_deref() == Some("Анна")));
        assert!(history.iter().any(|m| m.direction == "out" && m.telegram_message_id.is_some()));
    }
}

both_databases! {
    async fn odd_input_gets_a_specific_reply_and_the_same_question(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1002).lang("ru");
        app.fake.push(user.command("start", ""));
        bot_says(&app, user.id, "согласие").await;
        app.fake.push(user.sticker());
        bot_says(&app, user.id, "стикеры").await;
        app.fake.push(user.text("может быть"));
        bot_says(&app, user.id, "выберите вариант кнопкой").await;
        app.fake.push(user.text(&"я".repeat(5000)));
        bot_says(&app, user.id, "слишком длинное").await;
        app.fake.push(user.text("согласен"));
        bot_says(&app, user.id, "Как к вам обращаться").await;
        app.fake.push(user.voice());
        bot_says(&app, user.id, "голосовые").await;
        app.fake.push(user.text("Иван"));
        bot_says(&app, user.id, "Оставьте телефон").await;
        app.fake.push(user.text("12"));
        bot_says(&app, user.id, "Не получилось разобрать номер").await;
        app.fake.push(user.foreign_contact("+79990001122", Some(5)));
        bot_says(&app, user.id, "чужой контакт").await;
        app.fake.push(user.edits(1, "edited"));
        bot_says(&app, user.id, "отредактировали").await;
        app.fake.push(user.text("8 (912) 345-67-89"));
        bot_says(&app, user.id, "Что вам сейчас ближе").await;

        let lead = storage::leads::by_telegram(&app.db, 1002).await.unwrap().expect("lead");
        assert_eq!(lead.phone.as_deref(), Some("+79123456789"));
        assert_eq!(lead.name.as_deref(), Some("Иван"));
        // The phone question was asked again after each bad answer, never skipped.
        assert!(count_bot(&app, user.id, "Оставьте телефон").await >= 4);
    }
}

both_databases! {
    async fn an_english_speaker_gets_the_english_dialogue(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1003).lang("en");
        app.fake.push(user.text("hello"));
        let m = app.fake.wait_for_message(user.id, WAIT, |m| m.from_bot && !m.button_labels().is_empty()).await.unwrap();
        assert!(m.button_labels().iter().any(|l| l.contains("agree") || l.contains("Agree")), "{:?}", m.button_labels());
    }
}

both_databases! {
    async fn stop_mydata_and_forget_work_as_promised(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1004).lang("ru");
        up_to_need(&app, &user).await;
        app.fake.push(user.command("stop", ""));
        bot_says(&app, user.id, "больше не будем присылать").await;
        let lead = storage::leads::by_telegram(&app.db, 1004).await.unwrap().unwrap();
        assert!(lead.unsubscribed);

        app.fake.push(user.command("start", ""));
        bot_says(&app, user.id, "снова с нами").await;
        // /start during the dialogue resumes at the current question.
        let again = app.fake.bot_messages_in(user.id).iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("Что вам сейчас ближе"))).count();
        assert!(again >= 1);
        let lead = storage::leads::by_telegram(&app.db, 1004).await.unwrap().unwrap();
        assert!(!lead.unsubscribed);

        app.fake.push(user.command("mydata", ""));
        let doc = app.fake.wait_for_message(user.id, WAIT, |m| m.file.is_some()).await.unwrap();
        let content = String::from_utf8_lossy(&doc.file.as_ref().unwrap().bytes).to_string();
        assert!(content.contains("+79123456789") && content.contains("vk_ads"), "{content}");

        app.fake.push(user.command("forget", ""));
        let confirm = bot_says(&app, user.id, "Удалить все ваши данные").await;
        app.fake.push(user.presses_button(&confirm, "Да, удалить"));
        bot_says(&app, user.id, "Ваши данные удалены").await;
        assert!(storage::leads::by_telegram(&app.db, 1004).await.unwrap().is_none());
        let erased = storage::leads::get(&app.db, lead.id).await.unwrap().unwrap();
        assert!(erased.erased && erased.phone.is_none() && erased.name.is_none());
        assert!(storage::messages::history(&app.db, lead.id, 100).await.unwrap().is_empty());
    }
}

both_databases! {
    async fn a_restart_mid_dialogue_resumes_without_loss_or_doubles(backend: Backend) {
        let mut app = TestApp::spawn(backend).await;
        let user = User::new(1005).lang("ru");
        app.fake.push(user.command("start", ""));
        let consent = bot_says(&app, user.id, "согласие").await;
        // Killed once the send is recorded: outside the documented duplicate window.
        app.settle().await;
        app.kill().await;
        // While the bot is down the prospect answers; the update waits at Telegram.
        app.fake.push(user.presses_button(&consent, "Согласен"));
        app.start().await;
        bot_says(&app, user.id, "Как к вам обращаться").await;
        app.stop().await;
        app.start().await;
        app.fake.push(user.text("Олег"));
        bot_says(&app, user.id, "Оставьте телефон").await;
        assert_eq!(count_bot(&app, user.id, "Как к вам обращаться").await, 1);
        assert_eq!(count_bot(&app, user.id, "согласие").await, 1);
    }
}

both_databases! {
    async fn a_replayed_update_changes_nothing(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1006).lang("ru");
        let pushed = app.fake.push(user.command("start", ""));
        bot_says(&app, user.id, "согласие").await;
        let payload = storage::updates::pending(&app.db, 10, 100).await.unwrap();
        assert!(payload.is_empty(), "every update is applied");
        let again = storage::updates::IncomingUpdate {
            update_id: pushed.update_id,
            user_id: Some(user.id),
            payload: "{}".into(),
        };
        assert!(!storage::updates::store_one(&app.db, &again, 0).await.unwrap());
        let before = app.fake.bot_messages_in(user.id).len();
        app.fake.push(user.text("ok"));
        bot_says(&app, user.id, "выберите вариант").await;
        assert_eq!(count_bot(&app, user.id, "согласие").await, 2, "one greeting question plus one re-ask");
        assert!(app.fake.bot_messages_in(user.id).len() > before);
    }
}

both_databases! {
    async fn telegram_errors_are_retried_and_blocked_users_marked(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1007).lang("ru");
        app.fake.fail_next(2, Fault::TooManyRequests { retry_after: 1 });
        app.fake.push(user.command("start", ""));
        bot_says(&app, user.id, "согласие").await;
        app.fake.fail_next(1, Fault::CloseConnection);
        let consent = last_with_buttons(&app, user.id);
        app.fake.push(user.presses_button(&consent, "Согласен"));
        bot_says(&app, user.id, "Как к вам обращаться").await;

        let blocked = User::new(1008).lang("ru");
        app.fake.block_user(blocked.id);
        app.fake.push(blocked.command("start", ""));
        let db = app.db.clone();
        eventually("the blocked lead is marked blocked", || {
            let db = db.clone();
            async move { storage::leads::by_telegram(&db, 1008).await.ok().flatten().is_some_and(|l| l.blocked) }
        })
        .await;
    }
}

both_databases! {
    async fn a_manager_takes_a_hot_lead_and_a_second_press_is_told_who_has_it(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1009).lang("ru").first_name("<b>Boss</b> & *_[");
        up_to_need(&app, &user).await;
        finish_hot(&app, &user).await;
        let card = bot_says(&app, STAFF_CHAT, "Горячий лид").await;
        let staff = crate::support::Chat::supergroup(STAFF_CHAT, "Managers");
        let first = User::new(501).first_name("Мария");
        let second = User::new(502).first_name("Пётр");
        app.fake.push(first.presses_button(&card, "✋ Взять"));
        app.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| m.message_id == card.message_id && m.text.as_deref().is_some_and(|t| t.contains("Мария")))
            .await
            .expect("card edited with the owner");
        app.fake.push(second.presses(&card, &card.callback_data("✋ Взять").unwrap()));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.params.to_string().contains("уже взял"))
            .await
            .expect("second manager is told who has it");
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().unwrap();
        assert_eq!(lead.manager_id, Some(501));
        assert_eq!(lead.status, "in_work");
        // The hostile name reached the staff chat as typed.
        let text = card.text.clone().unwrap_or_default();
        assert!(text.contains("<b>Boss</b> & *_[") || text.contains("Анна"), "{text}");

        // A manager's reply to the card reaches the lead.
        app.fake.push(first.in_chat(&staff).text("Здравствуйте! Выставлю счёт сегодня.").reply_to(&card));
        bot_says(&app, user.id, "Выставлю счёт").await;

        // A forged Take from a private chat changes nothing.
        let stranger = User::new(9999).lang("ru");
        app.fake.push(stranger.command("start", ""));
        let own = bot_says(&app, stranger.id, "согласие").await;
        app.fake.push(stranger.presses(&own, &format!("t:{}", lead.id)));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.params.to_string().contains("менеджер"))
            .await
            .expect("forged press refused");
        let after = storage::leads::get(&app.db, lead.id).await.unwrap().unwrap();
        assert_eq!(after.manager_id, Some(501));
        let _ = LISTED_MANAGER;
    }
}

both_databases! {
    async fn a_button_press_is_answered_after_its_commit_and_leaves_no_outbox_row(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1041).lang("ru");
        let consent = consent_question(&app, &user, "").await;
        app.fake.push(user.presses_button(&consent, "Согласен"));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.status == Some(200))
            .await
            .expect("the press is answered");
        // Sent after the commit: the press's consent is stored by the time it is answered.
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().expect("lead");
        assert!(lead.consent_at.is_some(), "answered before the press was committed");
        bot_says(&app, user.id, "Как к вам обращаться").await;
        // Answers only stop the spinner: they are sent without a durable row (SPEC §9 keeps the
        // outbox for what must not be lost or doubled).
        let rows = crate::production::scalar(&app.db, "SELECT COUNT(*) FROM outbox WHERE action LIKE '%answer_callback%'").await;
        assert_eq!(rows, 0);
        assert_eq!(app.fake.requests_for("answerCallbackQuery").len(), 1, "answered once");
    }
}

both_databases! {
    async fn an_answer_that_meets_a_dropped_connection_and_a_429_is_tried_again(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1042).lang("ru");
        let consent = consent_question(&app, &user, "").await;
        app.fake.fail_next_method("answerCallbackQuery", 1, Fault::CloseConnection);
        app.fake.fail_next_method("answerCallbackQuery", 1, Fault::TooManyRequests { retry_after: 1 });
        app.fake.push(user.presses_button(&consent, "Согласен"));
        app.fake
            .wait_for_request(WAIT, |r| r.method == "answerCallbackQuery" && r.status == Some(200))
            .await
            .expect("answered on the third try");
        let tries: Vec<Option<u16>> = app.fake.requests_for("answerCallbackQuery").iter().map(|r| r.status).collect();
        assert_eq!(tries, vec![None, Some(429), Some(200)]);
        // The dialogue went on regardless.
        bot_says(&app, user.id, "Как к вам обращаться").await;
    }
}

both_databases! {
    async fn stop_typed_as_a_message_unsubscribes_unless_it_answers_the_question(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        // At the name question «Стоп» is a request, not a name.
        let user = User::new(1005).lang("ru");
        up_to_name(&app, &user).await;
        app.fake.push(user.text("Стоп!"));
        bot_says(&app, user.id, "больше не будем присылать").await;
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().unwrap();
        assert!(lead.unsubscribed);
        assert_eq!(lead.name, None);
        // The dialogue still waits for the name.
        app.fake.push(user.text("Анна"));
        bot_says(&app, user.id, "Оставьте телефон").await;

        // After the dialogue, "отпишите меня" is not passed on to the managers as a question.
        let done = User::new(1006).lang("ru");
        up_to_need(&app, &done).await;
        finish_hot(&app, &done).await;
        app.fake.push(done.text("отпишите меня"));
        bot_says(&app, done.id, "больше не будем присылать").await;
        let lead = storage::leads::by_telegram(&app.db, done.id).await.unwrap().unwrap();
        assert!(lead.unsubscribed);
        app.settle().await;
        let relayed = app.fake.bot_messages_in(crate::support::app::STAFF_CHAT).iter().filter(|m| m.text.as_deref().is_some_and(|t| t.contains("отпишите меня"))).count();
        assert_eq!(relayed, 0);
    }
}

/// Waits until the bot has taken `pushed` (the offset moved past them) and sent what it had to.
async fn handled(app: &TestApp, pushed: Vec<crate::support::fake_telegram::Pushed>) {
    let last = pushed.iter().map(|p| p.update_id).max().unwrap_or(0);
    app.fake
        .wait_until(WAIT, |s| s.offset_confirmed() > last)
        .await
        .expect("the updates were taken");
    app.settle().await;
}

both_databases! {
    async fn an_album_gets_one_answer_and_every_photo_is_kept(backend: Backend) {
        let app = TestApp::spawn(backend).await;
        let user = User::new(1007).lang("ru");
        up_to_need(&app, &user).await;
        let from_bot = || app.fake.bot_messages_in(user.id).len();
        // One photo: the answer to it, as a baseline.
        handled(&app, vec![app.fake.push(user.photo(None))]).await;
        let before = from_bot();
        handled(&app, vec![app.fake.push(user.photo(None))]).await;
        let one_photo = from_bot() - before;
        assert!(one_photo >= 1);
        // An album of four: the same answer, once.
        let before = from_bot();
        handled(&app, app.fake.push_all(user.album(4))).await;
        assert_eq!(from_bot() - before, one_photo);
        let lead = storage::leads::by_telegram(&app.db, user.id).await.unwrap().unwrap();
        let photos = storage::messages::history(&app.db, lead.id, 100).await.unwrap().iter().filter(|m| m.direction == "in" && m.kind == "media").count();
        assert_eq!(photos, 6, "every photo is in the history");

        // After the dialogue the managers get every photo, the lead one acknowledgement.
        finish_hot(&app, &user).await;
        app.settle().await;
        let before = from_bot();
        let copies = app.fake.requests_for("copyMessage").len();
        handled(&app, app.fake.push_all(user.album(3))).await;
        assert_eq!(from_bot() - before, 1);
        assert_eq!(app.fake.requests_for("copyMessage").len() - copies, 3);
    }
}
