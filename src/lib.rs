//! leadbot: a Telegram bot that turns people who answered an ad into qualified, prioritised leads.
//!
//! - [`dialogue`]: the pure engine — dialogue files, checks, graph, `advance()`.
//! - [`domain`]: newtypes that parse at the edge (phone, e-mail, name, source, temperature).
//! - [`broadcast`]: limited-time offers — segments, HTML checks, the rate-limited sender, clicks.

pub mod app;
pub mod broadcast;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod dialogue;
pub mod dialogue_cli;
pub mod domain;
pub mod export;
pub mod outbox;
pub mod staff;
pub mod storage;
pub mod telegram;
pub mod terminal;
