//! BENCHMARKS.md: a table per figure, leadbot and the peers side by side.

use std::fmt::Write as _;

use crate::{Kind, Options, Outcome, Soak};

pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub mem_mb: u64,
    pub kernel: String,
    pub load_start: String,
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
            })
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cpu,
            cores,
            mem_mb,
            kernel,
            load_start: loadavg(),
        }
    }
}

fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 1000.0 {
        format!("{v:.0} ms")
    } else {
        format!("{:.2} s", v / 1000.0)
    }
}

fn mb(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
        .unwrap_or_else(|| "—".into())
}

pub fn summary(o: &Outcome) -> String {
    let mut s = String::new();
    if let Some(e) = &o.error {
        let _ = write!(s, "error: {e}; ");
    }
    if let Some(st) = o.startup_ms {
        let _ = write!(s, "startup {st:.0} ms; ");
    }
    if let Some(c) = &o.closed {
        let _ = write!(
            s,
            "closed {:.0} steps/s p50 {} p99 {} max {} cpu/1000 {:.3}s finished {} other {}; ",
            c.rate(),
            ms(c.p50_us),
            ms(c.p99_us),
            ms(c.max_us),
            c.cpu_per_1000(),
            c.finished,
            c.other
        );
    }
    if let Some(c) = &o.open {
        let _ = write!(
            s,
            "open {:.0} steps/s p50 {} p99 {} max {}; ",
            c.rate(),
            ms(c.p50_us),
            ms(c.p99_us),
            ms(c.max_us)
        );
    }
    let _ = write!(
        s,
        "rss start {} peak {}",
        mb(o.rss_start_kb),
        mb(o.rss_peak_kb)
    );
    match &o.broadcast {
        Some(Ok(b)) => {
            let _ = write!(
                s,
                "; broadcast {}/{} in {:.1}s = {:.0}/s, 429s {}",
                b.sent,
                b.recipients,
                b.secs,
                b.sent as f64 / b.secs.max(1e-9),
                b.too_many
            );
        }
        Some(Err(e)) => {
            let _ = write!(s, "; broadcast: {e}");
        }
        None => {}
    }
    s
}

fn row_name(o: &Outcome) -> String {
    match &o.error {
        Some(e) if o.closed.is_none() => format!("{} (not measured: {})", o.kind.label(), short(e)),
        _ => o.kind.label().to_owned(),
    }
}

fn short(e: &str) -> String {
    let line = e.lines().next().unwrap_or("");
    line.chars().take(160).collect()
}

fn section(old: &str, name: &str) -> Option<String> {
    let start = format!("<!-- {name}:start -->");
    let end = format!("<!-- {name}:end -->");
    let a = old.find(&start)?;
    let b = old.find(&end)?;
    (b > a).then(|| old[a..b + end.len()].to_owned())
}

pub fn write(
    opts: &Options,
    m: &Machine,
    started: &str,
    load_end: &str,
    outcomes: &[Outcome],
) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(&opts.out).unwrap_or_default();
    let ceiling = outcomes
        .iter()
        .find(|o| o.kind == Kind::Echo)
        .and_then(|o| o.closed.as_ref())
        .map(|c| c.rate())
        .filter(|r| *r > 0.0);
    let ratio = |r: f64| {
        ceiling
            .map(|c| format!("{:.2}×", r / c))
            .unwrap_or_else(|| "—".into())
    };
    let secs = opts.duration.as_secs_f64();
    let mut s = String::new();
    let _ = writeln!(s, "# leadbot benchmarks\n");
    let _ = writeln!(
        s,
        "Measured side by side in one run, on one fast fake Bot API (Rust, axum, 127.0.0.1), with every \
         bot started as a child process (release build) and pointed at the fake. This file is rewritten \
         by the command below; the optimisation log at the end is kept from `bench/optimisations.md`.\n"
    );
    let _ = writeln!(s, "- command: `{}`", opts.command);
    let _ = writeln!(
        s,
        "- run: {started}{}",
        if opts.quick {
            " (--quick: short runs, smoke test only)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        s,
        "- machine: {} cores ({}), {} MB memory, Linux {}; load average {} at the start, {} at the end \
         (the machine is shared: bots, fake, load generator and any other work compete for the same cores)",
        m.cores, m.cpu, m.mem_mb, m.kernel, m.load_start, load_end
    );
    let _ = writeln!(
        s,
        "- phases per bot: start-up, then closed loop ({} prospects, {:.0} s warm-up, {secs:.0} s measured), \
         then open loop ({} steps/s offered, {:.0} s warm-up, {secs:.0} s measured), in one process.",
        opts.prospects,
        opts.warmup.as_secs_f64(),
        opts.offered,
        opts.warmup.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "- leadbot runs on a database seeded with {} leads before start (SQL inserts of qualified leads); \
         the peers start empty. A step is one prospect input (a command, a button press, a text, a contact) \
         and the bot's next question reaching the fake; latency is from the update entering the fake's \
         `getUpdates` queue to that question's `sendMessage`.",
        outcomes.iter().map(|o| o.seeded).max().unwrap_or(0)
    );
    let _ = writeln!(
        s,
        "- prospects walk the default dialogue in English (/start, consent, name, phone as a contact, three \
         choices: 7 steps); on its last answer a prospect is replaced by a new one. The echo ceiling \
         gets texts and answers each with the same text.\n"
    );

    // Throughput.
    let _ = writeln!(
        s,
        "## Dialogue steps per second, {} concurrent prospects (closed loop)\n",
        opts.prospects
    );
    let _ = writeln!(
        s,
        "| bot | steps/s | ratio to echo ceiling | dialogues finished | p50 | p99 | max |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    for o in outcomes {
        match &o.closed {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {} | {} | {} | {} |",
                    row_name(o),
                    c.rate(),
                    ratio(c.rate()),
                    if o.kind == Kind::Echo {
                        "—".to_owned()
                    } else {
                        c.finished.to_string()
                    },
                    ms(c.p50_us),
                    ms(c.p99_us),
                    ms(c.max_us)
                );
            }
            None => {
                let _ = writeln!(s, "| {} | — | — | — | — | — | — |", row_name(o));
            }
        }
    }
    let _ = writeln!(
        s,
        "\nTarget: ≥ 10,000 steps/s on SQLite, ≥ 5,000 on PostgreSQL, ≥ 2/3 of the echo ceiling.\n"
    );

    // Latency.
    let _ = writeln!(
        s,
        "## Reply latency at {} steps/s offered (open loop)\n",
        opts.offered
    );
    let _ = writeln!(
        s,
        "| bot | achieved steps/s | p50 | p99 | max | all replies arrived |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|");
    for o in outcomes {
        match &o.open {
            Some(c) => {
                let _ = writeln!(
                    s,
                    "| {} | {:.0} | {} | {} | {} | {} |",
                    row_name(o),
                    c.rate(),
                    ms(c.p50_us),
                    ms(c.p99_us),
                    ms(c.max_us),
                    if c.drained { "yes" } else { "no (60 s)" }
                );
            }
            None => {
                let _ = writeln!(s, "| {} | — | — | — | — | — |", row_name(o));
            }
        }
    }
    let _ = writeln!(s, "\nTarget: p99 < 5 ms.\n");

    // CPU.
    let _ = writeln!(
        s,
        "## CPU seconds per 1,000 steps (closed loop, user + system of the bot's process)\n"
    );
    let _ = writeln!(
        s,
        "| bot | CPU s / 1,000 steps | ratio to echo | CPU s in the window |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let echo_cpu = outcomes
        .iter()
        .find(|o| o.kind == Kind::Echo)
        .and_then(|o| o.closed.as_ref())
        .map(|c| c.cpu_per_1000());
    for o in outcomes {
        match &o.closed {
            Some(c) => {
                let r = echo_cpu
                    .filter(|e| e.is_finite() && *e > 0.0)
                    .map(|e| format!("{:.1}×", c.cpu_per_1000() / e))
                    .unwrap_or_else(|| "—".into());
                let _ = writeln!(
                    s,
                    "| {} | {:.3} | {} | {:.1} |",
                    row_name(o),
                    c.cpu_per_1000(),
                    r,
                    c.cpu_s
                );
            }
            None => {
                let _ = writeln!(s, "| {} | — | — | — |", row_name(o));
            }
        }
    }
    let _ = writeln!(
        s,
        "\nPostgreSQL's own CPU is not included (it is a separate server process).\n"
    );

    // Memory.
    let _ = writeln!(
        s,
        "## Peak RSS with {} prospects active (leadbot: {} leads stored)\n",
        opts.prospects,
        outcomes.iter().map(|o| o.seeded).max().unwrap_or(0)
    );
    let _ = writeln!(
        s,
        "| bot | RSS after start-up | peak RSS (VmHWM) after the closed loop |"
    );
    let _ = writeln!(s, "|---|---:|---:|");
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            row_name(o),
            mb(o.rss_start_kb),
            mb(o.rss_peak_kb)
        );
    }
    let _ = writeln!(s, "\nTarget: < 40 MB.\n");

    // Start-up.
    let _ = writeln!(s, "## Start-up time to the first getUpdates\n");
    let _ = writeln!(s, "| bot | leads stored | start-up |");
    let _ = writeln!(s, "|---|---:|---:|");
    for o in outcomes {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            row_name(o),
            o.seeded,
            o.startup_ms
                .map(|v| format!("{v:.0} ms"))
                .unwrap_or_else(|| "—".into())
        );
    }
    let _ = writeln!(
        s,
        "\nFrom spawning the process to the fake receiving its first `getUpdates` (leadbot: \
        migrations already applied, so this is a restart). Target: < 200 ms.\n"
    );

    // Broadcast.
    let _ = writeln!(
        s,
        "## Broadcast: {} recipients at a configured {} messages/s, fake answering 429 above {}/s\n",
        opts.broadcast_recipients, opts.broadcast_rate, opts.broadcast_rate
    );
    let _ = writeln!(
        s,
        "| bot | delivered | duration | achieved rate | 429 answers | duplicates |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for o in outcomes.iter().filter(|o| o.kind.is_leadbot_kind()) {
        match &o.broadcast {
            Some(Ok(b)) => {
                let _ = writeln!(
                    s,
                    "| {} | {}/{} | {:.1} s | {:.0}/s | {} | {} |",
                    o.kind.label(),
                    b.sent,
                    b.recipients,
                    b.secs,
                    if b.secs > 0.0 {
                        b.sent.saturating_sub(1) as f64 / b.secs
                    } else {
                        0.0
                    },
                    b.too_many,
                    b.duplicates
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(s, "| {} | {} | — | — | — | — |", o.kind.label(), short(e));
            }
            None => {
                let _ = writeln!(s, "| {} | not measured | — | — | — | — |", o.kind.label());
            }
        }
    }
    let _ = writeln!(
        s,
        "\nThe peers have no broadcasts. Target: within 3% of the configured rate, zero 429s.\n"
    );

    // Targets.
    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | SQLite | PostgreSQL |");
    let _ = writeln!(s, "|---|---|---|");
    let get = |k: Kind| outcomes.iter().find(|o| o.kind == k);
    let cell = |k: Kind, f: &dyn Fn(&Outcome) -> Option<(String, bool)>| {
        get(k)
            .and_then(f)
            .map(|(v, ok)| format!("{v} {}", if ok { "met" } else { "**missed**" }))
            .unwrap_or_else(|| "not measured".into())
    };
    let rows: Vec<(&str, Check)> = vec![
        (
            "steps/s, 1,000 prospects (≥ 10,000 SQLite / ≥ 5,000 PostgreSQL)",
            Box::new(|o: &Outcome| {
                let r = o.closed.as_ref()?.rate();
                let need = if o.kind == Kind::LeadbotSqlite {
                    10_000.0
                } else {
                    5_000.0
                };
                Some((format!("{r:.0}"), r >= need))
            }),
        ),
        (
            "≥ 2/3 of the echo ceiling",
            Box::new(move |o: &Outcome| {
                let r = o.closed.as_ref()?.rate();
                let c = ceiling?;
                Some((format!("{:.2}", r / c), r / c >= 2.0 / 3.0))
            }),
        ),
        (
            "p99 < 5 ms at the offered rate",
            Box::new(|o: &Outcome| {
                let p = o.open.as_ref()?.p99_us;
                Some((ms(p), p < 5_000))
            }),
        ),
        (
            "peak RSS < 40 MB",
            Box::new(|o: &Outcome| {
                let kb = o.rss_peak_kb?;
                Some((mb(Some(kb)), kb < 40 * 1024))
            }),
        ),
        (
            "start-up < 200 ms",
            Box::new(|o: &Outcome| {
                let v = o.startup_ms?;
                Some((format!("{v:.0} ms"), v < 200.0))
            }),
        ),
        (
            "broadcast within 3% of the rate, zero 429s",
            Box::new(|o: &Outcome| match o.broadcast.as_ref()? {
                Ok(b) if b.secs > 0.0 => {
                    let rate = b.sent.saturating_sub(1) as f64 / b.secs;
                    let ok =
                        (rate - 1000.0).abs() <= 30.0 && b.too_many == 0 && b.sent == b.recipients;
                    Some((format!("{rate:.0}/s, {} 429s", b.too_many), ok))
                }
                Ok(_) => Some(("nothing delivered".into(), false)),
                Err(e) => Some((short(e), false)),
            }),
        ),
    ];
    for (name, f) in &rows {
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            cell(Kind::LeadbotSqlite, f.as_ref()),
            cell(Kind::LeadbotPostgres, f.as_ref())
        );
    }
    let _ = writeln!(s);

    let _ = writeln!(s, "## What limits each number\n");
    let _ = writeln!(s, "{}", LIMITS);

    match section(&old, "soak") {
        Some(soak) => {
            let _ = writeln!(s, "{soak}\n");
        }
        None => {
            let _ = writeln!(
                s,
                "<!-- soak:start -->\n## Soak\n\nNot run yet: `bench/run.sh --soak`.\n<!-- soak:end -->\n"
            );
        }
    }
    let log_path = opts.repo.join("bench/optimisations.md");
    if let Ok(log) = std::fs::read_to_string(log_path) {
        let _ = writeln!(s, "{}", log.trim_end());
    }
    std::fs::write(&opts.out, s)?;
    Ok(())
}

/// A target check: the figure as text and whether it meets the target.
type Check = Box<dyn Fn(&Outcome) -> Option<(String, bool)>>;

const LIMITS: &str = "\
- **Cores.** Everything runs on the same machine: the bot under test, the fake Bot API and the load \
generator (one thread), PostgreSQL for the PostgreSQL rows, and any other work on the host (see the load \
average above); the echo ceiling shows what the HTTP round trips alone cost in the same setting.
- **leadbot's durability.** Every update is stored before `getUpdates` confirms it, every answer is \
committed before the next question is sent, and each outgoing message is a durable outbox row that is \
claimed, sent and marked sent. A step is thus several write transactions plus two Bot API calls (an \
`answerCallbackQuery`, sent once the answer is committed but kept in no outbox row, and the next question) \
instead of one for the echo bot. With SQLite all writes go \
through one file lock, and leadbot's closed loop is bound by that writer's turn rather than by the \
cores (profiled: both cores idle about 38% of the time; see the optimisation log's ninth round). About \
half of that turn is SQLite executing the statements themselves (about 125 µs per step, most of it \
writing each step's lead, history, outbox and update rows and recording the deliveries), the rest the \
work around them (optimisation log, fourteenth round). With PostgreSQL each commit is a WAL flush (fsync) \
on the server.
- **leadbot's open-loop tail.** A step is two write turns at SQLite's one writer (the intake that \
stores and applies the update, the recording of the sends), each about a dozen statements handed to \
SQLite's thread and back (the timings in this bullet are from the machine of the seventeenth round; the \
same build runs about 1.5 times slower on the one of the eighteenth); at 500 steps/s that turn is busy about two thirds of the time, so an update \
often waits for the turn before it or the poll it rides on (an intake takes about 1.1 ms at the median, \
2.7 ms at the p99). The write-ahead log is copied into the database file beside the writers, every \
20 ms on a connection of its own; when a committing writer did it (every hundredth commit or so, \
4.5-5 ms each) the p99 was 8-9 ms (optimisation log, seventeenth round). With PostgreSQL an intake is about eleven round trips to the server (begin, the checks, each kind of row written, the claim, the commit), 0.3-0.5 ms each on the measuring machine, so a small batch's intake takes 5-7 ms at the median and an update arriving during one waits for it; the claims used to take 4-7 ms more each, reading dead index entries again through bitmap scans (optimisation log, eighteenth round).
- **Peers.** The teloxide dialogue peer serialises each chat's dialogue state through `SqliteStorage` \
(one connection, a write per step); aiogram is CPU-bound in one Python process; both confirm updates to \
Telegram before handling them, so a crash loses queued updates (leadbot does not).
- **Latency.** Measured from the update entering the fake's queue, so it includes the wait until the bot's \
next `getUpdates` picks it up, the bot's processing and the outbox delivery.
- **Memory.** VmHWM of the bot's process; for aiogram this is the Python interpreter with its libraries. For leadbot about half is its own code, mapped from the binary; its heap peaks at about 16 MB over a long run, of which SQLite's page caches and prepared statements take about 7 MB and the phone-number library's metadata of every country about 5 MB (heaptrack; see the optimisation log's eleventh round).
- **Start-up.** leadbot asks the Bot API who it is and whether it is in the staff chat (`getMe`, \
`getChatMember`), connects, checks migrations, and loads and hashes the dialogue files before the \
first poll; messages in flight at the last stop are re-queued after it, once the updates kept meanwhile \
are applied (a press among them proves its question delivered).
";

trait LeadbotKind {
    fn is_leadbot_kind(&self) -> bool;
}

impl LeadbotKind for Kind {
    fn is_leadbot_kind(&self) -> bool {
        matches!(self, Kind::LeadbotSqlite | Kind::LeadbotPostgres)
    }
}

pub fn write_soak(opts: &Options, m: &Machine, started: &str, soak: &Soak) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(&opts.out).unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!-- soak:start -->\n## Soak: {} steps through one leadbot process (SQLite)\n",
        soak.steps
    );
    let _ = writeln!(
        s,
        "- command: `{}`; run {started}; {} cores, {} MB; {} prospects in a closed loop; {:.0} s, {:.0} steps/s on average",
        opts.command,
        m.cores,
        m.mem_mb,
        opts.prospects,
        soak.secs,
        soak.steps as f64 / soak.secs.max(1e-9)
    );
    if let (Some(&(first_steps, first_rss, _)), Some(&(last_steps, last_rss, _))) =
        (soak.samples.first(), soak.samples.last())
    {
        let _ = writeln!(
            s,
            "- RSS at the start {} (after {} steps), at the end {} (after {} steps); peak {}\n",
            mb(Some(first_rss)),
            first_steps,
            mb(Some(last_rss)),
            last_steps,
            mb(Some(soak.peak_kb))
        );
    }
    let _ = writeln!(
        s,
        "| steps | RSS | minutes | steps/s since the previous row |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|");
    let mut previous: Option<(u64, f64)> = None;
    for &(steps, rss, secs) in &soak.samples {
        let rate = match previous {
            Some((p_steps, p_secs)) if secs > p_secs => {
                format!("{:.0}", (steps - p_steps) as f64 / (secs - p_secs))
            }
            _ => "—".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {steps} | {} | {:.1} | {rate} |",
            mb(Some(rss)),
            secs / 60.0
        );
        previous = Some((steps, secs));
    }
    let _ = writeln!(s, "<!-- soak:end -->");
    let new = match section(&old, "soak") {
        Some(existing) => old.replace(&existing, s.trim_end()),
        None if !old.is_empty() => format!("{}\n\n{}\n", old.trim_end(), s.trim_end()),
        None => format!("# leadbot benchmarks\n\n{}\n", s.trim_end()),
    };
    std::fs::write(&opts.out, new)?;
    Ok(())
}
