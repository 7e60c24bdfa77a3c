//! A patient's demographics: the whole set a registration carries, and the changes an update
//! carries. Commands and events embed them flattened, so their JSON keeps its flat shape, and
//! the bodies of `POST` and `PATCH /v1/patients` are read straight into them (serde's names
//! for them are the HTTP bodies').

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::values::{
    Address, Allergy, Email, EmergencyContact, Insurance, PatientName, Phone, Sex,
};

/// A patient's demographics as registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "RegisterPatient")]
pub struct Demographics {
    pub name: PatientName,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub address: Option<Address>,
    pub emergency_contact: Option<EmergencyContact>,
    pub insurance: Option<Insurance>,
    /// At most 50.
    #[serde(default)]
    pub allergies: Vec<Allergy>,
}

/// Fields to change; `None` leaves a field as it is. `allergies` replaces the whole list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename = "UpdatePatient")]
pub struct DemographicsChanges {
    pub name: Option<PatientName>,
    pub birth_date: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub phone: Option<Phone>,
    pub email: Option<Email>,
    pub address: Option<Address>,
    pub emergency_contact: Option<EmergencyContact>,
    pub insurance: Option<Insurance>,
    pub allergies: Option<Vec<Allergy>>,
}

impl DemographicsChanges {
    /// Nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == DemographicsChanges::default()
    }
}
