//! Webhook mode: the secret, replays, the generated secret, and going back to polling.

use super::*;

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
