//! Callback data of inline buttons: compact, typed, at most 64 bytes.

use std::fmt;

/// What a button press means. Anything that does not parse is a forged or outdated press.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackData {
    /// A dialogue choice: version prefix (8 hex), step index, choice index.
    Choice {
        version: String,
        step: u16,
        index: u8,
    },
    /// Start the dialogue over.
    Restart,
    /// "Write to a manager".
    Manager,
    /// Confirm `/forget`.
    ForgetYes,
    /// Cancel `/forget`.
    ForgetNo,
    /// Staff: take a lead.
    Take(i64),
    /// Staff: close a lead as won.
    Won(i64),
    /// Staff: close a lead as lost.
    Lost(i64),
    /// An offer's call-to-action button.
    Offer(i64),
    /// Unsubscribe from offers.
    Unsubscribe,
}

/// Why callback data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognised button data")]
pub struct CallbackError;

impl CallbackData {
    /// Parses callback data sent back by Telegram.
    pub fn parse(data: &str) -> Result<CallbackData, CallbackError> {
        if data.len() > 64 {
            return Err(CallbackError);
        }
        let mut parts = data.split(':');
        let head = parts.next().ok_or(CallbackError)?;
        let rest: Vec<&str> = parts.collect();
        let id = |rest: &[&str]| -> Result<i64, CallbackError> {
            match rest {
                [n] => n
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(CallbackError),
                _ => Err(CallbackError),
            }
        };
        match (head, rest.as_slice()) {
            ("c", [version, step, index]) => {
                let ok = version.len() == 8 && version.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return Err(CallbackError);
                }
                Ok(CallbackData::Choice {
                    version: (*version).to_owned(),
                    step: step.parse().map_err(|_| CallbackError)?,
                    index: index.parse().map_err(|_| CallbackError)?,
                })
            }
            ("r", []) => Ok(CallbackData::Restart),
            ("m", []) => Ok(CallbackData::Manager),
            ("fy", []) => Ok(CallbackData::ForgetYes),
            ("fn", []) => Ok(CallbackData::ForgetNo),
            ("u", []) => Ok(CallbackData::Unsubscribe),
            ("t", r) => Ok(CallbackData::Take(id(r)?)),
            ("w", r) => Ok(CallbackData::Won(id(r)?)),
            ("l", r) => Ok(CallbackData::Lost(id(r)?)),
            ("o", r) => Ok(CallbackData::Offer(id(r)?)),
            _ => Err(CallbackError),
        }
    }

    /// The version prefix a choice button carries.
    pub fn version_prefix(version: &str) -> &str {
        version.get(..8).unwrap_or(version)
    }
}

impl fmt::Display for CallbackData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackData::Choice {
                version,
                step,
                index,
            } => write!(f, "c:{version}:{step}:{index}"),
            CallbackData::Restart => f.write_str("r"),
            CallbackData::Manager => f.write_str("m"),
            CallbackData::ForgetYes => f.write_str("fy"),
            CallbackData::ForgetNo => f.write_str("fn"),
            CallbackData::Unsubscribe => f.write_str("u"),
            CallbackData::Take(id) => write!(f, "t:{id}"),
            CallbackData::Won(id) => write!(f, "w:{id}"),
            CallbackData::Lost(id) => write!(f, "l:{id}"),
            CallbackData::Offer(id) => write!(f, "o:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips_within_64_bytes() {
        let all = [
            CallbackData::Choice {
                version: "0123abcd".into(),
                step: u16::MAX,
                index: u8::MAX,
            },
            CallbackData::Restart,
            CallbackData::Manager,
            CallbackData::ForgetYes,
            CallbackData::ForgetNo,
            CallbackData::Unsubscribe,
            CallbackData::Take(i64::MAX),
            CallbackData::Won(1),
            CallbackData::Lost(2),
            CallbackData::Offer(3),
        ];
        for d in all {
            let s = d.to_string();
            assert!(s.len() <= 64, "{s}");
            assert_eq!(CallbackData::parse(&s), Ok(d));
        }
    }

    #[test]
    fn forged_data_is_refused() {
        for bad in [
            "",
            "x",
            "c:zz:1:1",
            "c:0123abcd:1",
            "t:-1",
            "t:0",
            "t:abc",
            "r:1",
            &"t".repeat(65),
        ] {
            assert_eq!(CallbackData::parse(bad), Err(CallbackError), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_data_never_panics(s in ".{0,80}") {
            let _ = CallbackData::parse(&s);
        }
    }
}
