//! Any text as an update from Telegram: what the intake accepts is stored exactly as received,
//! and the processor, reading the stored text again, finds the same event (a stored update that
//! read differently later would be applied differently, or skipped). Nothing panics.
#![no_main]

use leadbot::telegram::update::{decode, event_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(received) = decode(raw) else {
        return;
    };
    assert_eq!(received.incoming.payload, raw);
    assert_eq!(event_of(&received.incoming.payload), received.event);
});
