//! leadbot: a Telegram bot that turns people who answered an ad into qualified, prioritised leads.
//!
//! - [`dialogue`]: the pure engine — dialogue files, checks, graph, `advance()`.
//! - [`domain`]: newtypes that parse at the edge (phone, e-mail, name, source, temperature).

pub mod dialogue;
pub mod domain;
pub mod config;
pub mod storage;
pub mod app;
pub mod clock;
pub mod outbox;
pub mod telegram;
pub mod staff;
pub mod export;
pub mod cli;
pub mod commands;
pub mod dialogue_cli;
pub mod terminal;
