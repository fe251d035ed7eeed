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
