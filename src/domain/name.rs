//! A lead's name as they typed it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A name of 1–64 characters with at least one letter: trimmed, whitespace runs collapsed, control
/// characters removed. A phone number or a lone emoji typed at the name question is not a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LeadName(String);

/// Why a text is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than 64 characters")]
    TooLong,
    #[error("the name has no letters")]
    NoLetters,
}

/// Most characters (not bytes) a name may have.
const MAX_CHARS: usize = 64;

impl LeadName {
    /// Trims, collapses whitespace, strips control characters and bounds a typed name.
    pub fn parse(input: &str) -> Result<LeadName, NameError> {
        let mut name = String::new();
        let mut chars = 0;
        let mut pending_space = false;
        for c in input.chars() {
            if c.is_whitespace() {
                pending_space = !name.is_empty();
            } else if is_invisible_control(c) {
                // Dropped rather than refused: pasted names often carry stray control marks.
                continue;
            } else {
                if pending_space {
                    name.push(' ');
                    chars += 1;
                    pending_space = false;
                }
                name.push(c);
                chars += 1;
                // Stop early so a 5,000-character paste costs no more than a long name.
                if chars > MAX_CHARS {
                    return Err(NameError::TooLong);
                }
            }
        }
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if !name.chars().any(char::is_alphabetic) {
            return Err(NameError::NoLetters);
        }
        // Stripped until none is left ("я, меня зовут Анна"), so a parsed name parses to itself.
        let mut bare = name.as_str();
        while let Some(rest) = without_introduction(bare) {
            bare = rest;
        }
        Ok(LeadName(bare.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How people introduce themselves before their name, lower-case, longest first.
const INTRODUCTIONS: [&str; 14] = [
    "меня зовут",
    "моё имя",
    "мое имя",
    "my name is",
    "call me",
    "i am",
    "i'm",
    "i’m",
    "it’s",
    "зовут",
    "это",
    "this is",
    "it's",
    "я",
];

/// `Меня зовут Анна` → `Анна`, `I'm Anna.` → `Anna`: the name after a leading introduction (a
/// whole phrase of [`INTRODUCTIONS`], then a space, comma, colon or dash), without a final full
/// stop, when it has a letter; `None` when there is no introduction to leave out.
fn without_introduction(name: &str) -> Option<&str> {
    const AFTER: [char; 6] = [' ', ',', ':', '-', '—', '–'];
    INTRODUCTIONS.iter().find_map(|phrase| {
        // Lower-casing can change byte lengths; only cut where the typed text has the same prefix.
        let head = name.get(..phrase.len())?;
        let rest = name[phrase.len()..].strip_prefix(AFTER)?;
        if head.to_lowercase() != *phrase {
            return None;
        }
        let rest = rest
            .trim_start_matches(AFTER)
            .trim_end_matches('.')
            .trim_end();
        rest.chars().any(char::is_alphabetic).then_some(rest)
    })
}

/// Control characters, plus the bidirectional overrides and zero-width marks that could
/// make a name render differently in the staff chat from what it really is.
fn is_invisible_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

impl fmt::Display for LeadName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for LeadName {
    type Error = NameError;

    fn try_from(value: String) -> Result<LeadName, NameError> {
        LeadName::parse(&value)
    }
}

impl From<LeadName> for String {
    fn from(name: LeadName) -> String {
        name.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(input: &str) -> String {
        LeadName::parse(input).unwrap().as_str().to_owned()
    }

    #[test]
    fn name_is_trimmed() {
        assert_eq!(name("  Иван  "), "Иван");
    }

    #[test]
    fn inner_whitespace_runs_collapse_to_one_space() {
        assert_eq!(
            name("Анна \t\n  Мария\u{a0}\u{a0}Петрова"),
            "Анна Мария Петрова"
        );
    }

    #[test]
    fn control_and_bidi_characters_are_stripped() {
        assert_eq!(name("Iv\u{0}an\u{7}"), "Ivan");
        assert_eq!(name("\u{202E}Ivan\u{200B}"), "Ivan");
    }

    #[test]
    fn markup_is_kept_as_typed() {
        assert_eq!(name("<b>Boss</b> *_["), "<b>Boss</b> *_[");
    }

    #[test]
    fn empty_or_blank_name_is_refused() {
        assert_eq!(LeadName::parse(""), Err(NameError::Empty));
        assert_eq!(LeadName::parse(" \t\n "), Err(NameError::Empty));
        assert_eq!(LeadName::parse("\u{0}\u{200B}"), Err(NameError::Empty));
    }

    #[test]
    fn an_introduction_before_the_name_is_left_out() {
        assert_eq!(name("Меня зовут Анна"), "Анна");
        assert_eq!(name("меня зовут: Анна Петрова."), "Анна Петрова");
        assert_eq!(name("Я Анна"), "Анна");
        assert_eq!(name("Это — Иван"), "Иван");
        assert_eq!(name("I'm Anna."), "Anna");
        assert_eq!(name("my name is John Smith"), "John Smith");
        // Names that only begin like an introduction, and introductions with no name, stay.
        assert_eq!(name("Яна"), "Яна");
        assert_eq!(name("Этов Игорь"), "Этов Игорь");
        assert_eq!(name("Imogen"), "Imogen");
        assert_eq!(name("Im Sun-ok"), "Im Sun-ok");
        assert_eq!(name("Меня зовут"), "Меня зовут");
        assert_eq!(name("Я"), "Я");
        assert_eq!(name("Анна."), "Анна.");
        assert_eq!(name("Я, меня зовут Анна ."), "Анна");
        assert_eq!(name("I’m Anna"), "Anna");
    }

    #[test]
    fn a_name_needs_a_letter_in_any_script() {
        assert_eq!(
            LeadName::parse("+7 912 345-67-89"),
            Err(NameError::NoLetters)
        );
        assert_eq!(LeadName::parse("👍"), Err(NameError::NoLetters));
        assert_eq!(LeadName::parse("..."), Err(NameError::NoLetters));
        assert_eq!(name("Ли 李"), "Ли 李");
        assert_eq!(name("J. R. 2"), "J. R. 2");
        assert_eq!(name("أحمد"), "أحمد");
    }

    #[test]
    fn sixty_four_characters_are_counted_as_characters_not_bytes() {
        assert_eq!(name(&"я".repeat(64)).chars().count(), 64);
        assert_eq!(LeadName::parse(&"я".repeat(65)), Err(NameError::TooLong));
    }

    #[test]
    fn collapsed_spaces_do_not_count_against_the_limit() {
        let spaced = format!("{}{}{}", "a".repeat(32), " ".repeat(100), "b".repeat(31));
        assert_eq!(name(&spaced).chars().count(), 64);
    }

    #[test]
    fn long_paste_is_refused_as_too_long() {
        assert_eq!(LeadName::parse(&"x ".repeat(5000)), Err(NameError::TooLong));
    }

    #[test]
    fn name_serialises_as_a_plain_string_and_validates_on_the_way_back() {
        let lead = LeadName::parse("Иван").unwrap();
        assert_eq!(serde_json::to_string(&lead).unwrap(), "\"Иван\"");
        assert!(serde_json::from_str::<LeadName>("\"  \"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_name_after_introductions_parses_to_itself(s in "((меня зовут|я|i'm|это|Call me)[ ,:—.-]{0,3}){0,3}[a-zа-я .,:—-]{0,20}") {
            if let Ok(lead) = LeadName::parse(&s) {
                prop_assert_eq!(LeadName::parse(lead.as_str()), Ok(lead.clone()));
            }
        }

        #[test]
        fn parsed_name_is_bounded_clean_and_stable(s in "\\PC{0,100}|[ \\t\\na-zа-я\\x00-\\x1f]{0,100}") {
            if let Ok(lead) = LeadName::parse(&s) {
                let text = lead.as_str();
                prop_assert!((1..=64).contains(&text.chars().count()));
                prop_assert!(!text.contains("  "));
                prop_assert_eq!(text.trim(), text);
                prop_assert!(!text.chars().any(char::is_control));
                prop_assert_eq!(LeadName::parse(text), Ok(lead.clone()));
            }
        }
    }
}
