//! The pure dialogue engine: file format, compiler and checks, graph, and `advance()`.
//! No tokio, sqlx or teloxide here.

pub mod compile;
pub mod expr;
pub mod format;
pub mod model;

pub use compile::{Compiled, Diagnostic, Severity, compile};
pub use model::*;
pub mod catalog;
pub mod compile;
pub mod engine;
pub mod format;
pub mod graph;
pub mod texts;

pub use catalog::{Catalog, Entry, Report};
pub use compile::{Compiled, Diagnostic, Severity, compile};
pub use engine::advance;
