//! The pure dialogue engine: file format, compiler and checks, graph, and `advance()`.
//! No tokio, sqlx or teloxide here.
//!
//! - [`format`]: the YAML file read into positioned raw structs.
//! - [`compile`]: raw structs → typed [`Script`], with every check as a positioned [`Diagnostic`].
//! - [`catalog`]: the dialogues of a folder and which one a new lead gets.
//! - [`expr`]: branch conditions.
//! - [`engine`]: [`advance`], the state machine.
//! - [`graph`]: the Mermaid flowchart.
//! - [`texts`]: the engine's own hints, in Russian and English.

pub mod catalog;
pub mod compile;
pub mod engine;
pub mod expr;
pub mod format;
pub mod graph;
pub mod model;
pub mod texts;

pub use catalog::{Catalog, Entry, Report};
pub use compile::{Compiled, Diagnostic, Severity, compile};
pub use engine::{advance, picks_a_choice};
pub use graph::mermaid;
pub use model::*;
