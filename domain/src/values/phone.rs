use serde::{Deserialize, Serialize};

use super::{string_value, ValueError};

/// A phone number, E.164-ish: an optional leading `+` and 7–15 digits once
/// spaces, dashes, dots and parentheses are removed. Stored normalised
/// (e.g. `+441234567890`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub const MIN_DIGITS: usize = 7;
    pub const MAX_DIGITS: usize = 15;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        let input = input.trim();
        if input.is_empty() {
            return Err(ValueError::Empty);
        }
        let (plus, rest) = match input.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        let mut digits = String::with_capacity(rest.len());
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => return Err(ValueError::InvalidPhone),
            }
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(ValueError::InvalidPhone);
        }
        Ok(Self(if plus { format!("+{digits}") } else { digits }))
    }
}
string_value!(Phone);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_formatting() {
        assert_eq!(
            Phone::parse(" +44 (0) 1234-567.890 ").unwrap().as_str(),
            "+4401234567890"
        );
        assert_eq!(Phone::parse("555 1234").unwrap().as_str(), "5551234");
    }

    #[test]
    fn enforces_digit_count() {
        assert_eq!(Phone::parse("123456"), Err(ValueError::InvalidPhone));
        assert!(Phone::parse("1234567").is_ok());
        assert!(Phone::parse("+123456789012345").is_ok());
        assert_eq!(
            Phone::parse("+1234567890123456"),
            Err(ValueError::InvalidPhone)
        );
    }

    #[test]
    fn rejects_letters_and_misplaced_plus() {
        assert_eq!(Phone::parse("555-CALL-NOW"), Err(ValueError::InvalidPhone));
        assert_eq!(Phone::parse("12+3456789"), Err(ValueError::InvalidPhone));
        assert_eq!(Phone::parse("++123456789"), Err(ValueError::InvalidPhone));
        assert_eq!(Phone::parse(""), Err(ValueError::Empty));
    }

    #[test]
    fn serde_validates() {
        let p: Phone = serde_json::from_str("\"+1 555 123 4567\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+15551234567\"");
        assert!(serde_json::from_str::<Phone>("\"12\"").is_err());
    }
}
