//! One error type for the whole benchmark: a message that says what went wrong where.

use std::fmt;

#[derive(Debug)]
pub struct BenchError(pub String);

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

macro_rules! from_error {
    ($($source:ty => $what:literal),* $(,)?) => {
        $(impl From<$source> for BenchError {
            fn from(e: $source) -> Self {
                BenchError(format!(concat!($what, ": {}"), e))
            }
        })*
    };
}

from_error!(
    sqlx::Error => "database",
    reqwest::Error => "http",
    std::io::Error => "io",
    serde_json::Error => "json",
);

/// `Err(BenchError)` from a formatted message.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::BenchError(format!($($arg)*)))
    };
}
