//! Aggregates in given states, for the use cases' unit tests (built from events, as the store
//! would).

use cqrs_es::Aggregate;
use domain::appointment::Appointment;
use domain::clinic::Clinic;
use domain::ids::{ClinicId, DepartmentId, StaffId};
use domain::patient::Patient;
use domain::staff::Staff;
use domain::values::Role;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::metadata::{Actor, ActorRole, CommandMeta};

pub(crate) fn meta(role: ActorRole, actor: Uuid) -> CommandMeta {
    CommandMeta::new(ClinicId::new(), Actor { id: actor, role }, "test")
}

fn replay<A>(events: Vec<Value>) -> A
where
    A: Aggregate + Default,
    A::Event: DeserializeOwned,
{
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(serde_json::from_value(event).unwrap());
    }
    aggregate
}

pub(crate) fn patient(active: bool) -> Patient {
    let mut events = vec![json!({"PatientRegistered": {
        "patient_id": Uuid::new_v4(), "clinic_id": Uuid::new_v4(), "mrn": "MRN-000001",
        "name": {"given": "Ada", "family": "Lovelace"}, "birth_date": "1990-01-01",
        "sex": "female", "phone": null, "email": null, "address": null,
        "emergency_contact": null, "insurance": null, "allergies": []}})];
    if !active {
        events.push(json!({"PatientDeactivated": {"reason": null}}));
    }
    replay(events)
}

pub(crate) fn staff(role: Role, active: bool) -> Staff {
    let mut events = vec![json!({"StaffHired": {
        "staff_id": StaffId::new(), "clinic_id": ClinicId::new(), "name": "Dr. Who",
        "email": "who@north.example", "role": role, "department_id": null,
        "specialty": null, "licence_number": "LIC-1"}})];
    if !active {
        events.push(json!({"StaffDeactivated": {"reason": null}}));
    }
    replay(events)
}

pub(crate) fn doctor(active: bool) -> Staff {
    staff(Role::Doctor, active)
}

/// A registered clinic in Berlin with departments: `open` open, `closed` closed.
pub(crate) fn clinic_with(open: &[DepartmentId], closed: &[DepartmentId]) -> Clinic {
    let mut events = vec![json!({"ClinicRegistered": {
        "clinic_id": ClinicId::new(), "name": "North", "code": "north",
        "time_zone": "Europe/Berlin", "plan": "standard", "slot_minutes": 15}})];
    for id in open.iter().chain(closed) {
        events.push(json!({"DepartmentAdded": {"department_id": id, "name": "Cardiology"}}));
    }
    for id in closed {
        events.push(json!({"DepartmentClosed": {"department_id": id}}));
    }
    replay(events)
}

pub(crate) fn clinic() -> Clinic {
    clinic_with(&[], &[])
}

pub(crate) fn appointment(doctor_id: StaffId) -> Appointment {
    replay(vec![json!({"AppointmentBooked": {
        "appointment_id": Uuid::new_v4(), "clinic_id": Uuid::new_v4(),
        "patient_id": Uuid::new_v4(), "doctor_id": doctor_id,
        "slot": {"start": "2030-01-01T09:00:00Z", "end": "2030-01-01T09:30:00Z"},
        "reason": null, "override_hours": false, "at": "2029-12-01T09:00:00Z"}})])
}
