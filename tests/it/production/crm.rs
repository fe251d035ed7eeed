//! The CRM webhook: signed events, retries through failures, hangs and outages, erasure.

use super::*;

/// The CRM receiver's behaviour for the n-th request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Fail,
    Hang,
}

/// A CRM receiver on 127.0.0.1: follows a script of failures, stays down until a time on the
/// bot's clock, then accepts (and records) events whose signature is right.
struct Receiver {
    script: Vec<Answer>,
    down_until_ms: AtomicI64,
    clock: OffsetClock,
    secret: String,
    requests: AtomicUsize,
    accepted: Mutex<Vec<(String, serde_json::Value)>>,
    bad_signatures: AtomicUsize,
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Arc<Receiver>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let n = r.requests.fetch_add(1, Ordering::SeqCst);
    match r.script.get(n) {
        Some(Answer::Fail) => return StatusCode::INTERNAL_SERVER_ERROR,
        Some(Answer::Hang) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::OK;
        }
        None => {}
    }
    if r.clock.now_ms() < r.down_until_ms.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(r.secret.as_bytes()).expect("hmac key");
    mac.update(&body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    if header("x-leadbot-signature") != expected {
        r.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    r.accepted
        .lock()
        .expect("receiver lock")
        .push((header("idempotency-key"), json));
    StatusCode::OK
}

async fn start_receiver(receiver: Arc<Receiver>) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the CRM receiver");
    let addr = listener.local_addr().expect("receiver address");
    let router = axum::Router::new()
        .route("/crm", axum::routing::post(receive))
        .with_state(receiver);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}/crm"), task)
}

const CRM_SECRET: &str = "crm-signing-key";

/// A receiver following `script`, down until `down_until_ms` on the bot's clock, started; and
/// the world's settings pointing the CRM webhook at it.
async fn crm_receiver(
    w: &World,
    script: Vec<Answer>,
    down_until_ms: i64,
) -> (Arc<Receiver>, Settings, JoinHandle<()>) {
    let receiver = Arc::new(Receiver {
        script,
        down_until_ms: AtomicI64::new(down_until_ms),
        clock: w.clock.clone(),
        secret: CRM_SECRET.to_owned(),
        requests: AtomicUsize::new(0),
        accepted: Mutex::new(Vec::new()),
        bad_signatures: AtomicUsize::new(0),
    });
    let (crm_url, server) = start_receiver(receiver.clone()).await;
    let mut s = w.base.clone();
    s.crm_webhook_url = Some(crm_url);
    s.crm_secret = Some(Secret::new(CRM_SECRET));
    (receiver, s, server)
}

both_databases! {
    async fn a_crm_that_fails_hangs_and_is_down_for_an_hour_still_gets_every_event_once_signed(backend: Backend) {
        let w = World::new(&backend).await;
        let script = vec![Answer::Fail, Answer::Fail, Answer::Hang];
        let (receiver, s, server) = crm_receiver(&w, script, w.clock.now_ms() + 3_600_000).await;
        let mut node = w.polling_node(&s, Duration::from_millis(300));

        let intake = Intake::polling(&w.fake);
        let user = User::new(2006).lang("ru").first_name("Анна");
        walk_hot(&intake, &user, "+79123456782").await;
        let card = bot_says(&w.fake, STAFF_CHAT, "Горячий лид").await;
        let manager = User::new(501).first_name("Мария");
        w.fake.push(manager.presses_button(&card, "✋ Взять"));
        w.fake
            .wait_for_message(STAFF_CHAT, WAIT, |m| {
                m.message_id == card.message_id && m.text.as_deref().is_some_and(|t| t.contains("Мария"))
            })
            .await
            .expect("card edited with the owner");
        let taken = w.fake.bot_messages_in(STAFF_CHAT).into_iter().find(|m| m.message_id == card.message_id).unwrap();
        let won = taken
            .button_labels()
            .into_iter()
            .find(|l| l.contains("Выиграна") || l.contains("выиграна") || l.contains("Won"))
            .unwrap_or_else(|| panic!("no Won button: {:?}", taken.button_labels()));
        w.fake.push(manager.presses_button(&taken, &won));
        eventually("the lead is won", || async {
            storage::leads::by_telegram(&w.db, user.id).await.ok().flatten().is_some_and(|l| l.status == "won")
        })
        .await;

        // The receiver fails, hangs, then is down for an hour of the bot's time.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let events = storage::crm::all(&w.db).await.unwrap();
            if !events.is_empty() && events.iter().all(|e| e.status == "delivered") {
                break;
            }
            assert!(events.iter().all(|e| e.status != "failed"), "{events:?}");
            assert!(tokio::time::Instant::now() < deadline, "CRM events not delivered: {events:?}");
            w.clock.advance(Duration::from_secs(90));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }

        let events = storage::crm::all(&w.db).await.unwrap();
        let accepted = receiver.accepted.lock().unwrap().clone();
        let names: Vec<&str> = accepted.iter().map(|(_, b)| b["event"].as_str().unwrap_or("?")).collect();
        // Exactly once each, in the order they happened.
        assert_eq!(names.len(), events.len(), "{names:?}");
        let in_db: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, in_db);
        for needed in ["lead.created", "lead.qualified", "lead.hot", "lead.taken", "lead.won"] {
            assert_eq!(names.iter().filter(|n| **n == needed).count(), 1, "{needed} in {names:?}");
        }
        assert_eq!(names.first(), Some(&"lead.created"));
        assert_eq!(names.last(), Some(&"lead.won"));
        let keys: HashSet<&str> = accepted.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys.len(), accepted.len());
        for (key, body) in &accepted {
            assert_eq!(body["event_id"].as_str(), Some(key.as_str()));
            assert_eq!(body["source"], "vk_ads");
        }
        let (_, hot) = accepted.iter().find(|(_, b)| b["event"] == "lead.hot").unwrap();
        assert_eq!(hot["lead"]["phone"], "+79123456782");
        assert_eq!(hot["lead"]["name"], "Анна");
        assert!(hot["answers"].as_array().is_some_and(|a| a.len() >= 3), "{hot}");
        assert!(hot["score"]["breakdown"].as_array().is_some_and(|b| !b.is_empty()), "{hot}");
        let (_, won) = accepted.iter().find(|(_, b)| b["event"] == "lead.won").unwrap();
        assert_eq!(won["lead"]["manager"]["id"], 501);
        assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
        // It kept trying through the hour: many attempts on the first event, none dropped.
        assert!(events[0].attempts >= 10, "{:?}", events[0]);
        node.stop().await;
        server.abort();
    }
}

both_databases! {
    async fn forgetting_a_lead_drops_its_undelivered_crm_events(backend: Backend) {
        let w = World::new(&backend).await;
        // Down for a day: nothing is delivered during the test.
        let (receiver, s, server) = crm_receiver(&w, Vec::new(), w.clock.now_ms() + 86_400_000).await;
        let mut node = w.polling_node(&s, Duration::from_millis(300));

        let user = User::new(2007).lang("ru").first_name("Анна");
        w.fake.push(user.command("start", "vk_ads"));
        bot_says(&w.fake, user.id, "согласие").await;
        eventually("lead.created was tried", || async {
            receiver.requests.load(Ordering::SeqCst) >= 1
        })
        .await;
        w.fake.push(user.command("forget", ""));
        bot_says(&w.fake, user.id, "Удалить все ваши данные").await;
        let confirm = last_with_buttons(&w.fake, user.id);
        w.fake.push(user.presses_button(&confirm, "Да, удалить"));
        bot_says(&w.fake, user.id, "Ваши данные удалены").await;
        // Erased in the same transaction as the lead's data: nothing is left to deliver.
        assert!(storage::crm::all(&w.db).await.unwrap().is_empty());
        // Even after the receiver is back.
        receiver.down_until_ms.store(0, Ordering::SeqCst);
        let tried = receiver.requests.load(Ordering::SeqCst);
        w.clock.advance(Duration::from_secs(600));
        w.fake.push(User::new(2099).lang("ru").first_name("Пётр").command("start", ""));
        eventually("the next lead's event is delivered", || async {
            !receiver.accepted.lock().unwrap().is_empty()
        })
        .await;
        let accepted = receiver.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 1, "{accepted:?}");
        assert_eq!(accepted[0].1["lead"]["telegram_id"], 2099);
        assert!(receiver.requests.load(Ordering::SeqCst) > tried);
        node.stop().await;
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_asking_to_retry_later_is_given_that_long() {
    let w = World::new(&Backend::Sqlite).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let router = axum::Router::new().route(
        "/crm",
        axum::routing::post(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")])
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut s = w.base.clone();
    s.crm_webhook_url = Some(format!("http://{addr}/crm"));
    s.crm_secret = Some(Secret::new("k"));
    let mut node = w.polling_node(&s, Duration::from_secs(5));
    let user = User::new(2010).lang("ru").first_name("Анна");
    w.fake.push(user.command("start", ""));
    eventually("the CRM was asked once and the event put back", || async {
        hits.load(Ordering::SeqCst) >= 1
            && storage::crm::all(&w.db)
                .await
                .unwrap()
                .first()
                .is_some_and(|e| e.status == "pending" && e.attempts == 1)
    })
    .await;
    let event = storage::crm::all(&w.db).await.unwrap().remove(0);
    let wait = event.next_attempt_at - w.clock.now_ms();
    assert!((110_000..=120_000).contains(&wait), "{wait} ms");
    assert_eq!(
        event.last_error.as_deref(),
        Some("the CRM answered 429 Too Many Requests")
    );
    node.stop().await;
    server.abort();
}

/// The CRM worker's claim was committed by PostgreSQL but its answer lost on the way (the bot saw
/// an error): the events it took were `sending` with no round to deliver them until a restart.
/// They are put back and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_events_whose_claims_answer_was_lost_are_still_delivered() {
    use crate::support::pg_proxy::PgProxy;
    let Some(backend) =
        pg_only("it::production::crm::crm_events_whose_claims_answer_was_lost_are_still_delivered")
    else {
        return;
    };
    let Backend::Postgres(admin_url) = &backend else {
        return;
    };
    let proxy = PgProxy::start(admin_url).await;
    proxy.lose_commits("the CRM claim", 2, |statements| {
        statements.iter().any(|(sql, rows)| {
            sql.contains("UPDATE crm_events SET status = 'sending'") && *rows > 0
        })
    });
    let w = World::new(&backend).await;
    let (receiver, mut s, server) = crm_receiver(&w, Vec::new(), 0).await;
    s.database_url = proxy.url(&s.database_url);
    let mut node = w.polling_node(&s, Duration::from_secs(5));
    let user = User::new(2011).lang("ru").first_name("Анна");
    w.fake.push(user.command("start", "vk_ads"));
    eventually("lead.created is delivered", || async {
        storage::crm::all(&w.db)
            .await
            .unwrap_or_default()
            .first()
            .is_some_and(|e| e.status == "delivered")
    })
    .await;
    assert_eq!(proxy.lost("the CRM claim"), 2, "the test lost no claim");
    let accepted = receiver.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0].1["event"], "lead.created");
    node.stop().await;
    server.abort();
}
