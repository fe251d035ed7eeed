//! Several replicas on one PostgreSQL database; one process only on SQLite.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgresql_split_updates_without_doubles_and_keep_each_leads_order() {
    let Some(backend) = pg_only(
        "it::production::replicas::two_replicas_on_postgresql_split_updates_without_doubles_and_keep_each_leads_order",
    ) else {
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
    let Some(backend) = pg_only(
        "it::production::replicas::a_replica_that_dies_mid_delivery_leaves_its_messages_to_the_survivor",
    ) else {
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
    let Some(backend) =
        pg_only("it::production::replicas::sla_reminders_fire_once_across_replicas")
    else {
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

/// The bot's connections do without bitmap scans (see `storage::Db::connect`): the outbox's
/// claims then go by a plain index scan, which marks the entries of rows no longer `pending` dead
/// the first time it meets them instead of reading them again on every claim until a vacuum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_connections_claim_by_plain_index_scans() {
    let Some(backend) =
        pg_only("it::production::replicas::the_bots_connections_claim_by_plain_index_scans")
    else {
        return;
    };
    let (_test_db, db) = TestDb::migrated(&backend).await;
    let Db::Postgres(pool) = &db else {
        return;
    };
    let (setting,): (String,) = sqlx::query_as("SHOW enable_bitmapscan")
        .fetch_one(pool)
        .await
        .expect("show");
    assert_eq!(setting, "off");
}
