//! The pure dialogue engine: file format, compiler and checks, graph, and `advance()`.
//! No tokio, sqlx or teloxide here.

pub mod catalog;
pub mod compile;
mod engine;
pub mod expr;
pub mod format;
pub mod graph;
pub mod model;
pub mod texts;

pub use catalog::{Catalog, CheckReport};
pub use compile::{Compiled, Diagnostic, Severity, compile};
pub use engine::advance;
pub use graph::mermaid;
pub use model::*;
