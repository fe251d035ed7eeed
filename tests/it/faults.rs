//! Faults: the Bot API fails a fifth of the requests (500, hangs past the client's timeout, closed
//! connections, 429 bursts) and the database goes away for seconds, while prospects go through the
//! dialogue. Everyone finishes, every answer is stored once, nothing is lost, the bot never exits.

use std::time::{Duration, Instant};

use crate::both_databases;
use crate::support::app::{Backend, TestApp};
use crate::support::crowd::{self, Crowd};
#[allow(unused_imports)]
use crate::support::fake_telegram::{Chaos, Fault};
#[allow(unused_imports)]
use crowd::settle;

/// Many finished leads write at once: each message is relayed to the staff chat (which reads the
/// lead's card inside the update's transaction) and acknowledged. On SQLite a read through a
/// second pooled connection inside the transaction waited for writers that waited for it, and
/// everything stalled for the 10 s busy timeout.
async fn relays_from_many_leads_at_once_do_not_stall(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut crowd = Crowd::new(12, 610_000, 1, 0.0);
    crowd
        .drive(&app.fake, Duration::from_secs(30), |_, _| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    for p in &crowd.prospects {
        app.fake.push(p.user.text("Когда перезвоните?"));
    }
    for p in &crowd.prospects {
        app.fake
            .wait_for_message(p.user.id, Duration::from_secs(8), |m| {
                m.from_bot
                    && m.visible_text()
                        .contains("ваше сообщение получено и передано менеджеру")
            })
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", app.fake.transcript(p.user.id)));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "12 relays took {took:?}: the database stalled"
    );
}

both_databases! {
    async fn relays_from_many_finished_leads_at_once_do_not_stall_the_database(backend: Backend) {
        relays_from_many_leads_at_once_do_not_stall(backend).await
    }
}

fn say(line: String) {
    // Past the harness's capture, so the figures show in CI logs.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{line}\n").as_bytes());
}

/// The bot with a short Bot API timeout, so a hung request costs 2 s rather than 5.
async fn bot_with_short_timeout(backend: Backend) -> TestApp {
    let mut app = TestApp::spawn(backend).await;
    app.stop().await;
    app.request_timeout = Duration::from_secs(2);
    app.start().await;
    app
}

both_databases! {
    async fn prospects_finish_while_a_fifth_of_bot_api_requests_fail(backend: Backend) {
        let app = bot_with_short_timeout(backend).await;
        let seed = crowd::seed();
        say(format!("faults: seed {seed} (replay with LEADBOT_CHAOS_SEED={seed})"));
        app.fake.set_chaos(Some(Chaos {
            rate: 0.2,
            seed,
            faults: vec![
                Fault::ServerError,
                Fault::Hang,
                Fault::CloseConnection,
                Fault::TooManyRequests { retry_after: 1 },
            ],
        }));
        let mut crowd = Crowd::new(12, 620_000, seed, 0.15);
        let started = Instant::now();
        let mut bursts = 0;
        let result = crowd
            .drive(&app.fake, Duration::from_secs(120), |crowd, fake| {
                // Now and then a burst: ten 429s in a row, and a few failed polls (dropped
                // connections: a 5xx costs any teloxide request a fixed 10 s pause before it
                // reads the answer, which sends below already meet).
                if crowd.tally.updates >= 30 * (bursts + 1) {
                    bursts += 1;
                    fake.fail_next(10, Fault::TooManyRequests { retry_after: 1 });
                    fake.fail_next_method("getUpdates", 2, Fault::CloseConnection);
                }
            })
            .await;
        if let Err(e) = result {
            panic!("{e}\nseed {seed}\n{}", crowd::backlog_report(&app.db).await);
        }
        app.fake.set_chaos(None);
        settle(&app.db, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}; seed {seed}"));
        let elapsed = started.elapsed();
        let failed = app.fake.read(|s| s.requests().iter().filter(|r| r.method != "getUpdates" && r.status != Some(200)).count());
        let total = app.fake.read(|s| s.requests().iter().filter(|r| r.method != "getUpdates").count());
        assert!(app.is_running(), "the bot stopped");
        let dups = crowd::check(&crowd, &app.fake, &app.db).await;
        say(format!(
            "faults: {} prospects finished in {elapsed:.1?}; {failed} of {total} Bot API calls failed, \
             {bursts} bursts of 429; duplicates {} (seed {seed})",
            crowd.finished(),
            dups.total()
        ));
        // A failed request never reached Telegram, so nothing may be doubled.
        assert_eq!(dups.total(), 0, "messages doubled; seed {seed}");
    }
}
