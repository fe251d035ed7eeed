//! A crowd of simulated prospects for the reliability tests: each answers the question it just
//! received in the shipped Russian dialogue (sometimes with a mistake first), and the crowd checks
//! afterwards that the bot stored every answer once and counts what Telegram got twice.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use leadbot::storage::{self, Db};
use serde_json::Value;

use super::app::STAFF_CHAT;
use super::fake_telegram::{FakeTelegram, StoredMessage};
use super::updates::User;

/// A small seeded generator (splitmix64), so a failing run can be replayed from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A seed from `LEADBOT_CHAOS_SEED`, else from the clock; the caller prints it.
pub fn seed() -> u64 {
    std::env::var("LEADBOT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(1)
                ^ u64::from(std::process::id())
        })
}

const NEED: [&str; 3] = [
    "Присматриваюсь",
    "Сравниваю варианты",
    "Готов купить, нужен счёт",
];
const TIMING: [&str; 3] = ["В этом месяце", "В ближайшие 3 месяца", "Пока не знаю"];
const OFFERS: [&str; 2] = ["Да, присылайте", "Нет, спасибо"];
const NAMES: [&str; 6] = ["Анна", "Иван", "Мария", "Пётр", "Ольга", "Сергей"];
/// The goodbyes of the shipped dialogue: seeing one means the prospect finished.
const GOODBYES: [&str; 3] = [
    "Спасибо! Менеджер свяжется",
    "Спасибо! Пришлём подборку",
    "Спасибо! Если появятся вопросы",
];

/// The questions of the shipped dialogue, by a phrase of their text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Question {
    Consent,
    Name,
    Phone,
    Need,
    Timing,
    Offers,
}

impl Question {
    fn of(text: &str) -> Option<Question> {
        [
            ("согласие на обработку", Question::Consent),
            ("Как к вам обращаться", Question::Name),
            ("Оставьте телефон", Question::Phone),
            ("Что вам сейчас ближе", Question::Need),
            ("Когда планируете", Question::Timing),
            ("Присылать вам спецпредложения", Question::Offers),
        ]
        .into_iter()
        .find(|(phrase, _)| text.contains(phrase))
        .map(|(_, q)| q)
    }
}

/// One simulated prospect and what it means to answer.
#[derive(Debug)]
pub struct Prospect {
    pub user: User,
    pub name: &'static str,
    pub phone: String,
    pub typed_phone: bool,
    pub need: usize,
    pub timing: usize,
    pub offers: usize,
    /// Bot messages already answered (by id), so each question gets one answer.
    answered: HashSet<i64>,
    /// Questions already answered with a mistake (one mistake per question at most).
    mistaken: HashSet<Question>,
    /// Questions already answered properly: the same question again is a duplicate (Telegram
    /// got it twice across a crash), which a person would ignore.
    done: HashSet<Question>,
    /// With a think time: the bot message being thought about (0 before `/start`) and when the
    /// answer goes.
    thinking: Option<(i64, Instant)>,
    pub finished: bool,
    pub started: bool,
}

impl Prospect {
    /// The answer values the bot must have stored, by step.
    pub fn expected_answers(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("name", self.name.to_owned()),
            ("phone", self.phone.clone()),
            ("need", NEED[self.need].to_owned()),
            ("timing", TIMING[self.timing].to_owned()),
            ("offers", OFFERS[self.offers].to_owned()),
        ])
    }

    /// Whether the dialogue's rules make this prospect hot.
    pub fn hot(&self) -> bool {
        let score = 10 + [0, 20, 0][self.need] + [40, 20, 0][self.timing];
        self.need == 2 || score >= 70
    }
}

/// What the crowd did and saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Updates pushed to the fake (answers, mistakes, /start).
    pub updates: usize,
    /// Deliberate mistakes among them.
    pub mistakes: usize,
}

/// The crowd of prospects.
pub struct Crowd {
    pub prospects: Vec<Prospect>,
    rng: Rng,
    mistake_rate: f64,
    /// How long a prospect takes to start and to answer each question (uniform between the
    /// two); none answers at once.
    think: Option<(Duration, Duration)>,
    pub tally: Tally,
    /// Every update id the crowd pushed.
    pub pushed: Vec<i64>,
}

impl Crowd {
    /// `n` prospects with user ids from `first_id`; a question gets a mistake first with
    /// probability `mistake_rate`.
    pub fn new(n: usize, first_id: i64, seed: u64, mistake_rate: f64) -> Crowd {
        let mut rng = Rng::new(seed);
        let prospects = (0..n)
            .map(|i| {
                let id = first_id + i64::try_from(i).unwrap_or(0);
                let phone = format!("+7912{:07}", id.rem_euclid(10_000_000));
                Prospect {
                    user: User::new(id).lang("ru").first_name("Гость"),
                    name: NAMES[i % NAMES.len()],
                    phone,
                    typed_phone: rng.chance(0.5),
                    need: usize::try_from(rng.below(3)).unwrap_or(0),
                    timing: usize::try_from(rng.below(3)).unwrap_or(0),
                    offers: usize::try_from(rng.below(2)).unwrap_or(0),
                    answered: HashSet::new(),
                    mistaken: HashSet::new(),
                    done: HashSet::new(),
                    thinking: None,
                    finished: false,
                    started: false,
                }
            })
            .collect();
        Crowd {
            prospects,
            rng,
            mistake_rate,
            think: None,
            tally: Tally::default(),
            pushed: Vec::new(),
        }
    }

    /// Prospects take between `min` and `max` to start and to answer each question, as people
    /// do, instead of answering at once.
    pub fn with_think_time(mut self, min: Duration, max: Duration) -> Crowd {
        self.think = Some((min, max.max(min)));
        self
    }

    /// Whether a prospect thinking about message `id` is ready to answer now; the first look at
    /// a message starts the thinking.
    fn ready(&mut self, i: usize, id: i64) -> bool {
        let Some((min, max)) = self.think else {
            return true;
        };
        let now = Instant::now();
        match self.prospects[i].thinking {
            Some((seen, at)) if seen == id => now >= at,
            _ => {
                let spread = u64::try_from((max - min).as_millis()).unwrap_or(0);
                let think = min + Duration::from_millis(self.rng.below(spread + 1));
                self.prospects[i].thinking = Some((id, now + think));
                false
            }
        }
    }

    /// How many prospects saw a goodbye.
    pub fn finished(&self) -> usize {
        self.prospects.iter().filter(|p| p.finished).count()
    }

    pub fn all_finished(&self) -> bool {
        self.prospects.iter().all(|p| p.finished)
    }

    /// One look at every chat: starts prospects that have not started and answers every new
    /// question. Returns how many updates were pushed.
    pub fn step(&mut self, fake: &FakeTelegram) -> usize {
        let mut pushed = 0;
        for i in 0..self.prospects.len() {
            if self.prospects[i].finished {
                continue;
            }
            if !self.prospects[i].started && !self.ready(i, 0) {
                continue;
            }
            let last = fake.last_bot_message(self.prospects[i].user.id);
            if let Some(m) = &last
                && !self.prospects[i].answered.contains(&m.message_id)
                && Question::of(m.visible_text()).is_some()
                && !self.ready(i, m.message_id)
            {
                continue;
            }
            let update = {
                let p = &mut self.prospects[i];
                if !p.started {
                    p.started = true;
                    Some((p.user.command("start", "chaos"), false))
                } else {
                    match last {
                        Some(m) if !p.answered.contains(&m.message_id) => {
                            let text = m.visible_text().to_owned();
                            if GOODBYES.iter().any(|g| text.contains(g)) {
                                p.finished = true;
                                None
                            } else if let Some(q) = Question::of(&text) {
                                p.answered.insert(m.message_id);
                                if p.done.contains(&q) {
                                    continue;
                                }
                                let mistake =
                                    !p.mistaken.contains(&q) && self.rng.chance(self.mistake_rate);
                                if mistake {
                                    p.mistaken.insert(q);
                                } else {
                                    p.done.insert(q);
                                }
                                Some((answer(p, q, &m, mistake, &mut self.rng), mistake))
                            } else {
                                // A reply to a mistake, a greeting: the question follows.
                                None
                            }
                        }
                        _ => None,
                    }
                }
            };
            if let Some((update, mistake)) = update {
                let pushed_update = fake.push(update);
                self.pushed.push(pushed_update.update_id);
                self.tally.updates += 1;
                self.tally.mistakes += usize::from(mistake);
                pushed += 1;
            }
        }
        pushed
    }

    /// Drives the crowd until everyone finished or `timeout` passes, calling `between` after
    /// every look (the chaos test kills the bot there). Waits for the fake's state to change
    /// between looks, or with a think time looks every 20 ms (the prospects' own clock).
    pub async fn drive(
        &mut self,
        fake: &FakeTelegram,
        timeout: Duration,
        mut between: impl FnMut(&Crowd, &FakeTelegram),
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            self.step(fake);
            between(self, fake);
            if self.all_finished() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let stuck: Vec<String> = self
                    .prospects
                    .iter()
                    .filter(|p| !p.finished)
                    .take(3)
                    .map(|p| format!("prospect {}:\n{}", p.user.id, fake.transcript(p.user.id)))
                    .collect();
                return Err(format!(
                    "{} of {} prospects did not finish in {timeout:?}; for example\n{}",
                    self.prospects.len() - self.finished(),
                    self.prospects.len(),
                    stuck.join("\n")
                ));
            }
            if self.think.is_some() {
                // People look at their phones on their own clock, not when the bot sends: every
                // 20 ms, often enough to answer on time.
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                let seen = fake.read(|s| s.requests().len());
                let _ = fake
                    .wait_until(Duration::from_millis(200), |s| s.requests().len() != seen)
                    .await;
            }
        }
    }
}

/// The update a prospect sends for question `q` (a mistake when asked).
fn answer(
    p: &Prospect,
    q: Question,
    m: &StoredMessage,
    mistake: bool,
    rng: &mut Rng,
) -> super::updates::Update {
    let user = &p.user;
    if mistake {
        return match (q, rng.below(3)) {
            (_, 0) => user.sticker(),
            (Question::Phone, _) => user.text("12"),
            (Question::Name, _) => user.voice(),
            (_, _) => user.text("может быть"),
        };
    }
    let press = |label: &str| {
        if m.callback_data(label).is_some() {
            user.presses_button(m, label)
        } else {
            // A choice also accepts its label typed by hand.
            user.text(label)
        }
    };
    match q {
        Question::Consent => press("Согласен"),
        Question::Name => user.text(p.name),
        Question::Phone if p.typed_phone => {
            let d = &p.phone[2..];
            user.text(&format!(
                "8 {} {}-{}-{}",
                &d[..3],
                &d[3..6],
                &d[6..8],
                &d[8..]
            ))
        }
        Question::Phone => user.contact(&p.phone),
        Question::Need => press(NEED[p.need]),
        Question::Timing => press(TIMING[p.timing]),
        Question::Offers => press(OFFERS[p.offers]),
    }
}

/// What the checks found: how many messages Telegram got twice.
#[derive(Debug, Default, Clone, Copy)]
pub struct Duplicates {
    /// Messages to prospects beyond the outbox rows recorded as sent.
    pub to_prospects: i64,
    /// Hot-lead alerts beyond one per hot lead.
    pub alerts: i64,
}

impl Duplicates {
    pub fn total(&self) -> i64 {
        self.to_prospects + self.alerts
    }
}

/// Message-creating outbox rows recorded as sent, per chat: how many, and how many of them were
/// repeated claims (in flight when the bot was killed, or retried after a failure).
async fn sent_per_chat(db: &Db) -> BTreeMap<i64, (i64, i64)> {
    const SQL: &str = "SELECT chat_id, action, attempts FROM outbox WHERE status = 'sent'";
    let rows: Vec<(i64, String, i32)> = match db {
        Db::Sqlite(p) => sqlx::query_as(SQL).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(SQL).fetch_all(p).await,
    }
    .expect("reading the outbox");
    let mut per_chat = BTreeMap::new();
    for (chat, action, attempts) in rows {
        let kind = serde_json::from_str::<Value>(&action)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        if matches!(
            kind.as_str(),
            "send_message" | "copy_message" | "send_document"
        ) {
            let entry: &mut (i64, i64) = per_chat.entry(chat).or_default();
            entry.0 += 1;
            entry.1 += i64::from(attempts.max(1) - 1);
        }
    }
    per_chat
}

/// Checks one chat: Telegram holds at least what the outbox recorded, and anything beyond it is
/// a row that was claimed more than once (the window between Telegram accepting a send and the
/// bot recording it). Returns the duplicates.
fn duplicates_in(chat: i64, got: usize, sent: Option<&(i64, i64)>) -> i64 {
    let got = i64::try_from(got).unwrap_or(i64::MAX);
    let (recorded, claimed_again) = sent.copied().unwrap_or_default();
    assert!(
        got >= recorded,
        "chat {chat}: the outbox says {recorded} sent, Telegram has {got}"
    );
    assert!(
        got - recorded <= claimed_again,
        "chat {chat}: Telegram has {got} messages, the outbox recorded {recorded}, and only \
         {claimed_again} were ever in flight twice: a message was doubled outside the window"
    );
    got - recorded
}

/// Messages applied without leaving an inbound message in the lead's history. (A press of a
/// button under a question already answered, as under a question sent twice, is answered
/// "this button no longer works" and is not history.)
const WITHOUT_INBOUND: &str = "SELECT u.update_id, SUBSTR(u.payload, 1, 160) FROM updates u \
     WHERE u.payload NOT LIKE '%\"callback_query\"%' AND NOT EXISTS \
     (SELECT 1 FROM messages m WHERE m.update_id = u.update_id AND m.direction = 'in') ORDER BY u.update_id";

/// Runs a SQL count on either database.
async fn count(db: &Db, sql: &str) -> i64 {
    let n: (i64,) = match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n.0
}

/// Checks the invariants after a run and counts duplicates:
/// - every update the crowd pushed is stored and applied, none is left pending or failed;
/// - no inbound message was recorded twice (an update applied once);
/// - every prospect is qualified with exactly the answers it gave;
/// - the outbox is drained and nothing was given up;
/// - every hot lead has an alert; duplicates are what Telegram holds beyond the outbox's record.
pub async fn check(crowd: &Crowd, fake: &FakeTelegram, db: &Db) -> Duplicates {
    let pushed: HashSet<i64> = crowd.pushed.iter().copied().collect();
    let stored: Vec<(i64, Option<i64>, Option<String>)> = match db {
        Db::Sqlite(p) => {
            sqlx::query_as("SELECT update_id, processed_at, error FROM updates")
                .fetch_all(p)
                .await
        }
        Db::Postgres(p) => {
            sqlx::query_as("SELECT update_id, processed_at, error FROM updates")
                .fetch_all(p)
                .await
        }
    }
    .expect("reading updates");
    let stored_ids: HashSet<i64> = stored.iter().map(|(id, _, _)| *id).collect();
    let lost: Vec<&i64> = pushed.difference(&stored_ids).collect();
    assert!(lost.is_empty(), "updates lost (never stored): {lost:?}");
    let unapplied: Vec<_> = stored.iter().filter(|(_, at, _)| at.is_none()).collect();
    assert!(unapplied.is_empty(), "updates never applied: {unapplied:?}");

    let twice = count(
        db,
        "SELECT COUNT(*) FROM (SELECT update_id FROM messages WHERE direction = 'in' \
         AND update_id IS NOT NULL GROUP BY update_id HAVING COUNT(*) > 1) AS t",
    )
    .await;
    assert_eq!(twice, 0, "inbound messages recorded twice");
    let without: Vec<(i64, Option<String>)> = match db {
        Db::Sqlite(p) => sqlx::query_as(WITHOUT_INBOUND).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(WITHOUT_INBOUND).fetch_all(p).await,
    }
    .expect("reading updates without history");
    assert!(
        without.is_empty(),
        "updates applied without an inbound history row: {without:?}"
    );

    for p in &crowd.prospects {
        let lead = storage::leads::by_telegram(db, p.user.id)
            .await
            .expect("reading a lead")
            .unwrap_or_else(|| panic!("lead {} not stored", p.user.id));
        assert_eq!(lead.status, "qualified", "lead {}", p.user.id);
        assert_eq!(lead.phone.as_deref(), Some(p.phone.as_str()));
        assert_eq!(lead.name.as_deref(), Some(p.name));
        assert!(lead.consent_at.is_some());
        assert_eq!(lead.marketing_consent_at.is_some(), p.offers == 0);
        assert_eq!(lead.temperature == "hot", p.hot(), "lead {}", p.user.id);
        let session: Value = serde_json::from_str(&lead.session).expect("session JSON");
        let answers: BTreeMap<String, String> = session["answers"]
            .as_object()
            .map(|a| {
                a.values()
                    .filter_map(|v| {
                        Some((
                            v.get("step")?.as_str()?.to_owned(),
                            v.get("value")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (step, value) in p.expected_answers() {
            assert_eq!(
                answers.get(step),
                Some(&value),
                "lead {} answer to {step}: {answers:?}",
                p.user.id
            );
        }
    }

    // A forum topic is given up when the staff chat turns out not to be a forum (the tests' is a
    // plain group). Answers to button presses are not outbox rows, so none is excused.
    const UNDELIVERED: &str = "SELECT id, status, COALESCE(last_error, ''), SUBSTR(action, 1, 60) \
        FROM outbox WHERE status IN ('queued', 'pending', 'sending', 'failed') \
        AND NOT (action LIKE '%\"create_topic\"%' AND last_error = 'the staff chat is not a forum')";
    let undelivered: Vec<(i64, String, String, String)> = match db {
        Db::Sqlite(p) => sqlx::query_as(UNDELIVERED).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(UNDELIVERED).fetch_all(p).await,
    }
    .expect("reading the outbox");
    assert!(
        undelivered.is_empty(),
        "outbox rows not delivered: {undelivered:?}"
    );

    let sent = sent_per_chat(db).await;
    let mut dups = Duplicates::default();
    for p in &crowd.prospects {
        let got = fake.bot_messages_in(p.user.id).len();
        dups.to_prospects += duplicates_in(p.user.id, got, sent.get(&p.user.id));
    }
    let cards: Vec<StoredMessage> = fake
        .bot_messages_in(STAFF_CHAT)
        .into_iter()
        .filter(|m| m.visible_text().contains("Горячий лид"))
        .collect();
    for p in crowd.prospects.iter().filter(|p| p.hot()) {
        let n = cards
            .iter()
            .filter(|m| m.visible_text().contains(&p.phone))
            .count();
        assert!(n >= 1, "hot lead {} was not alerted", p.user.id);
        dups.alerts += i64::try_from(n).unwrap_or(0) - 1;
    }
    let staff = fake.bot_messages_in(STAFF_CHAT).len();
    let staff_dups = duplicates_in(STAFF_CHAT, staff, sent.get(&STAFF_CHAT));
    assert!(
        staff_dups >= dups.alerts,
        "alerts doubled outside the window"
    );
    dups
}

/// Waits until the outbox holds nothing pending or in flight.
pub async fn settle(db: &Db, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let busy = count(
            db,
            "SELECT COUNT(*) FROM outbox WHERE status IN ('queued', 'pending', 'sending')",
        )
        .await
            + count(
                db,
                "SELECT COUNT(*) FROM updates WHERE processed_at IS NULL",
            )
            .await;
        if busy == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("{busy} outbox rows or updates still pending"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The outbox rows not yet delivered and the updates not yet applied, for failure messages.
pub async fn backlog_report(db: &Db) -> String {
    const OUTBOX: &str = "SELECT id, chat_id, status, attempts, next_attempt_at, COALESCE(last_error, ''), \
        SUBSTR(action, 1, 40) FROM outbox WHERE status IN ('queued', 'pending', 'sending') ORDER BY id LIMIT 30";
    const UPDATES: &str = "SELECT update_id, attempts, COALESCE(error, '') FROM updates \
        WHERE processed_at IS NULL ORDER BY update_id LIMIT 30";
    type OutboxLine = (i64, i64, String, i32, i64, String, String);
    let outbox: Result<Vec<OutboxLine>, _> = match db {
        Db::Sqlite(p) => sqlx::query_as(OUTBOX).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(OUTBOX).fetch_all(p).await,
    };
    let updates: Result<Vec<(i64, i32, String)>, _> = match db {
        Db::Sqlite(p) => sqlx::query_as(UPDATES).fetch_all(p).await,
        Db::Postgres(p) => sqlx::query_as(UPDATES).fetch_all(p).await,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut out =
        String::from("outbox backlog (id chat status attempts due_in_ms error action):\n");
    for (id, chat, status, attempts, due, error, action) in outbox.unwrap_or_default() {
        out += &format!(
            "  {id} {chat} {status} {attempts} {} {error} {action}\n",
            due - now
        );
    }
    out += "updates not applied (id attempts error):\n";
    for (id, attempts, error) in updates.unwrap_or_default() {
        out += &format!("  {id} {attempts} {error}\n");
    }
    out
}
