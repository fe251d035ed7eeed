//! The audience of a broadcast: who may receive offers at all (marketing consent, not
//! unsubscribed, blocked or erased, under the weekly limit) and the segment, compiled to a
//! parameterised SQL condition over `leads l` — values are bound, never spliced in.

use crate::broadcast::segment::{Cmp, Filter, Segment};

use super::{Db, StorageError, with_db};

/// Who may receive offers at all, and how many they may get in a week.
#[derive(Debug, Clone, Copy)]
pub struct Eligibility {
    pub now: i64,
    pub max_per_week: u32,
}

pub(crate) const WEEK_MS: i64 = 7 * 86_400_000;

/// Recipient statuses that count as an offer received (for the weekly limit).
pub(crate) const RECEIVED: &str = "('sending', 'sent', 'unknown')";

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Int(i64),
    Text(String),
}

/// The audience condition over `leads l`: marketing consent, not unsubscribed/blocked/erased,
/// under the weekly limit, and the segment. Placeholders start at `$first`; values are bound,
/// never spliced into the SQL.
pub fn audience_where(segment: &Segment, e: Eligibility, first: usize) -> (String, Vec<Bind>) {
    let mut binds: Vec<Bind> = Vec::new();
    let p = |b: Bind, binds: &mut Vec<Bind>| {
        binds.push(b);
        format!("${}", first + binds.len() - 1)
    };
    let mut sql = String::from(
        "l.marketing_consent_at IS NOT NULL AND l.unsubscribed = FALSE AND l.blocked = FALSE \
         AND l.erased = FALSE AND l.chat_id IS NOT NULL",
    );
    let week = p(Bind::Int(e.now - WEEK_MS), &mut binds);
    let max = p(Bind::Int(i64::from(e.max_per_week)), &mut binds);
    sql.push_str(&format!(
        " AND (SELECT COUNT(*) FROM broadcast_recipients rr WHERE rr.lead_id = l.id \
         AND rr.status IN {RECEIVED} AND rr.claimed_at >= {week}) < {max}"
    ));
    for f in &segment.filters {
        let clause = match f {
            Filter::Temperature { negate, any_of } => {
                let list: Vec<String> = any_of
                    .iter()
                    .map(|t| p(Bind::Text(t.as_str().into()), &mut binds))
                    .collect();
                in_list("l.temperature", *negate, &list)
            }
            Filter::Status { negate, any_of } => {
                let list: Vec<String> = any_of
                    .iter()
                    .map(|s| p(Bind::Text((*s).into()), &mut binds))
                    .collect();
                in_list("l.status", *negate, &list)
            }
            Filter::Source { negate, any_of } => {
                let ors: Vec<String> = any_of
                    .iter()
                    .map(|pat| {
                        let ph = p(Bind::Text(like_pattern(pat)), &mut binds);
                        format!("LOWER(l.source) LIKE {ph} ESCAPE '\\'")
                    })
                    .collect();
                let any = format!("({})", ors.join(" OR "));
                if *negate { format!("NOT {any}") } else { any }
            }
            Filter::Score { cmp, value } => {
                let ph = p(Bind::Int(i64::from(*value)), &mut binds);
                format!("l.score {} {ph}", sql_op(*cmp))
            }
            Filter::HasPhone(true) => "l.phone IS NOT NULL".into(),
            Filter::HasPhone(false) => "l.phone IS NULL".into(),
            Filter::Inactive { secs } => {
                let ph = p(Bind::Int(e.now - secs_ms(*secs)), &mut binds);
                format!("COALESCE(l.last_inbound_at, l.created_at) <= {ph}")
            }
            Filter::Active { secs } => {
                let ph = p(Bind::Int(e.now - secs_ms(*secs)), &mut binds);
                format!("COALESCE(l.last_inbound_at, l.created_at) > {ph}")
            }
            Filter::Created { cmp, date } => {
                let day = date
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_millis())
                    .unwrap_or(0);
                let next = day + 86_400_000;
                match cmp {
                    Cmp::Eq => {
                        let a = p(Bind::Int(day), &mut binds);
                        let b = p(Bind::Int(next), &mut binds);
                        format!("(l.created_at >= {a} AND l.created_at < {b})")
                    }
                    Cmp::Ne => {
                        let a = p(Bind::Int(day), &mut binds);
                        let b = p(Bind::Int(next), &mut binds);
                        format!("(l.created_at < {a} OR l.created_at >= {b})")
                    }
                    // A day is a whole day: `> 2026-11-01` starts on the 2nd, `<= …` ends with it.
                    Cmp::Ge => format!("l.created_at >= {}", p(Bind::Int(day), &mut binds)),
                    Cmp::Lt => format!("l.created_at < {}", p(Bind::Int(day), &mut binds)),
                    Cmp::Gt => format!("l.created_at >= {}", p(Bind::Int(next), &mut binds)),
                    Cmp::Le => format!("l.created_at < {}", p(Bind::Int(next), &mut binds)),
                }
            }
        };
        sql.push_str(" AND ");
        sql.push_str(&clause);
    }
    (sql, binds)
}

fn in_list(column: &str, negate: bool, list: &[String]) -> String {
    let not = if negate { "NOT " } else { "" };
    format!("{column} {not}IN ({})", list.join(", "))
}

fn sql_op(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "=",
        Cmp::Ne => "<>",
        Cmp::Ge => ">=",
        Cmp::Le => "<=",
        Cmp::Gt => ">",
        Cmp::Lt => "<",
    }
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX / 2000) * 1000
}

/// `vk_*` → `vk\_%` (lower case; `_` and `%` are literal).
fn like_pattern(pattern: &str) -> String {
    let mut out = String::new();
    for c in pattern.to_lowercase().chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Binds every [`Bind`] of a compiled audience to a query, in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds {
            q = match b {
                $crate::storage::audience::Bind::Int(n) => q.bind(*n),
                $crate::storage::audience::Bind::Text(s) => q.bind(s.clone()),
            };
        }
        q
    }};
}

pub(crate) use bind_all;

/// How many leads a segment reaches now.
pub async fn audience_size(
    db: &Db,
    segment: &Segment,
    e: Eligibility,
) -> Result<i64, StorageError> {
    let (cond, binds) = audience_where(segment, e, 1);
    let sql = format!("SELECT COUNT(*) FROM leads l WHERE {cond}");
    let (n,): (i64,) = with_db!(db, |c| {
        bind_all!(sqlx::query_as(&sql), &binds).fetch_one(c).await
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_compile_to_placeholders_not_values() {
        let s = Segment::parse("temperature=cold|warm,source=vk_*|x-y,score>=10,inactive=7d")
            .unwrap_or_default();
        let e = Eligibility {
            now: 1_000_000_000_000,
            max_per_week: 2,
        };
        let (sql, binds) = audience_where(&s, e, 1);
        assert!(!sql.contains("vk"), "{sql}");
        assert!(!sql.contains("cold"), "{sql}");
        assert!(sql.contains("l.temperature IN ($3, $4)"), "{sql}");
        assert!(sql.contains("LOWER(l.source) LIKE $5 ESCAPE"), "{sql}");
        assert!(sql.contains("l.score >= $7"), "{sql}");
        assert_eq!(binds[4], Bind::Text("vk\\_%".into()));
        assert_eq!(binds.len(), 8);
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("VK_ads*"), "vk\\_ads%");
        assert_eq!(like_pattern("*"), "%");
    }
}
