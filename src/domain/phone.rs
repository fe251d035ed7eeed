//! Phone numbers normalised to E.164. (Being written.)

/// A phone number in E.164 form, e.g. `+79123456789`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Phone(String);

/// Why a text is not a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a phone number")]
pub struct PhoneError;

impl Phone {
    /// Parses a typed or shared number; Russian `8…` and `7…` forms become `+7…`.
    pub fn parse(_input: &str) -> Result<Phone, PhoneError> {
        todo!()
    }

    /// The E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
