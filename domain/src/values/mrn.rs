use serde::{Deserialize, Serialize};

use super::{string_value, ValueError};

/// A medical record number, canonically `MRN-` followed by at least six digits
/// (zero-padded), e.g. `MRN-000123`. Parsing accepts any case for the prefix and
/// fewer digits, and normalises (`mrn-42` becomes `MRN-000042`), so one number
/// has exactly one spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mrn(String);

impl Mrn {
    const PREFIX: &'static str = "MRN-";

    pub fn from_number(number: u64) -> Self {
        Self(format!("{}{number:06}", Self::PREFIX))
    }

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        let input = input.trim();
        if input.is_empty() {
            return Err(ValueError::Empty);
        }
        let digits = input
            .get(..Self::PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(Self::PREFIX))
            .and_then(|_| input.get(Self::PREFIX.len()..))
            .ok_or(ValueError::InvalidMrn)?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(ValueError::InvalidMrn);
        }
        let number: u64 = digits.parse().map_err(|_| ValueError::InvalidMrn)?;
        Ok(Self::from_number(number))
    }

    /// The number after the prefix.
    pub fn number(&self) -> u64 {
        self.0
            .get(Self::PREFIX.len()..)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_default()
    }
}
string_value!(Mrn);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_number_pads() {
        assert_eq!(Mrn::from_number(123).as_str(), "MRN-000123");
        assert_eq!(Mrn::from_number(1234567).as_str(), "MRN-1234567");
        assert_eq!(Mrn::from_number(0).number(), 0);
    }

    #[test]
    fn parse_normalises() {
        assert_eq!(Mrn::parse(" mrn-42 ").unwrap(), Mrn::from_number(42));
        assert_eq!(Mrn::parse("MRN-000123").unwrap().number(), 123);
        assert_eq!(Mrn::parse("MRN-0000123").unwrap().as_str(), "MRN-000123");
    }

    #[test]
    fn parse_accepts_everything_from_number_produces() {
        for n in [0, 1, 999_999, 1_000_000, u64::MAX] {
            let mrn = Mrn::from_number(n);
            assert_eq!(Mrn::parse(mrn.as_str()).unwrap(), mrn);
            assert_eq!(mrn.number(), n);
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "123",
            "MRN-",
            "MRN-12a",
            "MRN--12",
            "ABC-000123",
            "MRN-99999999999999999999",
            "MR",
        ] {
            assert_eq!(Mrn::parse(bad), Err(ValueError::InvalidMrn), "{bad}");
        }
        assert_eq!(Mrn::parse(""), Err(ValueError::Empty));
    }

    #[test]
    fn serde_validates() {
        let mrn: Mrn = serde_json::from_str("\"MRN-7\"").unwrap();
        assert_eq!(serde_json::to_string(&mrn).unwrap(), "\"MRN-000007\"");
        assert!(serde_json::from_str::<Mrn>("\"7\"").is_err());
    }
}
