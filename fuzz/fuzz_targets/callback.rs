//! Any bytes as button data: refused, or decoded into data that encodes within Telegram's 64
//! bytes and decodes to itself.
#![no_main]

use leadbot::domain::CallbackData;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = CallbackData::parse(input) {
        let encoded = parsed.to_string();
        assert!(encoded.len() <= 64, "{encoded:?}");
        assert_eq!(CallbackData::parse(&encoded), Ok(parsed));
    }
});
