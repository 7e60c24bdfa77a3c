//! The `Patient` aggregate: a clinic's patient record and its demographics.
//!
//! MRN uniqueness per clinic is enforced outside the domain (by the caller and
//! the database); the domain carries the parsed [`Mrn`].

use chrono::{Months, NaiveDate};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::clock::Services;
use crate::error::{DomainError, ErrorKind};
use crate::ids::{ClinicId, PatientId};
pub use crate::values::PatientName;
use crate::values::{
    Address, Allergy, Email, EmergencyContact, Insurance, Mrn, NonEmptyText, Phone, Sex,
};

mod demographics;

pub use demographics::{Demographics, DemographicsChanges};

/// The most allergies a patient record holds.
pub const MAX_ALLERGIES: usize = 50;
/// How far back a birth date may lie, in years.
pub const MAX_AGE_YEARS: u32 = 150;

// Registration carries a whole record; commands are short-lived, so boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PatientCommand {
    Register {
        patient_id: PatientId,
        clinic_id: ClinicId,
        mrn: Mrn,
        #[serde(flatten)]
        demographics: Demographics,
    },
    /// Changes the given fields; `None` leaves a field as it is. `allergies`
    /// replaces the whole list.
    UpdateDemographics {
        #[serde(flatten)]
        changes: DemographicsChanges,
    },
    /// This record is a duplicate of `survivor`.
    MergeInto {
        survivor: PatientId,
    },
    Deactivate {
        reason: Option<NonEmptyText>,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PatientEvent {
    PatientRegistered {
        patient_id: PatientId,
        clinic_id: ClinicId,
        mrn: Mrn,
        #[serde(flatten)]
        demographics: Demographics,
    },
    /// Carries only the fields that changed.
    PatientDemographicsUpdated {
        #[serde(flatten)]
        changes: DemographicsChanges,
    },
    /// The record now points at `survivor` (like FHIR `Patient.link` "replaced-by").
    PatientMerged {
        survivor: PatientId,
    },
    PatientDeactivated {
        reason: Option<NonEmptyText>,
    },
}

impl DomainEvent for PatientEvent {
    fn event_type(&self) -> String {
        match self {
            PatientEvent::PatientRegistered { .. } => "PatientRegistered",
            PatientEvent::PatientDemographicsUpdated { .. } => "PatientDemographicsUpdated",
            PatientEvent::PatientMerged { .. } => "PatientMerged",
            PatientEvent::PatientDeactivated { .. } => "PatientDeactivated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatientError {
    #[error("patient not found")]
    NotFound,
    #[error("patient is already registered")]
    AlreadyRegistered,
    #[error("birth date {0} is in the future")]
    BirthDateInFuture(NaiveDate),
    #[error("birth date {0} is more than 150 years ago")]
    BirthDateTooFarBack(NaiveDate),
    #[error("at most {max} allergies may be recorded")]
    TooManyAllergies { max: usize },
    #[error("allergy {0:?} is listed twice")]
    DuplicateAllergy(String),
    #[error("nothing to update")]
    NothingToUpdate,
    #[error("a patient cannot be merged into itself")]
    MergeIntoSelf,
    #[error("patient was merged into {0}")]
    Merged(PatientId),
    #[error("patient is deactivated")]
    Deactivated,
    #[error("patient is already deactivated")]
    AlreadyDeactivated,
}

impl PatientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PatientError::NotFound => ErrorKind::NotFound,
            PatientError::AlreadyRegistered
            | PatientError::Merged(_)
            | PatientError::Deactivated
            | PatientError::AlreadyDeactivated => ErrorKind::Conflict,
            PatientError::BirthDateInFuture(_)
            | PatientError::BirthDateTooFarBack(_)
            | PatientError::TooManyAllergies { .. }
            | PatientError::DuplicateAllergy(_)
            | PatientError::NothingToUpdate
            | PatientError::MergeIntoSelf => ErrorKind::Invalid,
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            PatientError::BirthDateInFuture(_) | PatientError::BirthDateTooFarBack(_) => {
                Some("birth_date")
            }
            PatientError::TooManyAllergies { .. } | PatientError::DuplicateAllergy(_) => {
                Some("allergies")
            }
            PatientError::MergeIntoSelf => Some("into"),
            _ => None,
        }
    }
}

impl DomainError for PatientError {
    fn kind(&self) -> ErrorKind {
        PatientError::kind(self)
    }

    fn field(&self) -> Option<&'static str> {
        PatientError::field(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatientStatus {
    #[default]
    NotRegistered,
    Active,
    Deactivated,
    Merged,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Patient {
    id: Option<PatientId>,
    clinic_id: Option<ClinicId>,
    mrn: Option<Mrn>,
    name: Option<PatientName>,
    birth_date: Option<NaiveDate>,
    sex: Option<Sex>,
    phone: Option<Phone>,
    email: Option<Email>,
    address: Option<Address>,
    emergency_contact: Option<EmergencyContact>,
    insurance: Option<Insurance>,
    allergies: Vec<Allergy>,
    status: PatientStatus,
    merged_into: Option<PatientId>,
}

fn check_birth_date(birth_date: NaiveDate, services: &Services) -> Result<(), PatientError> {
    let today = services.today_utc();
    if birth_date > today {
        return Err(PatientError::BirthDateInFuture(birth_date));
    }
    let earliest = today.checked_sub_months(Months::new(MAX_AGE_YEARS * 12));
    if earliest.is_some_and(|earliest| birth_date < earliest) {
        return Err(PatientError::BirthDateTooFarBack(birth_date));
    }
    Ok(())
}

fn check_allergies(allergies: &[Allergy]) -> Result<(), PatientError> {
    if allergies.len() > MAX_ALLERGIES {
        return Err(PatientError::TooManyAllergies { max: MAX_ALLERGIES });
    }
    for (i, allergy) in allergies.iter().enumerate() {
        if allergies[..i]
            .iter()
            .any(|earlier| earlier.same_as(allergy))
        {
            return Err(PatientError::DuplicateAllergy(allergy.to_string()));
        }
    }
    Ok(())
}

impl Patient {
    pub fn id(&self) -> Option<PatientId> {
        self.id
    }

    pub fn clinic_id(&self) -> Option<ClinicId> {
        self.clinic_id
    }

    pub fn mrn(&self) -> Option<&Mrn> {
        self.mrn.as_ref()
    }

    pub fn name(&self) -> Option<&PatientName> {
        self.name.as_ref()
    }

    pub fn birth_date(&self) -> Option<NaiveDate> {
        self.birth_date
    }

    pub fn sex(&self) -> Option<Sex> {
        self.sex
    }

    pub fn phone(&self) -> Option<&Phone> {
        self.phone.as_ref()
    }

    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }

    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    pub fn emergency_contact(&self) -> Option<&EmergencyContact> {
        self.emergency_contact.as_ref()
    }

    pub fn insurance(&self) -> Option<&Insurance> {
        self.insurance.as_ref()
    }

    pub fn allergies(&self) -> &[Allergy] {
        &self.allergies
    }

    pub fn status(&self) -> PatientStatus {
        self.status
    }

    pub fn is_registered(&self) -> bool {
        self.status != PatientStatus::NotRegistered
    }

    pub fn is_active(&self) -> bool {
        self.status == PatientStatus::Active
    }

    /// The surviving record, once this one was merged.
    pub fn merged_into(&self) -> Option<PatientId> {
        self.merged_into
    }

    fn ensure_active(&self) -> Result<(), PatientError> {
        match self.status {
            PatientStatus::NotRegistered => Err(PatientError::NotFound),
            PatientStatus::Merged => Err(self.merged_error()),
            PatientStatus::Deactivated => Err(PatientError::Deactivated),
            PatientStatus::Active => Ok(()),
        }
    }

    fn merged_error(&self) -> PatientError {
        match self.merged_into {
            Some(survivor) => PatientError::Merged(survivor),
            None => PatientError::NotFound,
        }
    }

    /// The changes that differ from the record as it is.
    fn changed(&self, c: DemographicsChanges) -> DemographicsChanges {
        DemographicsChanges {
            name: c.name.filter(|v| Some(v) != self.name.as_ref()),
            birth_date: c.birth_date.filter(|v| Some(*v) != self.birth_date),
            sex: c.sex.filter(|v| Some(*v) != self.sex),
            phone: c.phone.filter(|v| Some(v) != self.phone.as_ref()),
            email: c.email.filter(|v| Some(v) != self.email.as_ref()),
            address: c.address.filter(|v| Some(v) != self.address.as_ref()),
            emergency_contact: c
                .emergency_contact
                .filter(|v| Some(v) != self.emergency_contact.as_ref()),
            insurance: c.insurance.filter(|v| Some(v) != self.insurance.as_ref()),
            allergies: c.allergies.filter(|v| *v != self.allergies),
        }
    }

    /// Decides which events a command produces, without changing state.
    pub fn decide(
        &self,
        command: PatientCommand,
        services: &Services,
    ) -> Result<Vec<PatientEvent>, PatientError> {
        use PatientCommand as C;
        use PatientEvent as E;
        match command {
            C::Register {
                patient_id,
                clinic_id,
                mrn,
                demographics,
            } => {
                match self.status {
                    PatientStatus::NotRegistered => {}
                    PatientStatus::Merged => return Err(self.merged_error()),
                    PatientStatus::Active | PatientStatus::Deactivated => {
                        return Err(PatientError::AlreadyRegistered)
                    }
                }
                check_birth_date(demographics.birth_date, services)?;
                check_allergies(&demographics.allergies)?;
                Ok(vec![E::PatientRegistered {
                    patient_id,
                    clinic_id,
                    mrn,
                    demographics,
                }])
            }
            C::UpdateDemographics { changes } => {
                self.ensure_active()?;
                if let Some(birth_date) = changes.birth_date {
                    check_birth_date(birth_date, services)?;
                }
                if let Some(allergies) = &changes.allergies {
                    check_allergies(allergies)?;
                }
                let changes = self.changed(changes);
                if changes.is_empty() {
                    return Err(PatientError::NothingToUpdate);
                }
                Ok(vec![E::PatientDemographicsUpdated { changes }])
            }
            C::MergeInto { survivor } => {
                self.ensure_active()?;
                if Some(survivor) == self.id {
                    return Err(PatientError::MergeIntoSelf);
                }
                Ok(vec![E::PatientMerged { survivor }])
            }
            C::Deactivate { reason } => match self.status {
                PatientStatus::NotRegistered => Err(PatientError::NotFound),
                PatientStatus::Merged => Err(self.merged_error()),
                PatientStatus::Deactivated => Err(PatientError::AlreadyDeactivated),
                PatientStatus::Active => Ok(vec![E::PatientDeactivated { reason }]),
            },
        }
    }
}

crate::aggregate!(
    Patient,
    "Patient",
    PatientCommand,
    PatientEvent,
    PatientError,
    decide_with_services
);

impl Patient {
    /// How an event changes the state (cqrs-es's `Aggregate::apply`).
    fn evolve(&mut self, event: PatientEvent) {
        match event {
            PatientEvent::PatientRegistered {
                patient_id,
                clinic_id,
                mrn,
                demographics: d,
            } => {
                self.id = Some(patient_id);
                self.clinic_id = Some(clinic_id);
                self.mrn = Some(mrn);
                self.name = Some(d.name);
                self.birth_date = Some(d.birth_date);
                self.sex = Some(d.sex);
                self.phone = d.phone;
                self.email = d.email;
                self.address = d.address;
                self.emergency_contact = d.emergency_contact;
                self.insurance = d.insurance;
                self.allergies = d.allergies;
                self.status = PatientStatus::Active;
            }
            PatientEvent::PatientDemographicsUpdated { changes: c } => {
                fn set<T>(slot: &mut Option<T>, value: Option<T>) {
                    if value.is_some() {
                        *slot = value;
                    }
                }
                set(&mut self.name, c.name);
                set(&mut self.birth_date, c.birth_date);
                set(&mut self.sex, c.sex);
                set(&mut self.phone, c.phone);
                set(&mut self.email, c.email);
                set(&mut self.address, c.address);
                set(&mut self.emergency_contact, c.emergency_contact);
                set(&mut self.insurance, c.insurance);
                if let Some(allergies) = c.allergies {
                    self.allergies = allergies;
                }
            }
            PatientEvent::PatientMerged { survivor } => {
                self.status = PatientStatus::Merged;
                self.merged_into = Some(survivor);
            }
            PatientEvent::PatientDeactivated { .. } => self.status = PatientStatus::Deactivated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{person, services, text};
    use cqrs_es::test::TestFramework;
    use cqrs_es::Aggregate;
    use uuid::Uuid;

    fn fx() -> TestFramework<Patient> {
        TestFramework::with(services())
    }

    fn patient_id() -> PatientId {
        PatientId::from_uuid(Uuid::from_u128(3))
    }

    fn other_patient() -> PatientId {
        PatientId::from_uuid(Uuid::from_u128(4))
    }

    fn clinic_id() -> ClinicId {
        ClinicId::from_uuid(Uuid::from_u128(1))
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn allergy(s: &str) -> Allergy {
        Allergy::parse(s).unwrap()
    }

    fn name() -> PatientName {
        PatientName::new(person("Ada"), person("Lovelace"))
    }

    fn demographics(birth_date: NaiveDate, allergies: Vec<Allergy>) -> Demographics {
        Demographics {
            name: name(),
            birth_date,
            sex: Sex::Female,
            phone: Some(Phone::parse("+44 7700 900123").unwrap()),
            email: None,
            address: None,
            emergency_contact: None,
            insurance: None,
            allergies,
        }
    }

    fn register(birth_date: NaiveDate, allergies: Vec<Allergy>) -> PatientCommand {
        PatientCommand::Register {
            patient_id: patient_id(),
            clinic_id: clinic_id(),
            mrn: Mrn::from_number(1),
            demographics: demographics(birth_date, allergies),
        }
    }

    fn registered() -> PatientEvent {
        PatientEvent::PatientRegistered {
            patient_id: patient_id(),
            clinic_id: clinic_id(),
            mrn: Mrn::from_number(1),
            demographics: demographics(date(1990, 12, 10), vec![allergy("penicillin")]),
        }
    }

    fn update(changes: DemographicsChanges) -> PatientCommand {
        PatientCommand::UpdateDemographics { changes }
    }

    fn updated(changes: DemographicsChanges) -> PatientEvent {
        PatientEvent::PatientDemographicsUpdated { changes }
    }

    fn merged() -> PatientEvent {
        PatientEvent::PatientMerged {
            survivor: other_patient(),
        }
    }

    fn deactivated() -> PatientEvent {
        PatientEvent::PatientDeactivated { reason: None }
    }

    fn kind_and_field(
        r: Result<Vec<PatientEvent>, PatientError>,
    ) -> (ErrorKind, Option<&'static str>) {
        let err = r.expect_err("expected an error");
        (DomainError::kind(&err), DomainError::field(&err))
    }

    // --- register ---

    #[test]
    fn register_a_patient() {
        fx().given_no_previous_events()
            .when(register(date(1990, 12, 10), vec![allergy("penicillin")]))
            .then_expect_events(vec![registered()]);
    }

    #[test]
    fn register_twice_is_a_conflict() {
        let r = fx()
            .given(vec![registered()])
            .when(register(date(1990, 12, 10), vec![]))
            .inspect_result();
        assert_eq!(r, Err(PatientError::AlreadyRegistered));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn birth_today_is_fine() {
        // today (UTC) = 2025-06-02
        let r = fx()
            .given_no_previous_events()
            .when(register(date(2025, 6, 2), vec![]))
            .inspect_result();
        assert!(r.is_ok());
    }

    #[test]
    fn birth_date_in_the_future_is_invalid() {
        let r = fx()
            .given_no_previous_events()
            .when(register(date(2025, 6, 3), vec![]))
            .inspect_result();
        assert_eq!(r, Err(PatientError::BirthDateInFuture(date(2025, 6, 3))));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("birth_date")));
    }

    #[test]
    fn birth_date_more_than_150_years_back_is_invalid() {
        let r = fx()
            .given_no_previous_events()
            .when(register(date(1875, 6, 1), vec![]))
            .inspect_result();
        assert_eq!(r, Err(PatientError::BirthDateTooFarBack(date(1875, 6, 1))));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("birth_date")));
        let ok = fx()
            .given_no_previous_events()
            .when(register(date(1875, 6, 2), vec![]))
            .inspect_result();
        assert!(ok.is_ok());
    }

    #[test]
    fn at_most_fifty_allergies() {
        let many: Vec<Allergy> = (0..51).map(|i| allergy(&format!("a{i}"))).collect();
        let r = fx()
            .given_no_previous_events()
            .when(register(date(1990, 1, 1), many.clone()))
            .inspect_result();
        assert_eq!(r, Err(PatientError::TooManyAllergies { max: 50 }));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("allergies")));
        let fifty = many[..50].to_vec();
        assert!(fx()
            .given_no_previous_events()
            .when(register(date(1990, 1, 1), fifty))
            .inspect_result()
            .is_ok());
    }

    #[test]
    fn duplicate_allergies_are_invalid() {
        let r = fx()
            .given_no_previous_events()
            .when(register(
                date(1990, 1, 1),
                vec![allergy("Latex"), allergy("latex")],
            ))
            .inspect_result();
        assert_eq!(r, Err(PatientError::DuplicateAllergy("latex".into())));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("allergies")));
    }

    #[test]
    fn commands_on_unregistered_patient_are_not_found() {
        for command in [
            update(DemographicsChanges::default()),
            PatientCommand::MergeInto {
                survivor: other_patient(),
            },
            PatientCommand::Deactivate { reason: None },
        ] {
            let r = fx()
                .given_no_previous_events()
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(PatientError::NotFound));
            assert_eq!(kind_and_field(r).0, ErrorKind::NotFound);
        }
    }

    // --- update ---

    #[test]
    fn update_emits_only_changes() {
        let changes = DemographicsChanges {
            email: Some(Email::parse("ada@example.org").unwrap()),
            address: Some(
                Address::new(["12 St James's Sq"], Some("London"), None, Some("UK")).unwrap(),
            ),
            allergies: Some(vec![allergy("penicillin"), allergy("nuts")]),
            ..DemographicsChanges::default()
        };
        let command = update(DemographicsChanges {
            name: Some(name()),
            sex: Some(Sex::Female),
            ..changes.clone()
        });
        fx().given(vec![registered()])
            .when(command)
            .then_expect_events(vec![updated(changes)]);
    }

    #[test]
    fn update_with_nothing_is_invalid() {
        let r = fx()
            .given(vec![registered()])
            .when(update(DemographicsChanges::default()))
            .inspect_result();
        assert_eq!(r, Err(PatientError::NothingToUpdate));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, None));
    }

    #[test]
    fn update_checks_birth_date() {
        let command = update(DemographicsChanges {
            birth_date: Some(date(2030, 1, 1)),
            ..DemographicsChanges::default()
        });
        fx().given(vec![registered()])
            .when(command)
            .then_expect_error(PatientError::BirthDateInFuture(date(2030, 1, 1)));
    }

    #[test]
    fn update_checks_allergies() {
        let command = update(DemographicsChanges {
            allergies: Some(vec![allergy("x"), allergy("X")]),
            ..DemographicsChanges::default()
        });
        fx().given(vec![registered()])
            .when(command)
            .then_expect_error(PatientError::DuplicateAllergy("X".into()));
    }

    #[test]
    fn update_can_clear_allergies() {
        let clear = DemographicsChanges {
            allergies: Some(vec![]),
            ..DemographicsChanges::default()
        };
        fx().given(vec![registered()])
            .when(update(clear.clone()))
            .then_expect_events(vec![updated(clear)]);
    }

    // --- merge ---

    #[test]
    fn merge_into_another_patient() {
        fx().given(vec![registered()])
            .when(PatientCommand::MergeInto {
                survivor: other_patient(),
            })
            .then_expect_events(vec![merged()]);
    }

    #[test]
    fn merge_into_self_is_invalid() {
        let r = fx()
            .given(vec![registered()])
            .when(PatientCommand::MergeInto {
                survivor: patient_id(),
            })
            .inspect_result();
        assert_eq!(r, Err(PatientError::MergeIntoSelf));
        assert_eq!(kind_and_field(r), (ErrorKind::Invalid, Some("into")));
    }

    #[test]
    fn merged_patient_accepts_no_more_commands() {
        for command in [
            register(date(1990, 1, 1), vec![]),
            update(DemographicsChanges::default()),
            PatientCommand::MergeInto {
                survivor: PatientId::from_uuid(Uuid::from_u128(99)),
            },
            PatientCommand::Deactivate { reason: None },
        ] {
            let r = fx()
                .given(vec![registered(), merged()])
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(PatientError::Merged(other_patient())));
            assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
        }
        assert_eq!(
            PatientError::Merged(other_patient()).to_string(),
            format!("patient was merged into {}", other_patient())
        );
    }

    // --- deactivation ---

    #[test]
    fn deactivate() {
        fx().given(vec![registered()])
            .when(PatientCommand::Deactivate {
                reason: Some(text("deceased")),
            })
            .then_expect_events(vec![PatientEvent::PatientDeactivated {
                reason: Some(text("deceased")),
            }]);
    }

    #[test]
    fn deactivate_twice_is_a_conflict() {
        let r = fx()
            .given(vec![registered(), deactivated()])
            .when(PatientCommand::Deactivate { reason: None })
            .inspect_result();
        assert_eq!(r, Err(PatientError::AlreadyDeactivated));
        assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
    }

    #[test]
    fn deactivated_patient_cannot_be_updated_or_merged() {
        let change = update(DemographicsChanges {
            sex: Some(Sex::Other),
            ..DemographicsChanges::default()
        });
        for command in [
            change,
            PatientCommand::MergeInto {
                survivor: other_patient(),
            },
        ] {
            let r = fx()
                .given(vec![registered(), deactivated()])
                .when(command)
                .inspect_result();
            assert_eq!(r, Err(PatientError::Deactivated));
            assert_eq!(kind_and_field(r).0, ErrorKind::Conflict);
        }
    }

    // --- state and serialisation ---

    #[test]
    fn apply_builds_readable_state() {
        let mut patient = Patient::default();
        assert!(!patient.is_registered());
        patient.apply(registered());
        patient.apply(updated(DemographicsChanges {
            sex: Some(Sex::Other),
            allergies: Some(vec![]),
            ..DemographicsChanges::default()
        }));
        assert!(patient.is_registered() && patient.is_active());
        assert_eq!(patient.id(), Some(patient_id()));
        assert_eq!(patient.clinic_id(), Some(clinic_id()));
        assert_eq!(patient.mrn(), Some(&Mrn::from_number(1)));
        assert_eq!(patient.sex(), Some(Sex::Other));
        assert_eq!(patient.birth_date(), Some(date(1990, 12, 10)));
        assert!(patient.phone().is_some());
        assert!(patient.allergies().is_empty());
        assert_eq!(
            patient.name().map(PatientName::full).as_deref(),
            Some("Ada Lovelace")
        );
        patient.apply(merged());
        assert!(!patient.is_active());
        assert_eq!(patient.status(), PatientStatus::Merged);
        assert_eq!(patient.merged_into(), Some(other_patient()));
        let snapshot = serde_json::to_value(&patient).unwrap();
        assert_eq!(
            serde_json::from_value::<Patient>(snapshot).unwrap(),
            patient
        );
    }

    #[test]
    fn events_have_stable_types_and_round_trip() {
        let events = vec![
            registered(),
            updated(DemographicsChanges::default()),
            merged(),
            deactivated(),
        ];
        let types: Vec<String> = events.iter().map(DomainEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "PatientRegistered",
                "PatientDemographicsUpdated",
                "PatientMerged",
                "PatientDeactivated"
            ]
        );
        for e in events {
            assert_eq!(e.event_version(), "1.0");
            let json = serde_json::to_value(&e).unwrap();
            assert_eq!(serde_json::from_value::<PatientEvent>(json).unwrap(), e);
        }
        let json = serde_json::to_value(registered()).unwrap();
        assert_eq!(json["PatientRegistered"]["mrn"], "MRN-000001");
        assert_eq!(json["PatientRegistered"]["sex"], "female");
        assert_eq!(json["PatientRegistered"]["birth_date"], "1990-12-10");
    }

    // --- stored JSON: events in the store must keep loading, byte for byte ---

    const REGISTERED: &str = r#"{"PatientRegistered":{"patient_id":"00000000-0000-0000-0000-000000000003","clinic_id":"00000000-0000-0000-0000-000000000001","mrn":"MRN-000001","name":{"given":"Ada","family":"Lovelace"},"birth_date":"1990-12-10","sex":"female","phone":"+447700900123","email":"ada@example.org","address":{"lines":["12 St James's Sq"],"city":"London","postal_code":"SW1Y 4LB","country":"UK"},"emergency_contact":{"name":"Byron","phone":"+447700900124","relationship":"father"},"insurance":{"provider":"NHS","policy_number":"P-1"},"allergies":["penicillin","nuts"]}}"#;
    const UPDATED: &str = r#"{"PatientDemographicsUpdated":{"name":null,"birth_date":"1990-12-11","sex":"other","phone":null,"email":"ada@example.org","address":null,"emergency_contact":null,"insurance":null,"allergies":[]}}"#;
    const UPDATED_NOTHING: &str = r#"{"PatientDemographicsUpdated":{"name":null,"birth_date":null,"sex":null,"phone":null,"email":null,"address":null,"emergency_contact":null,"insurance":null,"allergies":null}}"#;
    const MERGED: &str = r#"{"PatientMerged":{"survivor":"00000000-0000-0000-0000-000000000004"}}"#;
    const DEACTIVATED: &str = r#"{"PatientDeactivated":{"reason":"deceased"}}"#;

    fn reserialised<T: Serialize + serde::de::DeserializeOwned>(json: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<T>(json).unwrap()).unwrap()
    }

    #[test]
    fn stored_event_json_is_unchanged() {
        for json in [REGISTERED, UPDATED, UPDATED_NOTHING, MERGED, DEACTIVATED] {
            assert_eq!(reserialised::<PatientEvent>(json), json);
        }
        assert_eq!(
            reserialised::<PatientEvent>(r#"{"PatientDemographicsUpdated":{}}"#),
            UPDATED_NOTHING
        );
        let registered = serde_json::to_string(&registered()).unwrap();
        assert_eq!(
            registered,
            r#"{"PatientRegistered":{"patient_id":"00000000-0000-0000-0000-000000000003","clinic_id":"00000000-0000-0000-0000-000000000001","mrn":"MRN-000001","name":{"given":"Ada","family":"Lovelace"},"birth_date":"1990-12-10","sex":"female","phone":"+447700900123","email":null,"address":null,"emergency_contact":null,"insurance":null,"allergies":["penicillin"]}}"#
        );
        let bad = r#"{"PatientDemographicsUpdated": {"birth_date": "not a date"}}"#;
        assert!(serde_json::from_str::<PatientEvent>(bad).is_err());
    }

    #[test]
    fn command_json_is_unchanged() {
        let register = REGISTERED.replace("PatientRegistered", "Register");
        let update = UPDATED.replace("PatientDemographicsUpdated", "UpdateDemographics");
        for json in [
            register.as_str(),
            update.as_str(),
            r#"{"MergeInto":{"survivor":"00000000-0000-0000-0000-000000000004"}}"#,
            r#"{"Deactivate":{"reason":null}}"#,
        ] {
            assert_eq!(reserialised::<PatientCommand>(json), json);
        }
    }
}
