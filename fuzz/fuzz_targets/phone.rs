//! Any text as a phone number, or as a sentence holding one: a number found is E.164 and parses
//! to itself.
#![no_main]

use leadbot::domain::Phone;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for phone in [Phone::parse(input).ok(), Phone::find_in(input)]
        .into_iter()
        .flatten()
    {
        let e164 = phone.as_str();
        assert!(e164.starts_with('+'), "{e164:?}");
        assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164:?}");
        assert!((8..=16).contains(&e164.len()), "{e164:?}");
        let again = Phone::parse(e164).expect("a normalised number parses again");
        assert_eq!(again.as_str(), e164);
    }
});
