//! leadbot: a Telegram bot that turns people who answered an ad into qualified, prioritised leads.
//!
//! - [`dialogue`]: the pure engine — dialogue files, checks, graph, `advance()`.
//! - [`domain`]: newtypes that parse at the edge (phone, e-mail, name, source, temperature).
//! - [`terminal`]: `leadbot try`, the dialogue in a terminal.

pub mod dialogue;
pub mod domain;
pub mod terminal;
