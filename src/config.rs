//! Environment → typed [`Settings`], parsed once at the edge (SPEC section 3).
//!
//! Every variable is read through a lookup function so tests can feed values without touching the
//! process environment. A bad value is reported as one line naming the variable and what is expected;
//! the token is a [`Secret`] that never prints.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use chrono_tz::Tz;

/// A value that must never reach a log: its `Debug` and `Display` print `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A configuration problem: which variable, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {expected}")]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What the variable must hold (and what it held, when that is not secret).
    pub expected: String,
}

impl ConfigError {
    fn new(var: &'static str, expected: impl Into<String>) -> ConfigError {
        ConfigError {
            var,
            expected: expected.into(),
        }
    }
}

/// Quiet hours in the business time zone; the window may wrap midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Start of the quiet window.
    pub from: NaiveTime,
    /// End of the quiet window.
    pub to: NaiveTime,
}

impl QuietHours {
    /// Whether a local time falls in the window.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.from <= self.to {
            self.from <= t && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Everything `leadbot` reads from its environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `TELOXIDE_TOKEN`; required by `run`.
    pub token: Option<Secret>,
    /// `TELOXIDE_API_URL`; Telegram's when unset.
    pub api_url: Option<String>,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `LEADBOT_STAFF_CHAT_ID`; required by `run`.
    pub staff_chat_id: Option<i64>,
    /// `LEADBOT_MANAGERS`.
    pub managers: Vec<i64>,
    /// `LEADBOT_DIALOGUES`.
    pub dialogues: PathBuf,
    /// True when `LEADBOT_DIALOGUES` was set. Unset, and with no `dialogues` folder where the bot
    /// starts, the dialogues shipped in the binary are used.
    pub dialogues_given: bool,
    /// `LEADBOT_TIMEZONE`.
    pub timezone: Tz,
    /// `LEADBOT_HOT_SLA`.
    pub hot_sla: Duration,
    /// Local hour (0–23) after which the daily digest is posted; `None` turns it off.
    pub digest_hour: Option<u32>,
    /// `LEADBOT_BROADCAST_RATE`, messages per second.
    pub broadcast_rate: u32,
    /// `LEADBOT_QUIET_HOURS`; `None` when `off`.
    pub quiet_hours: Option<QuietHours>,
    /// `LEADBOT_MAX_OFFERS_PER_WEEK`.
    pub max_offers_per_week: u32,
    /// `LEADBOT_HTTP_ADDR`.
    pub http_addr: Option<SocketAddr>,
    /// `LEADBOT_WEBHOOK_URL`.
    pub webhook_url: Option<String>,
    /// `LEADBOT_WEBHOOK_SECRET`.
    pub webhook_secret: Option<Secret>,
    /// `LEADBOT_CRM_WEBHOOK_URL`.
    pub crm_webhook_url: Option<String>,
    /// `LEADBOT_CRM_SECRET`.
    pub crm_secret: Option<Secret>,
    /// `RUST_LOG`.
    pub log_filter: String,
    /// `LEADBOT_LOG_FORMAT`.
    pub log_format: LogFormat,
}

impl Settings {
    /// Reads settings from the process environment (after a `.env` file, if any, was loaded).
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let token = get("TELOXIDE_TOKEN").map(Secret::new);
        if let Some(t) = &token
            && !looks_like_token(t.expose())
        {
            return Err(ConfigError::new(
                "TELOXIDE_TOKEN",
                "expected a bot token from @BotFather, such as 123456:ABC-DEF1234ghIkl (the value is not shown)",
            ));
        }
        let api_url = match get("TELOXIDE_API_URL") {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
            Some(u) => {
                return Err(ConfigError::new(
                    "TELOXIDE_API_URL",
                    format!("expected an http:// or https:// URL, got {u:?}"),
                ));
            }
            None => None,
        };
        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://leadbot.db".to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "expected sqlite://FILE or postgres://USER@HOST/DB",
            ));
        }
        let staff_chat_id = match get("LEADBOT_STAFF_CHAT_ID") {
            Some(v) => Some(v.parse::<i64>().ok().filter(|id| *id != 0).ok_or_else(|| {
                ConfigError::new(
                    "LEADBOT_STAFF_CHAT_ID",
                    format!("expected a chat id such as -1001234567890, got {v:?}"),
                )
            })?),
            None => None,
        };
        let managers = match get("LEADBOT_MANAGERS") {
            Some(v) => parse_id_list(&v).ok_or_else(|| {
                ConfigError::new(
                    "LEADBOT_MANAGERS",
                    format!(
                        "expected comma-separated Telegram user ids such as 12345,67890, got {v:?}"
                    ),
                )
            })?,
            None => Vec::new(),
        };
        let dialogues_given = get("LEADBOT_DIALOGUES").is_some();
        let dialogues =
            PathBuf::from(get("LEADBOT_DIALOGUES").unwrap_or_else(|| "dialogues".to_owned()));
        let timezone = match get("LEADBOT_TIMEZONE") {
            Some(v) => v.parse::<Tz>().map_err(|_| {
                ConfigError::new(
                    "LEADBOT_TIMEZONE",
                    format!("expected an IANA time zone such as Europe/Moscow, got {v:?}"),
                )
            })?,
            None => chrono_tz::Europe::Moscow,
        };
        let hot_sla = duration_var(&get, "LEADBOT_HOT_SLA", "15m")?;
        let digest_hour = match get("LEADBOT_DIGEST_HOUR").as_deref().map(str::trim) {
            None | Some("") => Some(10),
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            Some(v) => Some(v.parse::<u32>().ok().filter(|h| *h < 24).ok_or_else(|| {
                ConfigError::new(
                    "LEADBOT_DIGEST_HOUR",
                    format!("expected an hour from 0 to 23, or off, got {v:?}"),
                )
            })?),
        };
        let broadcast_rate = number_var(&get, "LEADBOT_BROADCAST_RATE", 25, 1..=1000)?;
        let quiet_hours = match get("LEADBOT_QUIET_HOURS").as_deref() {
            Some("off") | Some("OFF") | Some("Off") => None,
            Some(v) => Some(parse_quiet_hours(v).ok_or_else(|| {
                ConfigError::new(
                    "LEADBOT_QUIET_HOURS",
                    format!("expected HH:MM-HH:MM such as 21:00-09:00, or off, got {v:?}"),
                )
            })?),
            None => parse_quiet_hours("21:00-09:00"),
        };
        let max_offers_per_week = number_var(&get, "LEADBOT_MAX_OFFERS_PER_WEEK", 2, 0..=100)?;
        let http_addr = match get("LEADBOT_HTTP_ADDR") {
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "LEADBOT_HTTP_ADDR",
                    format!("expected HOST:PORT such as 0.0.0.0:8080, got {v:?}"),
                )
            })?),
            None => None,
        };
        let webhook_url = match get("LEADBOT_WEBHOOK_URL") {
            Some(u)
                if (u.starts_with("https://") || u.starts_with("http://"))
                    && reqwest::Url::parse(&u)
                        .is_ok_and(|p| !matches!(p.path(), "/healthz" | "/metrics")) =>
            {
                Some(u)
            }
            Some(u) => {
                return Err(ConfigError::new(
                    "LEADBOT_WEBHOOK_URL",
                    format!(
                        "expected a public https:// URL whose path is not /healthz or /metrics, got {u:?}"
                    ),
                ));
            }
            None => None,
        };
        let webhook_secret = match get("LEADBOT_WEBHOOK_SECRET") {
            Some(s) => {
                let ok = (1..=256).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if !ok {
                    return Err(ConfigError::new(
                        "LEADBOT_WEBHOOK_SECRET",
                        "expected 1 to 256 characters of A-Z, a-z, 0-9, _ and - (the value is not shown)",
                    ));
                }
                Some(Secret::new(s))
            }
            None => None,
        };
        if webhook_url.is_some() && http_addr.is_none() {
            return Err(ConfigError::new(
                "LEADBOT_HTTP_ADDR",
                "required when LEADBOT_WEBHOOK_URL is set: the HOST:PORT Telegram's posts reach, such as 0.0.0.0:8080",
            ));
        }
        let crm_webhook_url = match get("LEADBOT_CRM_WEBHOOK_URL") {
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => Some(u),
            Some(u) => {
                return Err(ConfigError::new(
                    "LEADBOT_CRM_WEBHOOK_URL",
                    format!("expected an https:// or http:// URL, got {u:?}"),
                ));
            }
            None => None,
        };
        let crm_secret = get("LEADBOT_CRM_SECRET").map(Secret::new);
        if crm_webhook_url.is_some() && crm_secret.is_none() {
            return Err(ConfigError::new(
                "LEADBOT_CRM_SECRET",
                "required when LEADBOT_CRM_WEBHOOK_URL is set: the key CRM events are signed with (HMAC-SHA256)",
            ));
        }
        let log_filter = get("RUST_LOG").unwrap_or_else(|| "info".to_owned());
        let log_format = match get("LEADBOT_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(v) => {
                return Err(ConfigError::new(
                    "LEADBOT_LOG_FORMAT",
                    format!("expected pretty or json, got {v:?}"),
                ));
            }
        };
        Ok(Settings {
            token,
            api_url,
            database_url,
            staff_chat_id,
            managers,
            dialogues,
            dialogues_given,
            timezone,
            hot_sla,
            digest_hour,
            broadcast_rate,
            quiet_hours,
            max_offers_per_week,
            http_addr,
            webhook_url,
            webhook_secret,
            crm_webhook_url,
            crm_secret,
            log_filter,
            log_format,
        })
    }

    /// The token, or the error `run` reports when it is missing.
    pub fn require_token(&self) -> Result<&Secret, ConfigError> {
        self.token.as_ref().ok_or_else(|| {
            ConfigError::new(
                "TELOXIDE_TOKEN",
                "required by `leadbot run`: the bot token from @BotFather (see README)",
            )
        })
    }

    /// The staff chat id, or the error `run` reports when it is missing.
    pub fn require_staff_chat(&self) -> Result<i64, ConfigError> {
        self.staff_chat_id.ok_or_else(|| {
            ConfigError::new(
                "LEADBOT_STAFF_CHAT_ID",
                "required by `leadbot run`: the managers' group id, such as -1001234567890 (see README)",
            )
        })
    }
}

fn looks_like_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, rest)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

fn parse_id_list(v: &str) -> Option<Vec<i64>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().ok())
        .collect()
}

fn duration_var(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let raw = get(var).unwrap_or_else(|| default.to_owned());
    parse_duration(&raw).ok_or_else(|| {
        ConfigError::new(
            var,
            format!("expected a duration such as 30s, 15m, 2h or 1d, got {raw:?}"),
        )
    })
}

fn number_var(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    var,
                    format!(
                        "expected a whole number from {} to {}, got {v:?}",
                        range.start(),
                        range.end()
                    ),
                )
            }),
    }
}

/// Parses `30s`, `15m`, `2h`, `1d`, `48h`, or combinations such as `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !digits.is_empty() || total == 0 {
        return None;
    }
    Some(Duration::from_secs(total))
}

fn parse_quiet_hours(v: &str) -> Option<QuietHours> {
    let (a, b) = v.split_once('-')?;
    let from = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
    let to = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
    (from != to).then_some(QuietHours { from, to })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, "sqlite://leadbot.db");
        assert_eq!(s.hot_sla, Duration::from_secs(15 * 60));
        assert_eq!(s.broadcast_rate, 25);
        assert_eq!(s.max_offers_per_week, 2);
        assert_eq!(s.timezone, chrono_tz::Europe::Moscow);
        let q = s.quiet_hours.unwrap();
        assert!(q.contains(NaiveTime::from_hms_opt(23, 0, 0).unwrap()));
        assert!(q.contains(NaiveTime::from_hms_opt(8, 59, 0).unwrap()));
        assert!(!q.contains(NaiveTime::from_hms_opt(12, 0, 0).unwrap()));
        assert!(s.token.is_none());
        assert!(s.require_token().is_err());
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        assert_eq!(settings(&[]).unwrap().digest_hour, Some(10));
        assert_eq!(
            settings(&[("LEADBOT_DIGEST_HOUR", "off")])
                .unwrap()
                .digest_hour,
            None
        );
        assert_eq!(
            settings(&[("LEADBOT_DIGEST_HOUR", "0")])
                .unwrap()
                .digest_hour,
            Some(0)
        );
        let e = settings(&[("LEADBOT_DIGEST_HOUR", "25")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_DIGEST_HOUR");
        let e = settings(&[("LEADBOT_HOT_SLA", "soon")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_HOT_SLA");
        assert!(
            e.to_string()
                .starts_with("LEADBOT_HOT_SLA: expected a duration")
        );
        assert_eq!(
            settings(&[("LEADBOT_STAFF_CHAT_ID", "staff")])
                .unwrap_err()
                .var,
            "LEADBOT_STAFF_CHAT_ID"
        );
        assert_eq!(
            settings(&[("LEADBOT_MANAGERS", "1,x")]).unwrap_err().var,
            "LEADBOT_MANAGERS"
        );
        assert_eq!(
            settings(&[("LEADBOT_TIMEZONE", "Mars/Base")])
                .unwrap_err()
                .var,
            "LEADBOT_TIMEZONE"
        );
        assert_eq!(
            settings(&[("LEADBOT_QUIET_HOURS", "9-5")]).unwrap_err().var,
            "LEADBOT_QUIET_HOURS"
        );
        assert_eq!(
            settings(&[("LEADBOT_BROADCAST_RATE", "0")])
                .unwrap_err()
                .var,
            "LEADBOT_BROADCAST_RATE"
        );
        assert_eq!(
            settings(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            settings(&[("LEADBOT_LOG_FORMAT", "xml")]).unwrap_err().var,
            "LEADBOT_LOG_FORMAT"
        );
    }

    #[test]
    fn the_token_never_prints() {
        let s = settings(&[("TELOXIDE_TOKEN", "123456:SECRET-token")]).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let e = settings(&[("TELOXIDE_TOKEN", "not a token SECRET")]).unwrap_err();
        assert!(!e.to_string().contains("SECRET"));
        assert_eq!(e.var, "TELOXIDE_TOKEN");
    }

    #[test]
    fn webhook_and_crm_settings_name_what_is_missing() {
        let e = settings(&[("LEADBOT_WEBHOOK_URL", "https://bot.example.com/tg")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_HTTP_ADDR");
        let e = settings(&[("LEADBOT_WEBHOOK_URL", "bot.example.com")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_WEBHOOK_URL");
        // The bot serves the webhook on the URL's path, beside /healthz and /metrics.
        let e = settings(&[
            ("LEADBOT_WEBHOOK_URL", "https://bot.example.com/metrics"),
            ("LEADBOT_HTTP_ADDR", "0.0.0.0:8080"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "LEADBOT_WEBHOOK_URL");
        let e = settings(&[("LEADBOT_WEBHOOK_SECRET", "has space hunter2")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_WEBHOOK_SECRET");
        assert!(!e.to_string().contains("hunter2"));
        let e = settings(&[("LEADBOT_HTTP_ADDR", "8080")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_HTTP_ADDR");
        let e =
            settings(&[("LEADBOT_CRM_WEBHOOK_URL", "https://crm.example.com/hook")]).unwrap_err();
        assert_eq!(e.var, "LEADBOT_CRM_SECRET");
        let e = settings(&[
            ("LEADBOT_CRM_WEBHOOK_URL", "crm"),
            ("LEADBOT_CRM_SECRET", "k"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "LEADBOT_CRM_WEBHOOK_URL");
        let s = settings(&[
            ("LEADBOT_WEBHOOK_URL", "https://bot.example.com/tg"),
            ("LEADBOT_HTTP_ADDR", "0.0.0.0:8080"),
            ("LEADBOT_WEBHOOK_SECRET", "abc_DEF-123"),
            ("LEADBOT_CRM_WEBHOOK_URL", "https://crm.example.com/hook"),
            ("LEADBOT_CRM_SECRET", "k"),
        ])
        .unwrap();
        assert_eq!(s.webhook_secret.unwrap().expose(), "abc_DEF-123");
        assert!(s.crm_secret.is_some());
    }

    #[test]
    fn quiet_hours_can_be_off_and_managers_listed() {
        let s = settings(&[
            ("LEADBOT_QUIET_HOURS", "off"),
            ("LEADBOT_MANAGERS", "1, 2,3"),
        ])
        .unwrap();
        assert!(s.quiet_hours.is_none());
        assert_eq!(s.managers, vec![1, 2, 3]);
    }

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration("0m"), None);
        assert_eq!(parse_duration("99999999999999999999h"), None);
    }
}
