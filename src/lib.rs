//! leadbot: a Telegram bot that turns people who answered an ad into qualified, prioritised leads.
//!
//! - [`dialogue`]: the pure engine — dialogue files, checks, graph, `advance()`.
//! - [`domain`]: newtypes that parse at the edge (phone, e-mail, name, source, temperature).
//! - [`http`]: the HTTP server — `/healthz`, `/metrics`, the Telegram webhook endpoint.
//! - [`metrics`]: Prometheus counters, gauges and histograms, one `Metrics` per process.
//! - [`crm`]: lead events POSTed to a CRM as signed JSON through a durable queue.

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
