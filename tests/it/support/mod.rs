//! Test support shared by the integration tests: the fake Bot API server and update builders.

// Each test module uses a different subset of these helpers; unused ones are not dead code
// in the sense the lint means.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod bot_api;
pub mod fake_telegram;
pub mod html;
pub mod updates;

pub use fake_telegram::{FakeTelegram, Fault, RateLimits, StoredMessage};
pub use updates::{Chat, Update, User};
