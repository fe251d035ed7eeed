//! leadbot: a Telegram bot that turns people who answered an ad into qualified, prioritised leads.
//!
//! - [`dialogue`]: the pure engine — dialogue files, checks, graph, `advance()`.
//! - [`domain`]: newtypes that parse at the edge (phone, e-mail, name, source, temperature).

pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crm;
pub mod dialogue;
pub mod dialogue_cli;
pub mod domain;
pub mod export;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod staff;
pub mod storage;
pub mod telegram;
pub mod terminal;
