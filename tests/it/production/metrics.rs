//! `/metrics`: the counters and gauges an operator watches.

use super::*;

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
