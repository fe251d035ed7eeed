//! E-mail addresses.

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A syntactically valid e-mail address, trimmed, with its domain in lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a text is not an e-mail address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing but whitespace.
    #[error("the e-mail address is empty")]
    Empty,
    /// More than 254 characters (the SMTP path limit).
    #[error("the e-mail address is longer than 254 characters")]
    TooLong,
    /// Not of the form `name@example.com`.
    #[error("not an e-mail address")]
    Invalid,
}

/// The longest address SMTP can deliver to (RFC 5321 path limit minus the angle brackets).
const MAX_CHARS: usize = 254;

/// Longest message searched for an address by [`Email::find_in`] (Telegram's limit, in bytes).
const MAX_TEXT_BYTES: usize = 4096 * 4;

impl Email {
    /// Parses a typed address: `name@example.com`, no display name, a dot in the domain.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_CHARS * 4 || trimmed.chars().count() > MAX_CHARS {
            return Err(EmailError::TooLong);
        }
        // Whitespace and comments are legal in RFC 5322 but never what a person meant to type.
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '(')
        {
            return Err(EmailError::Invalid);
        }
        // Two sub-domains means the domain has a dot: `user@localhost` is not a lead's address.
        let options = Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_minimum_sub_domains(2);
        let address =
            EmailAddress::parse_with_options(trimmed, options).map_err(|_| EmailError::Invalid)?;
        let domain = address.domain();
        if domain.starts_with('.') || domain.ends_with('.') {
            return Err(EmailError::Invalid);
        }
        // Domains are case-insensitive; local parts may not be, so only the domain is folded.
        Ok(Email(format!(
            "{}@{}",
            address.local_part(),
            domain.to_lowercase()
        )))
    }

    /// The one address in a sentence (`моя почта anna@example.com, пишите`): the only word with an
    /// `@`, without the punctuation around it, if it parses. Two such words name no address.
    pub fn find_in(text: &str) -> Option<Email> {
        if text.len() > MAX_TEXT_BYTES {
            return None;
        }
        let word = super::only(
            text.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '"'))
                .filter(|w| w.contains('@')),
        )?;
        Email::parse(word.trim_matches(|c: char| matches!(c, '.' | ':' | '!' | '?' | '(' | ')')))
            .ok()
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;

    fn try_from(value: String) -> Result<Email, EmailError> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(email: Email) -> String {
        email.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_one_address_in_a_sentence_is_found() {
        let found = |text: &str| Email::find_in(text).map(|e| e.as_str().to_owned());
        let anna = Some("anna@example.com".to_owned());
        assert_eq!(found("моя почта anna@Example.com, пишите"), anna);
        assert_eq!(found("e-mail: anna@example.com."), anna);
        assert_eq!(found("(anna@example.com)"), anna);
        assert_eq!(found("anna@example.com или boss@example.com"), None);
        assert_eq!(found("пишите на почту"), None);
        assert_eq!(found("anna@localhost please"), None);
    }

    #[test]
    fn plain_address_is_accepted_as_typed() {
        assert_eq!(
            Email::parse("ivan.petrov@example.com").unwrap().as_str(),
            "ivan.petrov@example.com"
        );
        assert_eq!(
            Email::parse("a+tag@mail.example.ru").unwrap().as_str(),
            "a+tag@mail.example.ru"
        );
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(
            Email::parse("  ivan@example.com\n").unwrap().as_str(),
            "ivan@example.com"
        );
    }

    #[test]
    fn domain_is_lowercased_but_local_part_is_kept() {
        assert_eq!(
            Email::parse("Ivan.Petrov@Example.COM").unwrap().as_str(),
            "Ivan.Petrov@example.com"
        );
    }

    #[test]
    fn empty_input_is_refused_as_empty() {
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        assert_eq!(Email::parse("   "), Err(EmailError::Empty));
    }

    #[test]
    fn address_without_at_sign_is_refused() {
        assert_eq!(Email::parse("ivan.example.com"), Err(EmailError::Invalid));
    }

    #[test]
    fn domain_without_a_dot_is_refused() {
        assert_eq!(Email::parse("ivan@localhost"), Err(EmailError::Invalid));
    }

    #[test]
    fn inner_whitespace_display_names_and_literals_are_refused() {
        assert_eq!(
            Email::parse("ivan petrov@example.com"),
            Err(EmailError::Invalid)
        );
        assert_eq!(
            Email::parse("Ivan <ivan@example.com>"),
            Err(EmailError::Invalid)
        );
        assert_eq!(Email::parse("ivan@[127.0.0.1]"), Err(EmailError::Invalid));
        assert_eq!(
            Email::parse("ivan(comment)@example.com"),
            Err(EmailError::Invalid)
        );
    }

    #[test]
    fn malformed_domains_are_refused() {
        assert_eq!(Email::parse("ivan@example..com"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("ivan@.example.com"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("ivan@example.com."), Err(EmailError::Invalid));
        assert_eq!(Email::parse("ivan@"), Err(EmailError::Invalid));
        assert_eq!(Email::parse("@example.com"), Err(EmailError::Invalid));
    }

    #[test]
    fn address_over_254_characters_is_refused() {
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
        assert_eq!(Email::parse(&"x".repeat(5000)), Err(EmailError::TooLong));
    }

    #[test]
    fn email_serialises_as_a_plain_string_and_validates_on_the_way_back() {
        let email = Email::parse("ivan@example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&email).unwrap(),
            "\"ivan@example.com\""
        );
        assert!(serde_json::from_str::<Email>("\"ivan\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_arbitrary_text(s in "\\PC{0,300}") {
            let _ = Email::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_address_like_text(s in "[a-zA-Z0-9.@\"\\[\\]<>+_-]{0,40}") {
            let _ = Email::parse(&s);
        }

        #[test]
        fn parse_is_idempotent_on_its_own_output(s in "[a-zA-Z0-9._+-]{1,20}@[a-zA-Z0-9-]{1,10}\\.[a-zA-Z]{2,6}") {
            if let Ok(email) = Email::parse(&s) {
                prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            }
        }
    }
}
