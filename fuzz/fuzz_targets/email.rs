//! Any text as an e-mail address, or as a sentence holding one: an address found parses to itself.
#![no_main]

use leadbot::domain::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for email in [Email::parse(input).ok(), Email::find_in(input)]
        .into_iter()
        .flatten()
    {
        let again = Email::parse(email.as_str()).expect("a normalised address parses again");
        assert_eq!(again.as_str(), email.as_str());
    }
});
