//! leadbot's benchmark harness: one fake Bot API, the simulated prospects, and every bot under
//! test started as a child process against it. Writes BENCHMARKS.md.

mod driver;
mod fake;
mod proc;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use driver::{Driver, Script};
use fake::Fake;

const TOKEN: &str = "123456:bench-token";
const STAFF_CHAT: i64 = -1_001_000_000_001;
/// Seeded leads have Telegram ids from here up; prospects of the runs stay far below.
const SEED_BASE: i64 = 5_000_000_000;
const BROADCAST_BASE: i64 = 6_000_000_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub soak: bool,
    pub duration: Duration,
    pub warmup: Duration,
    pub prospects: usize,
    pub offered: u64,
    pub seed_leads: u64,
    pub broadcast_recipients: u64,
    pub broadcast_rate: u64,
    pub soak_steps: u64,
    pub repo: PathBuf,
    pub leadbot: PathBuf,
    pub echo: Option<PathBuf>,
    pub dialogue: Option<PathBuf>,
    pub aiogram_python: Option<PathBuf>,
    pub aiogram_script: Option<PathBuf>,
    pub pg_admin: String,
    pub out: PathBuf,
    pub command: String,
    pub only: Option<Vec<String>>,
    /// Only the broadcast figure (leadbot kinds), without the load phases.
    pub only_broadcast: bool,
    pub work: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LeadbotSqlite,
    LeadbotPostgres,
    Echo,
    TeloxideDialogue,
    Aiogram,
}

impl Kind {
    pub fn key(self) -> &'static str {
        match self {
            Kind::LeadbotSqlite => "leadbot-sqlite",
            Kind::LeadbotPostgres => "leadbot-postgres",
            Kind::Echo => "teloxide-echo",
            Kind::TeloxideDialogue => "teloxide-dialogue",
            Kind::Aiogram => "aiogram",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Kind::LeadbotSqlite => "leadbot, SQLite",
            Kind::LeadbotPostgres => "leadbot, PostgreSQL",
            Kind::Echo => "teloxide echo, no storage (ceiling)",
            Kind::TeloxideDialogue => "teloxide dialogue, SqliteStorage",
            Kind::Aiogram => "aiogram 3 FSM (MemoryStorage)",
        }
    }
    fn is_leadbot(self) -> bool {
        matches!(self, Kind::LeadbotSqlite | Kind::LeadbotPostgres)
    }
}

/// One load phase's figures.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub steps: u64,
    pub secs: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub cpu_s: f64,
    pub finished: u64,
    pub other: u64,
    pub not_offered: u64,
    pub drained: bool,
}

impl Load {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.steps as f64 / self.secs
        } else {
            0.0
        }
    }
    pub fn cpu_per_1000(&self) -> f64 {
        if self.steps > 0 {
            self.cpu_s * 1000.0 / self.steps as f64
        } else {
            f64::NAN
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Broadcast {
    pub recipients: u64,
    pub sent: u64,
    pub secs: f64,
    pub too_many: u64,
    pub duplicates: u64,
}

/// Everything measured for one bot.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: Kind,
    pub error: Option<String>,
    pub startup_ms: Option<f64>,
    pub seeded: u64,
    pub closed: Option<Load>,
    pub open: Option<Load>,
    pub rss_start_kb: Option<u64>,
    pub rss_peak_kb: Option<u64>,
    pub broadcast: Option<Result<Broadcast, String>>,
}

#[derive(Debug, Clone)]
pub struct Soak {
    pub steps: u64,
    pub secs: f64,
    /// (steps, RSS in kB, seconds since the closed loop started)
    pub samples: Vec<(u64, u64, f64)>,
    pub peak_kb: u64,
}

fn usage() -> &'static str {
    "leadbot-bench --repo DIR --leadbot BIN [--echo BIN] [--dialogue BIN] [--aiogram-python PY --aiogram-script FILE]\n\
     [--quick] [--soak] [--duration SECS] [--prospects N] [--offered RATE] [--seed-leads N]\n\
     [--pg URL] [--only a,b] [--only-broadcast] [--out FILE] [--command TEXT]"
}

fn parse_args() -> anyhow::Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        quick: false,
        soak: false,
        duration: Duration::from_secs(30),
        warmup: Duration::from_secs(3),
        prospects: 1000,
        offered: 500,
        seed_leads: 100_000,
        broadcast_recipients: 20_000,
        broadcast_rate: 1000,
        soak_steps: 1_000_000,
        repo: PathBuf::from("."),
        leadbot: PathBuf::new(),
        echo: None,
        dialogue: None,
        aiogram_python: None,
        aiogram_script: None,
        pg_admin: "postgres://postgres@127.0.0.1:5432/postgres".into(),
        out: PathBuf::from("BENCHMARKS.md"),
        command: "bench/run.sh".into(),
        only: None,
        only_broadcast: false,
        work: std::env::temp_dir().join(format!("leadbot-bench-{}", std::process::id())),
    };
    let mut duration_set = false;
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--soak" => o.soak = true,
            "--duration" => {
                o.duration = Duration::from_secs_f64(val()?.parse()?);
                duration_set = true;
            }
            "--prospects" => o.prospects = val()?.parse()?,
            "--offered" => o.offered = val()?.parse()?,
            "--seed-leads" => o.seed_leads = val()?.parse()?,
            "--soak-steps" => o.soak_steps = val()?.parse()?,
            "--repo" => o.repo = PathBuf::from(val()?),
            "--leadbot" => o.leadbot = PathBuf::from(val()?),
            "--echo" => o.echo = Some(PathBuf::from(val()?)),
            "--dialogue" => o.dialogue = Some(PathBuf::from(val()?)),
            "--aiogram-python" => o.aiogram_python = Some(PathBuf::from(val()?)),
            "--aiogram-script" => o.aiogram_script = Some(PathBuf::from(val()?)),
            "--pg" => o.pg_admin = val()?,
            "--out" => o.out = PathBuf::from(val()?),
            "--command" => o.command = val()?,
            "--only" => o.only = Some(val()?.split(',').map(str::to_owned).collect()),
            "--only-broadcast" => o.only_broadcast = true,
            "--work" => o.work = PathBuf::from(val()?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{}", usage()),
        }
    }
    if o.quick {
        if !duration_set {
            o.duration = Duration::from_secs(4);
        }
        o.warmup = Duration::from_secs(1);
        o.broadcast_recipients = 3_000;
        o.soak_steps = 50_000;
    }
    if o.leadbot.as_os_str().is_empty() {
        anyhow::bail!("--leadbot is required\n{}", usage());
    }
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let opts = parse_args()?;
    // The work directory is the harness's own (removed at the end unless kept): start it empty,
    // so a kept one's logs, which each phase appends to, are of this run only.
    let _ = std::fs::remove_dir_all(&opts.work);
    std::fs::create_dir_all(&opts.work)?;
    let fake = Fake::start().await?;
    eprintln!("fake Bot API on {}", fake.url());
    let machine = report::Machine::read();
    let started = chrono_like_now();

    if opts.soak {
        let soak = run_soak(&opts, &fake).await?;
        report::write_soak(&opts, &machine, &started, &soak)?;
        remove_work(&opts.work);
        return Ok(());
    }

    let kinds = [
        Kind::Echo,
        Kind::LeadbotSqlite,
        Kind::LeadbotPostgres,
        Kind::TeloxideDialogue,
        Kind::Aiogram,
    ];
    let mut outcomes = Vec::new();
    let mut first_user = 1_000_000;
    for kind in kinds {
        if let Some(only) = &opts.only
            && !only.iter().any(|k| k == kind.key())
        {
            continue;
        }
        eprintln!("== {}", kind.label());
        if opts.only_broadcast {
            if !kind.is_leadbot() {
                continue;
            }
            let outcome = Outcome {
                kind,
                error: None,
                startup_ms: None,
                seeded: 0,
                closed: None,
                open: None,
                rss_start_kb: None,
                rss_peak_kb: None,
                broadcast: Some(broadcast(&opts, &fake, kind).await),
            };
            eprintln!("   {}", report::summary(&outcome));
            outcomes.push(outcome);
            continue;
        }
        let outcome = match measure(&opts, &fake, kind, first_user).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("   {kind:?} failed: {e:#}");
                Outcome {
                    kind,
                    error: Some(format!("{e:#}")),
                    startup_ms: None,
                    seeded: 0,
                    closed: None,
                    open: None,
                    rss_start_kb: None,
                    rss_peak_kb: None,
                    broadcast: None,
                }
            }
        };
        eprintln!("   {}", report::summary(&outcome));
        outcomes.push(outcome);
        first_user += 100_000_000;
    }
    let load_end = report::loadavg();
    report::write(&opts, &machine, &started, &load_end, &outcomes)?;
    eprintln!("wrote {}", opts.out.display());
    remove_work(&opts.work);
    Ok(())
}

/// The bots' log filter: `warn`, or `BENCH_BOT_LOG` (e.g. `warn,sqlx::query=debug` to see each
/// statement's time; the logs are in the work directory, kept when `BENCH_KEEP_WORK` is set).
fn bot_log_filter() -> String {
    std::env::var("BENCH_BOT_LOG").unwrap_or_else(|_| "warn".to_owned())
}

fn remove_work(work: &Path) {
    if std::env::var_os("BENCH_KEEP_WORK").is_none() {
        let _ = std::fs::remove_dir_all(work);
    }
}

fn chrono_like_now() -> String {
    proc::run("date", &["-u", "+%Y-%m-%d %H:%M UTC"], &[])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// A database prepared for one leadbot process.
struct Database {
    url: String,
    pg_name: Option<String>,
}

fn leadbot_env(opts: &Options, fake: &Fake, db_url: &str) -> Vec<(String, String)> {
    vec![
        ("TELOXIDE_TOKEN".into(), TOKEN.into()),
        ("TELOXIDE_API_URL".into(), fake.url()),
        ("LEADBOT_STAFF_CHAT_ID".into(), STAFF_CHAT.to_string()),
        ("DATABASE_URL".into(), db_url.into()),
        (
            "LEADBOT_DIALOGUES".into(),
            opts.repo.join("dialogues").display().to_string(),
        ),
        ("LEADBOT_QUIET_HOURS".into(), "off".into()),
        (
            "LEADBOT_BROADCAST_RATE".into(),
            opts.broadcast_rate.to_string(),
        ),
        ("RUST_LOG".into(), bot_log_filter()),
    ]
}

fn create_database(opts: &Options, kind: Kind, tag: &str) -> anyhow::Result<Database> {
    match kind {
        Kind::LeadbotPostgres => {
            let name = format!("leadbot_bench_{}_{tag}", std::process::id());
            proc::run(
                "psql",
                &[
                    &opts.pg_admin,
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name}"),
                ],
                &[],
            )?;
            proc::run(
                "psql",
                &[
                    &opts.pg_admin,
                    "-q",
                    "-c",
                    &format!("CREATE DATABASE {name}"),
                ],
                &[],
            )
            .context("PostgreSQL is not reachable")?;
            let base = opts
                .pg_admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_owned())
                .unwrap_or_else(|| opts.pg_admin.clone());
            Ok(Database {
                url: format!("{base}/{name}"),
                pg_name: Some(name),
            })
        }
        _ => {
            let path = opts.work.join(format!("leadbot-{tag}.db"));
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            Ok(Database {
                url: format!("sqlite://{}", path.display()),
                pg_name: None,
            })
        }
    }
}

fn drop_database(opts: &Options, db: &Database) {
    if let Some(name) = &db.pg_name {
        let _ = proc::run(
            "psql",
            &[
                &opts.pg_admin,
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ],
            &[],
        );
    }
}

/// Runs SQL against the database: sqlite3 or psql.
fn exec_sql(db: &Database, sql: &str) -> anyhow::Result<()> {
    if db.pg_name.is_some() {
        proc::run(
            "psql",
            &[&db.url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
            &[],
        )?;
    } else {
        let path = db.url.trim_start_matches("sqlite://");
        proc::run("sqlite3", &[path, sql], &[])?;
    }
    Ok(())
}

/// `n` leads from Telegram id `base` up, qualified, with marketing consent (the broadcast's audience).
fn seed_sql(postgres: bool, base: i64, n: u64) -> String {
    let cols = "telegram_id, chat_id, first_name, language_code, name, phone, source, score, \
                temperature, status, consent_at, marketing_consent_at, created_at, last_activity_at";
    let t0 = 1_760_000_000_000i64;
    if postgres {
        format!(
            "INSERT INTO leads ({cols}) SELECT {base} + i, {base} + i, 'Seed', 'en', 'Seed ' || i, \
             '+7900' || lpad(i::text, 7, '0'), 'seed', i % 60, \
             CASE WHEN i % 3 = 0 THEN 'warm' ELSE 'cold' END, 'qualified', {t0}, {t0}, {t0} + i, {t0} + i \
             FROM generate_series(1, {n}) AS i"
        )
    } else {
        format!(
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) \
             INSERT INTO leads ({cols}) SELECT {base} + i, {base} + i, 'Seed', 'en', 'Seed ' || i, \
             '+7900' || printf('%07d', i), 'seed', i % 60, \
             CASE WHEN i % 3 = 0 THEN 'warm' ELSE 'cold' END, 'qualified', {t0}, {t0}, {t0} + i, {t0} + i \
             FROM s"
        )
    }
}

/// Migrates and seeds a fresh database for leadbot.
fn prepare_leadbot_db(
    opts: &Options,
    fake: &Fake,
    kind: Kind,
    tag: &str,
    base: i64,
    n: u64,
) -> anyhow::Result<Database> {
    let db = create_database(opts, kind, tag)?;
    let env = leadbot_env(opts, fake, &db.url);
    proc::run(&opts.leadbot.display().to_string(), &["migrate"], &env)
        .context("leadbot migrate")?;
    if n > 0 {
        exec_sql(&db, &seed_sql(db.pg_name.is_some(), base, n)).context("seeding leads")?;
    }
    Ok(db)
}

/// How to start one bot under test.
fn launch(
    opts: &Options,
    fake: &Fake,
    kind: Kind,
    db: Option<&Database>,
) -> anyhow::Result<proc::Bot> {
    let log = opts.work.join(format!("{}.log", kind.key()));
    let base_env = vec![
        ("TELOXIDE_TOKEN".to_owned(), TOKEN.to_owned()),
        ("TELOXIDE_API_URL".to_owned(), fake.url()),
        ("RUST_LOG".to_owned(), bot_log_filter()),
    ];
    match kind {
        Kind::LeadbotSqlite | Kind::LeadbotPostgres => {
            let db = db.ok_or_else(|| anyhow::anyhow!("leadbot needs a database"))?;
            let env = leadbot_env(opts, fake, &db.url);
            proc::spawn(
                &opts.leadbot.display().to_string(),
                &["run".into()],
                &env,
                &log,
            )
        }
        Kind::Echo => {
            let bin = opts
                .echo
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no --echo binary given"))?;
            proc::spawn(&bin.display().to_string(), &[], &base_env, &log)
        }
        Kind::TeloxideDialogue => {
            let bin = opts
                .dialogue
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no --dialogue binary given"))?;
            let path = opts.work.join("teloxide-dialogue.sqlite");
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            let mut env = base_env;
            env.push(("PEER_SQLITE_PATH".into(), path.display().to_string()));
            proc::spawn(&bin.display().to_string(), &[], &env, &log)
        }
        Kind::Aiogram => {
            let (Some(py), Some(script)) = (&opts.aiogram_python, &opts.aiogram_script) else {
                anyhow::bail!("no aiogram venv given (--aiogram-python, --aiogram-script)");
            };
            proc::spawn(
                &py.display().to_string(),
                &[script.display().to_string()],
                &base_env,
                &log,
            )
        }
    }
}

fn log_tail(opts: &Options, kind: Kind) -> String {
    let log = opts.work.join(format!("{}.log", kind.key()));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

async fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cond()
}

async fn measure(
    opts: &Options,
    fake: &Arc<Fake>,
    kind: Kind,
    first_user: i64,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        kind,
        error: None,
        startup_ms: None,
        seeded: 0,
        closed: None,
        open: None,
        rss_start_kb: None,
        rss_peak_kb: None,
        broadcast: None,
    };
    let script = if kind == Kind::Echo {
        Script::Echo
    } else {
        Script::Dialogue
    };
    let db = if kind.is_leadbot() {
        outcome.seeded = opts.seed_leads;
        Some(prepare_leadbot_db(
            opts,
            fake,
            kind,
            "main",
            SEED_BASE,
            opts.seed_leads,
        )?)
    } else {
        None
    };
    fake.reset(Driver::new(script, first_user));
    let t0 = Instant::now();
    let mut bot = launch(opts, fake, kind, db.as_ref())?;
    let ticks = proc::clock_ticks();
    let result = async {
        let up = wait_until(Duration::from_secs(60), || {
            fake.lock().counters.first_get_updates.is_some()
        })
        .await;
        if !up {
            anyhow::bail!("no getUpdates within 60 s: {}", log_tail(opts, kind));
        }
        if let Some(first) = fake.lock().counters.first_get_updates {
            outcome.startup_ms = Some(first.duration_since(t0).as_secs_f64() * 1000.0);
        }
        outcome.rss_start_kb = proc::status_kb(bot.pid, "VmRSS");
        outcome.closed = Some(closed_loop(opts, fake, &mut bot, ticks).await?);
        outcome.rss_peak_kb = proc::status_kb(bot.pid, "VmHWM");
        outcome.open = Some(open_loop(opts, fake, &mut bot, ticks).await?);
        Ok(())
    }
    .await;
    bot.stop(Duration::from_secs(10)).await;
    if let Some(db) = &db {
        drop_database(opts, db);
    }
    if let Err(e) = result {
        outcome.error = Some(format!("{e:#}"));
    }
    if kind.is_leadbot() {
        outcome.broadcast = Some(broadcast(opts, fake, kind).await);
    }
    Ok(outcome)
}

/// 1,000 prospects, each answering the moment its question arrives.
async fn closed_loop(
    opts: &Options,
    fake: &Arc<Fake>,
    bot: &mut proc::Bot,
    ticks: f64,
) -> anyhow::Result<Load> {
    {
        let mut s = fake.lock();
        s.driver.start_closed(opts.prospects, Instant::now());
    }
    fake.flush_driver();
    tokio::time::sleep(opts.warmup).await;
    let cpu0 = proc::cpu_seconds(bot.pid, ticks).unwrap_or(0.0);
    let t0 = Instant::now();
    fake.lock().driver.begin_recording();
    tokio::time::sleep(opts.duration).await;
    let load = finish_phase(fake, bot, ticks, cpu0, t0).await;
    if bot.exited() {
        anyhow::bail!("the bot exited during the closed loop");
    }
    let (presses, answers, mut waits) = {
        let c = &mut fake.lock().counters;
        (c.presses, c.answers, std::mem::take(&mut c.answer_us))
    };
    waits.sort_unstable();
    let at = |q: f64| {
        let i = ((waits.len() as f64 - 1.0) * q).round().max(0.0) as usize;
        waits.get(i).map_or(0.0, |us| *us as f64 / 1000.0)
    };
    eprintln!(
        "   closed loop: {answers} of {presses} button presses answered so far; press to answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(load)
}

async fn finish_phase(
    fake: &Arc<Fake>,
    bot: &mut proc::Bot,
    ticks: f64,
    cpu0: f64,
    t0: Instant,
) -> Load {
    let secs;
    let mut load = {
        let mut s = fake.lock();
        s.driver.end_recording();
        secs = t0.elapsed().as_secs_f64();
        s.driver.stop();
        let d = &s.driver;
        Load {
            steps: d.steps,
            secs,
            p50_us: d.hist.value_at_quantile(0.5),
            p99_us: d.hist.value_at_quantile(0.99),
            max_us: d.hist.max(),
            cpu_s: 0.0,
            finished: d.finished,
            other: d.other,
            not_offered: d.not_offered,
            drained: false,
        }
    };
    load.cpu_s = proc::cpu_seconds(bot.pid, ticks).unwrap_or(cpu0) - cpu0;
    // Replies still owed are awaited so the next phase starts clean.
    load.drained = wait_until(Duration::from_secs(60), || {
        fake.lock().driver.outstanding == 0
    })
    .await;
    load
}

/// Steps released at a fixed offered rate, whatever the bot's speed.
async fn open_loop(
    opts: &Options,
    fake: &Arc<Fake>,
    bot: &mut proc::Bot,
    ticks: f64,
) -> anyhow::Result<Load> {
    fake.lock().driver.start_open();
    let start = Instant::now();
    let rate = opts.offered as f64;
    let mut released: u64 = 0;
    let mut recording_from: Option<(Instant, f64)> = None;
    let end = opts.warmup + opts.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        if elapsed >= end {
            break;
        }
        if recording_from.is_none() && elapsed >= opts.warmup {
            let cpu0 = proc::cpu_seconds(bot.pid, ticks).unwrap_or(0.0);
            fake.lock().driver.begin_recording();
            recording_from = Some((now, cpu0));
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        if due > released {
            fake.lock().driver.release(due - released, now);
            released = due;
            fake.flush_driver();
        }
    }
    let (t0, cpu0) = recording_from.unwrap_or((start, 0.0));
    let load = finish_phase(fake, bot, ticks, cpu0, t0).await;
    if bot.exited() {
        anyhow::bail!("the bot exited during the open loop");
    }
    Ok(load)
}

/// A broadcast to seeded recipients at the configured rate against a fake that answers 429
/// above the same rate.
async fn broadcast(opts: &Options, fake: &Arc<Fake>, kind: Kind) -> Result<Broadcast, String> {
    let bin = opts.leadbot.display().to_string();
    let probe = std::process::Command::new(&bin)
        .args(["broadcast", "create", "--help"])
        .output()
        .map_err(|e| e.to_string())?;
    if !probe.status.success() {
        return Err("not available in this build".into());
    }
    let n = opts.broadcast_recipients;
    let db = prepare_leadbot_db(opts, fake, kind, "broadcast", BROADCAST_BASE, n)
        .map_err(|e| format!("{e:#}"))?;
    let result = async {
        let env = leadbot_env(opts, fake, &db.url);
        proc::run(
            &bin,
            &[
                "broadcast",
                "create",
                "--text",
                "A limited offer: 20% off until Friday.",
                "--button",
                "Details",
                "--segment",
                "temperature=cold|warm",
                "--expires-in",
                "48h",
            ],
            &env,
        )
        .map_err(|e| format!("{e:#}"))?;
        fake.reset(Driver::idle());
        {
            let mut s = fake.lock();
            s.rate = Some(fake::RateLimit {
                per_second: opts.broadcast_rate,
            });
            s.broadcast_from = BROADCAST_BASE;
        }
        let mut bot = launch(opts, fake, kind, Some(&db)).map_err(|e| format!("{e:#}"))?;
        let mut last = (0u64, Instant::now());
        let deadline =
            Instant::now() + Duration::from_secs(n / opts.broadcast_rate.max(1) * 4 + 60);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let sent = fake
                .lock()
                .counters
                .broadcast_chats
                .as_ref()
                .map_or(0, |c| c.len() as u64);
            if sent >= n || Instant::now() > deadline || bot.exited() {
                break;
            }
            if sent != last.0 {
                last = (sent, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        // Duplicates arriving just after the last first delivery are counted too.
        tokio::time::sleep(Duration::from_millis(500)).await;
        bot.stop(Duration::from_secs(10)).await;
        let s = fake.lock();
        let c = &s.counters;
        let unique = c.broadcast_chats.as_ref().map_or(0, |c| c.len() as u64);
        let secs = match (c.broadcast_first, c.broadcast_last) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        Ok(Broadcast {
            recipients: n,
            sent: unique,
            secs,
            too_many: c.too_many,
            duplicates: c.broadcast_duplicates,
        })
    }
    .await;
    drop_database(opts, &db);
    result
}

/// 1,000,000 steps through one leadbot process; RSS sampled as it goes.
async fn run_soak(opts: &Options, fake: &Arc<Fake>) -> anyhow::Result<Soak> {
    let kind = Kind::LeadbotSqlite;
    let db = prepare_leadbot_db(opts, fake, kind, "soak", SEED_BASE, 0)?;
    fake.reset(Driver::new(Script::Dialogue, 1_000_000));
    let mut bot = launch(opts, fake, kind, Some(&db))?;
    let up = wait_until(Duration::from_secs(60), || {
        fake.lock().counters.first_get_updates.is_some()
    })
    .await;
    if !up {
        anyhow::bail!("no getUpdates within 60 s: {}", log_tail(opts, kind));
    }
    {
        let mut s = fake.lock();
        s.driver.start_closed(opts.prospects, Instant::now());
    }
    fake.flush_driver();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut next_sample = 0u64;
    let step = (opts.soak_steps / 20).max(1);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let steps = fake.lock().driver.steps_total;
        if steps >= next_sample {
            if let Some(rss) = proc::status_kb(bot.pid, "VmRSS") {
                samples.push((steps, rss, t0.elapsed().as_secs_f64()));
                eprintln!("   soak: {steps} steps, RSS {rss} kB");
            }
            next_sample += step;
        }
        if steps >= opts.soak_steps || bot.exited() {
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let steps = fake.lock().driver.steps_total;
    let peak_kb = proc::status_kb(bot.pid, "VmHWM").unwrap_or(0);
    fake.lock().driver.stop();
    bot.stop(Duration::from_secs(10)).await;
    drop_database(opts, &db);
    Ok(Soak {
        steps,
        secs,
        samples,
        peak_kb,
    })
}

#[allow(dead_code)]
fn exists(p: &Path) -> bool {
    p.exists()
}
