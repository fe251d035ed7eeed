//! E-mail addresses. (Being written.)

/// A syntactically valid e-mail address, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a text is not an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an e-mail address")]
pub struct EmailError;

impl Email {
    /// Parses a typed address.
    pub fn parse(_input: &str) -> Result<Email, EmailError> {
        todo!()
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
