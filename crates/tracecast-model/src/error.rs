use thiserror::Error;

/// A rejected input. The message always names the offending field, in the dotted path a
/// client would use to find it (`config.publicKey`, `filter_rules.groups[0].rules[1].value`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl ValidationError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

pub type Result<T, E = ValidationError> = std::result::Result<T, E>;
