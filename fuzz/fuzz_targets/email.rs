//! Any text as an e-mail address: a parsed address parses to itself.
#![no_main]

use leadbot::domain::Email;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(email) = Email::parse(input) {
        let again = Email::parse(email.as_str()).expect("a normalised address parses again");
        assert_eq!(again.as_str(), email.as_str());
    }
});
