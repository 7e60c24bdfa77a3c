//! Money: an ISO 4217 currency and amounts in its minor units (cents), never floats.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// An ISO 4217 currency code: three ASCII upper-case letters (input is upper-cased).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let code = input.as_ref().trim().to_ascii_uppercase();
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => {
                Ok(Currency([*a, *b, *c]))
            }
            _ => Err(ValueError::InvalidCurrency),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII letters")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// An amount in minor units: positive, at most [`Amount::MAX`] (ten billion major units of a
/// two-decimal currency), so that sums of many never overflow an `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Amount(i64);

impl Amount {
    pub const MAX: i64 = 1_000_000_000_000;

    pub fn new(minor: i64) -> Result<Self, ValueError> {
        if minor <= 0 {
            return Err(ValueError::NotPositive);
        }
        if minor > Self::MAX {
            return Err(ValueError::TooLarge { max: Self::MAX });
        }
        Ok(Amount(minor))
    }

    /// The amount in minor units.
    pub fn minor(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for Amount {
    type Error = ValueError;

    fn try_from(minor: i64) -> Result<Self, Self::Error> {
        Amount::new(minor)
    }
}

impl From<Amount> for i64 {
    fn from(a: Amount) -> Self {
        a.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_letters() {
        assert_eq!(Currency::parse(" eur ").unwrap().as_str(), "EUR");
        for bad in ["", "EU", "EURO", "E1R", "€UR"] {
            assert_eq!(
                Currency::parse(bad),
                Err(ValueError::InvalidCurrency),
                "{bad}"
            );
        }
        assert_eq!(
            serde_json::to_string(&Currency::parse("GBP").unwrap()).unwrap(),
            "\"GBP\""
        );
        assert!(serde_json::from_str::<Currency>("\"gb\"").is_err());
    }

    #[test]
    fn amounts_are_positive_minor_units_within_bounds() {
        assert_eq!(Amount::new(1).unwrap().minor(), 1);
        assert_eq!(Amount::new(0), Err(ValueError::NotPositive));
        assert_eq!(Amount::new(-5), Err(ValueError::NotPositive));
        assert_eq!(
            Amount::new(Amount::MAX + 1),
            Err(ValueError::TooLarge { max: Amount::MAX })
        );
        assert!(
            serde_json::from_str::<Amount>("12.5").is_err(),
            "never a float"
        );
        assert_eq!(
            serde_json::from_str::<Amount>("1250").unwrap().minor(),
            1250
        );
    }
}
