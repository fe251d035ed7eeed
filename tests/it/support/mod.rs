//! Test support shared by the integration tests: the fake Bot API server and update builders.

// Each test module uses a different subset of these helpers; unused ones are not dead code
// in the sense the lint means.
#![allow(dead_code)]

pub mod app;
pub mod bot_api;
pub mod crowd;
pub mod fake_telegram;
pub mod html;
pub mod pg_proxy;
pub mod updates;

// Convenience re-exports; each test module imports the few it needs.
#[allow(unused_imports)]
pub use fake_telegram::{FakeTelegram, Fault, RateLimits, StoredMessage};
#[allow(unused_imports)]
pub use updates::{Chat, Update, User};
