use std::fmt;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::ValueError;

/// An IANA time zone (e.g. `Europe/London`). Serialises as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(Tz);

impl TimeZone {
    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        let name = input.trim();
        if name.is_empty() {
            return Err(ValueError::Empty);
        }
        Tz::from_str(name)
            .map(Self)
            .map_err(|_| ValueError::UnknownTimeZone(name.to_owned()))
    }

    pub const fn from_tz(tz: Tz) -> Self {
        Self(tz)
    }

    pub fn tz(&self) -> Tz {
        self.0
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimeZone {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for TimeZone {
    type Error = ValueError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TimeZone> for String {
    fn from(tz: TimeZone) -> Self {
        tz.name().to_owned()
    }
}

impl From<Tz> for TimeZone {
    fn from(tz: Tz) -> Self {
        Self(tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iana_names() {
        let tz = TimeZone::parse(" Europe/Berlin ").unwrap();
        assert_eq!(tz.name(), "Europe/Berlin");
        assert_eq!(tz.tz(), chrono_tz::Europe::Berlin);
        assert_eq!(tz.to_string(), "Europe/Berlin");
        assert!(TimeZone::parse("UTC").is_ok());
    }

    #[test]
    fn rejects_unknown_names() {
        assert_eq!(
            TimeZone::parse("Mars/Olympus"),
            Err(ValueError::UnknownTimeZone("Mars/Olympus".into()))
        );
        assert_eq!(TimeZone::parse(""), Err(ValueError::Empty));
    }

    #[test]
    fn serialises_as_name() {
        let tz = TimeZone::from_tz(chrono_tz::America::New_York);
        assert_eq!(serde_json::to_string(&tz).unwrap(), "\"America/New_York\"");
        let back: TimeZone = serde_json::from_str("\"America/New_York\"").unwrap();
        assert_eq!(back, tz);
        assert!(serde_json::from_str::<TimeZone>("\"Nowhere\"").is_err());
    }
}
