use serde::{Deserialize, Serialize};

use super::{clean_text, string_value, NonEmptyText, PersonName, Phone, ValueError};

/// A patient's name. Both parts are already-validated [`PersonName`]s.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientName {
    pub given: PersonName,
    pub family: PersonName,
}

impl PatientName {
    pub fn new(given: PersonName, family: PersonName) -> Self {
        Self { given, family }
    }

    /// `"given family"`.
    pub fn full(&self) -> String {
        format!("{} {}", self.given, self.family)
    }
}

/// A postal address. Every part is optional, but at least one must be present.
/// Blank parts are dropped; each part is trimmed and length-limited.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "AddressRepr", into = "AddressRepr")]
pub struct Address {
    lines: Vec<String>,
    city: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressRepr {
    #[serde(default)]
    lines: Vec<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    postal_code: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

impl Address {
    pub const MAX_LINES: usize = 4;
    pub const MAX_LINE_LEN: usize = 200;
    pub const MAX_CITY_LEN: usize = 100;
    pub const MAX_POSTAL_CODE_LEN: usize = 20;
    pub const MAX_COUNTRY_LEN: usize = 100;

    pub fn new<L: AsRef<str>>(
        lines: impl IntoIterator<Item = L>,
        city: Option<&str>,
        postal_code: Option<&str>,
        country: Option<&str>,
    ) -> Result<Self, ValueError> {
        let mut clean_lines = Vec::new();
        for line in lines {
            if line.as_ref().trim().is_empty() {
                continue;
            }
            clean_lines.push(
                clean_text(line.as_ref(), Self::MAX_LINE_LEN, false)
                    .map_err(|e| e.in_field("lines"))?,
            );
        }
        if clean_lines.len() > Self::MAX_LINES {
            return Err(ValueError::TooMany {
                max: Self::MAX_LINES,
            }
            .in_field("lines"));
        }
        let optional = |value: Option<&str>, max: usize, field: &'static str| {
            value
                .filter(|v| !v.trim().is_empty())
                .map(|v| clean_text(v, max, false).map_err(|e| e.in_field(field)))
                .transpose()
        };
        let address = Self {
            lines: clean_lines,
            city: optional(city, Self::MAX_CITY_LEN, "city")?,
            postal_code: optional(postal_code, Self::MAX_POSTAL_CODE_LEN, "postal_code")?,
            country: optional(country, Self::MAX_COUNTRY_LEN, "country")?,
        };
        if address.lines.is_empty()
            && address.city.is_none()
            && address.postal_code.is_none()
            && address.country.is_none()
        {
            return Err(ValueError::Empty);
        }
        Ok(address)
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn city(&self) -> Option<&str> {
        self.city.as_deref()
    }

    pub fn postal_code(&self) -> Option<&str> {
        self.postal_code.as_deref()
    }

    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }
}

impl TryFrom<AddressRepr> for Address {
    type Error = ValueError;

    fn try_from(r: AddressRepr) -> Result<Self, Self::Error> {
        Address::new(
            r.lines,
            r.city.as_deref(),
            r.postal_code.as_deref(),
            r.country.as_deref(),
        )
    }
}

impl From<Address> for AddressRepr {
    fn from(a: Address) -> Self {
        AddressRepr {
            lines: a.lines,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// Whom to call in an emergency. Every part is an already-validated value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyContact {
    pub name: PersonName,
    pub phone: Phone,
    pub relationship: NonEmptyText,
}

impl EmergencyContact {
    pub fn new(name: PersonName, phone: Phone, relationship: NonEmptyText) -> Self {
        Self {
            name,
            phone,
            relationship,
        }
    }
}

/// A patient's insurance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insurance {
    pub provider: NonEmptyText,
    pub policy_number: NonEmptyText,
}

impl Insurance {
    pub fn new(provider: NonEmptyText, policy_number: NonEmptyText) -> Self {
        Self {
            provider,
            policy_number,
        }
    }
}

/// One recorded allergy (e.g. "penicillin"): trimmed, non-empty, at most
/// [`Allergy::MAX_LEN`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Allergy(String);

impl Allergy {
    pub const MAX_LEN: usize = 200;

    pub fn parse(input: impl AsRef<str>) -> Result<Self, ValueError> {
        let input = input.as_ref();
        clean_text(input, Self::MAX_LEN, false).map(Self)
    }

    /// Whether two allergies name the same thing, ignoring case.
    pub fn same_as(&self, other: &Allergy) -> bool {
        self.0.to_lowercase() == other.0.to_lowercase()
    }
}
string_value!(Allergy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_trims_and_drops_blanks() {
        let a = Address::new(["  1 High St ", "  "], Some(" Leeds "), Some(""), None).unwrap();
        assert_eq!(a.lines(), ["1 High St"]);
        assert_eq!(a.city(), Some("Leeds"));
        assert_eq!(a.postal_code(), None);
        assert_eq!(a.country(), None);
    }

    #[test]
    fn address_needs_something() {
        assert_eq!(
            Address::new(Vec::<String>::new(), None, Some(" "), None),
            Err(ValueError::Empty)
        );
    }

    #[test]
    fn address_limits_name_the_field() {
        let long_city = "c".repeat(101);
        let err = Address::new(["x"], Some(&long_city), None, None).unwrap_err();
        assert_eq!(err.field(), Some("city"));
        let err = Address::new(["x"], None, Some(&"9".repeat(21)), None).unwrap_err();
        assert_eq!(err.field(), Some("postal_code"));
        let err = Address::new(["a", "b", "c", "d", "e"], None, None, None).unwrap_err();
        assert_eq!(err.field(), Some("lines"));
        let err = Address::new(["a\u{1}"], None, None, None).unwrap_err();
        assert_eq!(err.field(), Some("lines"));
    }

    #[test]
    fn address_serde_validates() {
        let a: Address = serde_json::from_str(r#"{"lines":["1 Main Rd"],"country":"UK"}"#).unwrap();
        assert_eq!(a.country(), Some("UK"));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(serde_json::from_value::<Address>(json).unwrap(), a);
        assert!(serde_json::from_str::<Address>(r#"{}"#).is_err());
        assert!(serde_json::from_str::<Address>(r#"{"lines":[],"zip":"1"}"#).is_err());
    }

    #[test]
    fn patient_name_full() {
        let n = PatientName::new(
            PersonName::parse("Ada").unwrap(),
            PersonName::parse("Lovelace").unwrap(),
        );
        assert_eq!(n.full(), "Ada Lovelace");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, r#"{"given":"Ada","family":"Lovelace"}"#);
        assert!(serde_json::from_str::<PatientName>(r#"{"given":" ","family":"X"}"#).is_err());
    }

    #[test]
    fn emergency_contact_and_insurance_validate_parts() {
        let c: EmergencyContact = serde_json::from_str(
            r#"{"name":"Bob","phone":"+44 7700 900123","relationship":"brother"}"#,
        )
        .unwrap();
        assert_eq!(c.phone.as_str(), "+447700900123");
        assert!(serde_json::from_str::<EmergencyContact>(
            r#"{"name":"Bob","phone":"1","relationship":"x"}"#
        )
        .is_err());
        let i = Insurance::new(
            NonEmptyText::parse("Acme").unwrap(),
            NonEmptyText::parse("P-1").unwrap(),
        );
        assert_eq!(
            serde_json::from_value::<Insurance>(serde_json::to_value(&i).unwrap()).unwrap(),
            i
        );
    }

    #[test]
    fn allergy_parses() {
        let a = Allergy::parse(" Penicillin ").unwrap();
        assert_eq!(a.as_str(), "Penicillin");
        assert!(a.same_as(&Allergy::parse("penicillin").unwrap()));
        assert_eq!(Allergy::parse(""), Err(ValueError::Empty));
        assert_eq!(
            Allergy::parse("a".repeat(201)),
            Err(ValueError::TooLong { max: 200 })
        );
    }
}
