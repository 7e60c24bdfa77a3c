use serde::{Deserialize, Serialize};

use super::{clean_text, string_value, ValueError};

/// Free text: trimmed, non-empty, at most [`NonEmptyText::MAX_LEN`] characters,
/// no control characters except newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NonEmptyText(String);

impl NonEmptyText {
    pub const MAX_LEN: usize = 1000;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        clean_text(input, Self::MAX_LEN, true).map(Self)
    }
}
string_value!(NonEmptyText);

/// A person's name (or one part of it): trimmed, non-empty, at most
/// [`PersonName::MAX_LEN`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_LEN: usize = 200;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        clean_text(input, Self::MAX_LEN, false).map(Self)
    }
}
string_value!(PersonName);

/// A clinic's short code (used e.g. at login): 2–32 characters of lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
/// Input is trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClinicCode(String);

impl ClinicCode {
    pub const MIN_LEN: usize = 2;
    pub const MAX_LEN: usize = 32;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        let code = input.trim().to_ascii_lowercase();
        if code.is_empty() {
            return Err(ValueError::Empty);
        }
        let len = code.chars().count();
        if len < Self::MIN_LEN {
            return Err(ValueError::TooShort { min: Self::MIN_LEN });
        }
        if len > Self::MAX_LEN {
            return Err(ValueError::TooLong { max: Self::MAX_LEN });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !code.chars().all(allowed) || code.starts_with('-') || code.ends_with('-') {
            return Err(ValueError::InvalidClinicCode);
        }
        Ok(Self(code))
    }
}
string_value!(ClinicCode);

/// An appointment's type, a clinic's own code for a kind of visit (`consultation`,
/// `follow-up`, `vaccination`): 1–40 lowercase letters, digits and '-' (input is
/// lower-cased), starting and ending with a letter or digit. The fee schedule prices by it
/// (FHIR `Appointment.appointmentType`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppointmentType(String);

impl AppointmentType {
    pub const MAX_LEN: usize = 40;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let code = input.as_ref().trim().to_ascii_lowercase();
        if code.is_empty() {
            return Err(ValueError::Empty);
        }
        if code.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong { max: Self::MAX_LEN });
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !code.chars().all(allowed) || code.starts_with('-') || code.ends_with('-') {
            return Err(ValueError::InvalidClinicCode);
        }
        Ok(Self(code))
    }
}
string_value!(AppointmentType);

/// An `https://` address (a clinic's logo): at most [`WebUrl::MAX_LEN`] characters, with a
/// host, and no spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebUrl(String);

impl WebUrl {
    pub const MAX_LEN: usize = 2000;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let url = input.as_ref().trim();
        if url.is_empty() {
            return Err(ValueError::Empty);
        }
        if url.chars().count() > Self::MAX_LEN {
            return Err(ValueError::TooLong { max: Self::MAX_LEN });
        }
        let host = url
            .strip_prefix("https://")
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
        let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
        match host {
            Some(host) if clean && !host.is_empty() => Ok(Self(url.to_owned())),
            _ => Err(ValueError::InvalidUrl),
        }
    }
}
string_value!(WebUrl);

/// The path of the first string in a JSON `value`, key or value, that holds U+0000 (which
/// PostgreSQL cannot store in `text`), written as serde_path_to_error writes paths
/// (`name.given`, `allergies[0]`; `body` for the value itself). A key with the character is
/// named with it written `\u0000`.
pub fn nul_path(value: &serde_json::Value) -> Option<String> {
    nul_path_at(value, "")
}

/// The path of the first string in `value` (a key or a value) that holds U+0000.
fn nul_path_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let named = |path: &str| {
        Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        })
    };
    match value {
        Value::String(s) if s.contains('\0') => named(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path_at(item, &format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let at = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                named(&at.replace('\0', "\\u0000"))
            } else {
                nul_path_at(item, &at)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_path_names_the_first_string_with_u0000() {
        use serde_json::json;
        assert_eq!(
            nul_path(&json!({"name": {"given": "Ann", "family": "A"}})),
            None
        );
        assert_eq!(nul_path(&json!("a\u{0}b")).as_deref(), Some("body"));
        assert_eq!(
            nul_path(&json!({"name": {"given": "A\u{0}nn"}})).as_deref(),
            Some("name.given")
        );
        assert_eq!(
            nul_path(&json!({"allergies": ["nuts", "\u{0}"]})).as_deref(),
            Some("allergies[1]")
        );
        assert_eq!(
            nul_path(&json!({"hours": {"mo\u{0}n": []}})).as_deref(),
            Some("hours.mo\\u0000n")
        );
        // A backslash followed by `u0000` is text, not the character.
        assert_eq!(nul_path(&json!({"note": "\\u0000"})), None);
    }

    #[test]
    fn non_empty_text_is_trimmed() {
        assert_eq!(NonEmptyText::parse("  hello ").unwrap().as_str(), "hello");
    }

    #[test]
    fn non_empty_text_rejects_blank_and_long() {
        assert_eq!(NonEmptyText::parse(" \t"), Err(ValueError::Empty));
        let long = "x".repeat(NonEmptyText::MAX_LEN + 1);
        assert_eq!(
            NonEmptyText::parse(&long),
            Err(ValueError::TooLong {
                max: NonEmptyText::MAX_LEN
            })
        );
        assert!(NonEmptyText::parse("x".repeat(NonEmptyText::MAX_LEN)).is_ok());
    }

    #[test]
    fn non_empty_text_allows_newlines_but_not_other_controls() {
        assert!(NonEmptyText::parse("line one\nline two").is_ok());
        assert_eq!(
            NonEmptyText::parse("bell\u{7}"),
            Err(ValueError::ControlCharacter)
        );
    }

    #[test]
    fn person_name_accepts_unicode_names() {
        assert_eq!(
            PersonName::parse(" Zoë O'Brien-Łukasz ").unwrap().as_ref(),
            "Zoë O'Brien-Łukasz"
        );
    }

    #[test]
    fn person_name_rejects_bad_input() {
        assert_eq!(PersonName::parse(""), Err(ValueError::Empty));
        assert_eq!(PersonName::parse("a\nb"), Err(ValueError::ControlCharacter));
        assert_eq!(
            PersonName::parse("a".repeat(201)),
            Err(ValueError::TooLong { max: 200 })
        );
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let name: PersonName = serde_json::from_str("\" Ann \"").unwrap();
        assert_eq!(name.as_str(), "Ann");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Ann\"");
        assert!(serde_json::from_str::<PersonName>("\"  \"").is_err());
        assert!(serde_json::from_str::<NonEmptyText>("\"\"").is_err());
    }

    #[test]
    fn clinic_code_is_normalised() {
        assert_eq!(
            ClinicCode::parse(" North-Clinic-2 ").unwrap().as_str(),
            "north-clinic-2"
        );
    }

    #[test]
    fn clinic_code_rejects_bad_codes() {
        assert_eq!(ClinicCode::parse("a"), Err(ValueError::TooShort { min: 2 }));
        assert_eq!(ClinicCode::parse(""), Err(ValueError::Empty));
        assert_eq!(
            ClinicCode::parse("a".repeat(33)),
            Err(ValueError::TooLong { max: 32 })
        );
        for bad in [
            "with space",
            "under_score",
            "-lead",
            "trail-",
            "ümlaut",
            "dot.ted",
        ] {
            assert_eq!(
                ClinicCode::parse(bad),
                Err(ValueError::InvalidClinicCode),
                "{bad}"
            );
        }
    }

    #[test]
    fn clinic_code_serde_round_trip() {
        let code: ClinicCode = serde_json::from_str("\"ABC\"").unwrap();
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"abc\"");
        assert!(serde_json::from_str::<ClinicCode>("\"a b\"").is_err());
    }
}
