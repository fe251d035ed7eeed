//! Phone numbers normalised to E.164.

use phonenumber::{Mode, country};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A phone number in E.164 form, e.g. `+79123456789`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

/// Why a text is not a phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Longer than any sensibly typed number; refused before any parsing work.
    #[error("the phone number is too long")]
    TooLong,
    /// Letters or symbols other than digits, spaces, `+ ( ) - . /`.
    #[error("a phone number has only digits, spaces and + ( ) - .")]
    InvalidCharacter,
    /// Fewer digits than any phone number has.
    #[error("the phone number has too few digits")]
    TooShort,
    /// More digits than E.164 allows (15).
    #[error("the phone number has too many digits")]
    TooManyDigits,
    /// Well-formed but not a number any country assigns.
    #[error("not a valid phone number")]
    Invalid,
}

/// Longest input considered at all; longer pastes are refused without parsing.
const MAX_INPUT_CHARS: usize = 64;
/// Longest message searched for a number by [`Phone::find_in`] (Telegram's own limit).
const MAX_TEXT_CHARS: usize = 4096;
/// Fewest digits in any E.164 number (country code included).
const MIN_DIGITS: usize = 7;
/// Most digits E.164 allows.
const MAX_DIGITS: usize = 15;

impl Phone {
    /// Parses a typed or shared number; Russian `8…`, `7…` and ten-digit forms become `+7…`.
    pub fn parse(input: &str) -> Result<Phone, PhoneError> {
        let clean = clean(input)?;
        // RU is the default region: the bot's audience types national numbers without a country code.
        let number =
            phonenumber::parse(Some(country::Id::RU), &clean).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        let formatted = number.format().mode(Mode::E164).to_string();
        // The parser strips national prefixes it believes in; a number typed in full
        // international form must come out with exactly the digits the person typed.
        if clean.starts_with('+') && formatted != clean {
            return Err(PhoneError::Invalid);
        }
        // Only keep a result that is its own normal form, so stored phones re-parse unchanged.
        let reparsed = phonenumber::parse(None, &formatted).map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&reparsed)
            || reparsed.format().mode(Mode::E164).to_string() != formatted
        {
            return Err(PhoneError::Invalid);
        }
        Ok(Phone(formatted))
    }

    /// The one phone number in a sentence (`мой номер 8 912 345-67-89`, `+7 912 345 67 89, после
    /// 18`): the only run of digits and phone punctuation with enough digits for a number, if it
    /// parses. Two such runs name no number: the person is asked which.
    pub fn find_in(text: &str) -> Option<Phone> {
        if text.chars().count() > MAX_TEXT_CHARS {
            return None;
        }
        let is_phone_char = |c: char| {
            c.is_ascii_digit()
                || c.is_whitespace()
                || matches!(
                    c,
                    '+' | '(' | ')' | '-' | '.' | '/' | '\u{2010}'..='\u{2015}'
                )
        };
        let run = super::only(
            text.split(|c: char| !is_phone_char(c))
                .map(str::trim)
                .filter(|run| run.chars().filter(char::is_ascii_digit).count() >= MIN_DIGITS),
        )?;
        Phone::parse(run.trim_matches(|c: char| matches!(c, '.' | '-' | '/' | ')'))).ok()
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks the characters and reduces the input to an optional `+` and digits, so the
/// phonenumber parser only ever sees a plain digit string (no extensions, no vanity letters).
fn clean(input: &str) -> Result<String, PhoneError> {
    if input.len() > MAX_INPUT_CHARS * 4 || input.chars().count() > MAX_INPUT_CHARS {
        return Err(PhoneError::TooLong);
    }
    let trimmed = input.trim();
    let mut clean = String::with_capacity(trimmed.len());
    let mut digits = 0;
    for (i, c) in trimmed.char_indices() {
        match c {
            '0'..='9' => {
                clean.push(c);
                digits += 1;
            }
            '+' if i == 0 => clean.push('+'),
            '(' | ')' | '-' | '.' | '/' | '\u{2010}'..='\u{2015}' => {}
            c if c.is_whitespace() => {}
            _ => return Err(PhoneError::InvalidCharacter),
        }
    }
    if digits < MIN_DIGITS {
        return Err(PhoneError::TooShort);
    }
    if digits > MAX_DIGITS {
        return Err(PhoneError::TooManyDigits);
    }
    Ok(clean)
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Phone {
    type Error = PhoneError;

    fn try_from(value: String) -> Result<Phone, PhoneError> {
        Phone::parse(&value)
    }
}

impl From<Phone> for String {
    fn from(phone: Phone) -> String {
        phone.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e164(input: &str) -> String {
        Phone::parse(input).unwrap().as_str().to_owned()
    }

    #[test]
    fn russian_number_starting_with_8_becomes_plus_7() {
        assert_eq!(e164("8 912 345-67-89"), "+79123456789");
        assert_eq!(e164("89123456789"), "+79123456789");
    }

    #[test]
    fn russian_number_with_country_code_and_brackets_is_normalised() {
        assert_eq!(e164("+7 (912) 345-67-89"), "+79123456789");
        assert_eq!(e164("+7.912.345.67.89"), "+79123456789");
    }

    #[test]
    fn russian_number_starting_with_7_without_plus_is_normalised() {
        assert_eq!(e164("7 912 3456789"), "+79123456789");
        assert_eq!(e164("79123456789"), "+79123456789");
    }

    #[test]
    fn ten_digit_national_number_gets_russian_country_code() {
        assert_eq!(e164("912 345 67 89"), "+79123456789");
        assert_eq!(e164("(495) 123-45-67"), "+74951234567");
    }

    #[test]
    fn international_number_keeps_its_country() {
        assert_eq!(e164("+44 20 7946 0958"), "+442079460958");
        assert_eq!(e164("+1 (212) 555-0123"), "+12125550123");
    }

    #[test]
    fn surrounding_whitespace_and_nbsp_are_ignored() {
        assert_eq!(
            e164("  +7\u{a0}912\u{a0}345\u{a0}67\u{a0}89\n"),
            "+79123456789"
        );
    }

    #[test]
    fn letters_are_refused() {
        assert_eq!(
            Phone::parse("8 912 FLOWERS"),
            Err(PhoneError::InvalidCharacter)
        );
        assert_eq!(Phone::parse("call me"), Err(PhoneError::InvalidCharacter));
        assert_eq!(
            Phone::parse("+7 912 345 67 89 ext 12"),
            Err(PhoneError::InvalidCharacter)
        );
    }

    #[test]
    fn the_one_number_in_a_sentence_is_found() {
        let found = |text: &str| Phone::find_in(text).map(|p| p.as_str().to_owned());
        let anna = Some("+79123456789".to_owned());
        assert_eq!(found("мой номер 8 912 345-67-89"), anna);
        assert_eq!(found("89123456789 звоните после 18"), anna);
        assert_eq!(found("Телефон: +7 (912) 345-67-89."), anna);
        assert_eq!(found("+7 912 345 67 89 ext 12"), anna);
        assert_eq!(
            found("call me on +44 20 7946 0958, thanks"),
            Some("+442079460958".to_owned())
        );
        // Two numbers, or none, or digits too few for one: nothing is guessed.
        assert_eq!(found("8 912 345 67 89 или 8 999 111 22 33"), None);
        assert_eq!(found("позвоните завтра после 18"), None);
        assert_eq!(found("8 912 FLOWERS"), None);
        assert_eq!(found("мой номер 8 912 345"), None);
        assert_eq!(found(&"1".repeat(5000)), None);
    }

    #[test]
    fn international_number_is_never_silently_shortened() {
        // phonenumber would strip an `8` here as if it were a national prefix.
        assert_eq!(Phone::parse("+9888811000"), Err(PhoneError::Invalid));
    }

    #[test]
    fn plus_in_the_middle_is_refused() {
        assert_eq!(
            Phone::parse("7+9123456789"),
            Err(PhoneError::InvalidCharacter)
        );
    }

    #[test]
    fn too_few_digits_are_refused() {
        assert_eq!(Phone::parse(""), Err(PhoneError::TooShort));
        assert_eq!(Phone::parse("12-34"), Err(PhoneError::TooShort));
    }

    #[test]
    fn too_many_digits_are_refused() {
        assert_eq!(
            Phone::parse("8 912 345 67 89 12345"),
            Err(PhoneError::TooManyDigits)
        );
    }

    #[test]
    fn long_paste_is_refused_before_parsing() {
        assert_eq!(Phone::parse(&"1".repeat(5000)), Err(PhoneError::TooLong));
        assert_eq!(Phone::parse(&"я".repeat(65)), Err(PhoneError::TooLong));
    }

    #[test]
    fn number_no_country_assigns_is_refused() {
        // Russian numbers never start with 0 after the country code.
        assert_eq!(Phone::parse("+7 012 345 67 89"), Err(PhoneError::Invalid));
        assert_eq!(Phone::parse("1234567"), Err(PhoneError::Invalid));
    }

    #[test]
    fn phone_serialises_as_a_plain_string_and_validates_on_the_way_back() {
        let phone = Phone::parse("8 912 345-67-89").unwrap();
        let json = serde_json::to_string(&phone).unwrap();
        assert_eq!(json, "\"+79123456789\"");
        assert_eq!(serde_json::from_str::<Phone>(&json).unwrap(), phone);
        assert!(serde_json::from_str::<Phone>("\"not a phone\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_arbitrary_text(s in "\\PC{0,80}") {
            let _ = Phone::parse(&s);
        }

        #[test]
        fn a_number_found_in_any_text_is_its_own_normal_form(s in "\\PC{0,80}|[a-zа-я ,.:]{0,10}[+]?[0-9 ()\\-]{0,20}[a-zа-я ,.]{0,10}") {
            if let Some(phone) = Phone::find_in(&s) {
                prop_assert_eq!(Phone::parse(phone.as_str()), Ok(phone.clone()));
            }
        }

        #[test]
        fn parse_never_panics_on_phone_like_text(s in "[+]?[0-9 ()+.\\-]{0,30}") {
            let _ = Phone::parse(&s);
        }

        #[test]
        fn parse_is_idempotent_on_its_own_output(s in "[+]?[0-9]{7,15}|[+]?[78]?[ ]?9[0-9]{2}[ -]?[0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{2}") {
            if let Ok(phone) = Phone::parse(&s) {
                prop_assert_eq!(Phone::parse(phone.as_str()), Ok(phone.clone()));
            }
        }

        #[test]
        fn russian_mobile_numbers_in_any_common_form_agree(n in 0u64..10_000_000) {
            let national = format!("912{n:07}");
            let expected = format!("+7{national}");
            prop_assert_eq!(e164(&format!("8{national}")), expected.clone());
            prop_assert_eq!(e164(&format!("+7 {national}")), expected.clone());
            prop_assert_eq!(e164(&national), expected);
        }
    }
}
