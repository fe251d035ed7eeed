//! The integration test binary: every integration test module is listed here, so the crate
//! builds once (`cargo test --test it`).

mod chaos;
mod fake_telegram_tests;
mod faults;
mod prospect;
mod support;
