//! Tests of the fake Telegram server itself, driven by a real teloxide `Bot` over HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use teloxide::payloads::setters::*;
use teloxide::prelude::{Request, Requester};
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId, ParseMode,
    ReplyParameters, Seconds, ThreadId, UpdateKind,
};
use teloxide::{ApiError, Bot, RequestError};

use crate::support::fake_telegram::{Chaos, TOKEN};
use crate::support::{Chat, FakeTelegram, Fault, RateLimits, User};

const WAIT: Duration = Duration::from_secs(5);
const USER: i64 = 42;

fn keyboard(buttons: &[(&str, &str)]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([buttons
        .iter()
        .map(|(label, data)| InlineKeyboardButton::callback(*label, *data))
        .collect::<Vec<_>>()])
}

async fn send(bot: &Bot, chat: i64, text: &str) -> teloxide::types::Message {
    bot.send_message(ChatId(chat), text)
        .await
        .expect("the fake accepts a plain text message")
}

/// Posts raw JSON, for checks teloxide cannot express (unknown methods and parameters, 5xx
/// bodies it would sleep on).
async fn post_json(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    let url = format!("{}bot{TOKEN}/{method}", fake.api_url());
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the fake answers over HTTP");
    let status = response.status().as_u16();
    let text = response.text().await.expect("the fake's body is readable");
    (
        status,
        serde_json::from_str(&text).expect("the fake answers JSON"),
    )
}

#[tokio::test]
async fn get_me_reports_the_bot_and_records_the_token() {
    let fake = FakeTelegram::start().await;
    let me = fake.bot().get_me().await.expect("getMe succeeds");
    assert_eq!(me.username(), "leadbot_test_bot");
    assert_eq!(i64::try_from(me.id.0).ok(), Some(fake.bot_id()));
    assert_eq!(fake.token().as_deref(), Some(TOKEN));
    assert_eq!(fake.requests_for("getMe")[0].status, Some(200));
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_update_is_pushed() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let poll = tokio::spawn(async move { bot.get_updates().timeout(10).await });
    fake.wait_until(WAIT, |s| s.polls_started() == 1)
        .await
        .expect("the long poll reaches the fake");
    let pushed = fake.push(User::new(USER).text("hello"));

    // Far less than the poll's 10 s timeout: the poll must end because of the push.
    let updates = tokio::time::timeout(Duration::from_secs(3), poll)
        .await
        .expect("the long poll returns once an update arrives")
        .expect("the poll task does not panic")
        .expect("getUpdates succeeds");
    assert_eq!(updates.len(), 1);
    assert_eq!(i64::from(updates[0].id.0), pushed.update_id);
    let UpdateKind::Message(message) = &updates[0].kind else {
        panic!("expected a message, got {:?}", updates[0].kind);
    };
    assert_eq!(message.text(), Some("hello"));
    assert_eq!(Some(i64::from(message.id.0)), pushed.message_id);
}

#[tokio::test]
async fn long_poll_without_updates_returns_empty_after_its_timeout() {
    let fake = FakeTelegram::start().await;
    let started = tokio::time::Instant::now();
    let updates = fake
        .bot()
        .get_updates()
        .timeout(1)
        .await
        .expect("getUpdates succeeds");
    assert!(updates.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn offset_confirms_earlier_updates_and_limit_caps_the_batch() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let user = User::new(USER);
    let first = fake.push(user.text("one"));
    fake.push(user.text("two"));
    let last = fake.push(user.text("three"));

    let batch = bot
        .get_updates()
        .limit(2)
        .await
        .expect("getUpdates succeeds");
    assert_eq!(batch.len(), 2);
    assert_eq!(
        fake.pending_updates(),
        3,
        "nothing is confirmed without an offset"
    );

    let next = i32::try_from(first.update_id + 1).expect("small ids");
    let batch = bot
        .get_updates()
        .offset(next)
        .await
        .expect("getUpdates succeeds");
    assert_eq!(batch.len(), 2);
    assert_eq!(fake.pending_updates(), 2);

    let after_last = i32::try_from(last.update_id + 1).expect("small ids");
    let batch = bot
        .get_updates()
        .offset(after_last)
        .await
        .expect("getUpdates succeeds");
    assert!(batch.is_empty());
    assert_eq!(fake.pending_updates(), 0);
    assert_eq!(fake.offset_confirmed(), last.update_id + 1);
}

#[tokio::test]
async fn a_second_poller_terminates_the_first_with_a_conflict() {
    let fake = FakeTelegram::start().await;
    let first_bot = fake.bot();
    let first = tokio::spawn(async move { first_bot.get_updates().timeout(10).await });
    fake.wait_until(WAIT, |s| s.polls_started() == 1)
        .await
        .expect("the first poll reaches the fake");
    let second = fake.bot().get_updates().timeout(0).await;
    assert!(second.is_ok());
    let first = tokio::time::timeout(WAIT, first)
        .await
        .expect("the first poll ends")
        .expect("no panic");
    assert!(
        matches!(
            first,
            Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates))
        ),
        "{first:?}"
    );
}

#[tokio::test]
async fn every_update_builder_deserializes_in_teloxide() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let user = User::new(USER).lang("ru").first_name("Анна").last_name("К");
    let staff = Chat::forum(-1_001_000_000_001, "Staff");
    let manager = User::new(7);

    let card = send(&bot, staff.id, "card").await;
    let card = fake
        .bot_messages_in(staff.id)
        .into_iter()
        .find(|m| i64::from(card.id.0) == m.message_id)
        .expect("the card is stored");
    let greeting = fake.push(user.text("hi")).message_id.expect("a message id");
    fake.push(user.command("start", "vk_ads"));
    fake.push(user.contact("+79123456789"));
    fake.push(user.foreign_contact("+79000000000", Some(99)));
    fake.push(user.sticker());
    fake.push(user.photo(Some("look")));
    fake.push(user.voice());
    fake.push(user.document("cv.pdf"));
    fake.push(user.location(55.75, 37.62));
    fake.push(user.edits(greeting, "hi, edited"));
    fake.push(manager.presses(&card, "take:1"));
    fake.push(manager.in_chat(&staff).in_topic(5).text("in a topic"));
    fake.push(manager.in_chat(&staff).text("re: card").reply_to(&card));
    fake.push(manager.in_chat(&Chat::group(-5, "Small")).text("group"));
    fake.push(user.blocks_bot());
    fake.push(crate::support::Update::unknown());

    let updates = bot.get_updates().await.expect("getUpdates succeeds");
    assert_eq!(updates.len(), 16);
    let message = |i: usize| match &updates[i].kind {
        UpdateKind::Message(m) => m.clone(),
        other => panic!("update {i} is not a message: {other:?}"),
    };
    let hi = message(0);
    let from = hi.from.as_ref().expect("a sender");
    assert_eq!(from.language_code.as_deref(), Some("ru"));
    assert_eq!(from.first_name, "Анна");
    assert_eq!(message(1).text(), Some("/start vk_ads"));
    assert_eq!(
        message(2).contact().and_then(|c| c.user_id).map(|id| id.0),
        Some(42)
    );
    assert_eq!(
        message(3).contact().and_then(|c| c.user_id).map(|id| id.0),
        Some(99)
    );
    assert!(message(4).sticker().is_some());
    assert!(message(5).photo().is_some());
    assert_eq!(message(5).caption(), Some("look"));
    assert!(message(6).voice().is_some());
    assert_eq!(
        message(7)
            .document()
            .and_then(|d| d.file_name.clone())
            .as_deref(),
        Some("cv.pdf")
    );
    assert!(message(8).location().is_some());
    let UpdateKind::EditedMessage(edited) = &updates[9].kind else {
        panic!("expected an edited message: {:?}", updates[9].kind);
    };
    assert_eq!(edited.text(), Some("hi, edited"));
    assert_eq!(i64::from(edited.id.0), greeting);
    let UpdateKind::CallbackQuery(query) = &updates[10].kind else {
        panic!("expected a callback query: {:?}", updates[10].kind);
    };
    assert_eq!(query.data.as_deref(), Some("take:1"));
    let pressed_on = query.regular_message().expect("the card as a message");
    assert_eq!(pressed_on.text(), Some("card"));
    let topic = message(11);
    assert!(topic.is_topic_message);
    assert_eq!(topic.thread_id, Some(ThreadId(MessageId(5))));
    let reply = message(12);
    assert_eq!(
        reply.reply_to_message().and_then(|m| m.text()),
        Some("card")
    );
    assert!(message(13).chat.is_group());
    assert!(matches!(updates[14].kind, UpdateKind::MyChatMember(_)));
    assert!(matches!(updates[15].kind, UpdateKind::Error(_)));
}

#[tokio::test]
async fn send_message_round_trip_stores_what_the_user_sees() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.push(User::new(USER).first_name("Ann").text("hi"));
    let sent = bot
        .send_message(ChatId(USER), "Hello <b>Ann</b> &amp; co")
        .parse_mode(ParseMode::Html)
        .reply_markup(keyboard(&[("Yes", "consent:yes"), ("No", "consent:no")]))
        .await
        .expect("valid HTML is accepted");
    assert_eq!(sent.text(), Some("Hello Ann & co"));
    assert_eq!(
        sent.id,
        MessageId(2),
        "ids continue after the user's message"
    );
    assert_eq!(sent.chat.first_name(), Some("Ann"));

    let stored = fake.last_bot_message(USER).expect("the message is stored");
    assert_eq!(stored.visible_text(), "Hello Ann & co");
    assert_eq!(
        stored.source_text.as_deref(),
        Some("Hello <b>Ann</b> &amp; co")
    );
    assert_eq!(stored.parse_mode.as_deref(), Some("HTML"));
    assert_eq!(stored.button_labels(), vec!["Yes", "No"]);
    assert_eq!(stored.callback_data("No").as_deref(), Some("consent:no"));
    assert_eq!(
        fake.transcript(USER),
        "#1 user: hi\n#2 bot: Hello Ann & co [Yes | No]"
    );

    let second = send(&bot, USER, "again").await;
    assert_eq!(second.id, MessageId(3));
    let other_chat = send(&bot, 43, "elsewhere").await;
    assert_eq!(other_chat.id, MessageId(1), "ids are per chat");
}

#[tokio::test]
async fn reply_and_thread_are_checked_and_stored() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let asked = send(&bot, USER, "question").await;
    bot.send_message(ChatId(USER), "answer")
        .reply_parameters(ReplyParameters::new(asked.id))
        .await
        .expect("replying to an existing message works");
    assert_eq!(
        fake.last_bot_message(USER)
            .and_then(|m| m.reply_to_message_id),
        Some(i64::from(asked.id.0))
    );
    let missing = bot
        .send_message(ChatId(USER), "answer")
        .reply_parameters(ReplyParameters::new(MessageId(999)))
        .await;
    assert!(
        matches!(
            missing,
            Err(RequestError::Api(ApiError::MessageToReplyNotFound))
        ),
        "{missing:?}"
    );
}

#[tokio::test]
async fn malformed_html_is_rejected_as_unparsable_entities() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    for html in [
        "<b>unclosed",
        "<b><i>x</b></i>",
        "<blink>x</blink>",
        "1 < 2",
        "Tom & Jerry",
    ] {
        let result = bot
            .send_message(ChatId(USER), html)
            .parse_mode(ParseMode::Html)
            .await;
        assert!(
            matches!(
                &result,
                Err(RequestError::Api(ApiError::CantParseEntities(_)))
            ),
            "{html:?} gave {result:?}"
        );
    }
    assert!(fake.bot_messages_in(USER).is_empty());
    assert!(
        fake.requests_for("sendMessage")
            .iter()
            .all(|r| r.status == Some(400))
    );
}

#[tokio::test]
async fn text_over_4096_utf16_units_is_rejected_as_too_long() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let too_long = bot.send_message(ChatId(USER), "a".repeat(4097)).await;
    assert!(
        matches!(too_long, Err(RequestError::Api(ApiError::MessageIsTooLong))),
        "{too_long:?}"
    );
    send(&bot, USER, &"a".repeat(4096)).await;

    // An emoji is two UTF-16 code units: 2048 of them fill the limit exactly.
    send(&bot, USER, &"😀".repeat(2048)).await;
    let emoji = bot.send_message(ChatId(USER), "😀".repeat(2049)).await;
    assert!(matches!(
        emoji,
        Err(RequestError::Api(ApiError::MessageIsTooLong))
    ));

    // Markup does not count: the limit applies after entity parsing.
    let bold = format!("<b>{}</b>", "a".repeat(4096));
    bot.send_message(ChatId(USER), bold)
        .parse_mode(ParseMode::Html)
        .await
        .expect("4096 visible characters fit");

    let empty = bot.send_message(ChatId(USER), "  ").await;
    assert!(matches!(
        empty,
        Err(RequestError::Api(ApiError::MessageTextIsEmpty))
    ));
}

#[tokio::test]
async fn callback_data_over_64_bytes_is_rejected() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let long = "x".repeat(65);
    let result = bot
        .send_message(ChatId(USER), "pick")
        .reply_markup(keyboard(&[("Pick", &long)]))
        .await;
    assert!(
        matches!(result, Err(RequestError::Api(ApiError::ButtonDataInvalid))),
        "{result:?}"
    );
    // 64 bytes of Cyrillic is 32 letters: the limit is in bytes, not characters.
    let cyrillic = "я".repeat(33);
    let result = bot
        .send_message(ChatId(USER), "pick")
        .reply_markup(keyboard(&[("Pick", &cyrillic)]))
        .await;
    assert!(matches!(
        result,
        Err(RequestError::Api(ApiError::ButtonDataInvalid))
    ));
    bot.send_message(ChatId(USER), "pick")
        .reply_markup(keyboard(&[("Pick", &"x".repeat(64))]))
        .await
        .expect("64 bytes fit");
    let empty_label = bot
        .send_message(ChatId(USER), "pick")
        .reply_markup(keyboard(&[("", "data")]))
        .await;
    assert!(matches!(
        empty_label,
        Err(RequestError::Api(ApiError::Unknown(_)))
    ));
}

#[tokio::test]
async fn too_many_requests_surfaces_as_retry_after() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.fail_next(1, Fault::TooManyRequests { retry_after: 3 });
    let result = bot.send_message(ChatId(USER), "hi").await;
    assert!(
        matches!(result, Err(RequestError::RetryAfter(s)) if s == Seconds::from_seconds(3)),
        "{result:?}"
    );
    send(&bot, USER, "the fault was used up").await;
    assert_eq!(fake.too_many_requests(), 1);
}

#[tokio::test]
async fn private_chat_flood_limit_answers_429_until_a_second_passes() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.set_rate_limits(RateLimits {
        private_chat_per_second: Some(1),
        ..RateLimits::default()
    });
    send(&bot, USER, "first").await;
    let second = bot.send_message(ChatId(USER), "second").await;
    assert!(
        matches!(second, Err(RequestError::RetryAfter(s)) if s == Seconds::from_seconds(1)),
        "{second:?}"
    );
    send(&bot, USER + 1, "another chat is not limited").await;
    assert_eq!(fake.too_many_requests(), 1);
    assert_eq!(fake.bot_messages_in(USER).len(), 1);
}

#[tokio::test]
async fn blocked_user_surfaces_as_bot_blocked() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.block_user(USER);
    let result = bot.send_message(ChatId(USER), "offer").await;
    assert!(
        matches!(result, Err(RequestError::Api(ApiError::BotBlocked))),
        "{result:?}"
    );
    assert_eq!(fake.requests_for("sendMessage")[0].status, Some(403));

    fake.unblock_user(USER);
    send(&bot, USER, "welcome back").await;

    // A user blocking the bot in their client has the same effect.
    fake.push(User::new(USER).blocks_bot());
    let result = bot.send_message(ChatId(USER), "offer").await;
    assert!(matches!(
        result,
        Err(RequestError::Api(ApiError::BotBlocked))
    ));
}

/// Sends `text` with the next request failing with `fault`, and checks the client gave up on
/// its own with a timeout and the fake recorded no answer.
async fn send_times_out(fake: &FakeTelegram, fault: Fault, text: &str) -> Bot {
    let bot = fake.bot_with_timeout(Duration::from_millis(300));
    fake.fail_next(1, fault);
    let result = tokio::time::timeout(WAIT, bot.send_message(ChatId(USER), text).send())
        .await
        .expect("the client gives up on its own");
    match result {
        Err(RequestError::Network(e)) => assert!(e.is_timeout(), "{e}"),
        other => panic!("expected a network timeout, got {other:?}"),
    }
    assert_eq!(fake.requests_for("sendMessage")[0].status, None);
    bot
}

#[tokio::test]
async fn hang_surfaces_as_a_network_timeout() {
    let fake = FakeTelegram::start().await;
    let bot = send_times_out(&fake, Fault::Hang, "hi").await;
    assert!(fake.bot_messages_in(USER).is_empty(), "nothing delivered");
    send(&bot, USER, "the next request is answered").await;
}

#[tokio::test]
async fn accept_then_hang_delivers_the_message_but_never_answers() {
    let fake = FakeTelegram::start().await;
    let bot = send_times_out(&fake, Fault::AcceptThenHang, "delivered").await;
    let held = fake.bot_messages_in(USER);
    assert_eq!(held.len(), 1, "the chat holds the message");
    assert_eq!(held[0].text.as_deref(), Some("delivered"));
    send(&bot, USER, "the next request is answered").await;
}

#[tokio::test]
async fn closed_connection_surfaces_as_a_network_error() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot_with_timeout(Duration::from_secs(3));
    fake.fail_next(1, Fault::CloseConnection);
    let result = tokio::time::timeout(WAIT, bot.send_message(ChatId(USER), "hi").send())
        .await
        .expect("a closed connection fails fast");
    match result {
        Err(RequestError::Network(e)) => assert!(!e.is_timeout(), "{e}"),
        other => panic!("expected a network error, got {other:?}"),
    }
    assert!(fake.bot_messages_in(USER).is_empty());
    send(&bot, USER, "a new connection works").await;
}

#[tokio::test]
async fn server_error_answers_500_with_telegram_shaped_json() {
    let fake = FakeTelegram::start().await;
    fake.fail_next_method("sendMessage", 1, Fault::ServerError);
    let (status, body) =
        post_json(&fake, "sendMessage", json!({"chat_id": USER, "text": "x"})).await;
    assert_eq!(status, 500);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error_code"], 500);
}

#[tokio::test]
async fn faults_for_sends_leave_polling_alone() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.fail_next(1, Fault::TooManyRequests { retry_after: 1 });
    bot.get_updates()
        .await
        .expect("getUpdates is not hit by fail_next");
    assert!(bot.send_message(ChatId(USER), "x").await.is_err());
}

#[tokio::test]
async fn predicate_faults_hit_only_matching_requests() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    fake.fail_when(
        1,
        Fault::TooManyRequests { retry_after: 2 },
        |method, params| method == "sendMessage" && params["chat_id"] == json!(USER + 1),
    );
    send(&bot, USER, "not matching").await;
    assert!(
        bot.send_message(ChatId(USER + 1), "matching")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn chaos_fails_a_seeded_share_of_requests() {
    let fake = FakeTelegram::start().await;
    fake.set_chaos(Some(Chaos {
        rate: 0.5,
        seed: 2024,
        faults: vec![Fault::TooManyRequests { retry_after: 1 }],
    }));
    let bot = fake.bot();
    let mut failures = 0;
    for i in 0..40 {
        if bot
            .send_message(ChatId(USER), format!("m{i}"))
            .await
            .is_err()
        {
            failures += 1;
        }
    }
    assert!((8..=32).contains(&failures), "{failures} of 40 failed");
    assert_eq!(fake.too_many_requests(), failures);
    fake.set_chaos(None);
    send(&bot, USER, "calm again").await;
}

#[tokio::test]
async fn editing_a_missing_message_is_rejected() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let result = bot
        .edit_message_text(ChatId(USER), MessageId(77), "new")
        .await;
    assert!(
        matches!(
            result,
            Err(RequestError::Api(ApiError::MessageToEditNotFound))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn edits_change_the_stored_message_and_identical_edits_are_refused() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let sent = bot
        .send_message(ChatId(USER), "Lead #1")
        .reply_markup(keyboard(&[("Take", "take:1")]))
        .await
        .expect("sent");
    let same = bot
        .edit_message_text(ChatId(USER), sent.id, "Lead #1")
        .reply_markup(keyboard(&[("Take", "take:1")]))
        .await;
    assert!(
        matches!(same, Err(RequestError::Api(ApiError::MessageNotModified))),
        "{same:?}"
    );

    // Like Telegram, an edit without reply_markup removes the keyboard.
    bot.edit_message_text(ChatId(USER), sent.id, "Lead #1 — taken by Bob")
        .await
        .expect("a real change is accepted");
    let stored = fake.last_bot_message(USER).expect("still there");
    assert_eq!(stored.visible_text(), "Lead #1 — taken by Bob");
    assert!(stored.button_labels().is_empty());
    assert_eq!(stored.edit_count, 1);

    bot.edit_message_reply_markup(ChatId(USER), sent.id)
        .reply_markup(keyboard(&[("Won", "won:1")]))
        .await
        .expect("markup edit accepted");
    assert_eq!(
        fake.last_bot_message(USER).map(|m| m.button_labels()),
        Some(vec!["Won".to_owned()])
    );
}

#[tokio::test]
async fn deleted_messages_cannot_be_deleted_or_edited_again() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let sent = send(&bot, USER, "offer").await;
    bot.delete_message(ChatId(USER), sent.id)
        .await
        .expect("deleting works");
    let again = bot.delete_message(ChatId(USER), sent.id).await;
    assert!(matches!(
        again,
        Err(RequestError::Api(ApiError::MessageToDeleteNotFound))
    ));
    let edit = bot.edit_message_text(ChatId(USER), sent.id, "x").await;
    assert!(matches!(
        edit,
        Err(RequestError::Api(ApiError::MessageToEditNotFound))
    ));
    assert!(fake.bot_messages_in(USER).is_empty());
    assert!(fake.messages_in(USER)[0].deleted);
}

#[tokio::test]
async fn callback_queries_are_answered_once() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    send(&bot, USER, "pick").await;
    let message = fake.last_bot_message(USER).expect("stored");
    fake.push(User::new(USER).presses(&message, "a"));
    let updates = bot.get_updates().await.expect("polled");
    let UpdateKind::CallbackQuery(query) = &updates[0].kind else {
        panic!("expected a callback query");
    };
    bot.answer_callback_query(query.id.clone())
        .text("Saved")
        .await
        .expect("first answer accepted");
    assert_eq!(
        fake.read(|s| s.callback_answer(&query.id.0).cloned())
            .map(|a| a["text"].clone()),
        Some(json!("Saved"))
    );
    let again = bot.answer_callback_query(query.id.clone()).await;
    assert!(matches!(
        again,
        Err(RequestError::Api(ApiError::InvalidQueryId))
    ));
}

#[tokio::test]
async fn documents_and_photos_upload_as_multipart_and_keep_their_bytes() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let csv = "\u{feff}id,name\n1,Ann\n".as_bytes().to_vec();
    let sent = bot
        .send_document(
            ChatId(-100),
            InputFile::memory(csv.clone()).file_name("leads.csv"),
        )
        .caption("<b>Export</b>")
        .parse_mode(ParseMode::Html)
        .await
        .expect("a document upload is accepted");
    assert_eq!(sent.caption(), Some("Export"));
    let document = sent.document().expect("a document message");
    assert_eq!(document.file_name.as_deref(), Some("leads.csv"));
    let stored = fake.last_bot_message(-100).expect("stored");
    let file = stored.file.expect("the upload is kept");
    assert_eq!(file.bytes, csv);
    assert_eq!(file.file_name.as_deref(), Some("leads.csv"));

    bot.send_photo(
        ChatId(-100),
        InputFile::memory(vec![0x89, b'P', b'N', b'G']),
    )
    .await
    .expect("a photo upload is accepted");
    let photo = fake.last_bot_message(-100).expect("stored");
    assert_eq!(photo.media.map(|(kind, _)| kind).as_deref(), Some("photo"));

    let long_caption = bot
        .send_photo(ChatId(-100), InputFile::memory(vec![1, 2, 3]))
        .caption("c".repeat(1025))
        .await;
    assert!(long_caption.is_err());
}

#[tokio::test]
async fn copies_and_forwards_reproduce_the_original() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let staff = -100_200;
    let pushed = fake.push(User::new(USER).text("I want a discount"));
    let original = MessageId(i32::try_from(pushed.message_id.expect("id")).expect("small"));

    let forwarded = bot
        .forward_message(ChatId(staff), ChatId(USER), original)
        .await
        .expect("forward works");
    assert_eq!(forwarded.text(), Some("I want a discount"));
    assert!(forwarded.forward_origin().is_some());

    let copy = bot
        .copy_message(ChatId(staff), ChatId(USER), original)
        .await
        .expect("copy works");
    let stored = fake.bot_messages_in(staff);
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].message_id, i64::from(copy.0));
    assert_eq!(stored[1].visible_text(), "I want a discount");

    let missing = bot
        .copy_message(ChatId(staff), ChatId(USER), MessageId(999))
        .await;
    assert!(matches!(
        missing,
        Err(RequestError::Api(ApiError::MessageToCopyNotFound))
    ));
}

#[tokio::test]
async fn forum_topics_can_be_created_and_written_to() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let forum = Chat::forum(-1_001_000_000_002, "Staff");
    fake.add_chat(&forum);
    let topic = bot
        .create_forum_topic(ChatId(forum.id), "Lead #7 Ann")
        .await;
    let topic = topic.expect("a topic is created in a forum");
    bot.send_message(ChatId(forum.id), "card")
        .message_thread_id(topic.thread_id)
        .await
        .expect("writing into the topic works");
    let card = fake.last_bot_message(forum.id).expect("stored");
    assert_eq!(card.message_thread_id, Some(i64::from(topic.thread_id.0.0)));
    assert_eq!(card.json["is_topic_message"], true);

    let wrong_thread = bot
        .send_message(ChatId(forum.id), "x")
        .message_thread_id(ThreadId(MessageId(999)))
        .await;
    assert!(wrong_thread.is_err());
    let not_forum = bot.create_forum_topic(ChatId(-5), "x").await;
    assert!(not_forum.is_err());
}

#[tokio::test]
async fn webhook_blocks_polling_until_deleted() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let url: reqwest::Url = "https://example.com/hook".parse().expect("valid url");
    bot.set_webhook(url)
        .secret_token("s3cret_-token")
        .await
        .expect("setWebhook accepted");
    let info = bot.get_webhook_info().await.expect("info");
    assert_eq!(
        info.url.map(|u| u.to_string()).as_deref(),
        Some("https://example.com/hook")
    );
    assert!(
        bot.get_updates().await.is_err(),
        "polling conflicts with a webhook"
    );
    bot.delete_webhook().await.expect("deleteWebhook accepted");
    bot.get_updates().await.expect("polling works again");
}

#[tokio::test]
async fn webhook_delivery_posts_the_update_with_the_secret_header() {
    use axum::http::HeaderMap;
    use tokio::sync::mpsc;

    let fake = FakeTelegram::start().await;
    let (seen, mut received) = mpsc::unbounded_channel();
    let endpoint = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let secret = headers
                .get("x-telegram-bot-api-secret-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let _ = seen.send((secret, body));
            async { "" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, endpoint).await });

    let url: reqwest::Url = format!("http://{addr}/hook").parse().expect("valid url");
    fake.bot()
        .set_webhook(url)
        .secret_token("abc_123")
        .await
        .expect("setWebhook accepted");
    let status = fake
        .deliver_to_webhook(User::new(USER).text("via webhook"))
        .await
        .expect("the endpoint answers");
    assert_eq!(status, 200);
    let (secret, body) = tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("the endpoint was called")
        .expect("one delivery");
    assert_eq!(secret.as_deref(), Some("abc_123"));
    let update: teloxide::types::Update = serde_json::from_str(&body).expect("an Update");
    assert!(matches!(update.kind, UpdateKind::Message(_)));
    assert_eq!(
        fake.pending_updates(),
        0,
        "webhook updates are not queued for polling"
    );
    assert_eq!(fake.messages_in(USER).len(), 1);
    server.abort();
}

#[tokio::test]
async fn commands_and_chat_actions_are_recorded() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    bot.set_my_commands([teloxide::types::BotCommand::new("start", "Begin")])
        .await
        .expect("valid commands");
    assert_eq!(
        fake.read(|s| s.commands().get("default/").cloned()),
        Some(json!([{"command": "start", "description": "Begin"}]))
    );
    let invalid = bot
        .set_my_commands([teloxide::types::BotCommand::new("Start!", "x")])
        .await;
    assert!(invalid.is_err());
    bot.send_chat_action(ChatId(USER), teloxide::types::ChatAction::Typing)
        .await
        .expect("chat action accepted");
    assert_eq!(
        fake.read(|s| s.chat_actions().to_vec()),
        vec![(USER, "typing".to_owned())]
    );
}

#[tokio::test]
async fn unknown_methods_answer_404_and_unknown_parameters_400() {
    let fake = FakeTelegram::start().await;
    let (status, body) = post_json(&fake, "sendMesage", json!({})).await;
    assert_eq!(
        (status, body["description"].clone()),
        (404, json!("Not Found"))
    );

    let (status, body) = post_json(
        &fake,
        "sendMessage",
        json!({"chat_id": USER, "text": "x", "reply_to_message_id": 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["description"]
            .as_str()
            .is_some_and(|d| d.contains("reply_to_message_id")),
        "{body}"
    );

    let (status, body) = post_json(&fake, "sendmessage", json!({"text": "x"})).await;
    assert_eq!(
        status, 400,
        "method names are case-insensitive, chat_id is required"
    );
    assert_eq!(body["description"], "Bad Request: chat_id is empty");
}

#[tokio::test]
async fn wait_for_message_wakes_when_the_bot_sends() {
    let fake = FakeTelegram::start().await;
    let bot = fake.bot();
    let sender =
        tokio::spawn(async move { bot.send_message(ChatId(USER), "Спасибо!").await.map(|_| ()) });
    let message = fake
        .wait_for_message(USER, WAIT, |m| m.visible_text().contains("Спасибо"))
        .await
        .expect("the message arrives");
    assert!(message.from_bot);
    sender.await.expect("no panic").expect("the send succeeded");

    let timed_out = fake
        .wait_for_message(USER, Duration::from_millis(50), |m| {
            m.visible_text() == "never"
        })
        .await
        .expect_err("nothing matches");
    assert!(timed_out.to_string().contains("sendMessage"), "{timed_out}");
}
