//! Any JSON as an update from Telegram: what the poller accepts is stored as JSON and decoded
//! again by the processor (a stored update that no longer decodes would be skipped, i.e. lost),
//! and turning it into an event never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use teloxide::types::Update;

fuzz_target!(|data: &[u8]| {
    let Ok(update) = serde_json::from_slice::<Update>(data) else {
        return;
    };
    let _ = leadbot::telegram::update::user_of(&update);
    let _ = leadbot::telegram::update::to_event(&update);
    // The intake: stored as the poller stores it, loaded as the processor loads it.
    let stored = serde_json::to_string(&update).expect("an update serialises");
    let loaded: Update = serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("stored update does not decode: {e}\n{stored}"));
    assert_eq!(loaded.id, update.id);
    let _ = leadbot::telegram::update::to_event(&loaded);
});
