//! Numbers typed with locale decimals. (Being written.)

/// Why a text is not a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a number")]
pub struct NumberError;

/// Parses `1 500,50`, `1500.5`, `1,500.50` and the like.
pub fn parse_number(_input: &str) -> Result<f64, NumberError> {
    todo!()
}
