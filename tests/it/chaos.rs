//! Chaos: the real `leadbot` binary is killed with SIGKILL at random moments while a crowd of
//! prospects goes through the shipped dialogue, and restarted each time. Afterwards every prospect
//! finished, every answer is stored once, nothing is lost, and messages Telegram got twice (the
//! documented window between Telegram accepting a send and the bot recording it) are counted.
//!
//! The short version runs in the normal suite; `LEADBOT_CHAOS_FULL=1` runs 200 prospects and 25
//! kills (`scripts/chaos.sh`, with the release build named by `LEADBOT_CHAOS_BIN`).
//! `LEADBOT_CHAOS_SEED` replays a run. Prospects answer at once
//! (every kill then lands among a crowd of sends in flight) unless `LEADBOT_CHAOS_THINK_MS=MIN-MAX`
//! gives them a person's pace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::both_databases;
use crate::support::app::{STAFF_CHAT, TestDb, shipped_dialogues};
use crate::support::crowd::{self, Crowd, Rng};
use crate::support::fake_telegram::FakeTelegram;
use leadbot::storage::{self, Db};

/// The bot as a child process, restarted after each kill.
struct BotProcess {
    env: Vec<(&'static str, String)>,
    dir: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl BotProcess {
    fn new(fake: &FakeTelegram, database_url: &str, dir: &Path) -> BotProcess {
        BotProcess {
            env: vec![
                ("TELOXIDE_TOKEN", "123456:CHAOS-token".to_owned()),
                ("TELOXIDE_API_URL", fake.api_url().to_string()),
                ("LEADBOT_STAFF_CHAT_ID", STAFF_CHAT.to_string()),
                ("DATABASE_URL", database_url.to_owned()),
                (
                    "LEADBOT_DIALOGUES",
                    shipped_dialogues().display().to_string(),
                ),
                ("LEADBOT_QUIET_HOURS", "off".to_owned()),
                (
                    "RUST_LOG",
                    std::env::var("LEADBOT_CHAOS_LOG").unwrap_or_else(|_| "warn".to_owned()),
                ),
            ],
            dir: dir.to_owned(),
            child: None,
            starts: 0,
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("leadbot.log")
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("bot log file");
        // `scripts/chaos.sh` runs the release build; the suite runs the test build.
        let bin = std::env::var("LEADBOT_CHAOS_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_leadbot").to_owned());
        let mut command = Command::new(bin);
        command
            .arg("run")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            // No stray .env: the bot runs in its own folder.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("starting leadbot run"));
    }

    /// SIGKILL: no shutdown, no flush, whatever was in flight is cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            match child.try_wait() {
                Ok(Some(status)) => panic!(
                    "the bot exited on its own ({status}) before being killed; log:\n{}",
                    self.log_tail()
                ),
                Ok(None) => {}
                Err(e) => panic!("cannot check the bot process: {e}"),
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log_tail(&self) -> String {
        if std::env::var("LEADBOT_CHAOS_KEEP_LOG").is_ok() {
            let _ = std::fs::copy(self.log_path(), "/tmp/chaos-bot.log");
        }
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How big a run is.
struct Size {
    prospects: usize,
    kills: usize,
    timeout: Duration,
    /// How long prospects take to answer (`LEADBOT_CHAOS_THINK_MS=500-3000`); at once if unset.
    think: Option<(Duration, Duration)>,
}

fn size() -> Size {
    let mut size = full_or_short();
    if let Some(kills) = std::env::var("LEADBOT_CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
    {
        size.kills = kills;
    }
    if let Some(n) = std::env::var("LEADBOT_CHAOS_PROSPECTS")
        .ok()
        .and_then(|k| k.parse().ok())
    {
        size.prospects = n;
    }
    if let Ok(think) = std::env::var("LEADBOT_CHAOS_THINK_MS") {
        let parsed = think.split_once('-').and_then(|(a, b)| {
            Some((
                Duration::from_millis(a.trim().parse().ok()?),
                Duration::from_millis(b.trim().parse().ok()?),
            ))
        });
        match parsed {
            Some(range) => size.think = Some(range),
            None => panic!("LEADBOT_CHAOS_THINK_MS must be MIN-MAX in milliseconds, not {think:?}"),
        }
    }
    size
}

fn full_or_short() -> Size {
    if std::env::var("LEADBOT_CHAOS_FULL").is_ok_and(|v| v == "1") {
        Size {
            prospects: 200,
            kills: 25,
            timeout: Duration::from_secs(300),
            think: None,
        }
    } else {
        Size {
            prospects: 30,
            kills: 5,
            timeout: Duration::from_secs(60),
            think: None,
        }
    }
}

/// When the kills come, in order.
enum Kills {
    /// After a random number of Bot API calls (other than `getUpdates`), spread over the run: a
    /// kill follows a call the fake just answered, so it lands in every phase (mid-send,
    /// mid-transaction, at start-up) and, with prospects answering at once, among a crowd of
    /// sends in flight.
    AfterCalls(Vec<usize>),
    /// At random times since the start, spread over the run (prospects at a person's pace): the
    /// moment of a kill owes nothing to what the bot is doing.
    AtTimes(Vec<Duration>),
}

impl Kills {
    fn plan(rng: &mut Rng, size: &Size) -> Kills {
        match size.think {
            None => {
                // About 9 sends, callback answers and edits per prospect.
                let expected_calls = 9 * size.prospects as u64;
                let mut points: Vec<usize> = (0..size.kills)
                    .map(|_| usize::try_from(rng.below(expected_calls * 9 / 10)).unwrap_or(0))
                    .collect();
                points.sort_unstable();
                Kills::AfterCalls(points)
            }
            Some((min, max)) => {
                // About 8 thoughts per prospect (the start, 6 questions, a mistake or two).
                let expected = (min + max) * 4;
                let span = u64::try_from(expected.as_millis()).unwrap_or(0) * 9 / 10;
                let mut times: Vec<Duration> = (0..size.kills)
                    .map(|_| Duration::from_millis(rng.below(span.max(1))))
                    .collect();
                times.sort_unstable();
                Kills::AtTimes(times)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Kills::AfterCalls(p) => p.len(),
            Kills::AtTimes(t) => t.len(),
        }
    }

    /// Whether kill `k` is due after `calls` calls, `elapsed` into the run.
    fn due(&self, k: usize, calls: impl FnOnce() -> usize, elapsed: Duration) -> bool {
        match self {
            Kills::AfterCalls(p) => p.get(k).is_some_and(|p| calls() >= *p),
            Kills::AtTimes(t) => t.get(k).is_some_and(|t| elapsed >= *t),
        }
    }
}

fn say(line: String) {
    // Past the harness's capture, so the figures show in CI logs.
    let _ = writeln!(std::io::stderr(), "{line}");
}

both_databases! {
    async fn prospects_finish_with_every_answer_stored_once_while_the_bot_is_killed(backend: Backend) {
        let size = size();
        let seed = crowd::seed();
        let pace = match size.think {
            Some((min, max)) => format!("answering after {}-{} ms", min.as_millis(), max.as_millis()),
            None => "answering at once".to_owned(),
        };
        say(format!("chaos: seed {seed} (replay with LEADBOT_CHAOS_SEED={seed}), {} prospects {pace}, {} kills", size.prospects, size.kills));
        let fake = FakeTelegram::start().await;
        let test_db = TestDb::create(&backend).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bot = BotProcess::new(&fake, &test_db.url, dir.path());
        let mut rng = Rng::new(seed ^ 0xC4A05);
        let kills = Kills::plan(&mut rng, &size);
        let mut crowd = Crowd::new(size.prospects, 500_000, seed, 0.15);
        if let Some((min, max)) = size.think {
            crowd = crowd.with_think_time(min, max);
        }

        let started = Instant::now();
        bot.start();
        let mut next_kill = 0;
        let result = crowd
            .drive(&fake, size.timeout, |_, fake| {
                let calls = || fake.read(|s| s.requests().iter().filter(|r| r.method != "getUpdates").count());
                while kills.due(next_kill, calls, started.elapsed()) {
                    bot.kill();
                    bot.start();
                    next_kill += 1;
                }
            })
            .await;
        if let Err(e) = result {
            panic!("{e}\nseed {seed}; bot log:\n{}", bot.log_tail());
        }
        // Kills not reached yet (the crowd finished early) happen now, while the outbox drains.
        while next_kill < kills.len() {
            bot.kill();
            bot.start();
            next_kill += 1;
        }
        let db = Db::connect(&test_db.url).await.expect("test database");
        if let Err(e) = crowd::settle(&db, size.timeout).await {
            panic!("{e}\nseed {seed}; bot log:\n{}", bot.log_tail());
        }
        let elapsed = started.elapsed();
        bot.kill();
        let dups = crowd::check(&crowd, &fake, &db).await;
        say(format!(
            "chaos: {} prospects finished in {elapsed:.1?} through {} kills ({} starts); {} updates ({} mistakes); \
             duplicates: {} to prospects, {} alerts, {:.1} per kill (seed {seed})",
            crowd.finished(),
            size.kills,
            bot.starts,
            crowd.tally.updates,
            crowd.tally.mistakes,
            dups.to_prospects,
            dups.alerts,
            dups.total() as f64 / size.kills.max(1) as f64,
        ));
        // Each duplicate was checked to be a send in flight at a kill; at most one chain per chat
        // (`storage::outbox::CHAIN` messages) can be in flight at a time, so a kill doubles at
        // most that many messages per prospect (and one alert).
        let chain = usize::try_from(storage::outbox::CHAIN).unwrap_or(usize::MAX);
        let bound = i64::try_from(size.kills * (size.prospects * chain + 1)).unwrap_or(i64::MAX);
        assert!(
            dups.total() <= bound,
            "more duplicates ({}) than sends in flight at the kills (at most {bound}); seed {seed}",
            dups.total(),
        );
        db.close().await;
    }
}
