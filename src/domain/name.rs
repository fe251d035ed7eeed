//! A lead's name as they typed it. (Being written.)

/// A trimmed name of 1–64 characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LeadName(String);

/// Why a text is not a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is longer than 64 characters")]
    TooLong,
}

impl LeadName {
    /// Trims and bounds a typed name.
    pub fn parse(_input: &str) -> Result<LeadName, NameError> {
        todo!()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
