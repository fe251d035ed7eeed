//! The pure dialogue engine: file format, compiler and checks, graph, and `advance()`.
//! No tokio, sqlx or teloxide here.

pub mod expr;
pub mod format;
pub mod model;

pub use model::*;
