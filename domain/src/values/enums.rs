use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// Implements `as_str`, `ALL`, `Display` and `FromStr` for a fieldless enum.
macro_rules! string_enum {
    ($name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(s))
                    .ok_or_else(|| ValueError::UnknownVariant {
                        kind: $kind,
                        value: s.to_owned(),
                    })
            }
        }
    };
}

/// A clinic's subscription plan; its limits are [`crate::plan::PlanLimits`]. Requests and new
/// events use these names only; the names of older events (`free`, `standard`) are read by
/// [`crate::plan::stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Trial,
    Basic,
    Professional,
    Enterprise,
}
string_enum!(Plan, "plan", {
    Trial => "trial",
    Basic => "basic",
    Professional => "professional",
    Enterprise => "enterprise",
});

/// A part of the service a clinic switches on or off, within its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Appointments,
    Billing,
    Laboratory,
}
string_enum!(Module, "module", {
    Appointments => "appointments",
    Billing => "billing",
    Laboratory => "laboratory",
});

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    Cash,
    Card,
    Transfer,
    Insurance,
}
string_enum!(PaymentMethod, "payment method", {
    Cash => "cash",
    Card => "card",
    Transfer => "transfer",
    Insurance => "insurance",
});

/// A staff member's role inside a clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ClinicAdmin,
    Doctor,
    Nurse,
    Receptionist,
    Auditor,
}
string_enum!(Role, "role", {
    ClinicAdmin => "clinic_admin",
    Doctor => "doctor",
    Nurse => "nurse",
    Receptionist => "receptionist",
    Auditor => "auditor",
});

/// Administrative sex, as FHIR's AdministrativeGender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Male,
    Female,
    Other,
    Unknown,
}
string_enum!(Sex, "sex", { Male => "male", Female => "female", Other => "other", Unknown => "unknown" });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde() {
        for role in Role::ALL {
            assert_eq!(
                serde_json::to_string(role).unwrap(),
                format!("\"{}\"", role.as_str())
            );
        }
        for plan in Plan::ALL {
            assert_eq!(
                serde_json::to_string(plan).unwrap(),
                format!("\"{}\"", plan.as_str())
            );
        }
        for module in Module::ALL {
            assert_eq!(
                serde_json::to_string(module).unwrap(),
                format!("\"{}\"", module.as_str())
            );
        }
        for sex in Sex::ALL {
            assert_eq!(
                serde_json::to_string(sex).unwrap(),
                format!("\"{}\"", sex.as_str())
            );
        }
    }

    #[test]
    fn from_str_round_trips_and_ignores_case() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
        }
        assert_eq!("Clinic_Admin".parse::<Role>().unwrap(), Role::ClinicAdmin);
        assert_eq!(" ENTERPRISE ".parse::<Plan>().unwrap(), Plan::Enterprise);
        assert_eq!("female".parse::<Sex>().unwrap(), Sex::Female);
    }

    #[test]
    fn from_str_rejects_unknown() {
        assert_eq!(
            "janitor".parse::<Role>(),
            Err(ValueError::UnknownVariant {
                kind: "role",
                value: "janitor".into()
            })
        );
        assert!("gold".parse::<Plan>().is_err());
        // The old names are for stored events only (crate::plan::stored), never for input.
        assert!("free".parse::<Plan>().is_err());
        assert!("standard".parse::<Plan>().is_err());
        assert!("m".parse::<Sex>().is_err());
    }

    #[test]
    fn serde_names() {
        assert_eq!(
            serde_json::from_str::<Role>("\"clinic_admin\"").unwrap(),
            Role::ClinicAdmin
        );
        assert_eq!(
            serde_json::from_str::<Sex>("\"unknown\"").unwrap(),
            Sex::Unknown
        );
        assert!(serde_json::from_str::<Sex>("\"Male\"").is_err());
        assert!(serde_json::from_str::<Plan>("\"standard\"").is_err());
        assert_eq!(Plan::default(), Plan::Trial);
    }
}
