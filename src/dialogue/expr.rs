//! Branch conditions: a small expression language. (Being written.)

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr;
