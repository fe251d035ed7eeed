//! The segment language: which leads a broadcast goes to (SPEC section 4).
//!
//! ```text
//! segment  = "all" | clause { "," clause }
//! clause   = key op value { "|" value }
//! op       = "=" | "!=" | ">=" | "<=" | ">" | "<"
//! ```
//!
//! Keys: `temperature=cold|warm`, `source=vk_*` (`*` matches anything), `status=new|qualified`,
//! `score>=N` (any comparison), `has_phone=yes|no`, `inactive=7d` (no message from the lead for
//! at least that long), `active=3d` (a message within that time), `created>=2026-11-01` (any
//! comparison, UTC dates) and `since=2026-11-01` (same as `created>=`). `=` and `!=` take
//! alternatives separated by `|`. Clauses are joined with AND. Parsing is pure; storage compiles
//! a [`Segment`] to parameterised SQL.

use std::fmt;

use chrono::NaiveDate;

use crate::domain::Temperature;

/// A parsed segment: every filter must hold.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Segment {
    pub filters: Vec<Filter>,
}

/// Comparison operators of `score` and `created`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

impl Cmp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
            Cmp::Ge => ">=",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Lt => "<",
        }
    }
}

/// Lead statuses a segment may name.
pub const STATUSES: &[&str] = &["new", "qualifying", "qualified", "in_work", "won", "lost"];

/// One clause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `temperature=…` (`negate` for `!=`).
    Temperature {
        negate: bool,
        any_of: Vec<Temperature>,
    },
    /// `source=…`: patterns of `A-Za-z0-9_-` with `*` wildcards.
    Source { negate: bool, any_of: Vec<String> },
    /// `status=…`.
    Status {
        negate: bool,
        any_of: Vec<&'static str>,
    },
    /// `score>=N`.
    Score { cmp: Cmp, value: i32 },
    /// `has_phone=yes|no`.
    HasPhone(bool),
    /// `inactive=7d`: no inbound message for at least this many seconds.
    Inactive { secs: u64 },
    /// `active=7d`: an inbound message within this many seconds.
    Active { secs: u64 },
    /// `created>=DATE` (and `since=DATE`).
    Created { cmp: Cmp, date: NaiveDate },
}

/// A segment that does not parse: where (1-based character position) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("segment error at position {position}: {message}")]
pub struct SegmentError {
    pub position: usize,
    pub message: String,
}

const KEYS: &str =
    "temperature, source, status, score, has_phone, inactive, active, created, since";
const MAX_LEN: usize = 1000;

impl Segment {
    /// Parses a segment such as `temperature=cold|warm,source=vk_*,inactive=7d`.
    pub fn parse(input: &str) -> Result<Segment, SegmentError> {
        let chars: Vec<char> = input.chars().collect();
        if chars.len() > MAX_LEN {
            return Err(err(
                MAX_LEN + 1,
                format!("a segment is at most {MAX_LEN} characters"),
            ));
        }
        if input.trim().is_empty() {
            return Err(err(
                1,
                format!(
                    "the segment is empty; write `all` for every lead, or clauses with keys {KEYS}"
                ),
            ));
        }
        if input.trim().eq_ignore_ascii_case("all") {
            return Ok(Segment::default());
        }
        let mut filters = Vec::new();
        let mut start = 0;
        loop {
            let end = chars[start..]
                .iter()
                .position(|&c| c == ',')
                .map_or(chars.len(), |p| start + p);
            filters.push(parse_clause(&chars, start, end)?);
            if end >= chars.len() {
                break;
            }
            start = end + 1;
        }
        Ok(Segment { filters })
    }

    /// True for `all`.
    pub fn is_all(&self) -> bool {
        self.filters.is_empty()
    }
}

fn err(position: usize, message: impl Into<String>) -> SegmentError {
    SegmentError {
        position,
        message: message.into(),
    }
}

/// Parses `chars[start..end]` as one clause; positions in errors are 1-based.
fn parse_clause(chars: &[char], start: usize, end: usize) -> Result<Filter, SegmentError> {
    let mut i = start;
    while i < end && chars[i].is_whitespace() {
        i += 1;
    }
    let key_start = i;
    while i < end && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
        i += 1;
    }
    let key: String = chars[key_start..i]
        .iter()
        .collect::<String>()
        .to_ascii_lowercase();
    if key.is_empty() {
        let what = if key_start >= end {
            "an empty clause (two commas in a row, or a comma at the end)".to_owned()
        } else {
            format!("unexpected {:?}", chars[key_start])
        };
        return Err(err(
            key_start + 1,
            format!("{what}; expected a key: {KEYS}"),
        ));
    }
    if !KEYS.split(", ").any(|k| k == key) {
        return Err(err(
            key_start + 1,
            format!("unknown key {key:?}; expected one of {KEYS}"),
        ));
    }
    while i < end && chars[i].is_whitespace() {
        i += 1;
    }
    let op_start = i;
    let two = |a: char, b: char| i + 1 < end && chars[i] == a && chars[i + 1] == b;
    let (cmp, len) = if two('>', '=') {
        (Cmp::Ge, 2)
    } else if two('<', '=') {
        (Cmp::Le, 2)
    } else if two('!', '=') {
        (Cmp::Ne, 2)
    } else if i < end && chars[i] == '=' {
        (Cmp::Eq, 1)
    } else if i < end && chars[i] == '>' {
        (Cmp::Gt, 1)
    } else if i < end && chars[i] == '<' {
        (Cmp::Lt, 1)
    } else {
        return Err(err(
            op_start + 1,
            format!("expected an operator (=, !=, >=, <=, >, <) after {key:?}"),
        ));
    };
    i += len;
    while i < end && chars[i].is_whitespace() {
        i += 1;
    }
    let mut value_end = end;
    while value_end > i && chars[value_end - 1].is_whitespace() {
        value_end -= 1;
    }
    let value_start = i;
    if value_start >= value_end {
        return Err(err(
            value_start + 1,
            format!("a value is missing after {key}{}", cmp.as_str()),
        ));
    }
    // Alternatives with their positions.
    let mut values: Vec<(usize, String)> = Vec::new();
    let mut s = value_start;
    for j in value_start..=value_end {
        if j == value_end || chars[j] == '|' {
            let v: String = chars[s..j].iter().collect();
            let lead = v.chars().take_while(|c| c.is_whitespace()).count();
            let v = v.trim().to_owned();
            if v.is_empty() {
                return Err(err(s + 1, "an empty alternative (`||`, or `|` at an end)"));
            }
            values.push((s + lead + 1, v));
            s = j + 1;
        }
    }
    let op_pos = op_start + 1;
    let list_op = |what: &str| -> Result<bool, SegmentError> {
        match cmp {
            Cmp::Eq => Ok(false),
            Cmp::Ne => Ok(true),
            _ => Err(err(
                op_pos,
                format!("{what} takes = or !=, not {}", cmp.as_str()),
            )),
        }
    };
    let single = |values: &[(usize, String)]| -> Result<(usize, String), SegmentError> {
        match values {
            [one] => Ok(one.clone()),
            _ => Err(err(
                values.get(1).map_or(op_pos, |v| v.0),
                format!("{key} takes one value"),
            )),
        }
    };
    match key.as_str() {
        "temperature" => {
            let negate = list_op("temperature")?;
            let mut any_of = Vec::new();
            for (pos, v) in &values {
                let t = Temperature::parse(v).ok_or_else(|| {
                    err(
                        *pos,
                        format!("unknown temperature {v:?}; expected cold, warm or hot"),
                    )
                })?;
                any_of.push(t);
            }
            Ok(Filter::Temperature { negate, any_of })
        }
        "source" => {
            let negate = list_op("source")?;
            let mut any_of = Vec::new();
            for (pos, v) in &values {
                if let Some(bad) = v
                    .chars()
                    .position(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*'))
                {
                    return Err(err(
                        pos + bad,
                        format!("a source pattern holds only A-Z, a-z, 0-9, _, - and *; got {v:?}"),
                    ));
                }
                if v.chars().count() > 64 {
                    return Err(err(*pos, "a source pattern is at most 64 characters"));
                }
                any_of.push(v.clone());
            }
            Ok(Filter::Source { negate, any_of })
        }
        "status" => {
            let negate = list_op("status")?;
            let mut any_of = Vec::new();
            for (pos, v) in &values {
                let lower = v.to_ascii_lowercase();
                let s = STATUSES.iter().find(|s| **s == lower).ok_or_else(|| {
                    err(
                        *pos,
                        format!(
                            "unknown status {v:?}; expected one of {}",
                            STATUSES.join(", ")
                        ),
                    )
                })?;
                any_of.push(*s);
            }
            Ok(Filter::Status { negate, any_of })
        }
        "score" => {
            let (pos, v) = single(&values)?;
            let value = v
                .parse::<i32>()
                .ok()
                .filter(|n| n.unsigned_abs() <= 1_000_000)
                .ok_or_else(|| err(pos, format!("expected a whole number of points, got {v:?}")))?;
            Ok(Filter::Score { cmp, value })
        }
        "has_phone" => {
            if cmp != Cmp::Eq {
                return Err(err(op_pos, "has_phone takes =yes or =no"));
            }
            let (pos, v) = single(&values)?;
            match v.to_ascii_lowercase().as_str() {
                "yes" | "true" => Ok(Filter::HasPhone(true)),
                "no" | "false" => Ok(Filter::HasPhone(false)),
                _ => Err(err(pos, format!("expected yes or no, got {v:?}"))),
            }
        }
        "inactive" | "active" => {
            if cmp != Cmp::Eq {
                return Err(err(
                    op_pos,
                    format!("{key} takes = and a duration such as 7d"),
                ));
            }
            let (pos, v) = single(&values)?;
            let secs = crate::config::parse_duration(&v)
                .map(|d| d.as_secs())
                .filter(|s| *s <= 100 * 365 * 86_400)
                .ok_or_else(|| {
                    err(
                        pos,
                        format!("expected a duration such as 12h, 7d or 2w, got {v:?}"),
                    )
                })?;
            Ok(if key == "inactive" {
                Filter::Inactive { secs }
            } else {
                Filter::Active { secs }
            })
        }
        _ => {
            // created / since
            let cmp = if key == "since" {
                if cmp != Cmp::Eq {
                    return Err(err(op_pos, "since takes = and a date such as 2026-11-01"));
                }
                Cmp::Ge
            } else if cmp == Cmp::Ne {
                return Err(err(op_pos, "created takes =, >=, <=, > or <"));
            } else {
                cmp
            };
            let (pos, v) = single(&values)?;
            let date = NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .ok()
                .filter(|d| (1970..=9999).contains(&chrono::Datelike::year(d)))
                .ok_or_else(|| {
                    err(
                        pos,
                        format!("expected a date such as 2026-11-01, got {v:?}"),
                    )
                })?;
            Ok(Filter::Created { cmp, date })
        }
    }
}

/// A duration in its largest exact unit up to days: `7d`, `90m`, `36h`.
pub fn format_secs(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |negate: bool| if negate { "!=" } else { "=" };
        match self {
            Filter::Temperature { negate, any_of } => {
                let v: Vec<&str> = any_of.iter().map(|t| t.as_str()).collect();
                write!(f, "temperature{}{}", op(*negate), v.join("|"))
            }
            Filter::Source { negate, any_of } => {
                write!(f, "source{}{}", op(*negate), any_of.join("|"))
            }
            Filter::Status { negate, any_of } => {
                write!(f, "status{}{}", op(*negate), any_of.join("|"))
            }
            Filter::Score { cmp, value } => write!(f, "score{}{value}", cmp.as_str()),
            Filter::HasPhone(yes) => write!(f, "has_phone={}", if *yes { "yes" } else { "no" }),
            Filter::Inactive { secs } => write!(f, "inactive={}", format_secs(*secs)),
            Filter::Active { secs } => write!(f, "active={}", format_secs(*secs)),
            Filter::Created { cmp, date } => {
                write!(f, "created{}{}", cmp.as_str(), date.format("%Y-%m-%d"))
            }
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.filters.is_empty() {
            return f.write_str("all");
        }
        for (i, filter) in self.filters.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{filter}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_spec_example_parses() {
        let s = Segment::parse("temperature=cold|warm,source=vk_*,inactive=7d").unwrap();
        assert_eq!(
            s.filters,
            vec![
                Filter::Temperature {
                    negate: false,
                    any_of: vec![Temperature::Cold, Temperature::Warm]
                },
                Filter::Source {
                    negate: false,
                    any_of: vec!["vk_*".into()]
                },
                Filter::Inactive { secs: 7 * 86_400 },
            ]
        );
        assert_eq!(
            s.to_string(),
            "temperature=cold|warm,source=vk_*,inactive=7d"
        );
    }

    #[test]
    fn other_keys_parse_with_spaces_and_any_case() {
        let s = Segment::parse(" score >= 30 , has_phone=No,STATUS!=won|lost, since=2026-11-01,created<2026-12-01,active=12h").unwrap();
        assert_eq!(
            s.to_string(),
            "score>=30,has_phone=no,status!=won|lost,created>=2026-11-01,created<2026-12-01,active=12h"
        );
        assert!(Segment::parse("all").unwrap().is_all());
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("tempreature=cold", 1, "unknown key"),
            ("temperature=cold|lukewarm", 18, "unknown temperature"),
            ("source=vk_*,score>=ten", 20, "whole number"),
            ("score 30", 7, "operator"),
            ("temperature>=cold", 12, "takes = or !="),
            ("source=vk,,score=1", 11, "empty clause"),
            ("source=vk ads", 10, "source pattern"),
            ("inactive=7x", 10, "duration"),
            ("created=2026-13-01", 9, "date"),
            ("score=", 7, "missing"),
            ("has_phone=yes|no", 15, "one value"),
            ("", 1, "empty"),
        ];
        for (input, position, words) in cases {
            let e = Segment::parse(input).unwrap_err();
            assert_eq!(e.position, position, "{input}: {e}");
            assert!(e.message.contains(words), "{input}: {e}");
        }
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let temps = prop::sample::subsequence(
            vec![Temperature::Cold, Temperature::Warm, Temperature::Hot],
            1..=3,
        );
        let statuses = prop::sample::subsequence(STATUSES.to_vec(), 1..=6);
        let cmp = prop::sample::select(vec![Cmp::Eq, Cmp::Ne, Cmp::Ge, Cmp::Le, Cmp::Gt, Cmp::Lt]);
        let created_cmp = prop::sample::select(vec![Cmp::Eq, Cmp::Ge, Cmp::Le, Cmp::Gt, Cmp::Lt]);
        let secs = (
            1u64..5000,
            prop::sample::select(vec![1u64, 60, 3600, 86_400, 604_800]),
        )
            .prop_map(|(n, u)| n * u);
        prop_oneof![
            (any::<bool>(), temps)
                .prop_map(|(negate, any_of)| Filter::Temperature { negate, any_of }),
            (
                any::<bool>(),
                prop::collection::vec("[A-Za-z0-9_*-]{1,20}", 1..4)
            )
                .prop_map(|(negate, any_of)| Filter::Source { negate, any_of }),
            (any::<bool>(), statuses)
                .prop_map(|(negate, any_of)| Filter::Status { negate, any_of }),
            (cmp, -1_000_000i32..=1_000_000).prop_map(|(cmp, value)| Filter::Score { cmp, value }),
            any::<bool>().prop_map(Filter::HasPhone),
            secs.clone().prop_map(|secs| Filter::Inactive { secs }),
            secs.prop_map(|secs| Filter::Active { secs }),
            (created_cmp, 0i64..20_000).prop_map(|(cmp, days)| Filter::Created {
                cmp,
                date: NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(days as u64),
            }),
        ]
    }

    proptest! {
        #[test]
        fn parse_of_display_is_identity(filters in prop::collection::vec(filter(), 0..6)) {
            let s = Segment { filters };
            prop_assert_eq!(Segment::parse(&s.to_string()), Ok(s));
        }

        #[test]
        fn junk_never_panics(input in ".{0,120}") {
            let _ = Segment::parse(&input);
        }

        #[test]
        fn near_miss_junk_never_panics(input in "[a-z_=!<>|,* 0-9-]{0,60}") {
            if let Err(e) = Segment::parse(&input) {
                prop_assert!(e.position >= 1);
                prop_assert!(e.position <= input.chars().count() + 1);
            }
        }
    }
}
