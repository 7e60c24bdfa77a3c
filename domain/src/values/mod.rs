//! Value types. Each is parsed once at the edge (`parse`/`new`, `TryFrom`, serde
//! `try_from`) and is valid from then on: fields are private.

use crate::error::{DomainError, ErrorKind};

mod contact;
mod email;
mod enums;
mod money;
mod mrn;
mod phone;
mod text;
mod time_range;
mod time_zone;
mod working_hours;

pub use contact::{Address, Allergy, EmergencyContact, Insurance, PatientName};
pub use email::Email;
pub use enums::{Module, PaymentMethod, Plan, Role, Sex};
pub use money::{Amount, Currency};
pub use mrn::Mrn;
pub use phone::Phone;
pub use text::{nul_path, AppointmentType, ClinicCode, NonEmptyText, PersonName, WebUrl};
pub use time_range::TimeRange;
pub use time_zone::TimeZone;
pub use working_hours::{LocalInterval, WorkingHours};

/// Why a value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("must be at most {max} characters long")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
    #[error("is not a valid identifier")]
    InvalidId,
    #[error("is not a valid email address")]
    InvalidEmail,
    #[error("is not a valid phone number (expected 7 to 15 digits, optionally starting with +)")]
    InvalidPhone,
    #[error("is not an https:// address with a host")]
    InvalidUrl,
    #[error("is not an ISO 4217 currency code (three letters, e.g. EUR)")]
    InvalidCurrency,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("must be at most {max}")]
    TooLarge { max: i64 },
    #[error("is not an invoice number (expected e.g. INV-2027-000001)")]
    InvalidInvoiceNumber,
    #[error("is not a known IANA time zone: {0:?}")]
    UnknownTimeZone(String),
    #[error("may contain only lowercase letters, digits and '-', and must start and end with a letter or digit")]
    InvalidClinicCode,
    #[error("is not a valid {kind}: {value:?}")]
    UnknownVariant { kind: &'static str, value: String },
    #[error("is not a valid medical record number (expected e.g. MRN-000123)")]
    InvalidMrn,
    #[error("end must be after start")]
    EndNotAfterStart,
    #[error("intervals on {day} overlap")]
    OverlappingIntervals { day: &'static str },
    #[error("at most {max} items are allowed")]
    TooMany { max: usize },
    #[error("{field}: {source}")]
    InField {
        field: &'static str,
        #[source]
        source: Box<ValueError>,
    },
}

impl ValueError {
    /// Wraps this error with the name of the field (inside a compound value) it concerns.
    pub fn in_field(self, field: &'static str) -> Self {
        ValueError::InField {
            field,
            source: Box::new(self),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    /// The innermost field name recorded with [`ValueError::in_field`], if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ValueError::InField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl DomainError for ValueError {
    fn kind(&self) -> ErrorKind {
        ValueError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        ValueError::field(self)
    }
}

/// Trims `input` and checks it is non-empty, at most `max` characters and free of
/// control characters (newlines and tabs allowed when `multiline`).
pub(crate) fn clean_text(input: &str, max: usize, multiline: bool) -> Result<String, ValueError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ValueError::Empty);
    }
    if trimmed.chars().count() > max {
        return Err(ValueError::TooLong { max });
    }
    let allowed = |c: char| multiline && matches!(c, '\n' | '\r' | '\t');
    if trimmed.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(ValueError::ControlCharacter);
    }
    Ok(trimmed.to_owned())
}

/// Implements the usual conversions of a `String`-backed value type that has a
/// `parse(&str) -> Result<Self, ValueError>` constructor.
macro_rules! string_value {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::values::ValueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::values::ValueError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::values::ValueError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}
pub(crate) use string_value;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_trims_and_checks() {
        assert_eq!(clean_text("  a b ", 10, false).unwrap(), "a b");
        assert_eq!(clean_text("   ", 10, false), Err(ValueError::Empty));
        assert_eq!(
            clean_text("abc", 2, false),
            Err(ValueError::TooLong { max: 2 })
        );
        assert_eq!(
            clean_text("a\u{0}b", 10, false),
            Err(ValueError::ControlCharacter)
        );
        assert_eq!(
            clean_text("a\nb", 10, false),
            Err(ValueError::ControlCharacter)
        );
        assert_eq!(clean_text("a\nb", 10, true).unwrap(), "a\nb");
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(clean_text("ééé", 3, false).is_ok());
    }

    #[test]
    fn in_field_records_the_field() {
        let e = ValueError::Empty.in_field("city");
        assert_eq!(e.field(), Some("city"));
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert_eq!(e.to_string(), "city: must not be empty");
        assert_eq!(ValueError::Empty.field(), None);
    }
}
