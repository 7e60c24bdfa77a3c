//! Typed identifiers. Each wraps a UUID (v7 when generated here).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::ValueError;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) identifier.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = ValueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| ValueError::InvalidId)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    };
}

id_type!(
    /// A clinic (tenant).
    ClinicId
);
id_type!(
    /// A staff member (who is also a user).
    StaffId
);
id_type!(
    /// A patient record.
    PatientId
);
id_type!(
    /// An appointment.
    AppointmentId
);
id_type!(
    /// A department inside a clinic.
    DepartmentId
);
id_type!(
    /// An invoice.
    InvoiceId
);
id_type!(
    /// A payment recorded on an invoice.
    PaymentId
);

/// The bits an appointment's id is flipped by to give its invoice's id.
const INVOICE_OF_APPOINTMENT: u128 = 0x5a5a_5a5a_5a5a_0000_0000_5a5a_5a5a_5a5a;

impl InvoiceId {
    /// The one invoice of an appointment: its id with fixed bits flipped. The same appointment
    /// always gives the same id (so a process manager that runs twice appends to one stream),
    /// and two appointments never give the same one (flipping bits is a bijection). The
    /// version and variant bits are left as they were.
    pub const fn of_appointment(appointment: AppointmentId) -> InvoiceId {
        InvoiceId(Uuid::from_u128(
            appointment.as_uuid().as_u128() ^ INVOICE_OF_APPOINTMENT,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_and_distinct() {
        let a = ClinicId::new();
        let b = ClinicId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }

    #[test]
    fn display_and_from_str_round_trip() {
        let id = PatientId::new();
        let parsed: PatientId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
    }

    #[test]
    fn an_appointments_invoice_id_is_fixed_and_its_own() {
        let a = AppointmentId::new();
        let b = AppointmentId::new();
        assert_eq!(InvoiceId::of_appointment(a), InvoiceId::of_appointment(a));
        assert_ne!(InvoiceId::of_appointment(a), InvoiceId::of_appointment(b));
        assert_ne!(InvoiceId::of_appointment(a).as_uuid(), a.as_uuid());
        let id = InvoiceId::of_appointment(a).as_uuid();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(id.get_variant(), a.as_uuid().get_variant());
    }

    #[test]
    fn from_str_rejects_garbage() {
        assert_eq!("nope".parse::<StaffId>(), Err(ValueError::InvalidId));
    }

    #[test]
    fn serialises_transparently() {
        let uuid = Uuid::new_v4();
        let id = AppointmentId::from_uuid(uuid);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{uuid}\""));
        let back: AppointmentId = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_uuid(), uuid);
        assert_eq!(Uuid::from(DepartmentId::from(uuid)), uuid);
    }
}
