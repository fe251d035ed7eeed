//! Numbers typed with locale decimals.
//!
//! Accepted: an optional sign (`-`, `+` or `−`), digits with optional group separators, and an
//! optional decimal part. Rules, chosen for a mostly Russian audience:
//! - spaces (also NBSP, thin and narrow no-break spaces) and `'` are group separators;
//! - when both `,` and `.` appear, the last one is the decimal separator (`1,500.50`, `1.500,50`);
//! - a single `,` or `.` is the decimal separator (`2,5` → 2.5, `1,500` → 1.5);
//! - a separator that appears more than once is a group separator (`1,500,000`);
//! - group separators must split the digits into groups of three (`1 5` is refused);
//! - one currency mark, before or after the number, is ignored: `₽ $ € £`, `руб`, `руб.`, `р.`, `rub`,
//!   `usd`, `eur` (case-insensitive). Other words, exponents, `NaN` and `inf` are refused.

/// Why a text is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Nothing but whitespace.
    #[error("no number was given")]
    Empty,
    /// Longer than any sensibly typed number.
    #[error("the number is too long")]
    TooLong,
    /// Not a number in any accepted form.
    #[error("not a number")]
    Invalid,
}

/// Longest input considered; a long paste is refused before any work.
const MAX_INPUT_CHARS: usize = 64;

/// Currency marks ignored before or after the number, lowercase.
const CURRENCY_MARKS: &[&str] = &["₽", "$", "€", "£", "руб.", "руб", "р.", "rub", "usd", "eur"];

/// Parses `1 500,50`, `1500.5`, `1,500.50` and the like (see the module docs for the rules).
pub fn parse_number(input: &str) -> Result<f64, NumberError> {
    if input.len() > MAX_INPUT_CHARS * 4 || input.chars().count() > MAX_INPUT_CHARS {
        return Err(NumberError::TooLong);
    }
    let lowered = input.trim().to_lowercase();
    if lowered.is_empty() {
        return Err(NumberError::Empty);
    }
    let text = strip_currency(&lowered).trim();
    let (negative, unsigned) = split_sign(text);
    let canonical = canonical_digits(unsigned).ok_or(NumberError::Invalid)?;
    let value: f64 = canonical.parse().map_err(|_| NumberError::Invalid)?;
    if !value.is_finite() {
        return Err(NumberError::Invalid);
    }
    Ok(if negative { -value } else { value })
}

/// Removes one currency mark from either end.
fn strip_currency(text: &str) -> &str {
    for mark in CURRENCY_MARKS {
        if let Some(rest) = text.strip_suffix(mark) {
            return rest;
        }
        if let Some(rest) = text.strip_prefix(mark) {
            return rest;
        }
    }
    text
}

/// Splits a leading sign (ASCII minus, plus, or the typographic minus) from the rest.
fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix(['-', '−']) {
        (true, rest.trim_start())
    } else if let Some(rest) = text.strip_prefix('+') {
        (false, rest.trim_start())
    } else {
        (false, text)
    }
}

/// Whether a character separates digit groups by spacing.
fn is_space_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '\u{2009}' | '\u{202f}' | '\'')
}

/// Turns an unsigned localised number into `digits[.digits]`, or None when it is malformed.
fn canonical_digits(text: &str) -> Option<String> {
    if text.is_empty()
        || !text
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '.' || is_space_separator(c))
    {
        return None;
    }
    let commas = text.matches(',').count();
    let dots = text.matches('.').count();
    let decimal = match (commas, dots) {
        (0, 0) => None,
        (1, 0) => Some(','),
        (0, 1) => Some('.'),
        (_, 0) | (0, _) => None,
        _ => {
            // Both present: the later one is the decimal separator and must appear once.
            let last = text
                .rfind([',', '.'])
                .and_then(|i| text[i..].chars().next())?;
            let count = if last == ',' { commas } else { dots };
            if count != 1 {
                return None;
            }
            Some(last)
        }
    };
    let (integer, fraction) = match decimal {
        Some(sep) => {
            let (int, frac) = text.split_once(sep)?;
            (int, Some(frac))
        }
        None => (text, None),
    };
    let mut canonical = ungroup(integer)?;
    if let Some(frac) = fraction {
        if frac.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        canonical.push('.');
        canonical.push_str(frac);
    }
    Some(canonical)
}

/// Removes group separators from an integer part, checking the groups are of three digits.
fn ungroup(integer: &str) -> Option<String> {
    let groups: Vec<&str> = integer
        .split(|c: char| c == ',' || c == '.' || is_space_separator(c))
        .collect();
    // All the space-like separators count as one kind: people mix NBSP and spaces unknowingly.
    let separators: Vec<char> = integer
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .map(|c| if is_space_separator(c) { ' ' } else { c })
        .collect();
    // One kind of group separator per number: `1,500 000` is more likely two numbers than one.
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    let (first, rest) = groups.split_first()?;
    let first_ok = !first.is_empty() && (rest.is_empty() || first.len() <= 3);
    if !first_ok || rest.iter().any(|g| g.len() != 3) {
        return None;
    }
    Some(groups.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn num(input: &str) -> f64 {
        parse_number(input).unwrap()
    }

    #[test]
    fn russian_grouping_with_decimal_comma_parses() {
        assert_eq!(num("1 500,50"), 1500.5);
        assert_eq!(num("1\u{a0}500,50"), 1500.5);
        assert_eq!(num("1\u{202f}000\u{2009}000"), 1_000_000.0);
    }

    #[test]
    fn english_grouping_with_decimal_dot_parses() {
        assert_eq!(num("1,500.50"), 1500.5);
        assert_eq!(num("1,500,000"), 1_500_000.0);
    }

    #[test]
    fn continental_grouping_with_dots_parses() {
        assert_eq!(num("1.500,50"), 1500.5);
        assert_eq!(num("1.500.000"), 1_500_000.0);
    }

    #[test]
    fn plain_and_decimal_numbers_parse() {
        assert_eq!(num("1500.5"), 1500.5);
        assert_eq!(num("1500"), 1500.0);
        assert_eq!(num("0"), 0.0);
        assert_eq!(num("  42 "), 42.0);
    }

    #[test]
    fn lone_comma_is_a_decimal_separator() {
        assert_eq!(num("2,5"), 2.5);
        assert_eq!(num("1,500"), 1.5);
    }

    #[test]
    fn space_grouped_integer_parses() {
        assert_eq!(num("1 500"), 1500.0);
        assert_eq!(num("10 000"), 10_000.0);
    }

    #[test]
    fn signs_are_honoured() {
        assert_eq!(num("-3"), -3.0);
        assert_eq!(num("−3,5"), -3.5);
        assert_eq!(num("+7"), 7.0);
    }

    #[test]
    fn one_currency_mark_is_ignored() {
        assert_eq!(num("10 000 ₽"), 10_000.0);
        assert_eq!(num("10000 руб."), 10_000.0);
        assert_eq!(num("$1,500.50"), 1500.5);
        assert_eq!(num("500 RUB"), 500.0);
    }

    #[test]
    fn other_words_are_refused() {
        assert_eq!(parse_number("10 тысяч"), Err(NumberError::Invalid));
        assert_eq!(parse_number("about 5"), Err(NumberError::Invalid));
        assert_eq!(parse_number("₽ 5 ₽"), Err(NumberError::Invalid));
    }

    #[test]
    fn nan_infinity_and_exponents_are_refused() {
        assert_eq!(parse_number("NaN"), Err(NumberError::Invalid));
        assert_eq!(parse_number("inf"), Err(NumberError::Invalid));
        assert_eq!(parse_number("-infinity"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1e5"), Err(NumberError::Invalid));
    }

    #[test]
    fn empty_input_is_refused_as_empty() {
        assert_eq!(parse_number(""), Err(NumberError::Empty));
        assert_eq!(parse_number("   "), Err(NumberError::Empty));
    }

    #[test]
    fn bad_grouping_is_refused() {
        assert_eq!(parse_number("1 5"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1 50 000"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1500 000"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1,500 000"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1,500,00.5"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1.5.0,0"), Err(NumberError::Invalid));
    }

    #[test]
    fn dangling_separators_and_bare_signs_are_refused() {
        assert_eq!(parse_number("5."), Err(NumberError::Invalid));
        assert_eq!(parse_number(",5"), Err(NumberError::Invalid));
        assert_eq!(parse_number("-"), Err(NumberError::Invalid));
        assert_eq!(parse_number("--5"), Err(NumberError::Invalid));
        assert_eq!(parse_number("1 000,"), Err(NumberError::Invalid));
    }

    #[test]
    fn long_paste_is_refused_as_too_long() {
        assert_eq!(parse_number(&"1".repeat(5000)), Err(NumberError::TooLong));
    }

    /// Groups the integer digits in threes with a separator, as people and spreadsheets do.
    fn grouped(integer: u64, separator: &str) -> String {
        let digits = integer.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(separator);
            }
            out.push(c);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics_on_arbitrary_text(s in "\\PC{0,80}|[0-9 ,.+\\-]{0,20}") {
            if let Ok(value) = parse_number(&s) {
                prop_assert!(value.is_finite());
            }
        }

        #[test]
        fn formatted_numbers_round_trip(integer in 0u64..1_000_000_000_000, cents in 0u32..100, negative: bool) {
            let expected = (integer as f64 + f64::from(cents) / 100.0) * if negative { -1.0 } else { 1.0 };
            let sign = if negative { "-" } else { "" };
            let forms = [
                format!("{sign}{integer}.{cents:02}"),
                format!("{sign}{integer},{cents:02}"),
                format!("{sign}{}.{cents:02}", grouped(integer, ",")),
                format!("{sign}{},{cents:02}", grouped(integer, " ")),
                format!("{sign}{},{cents:02}", grouped(integer, "\u{a0}")),
                format!("{sign}{},{cents:02}", grouped(integer, ".")),
            ];
            for form in forms {
                let parsed = parse_number(&form);
                prop_assert!(parsed.is_ok(), "{form} did not parse");
                let parsed = parsed.unwrap_or(f64::NAN);
                prop_assert!((parsed - expected).abs() <= expected.abs() * 1e-12, "{form} → {parsed}, expected {expected}");
            }
        }

        #[test]
        fn grouped_integers_round_trip_exactly(integer in 0u64..1_000_000_000_000_000) {
            prop_assert_eq!(parse_number(&grouped(integer, " ")), Ok(integer as f64));
            prop_assert_eq!(parse_number(&integer.to_string()), Ok(integer as f64));
        }
    }
}
