//! The figures of `/stats` and `leadbot stats`: funnel per step with drop-off, temperatures,
//! sources, statuses and time to a manager's first reply.

use crate::app::scripts::Scripts;
use crate::storage::{self, Db, StorageError};

/// The figures, ready to print.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Per dialogue: (step, leads that reached it) in dialogue order.
    pub funnels: Vec<(String, Vec<(String, i64)>)>,
    pub temperatures: Vec<(String, i64)>,
    pub sources: Vec<(String, i64, i64)>,
    pub statuses: Vec<(String, i64)>,
    /// Median minutes from hot to a manager's first reply, and how many replies it covers.
    pub median_reply_minutes: Option<(f64, usize)>,
}

/// Collects the figures since a time (ms).
pub async fn collect(
    db: &Db,
    scripts: Option<&Scripts>,
    since: i64,
) -> Result<Stats, StorageError> {
    let rows = storage::stats::funnel(db, since).await?;
    let mut funnels: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for (dialogue, step, n) in rows {
        match funnels.iter_mut().find(|(d, _)| *d == dialogue) {
            Some((_, steps)) => steps.push((step, n)),
            None => funnels.push((dialogue, vec![(step, n)])),
        }
    }
    for (dialogue, steps) in &mut funnels {
        let order = scripts.and_then(|s| s.step_order(dialogue));
        match order {
            Some(order) => steps.sort_by_key(|(s, n)| {
                (order.iter().position(|o| o == s).unwrap_or(usize::MAX), -n)
            }),
            None => steps.sort_by_key(|(s, n)| (-n, s.clone())),
        }
    }
    funnels.sort();
    let mut times = storage::stats::reply_times(db, since).await?;
    times.sort_unstable();
    let median_reply_minutes =
        (!times.is_empty()).then(|| (times[times.len() / 2] as f64 / 60_000.0, times.len()));
    Ok(Stats {
        funnels,
        temperatures: storage::stats::temperatures(db, since).await?,
        sources: storage::stats::sources(db, since).await?,
        statuses: storage::stats::statuses(db, since).await?,
        median_reply_minutes,
    })
}

/// The figures as plain text.
pub fn render(s: &Stats) -> String {
    let mut out = String::new();
    if s.funnels.is_empty() {
        out.push_str("Пока нет данных: ни один лид не начал диалог.\n");
    }
    for (dialogue, steps) in &s.funnels {
        out.push_str(&format!("Воронка «{dialogue}»:\n"));
        let first = steps.first().map(|(_, n)| *n).unwrap_or(0).max(1);
        let mut prev: Option<i64> = None;
        for (step, n) in steps {
            let share = *n as f64 * 100.0 / first as f64;
            match prev {
                Some(p) if p > 0 && *n <= p => {
                    let drop = (p - n) as f64 * 100.0 / p as f64;
                    out.push_str(&format!("  {step}: {n} ({share:.0}%, −{drop:.0}%)\n"));
                }
                _ => out.push_str(&format!("  {step}: {n} ({share:.0}%)\n")),
            }
            prev = Some(*n);
        }
    }
    let t = |name: &str| {
        s.temperatures
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    out.push_str(&format!(
        "Температура: горячие {}, тёплые {}, холодные {}\n",
        t("hot"),
        t("warm"),
        t("cold")
    ));
    if !s.statuses.is_empty() {
        let st: Vec<String> = s
            .statuses
            .iter()
            .map(|(k, n)| format!("{} {n}", crate::staff::card::status_name(k)))
            .collect();
        out.push_str(&format!("Статусы: {}\n", st.join(", ")));
    }
    if !s.sources.is_empty() {
        out.push_str("Источники (лидов / горячих):\n");
        for (src, n, hot) in &s.sources {
            out.push_str(&format!("  {src}: {n} / {hot}\n"));
        }
    }
    match s.median_reply_minutes {
        Some((m, n)) => out.push_str(&format!(
            "Время до первого ответа менеджера (медиана): {m:.1} мин по {n} лидам\n"
        )),
        None => out.push_str("Время до первого ответа менеджера: ещё нет ответов\n"),
    }
    out
}
