//! What every aggregate error has in common: a kind callers can map (to HTTP
//! codes, for example) and, where it applies, the offending field.

/// The broad class of a domain error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The aggregate does not exist (or a referenced entity inside it does not).
    NotFound,
    /// The command is not allowed in the aggregate's current state.
    Conflict,
    /// The input is not acceptable.
    Invalid,
    /// The input is well-formed but the time it asks for is not available (outside a doctor's
    /// working hours, or in their time off).
    Unavailable,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Implemented by every aggregate error (and by [`crate::values::ValueError`]).
pub trait DomainError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    /// The input field at fault, if the error is about one.
    fn field(&self) -> Option<&'static str> {
        None
    }
    /// The plan limit the command would go past, when that is the refusal.
    fn over_limit(&self) -> Option<&crate::plan::OverLimit> {
        None
    }
}
