//! Newtypes that parse at the edge: once built, a value is valid.

mod callback;
mod email;
mod name;
mod number;
mod phone;
mod source;

pub use callback::{CallbackData, CallbackError};
pub use email::{Email, EmailError};
pub use name::{LeadName, NameError};
pub use number::{NumberError, parse_number};
pub use phone::{Phone, PhoneError};
pub use source::{Source, SourceError};

use serde::{Deserialize, Serialize};

/// The one item of `items`, or `None` when there are none or several: what a typed answer names
/// only when it names exactly one thing.
pub(crate) fn only<T>(mut items: impl Iterator<Item = T>) -> Option<T> {
    match (items.next(), items.next()) {
        (Some(item), None) => Some(item),
        _ => None,
    }
}

/// A typed text's words, lower-cased, with `ё` read as `е`: how a typed answer is compared with
/// the words it may stand for.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase().replace('ё', "е"))
        .collect()
}

/// A lead's temperature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temperature {
    Cold,
    Warm,
    Hot,
}

impl Temperature {
    /// The lowercase name used in files, the database and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Temperature::Cold => "cold",
            Temperature::Warm => "warm",
            Temperature::Hot => "hot",
        }
    }

    /// Parses `cold`, `warm` or `hot`.
    pub fn parse(s: &str) -> Option<Temperature> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cold" => Some(Temperature::Cold),
            "warm" => Some(Temperature::Warm),
            "hot" => Some(Temperature::Hot),
            _ => None,
        }
    }
}

impl std::fmt::Display for Temperature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
