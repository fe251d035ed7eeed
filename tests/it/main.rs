//! The integration test binary: every integration test module is listed here, so the crate
//! builds once (`cargo test --test it`).

mod broadcast;
mod fake_telegram_tests;
mod prospect;
mod reminders;
mod support;
