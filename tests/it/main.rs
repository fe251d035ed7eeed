//! The integration test binary: every integration test module is listed here, so the crate
//! builds once (`cargo test --test it`).

mod broadcast;
mod capture;
mod chaos;
mod fake_telegram_tests;
mod faults;
mod production;
mod prospect;
mod reminders;
mod staff;
mod support;
