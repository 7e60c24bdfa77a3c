//! Replaying an aggregate from its stored events, the way an auditor does: each stored payload
//! (`{"<EventType>": {...}}`) goes through the aggregate's own `Aggregate::apply`, so the state
//! an auditor sees is the state the domain decided with.

use cqrs_es::Aggregate;
use serde_json::Value;

use crate::appointment::Appointment;
use crate::clinic::Clinic;
use crate::fees::FeeSchedule;
use crate::invoice::Invoice;
use crate::patient::Patient;
use crate::staff::Staff;

/// An aggregate of any type, rebuilt from its events.
#[derive(Debug, Clone)]
pub enum Replayed {
    Clinic(Clinic),
    Staff(Staff),
    Patient(Patient),
    Appointment(Appointment),
    Invoice(Invoice),
    FeeSchedule(FeeSchedule),
}

fn apply_to<A: Aggregate>(aggregate: &mut A, payload: &Value) -> Result<(), serde_json::Error> {
    let event: A::Event = serde_json::from_value(payload.clone())?;
    aggregate.apply(event);
    Ok(())
}

impl Replayed {
    /// The empty aggregate of a type (`Clinic`, `Staff`, `Patient`, `Appointment`, `Invoice`,
    /// `FeeSchedule`), or `None`
    /// for a type the domain does not know.
    pub fn empty(aggregate_type: &str) -> Option<Self> {
        match aggregate_type {
            "Clinic" => Some(Replayed::Clinic(Clinic::default())),
            "Staff" => Some(Replayed::Staff(Staff::default())),
            "Patient" => Some(Replayed::Patient(Patient::default())),
            "Appointment" => Some(Replayed::Appointment(Appointment::default())),
            "Invoice" => Some(Replayed::Invoice(Invoice::default())),
            "FeeSchedule" => Some(Replayed::FeeSchedule(FeeSchedule::default())),
            _ => None,
        }
    }

    /// Applies one stored payload (`{"<EventType>": {...}}`).
    pub fn apply(&mut self, payload: &Value) -> Result<(), serde_json::Error> {
        match self {
            Replayed::Clinic(a) => apply_to(a, payload),
            Replayed::Staff(a) => apply_to(a, payload),
            Replayed::Patient(a) => apply_to(a, payload),
            Replayed::Appointment(a) => apply_to(a, payload),
            Replayed::Invoice(a) => apply_to(a, payload),
            Replayed::FeeSchedule(a) => apply_to(a, payload),
        }
    }

    /// The aggregate serialised with serde.
    pub fn to_json(&self) -> Value {
        let value = match self {
            Replayed::Clinic(a) => serde_json::to_value(a),
            Replayed::Staff(a) => serde_json::to_value(a),
            Replayed::Patient(a) => serde_json::to_value(a),
            Replayed::Appointment(a) => serde_json::to_value(a),
            Replayed::Invoice(a) => serde_json::to_value(a),
            Replayed::FeeSchedule(a) => serde_json::to_value(a),
        };
        value.unwrap_or(Value::Null)
    }
}

/// A replay failure: an event whose payload the domain cannot read.
#[derive(Debug, thiserror::Error)]
#[error("event at position {position} ({event_type}) cannot be replayed: {source}")]
pub struct ReplayError {
    pub position: i64,
    pub event_type: String,
    #[source]
    pub source: serde_json::Error,
}

/// One stored event as replay needs it.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub position: i64,
    pub event_type: &'a str,
    pub payload: &'a Value,
}

/// Replays `events` (one record's, in sequence order) into an aggregate of `aggregate_type`;
/// `None` for a type the domain does not know.
pub fn replay<'a>(
    aggregate_type: &str,
    events: impl IntoIterator<Item = StoredEvent<'a>>,
) -> Result<Option<Replayed>, ReplayError> {
    let Some(mut aggregate) = Replayed::empty(aggregate_type) else {
        return Ok(None);
    };
    for e in events {
        aggregate.apply(e.payload).map_err(|source| ReplayError {
            position: e.position,
            event_type: e.event_type.to_owned(),
            source,
        })?;
    }
    Ok(Some(aggregate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn stored(events: &[(i64, Value)]) -> Vec<StoredEvent<'_>> {
        events
            .iter()
            .map(|(position, payload)| StoredEvent {
                position: *position,
                event_type: "",
                payload,
            })
            .collect()
    }

    #[test]
    fn replay_applies_the_stored_payloads_through_the_aggregate() {
        let clinic = Uuid::from_u128(7);
        let events = [
            (
                1,
                json!({"ClinicRegistered": {"clinic_id": clinic, "name": "North", "code": "north",
                       "time_zone": "Europe/Berlin", "plan": "standard", "slot_minutes": 15}}),
            ),
            (
                2,
                json!({"ClinicPlanChanged": {"from": "standard", "to": "enterprise"}}),
            ),
        ];
        let state = replay("Clinic", stored(&events))
            .unwrap()
            .unwrap()
            .to_json();
        assert_eq!(state["plan"], "enterprise");
        assert_eq!(state["code"], "north");
        assert_eq!(state["status"], "active");
        let first = replay("Clinic", stored(&events[..1]))
            .unwrap()
            .unwrap()
            .to_json();
        // Stored as `standard` (before the four plans): read as its successor.
        assert_eq!(first["plan"], "professional");

        let broken = [(3, json!({"NoSuchEvent": {}}))];
        let err = replay("Clinic", stored(&broken)).unwrap_err();
        assert_eq!(err.position, 3);
        assert!(replay("LabOrder", stored(&events)).unwrap().is_none());
    }

    #[test]
    fn invoices_and_fee_schedules_replay_like_the_other_aggregates() {
        let appointment = Uuid::from_u128(9);
        let events = [
            (
                10,
                json!({"InvoiceIssued": {"invoice_id": Uuid::from_u128(19), "clinic_id": Uuid::from_u128(7),
                       "appointment_id": appointment, "patient_id": Uuid::from_u128(8),
                       "doctor_id": Uuid::from_u128(6), "basis": "visit", "currency": "EUR",
                       "lines": [{"description": "Visit", "amount": 6000}]}}),
            ),
            (
                11,
                json!({"InvoiceFinalised": {"number": "INV-2027-000001", "total": 6000}}),
            ),
            (
                12,
                json!({"PaymentRecorded": {"payment_id": Uuid::from_u128(5), "amount": 2000,
                       "method": "cash", "reference": null}}),
            ),
        ];
        let state = replay("Invoice", stored(&events))
            .unwrap()
            .unwrap()
            .to_json();
        assert_eq!(state["status"], "partially-paid");
        assert_eq!(state["number"], "INV-2027-000001");
        assert_eq!(state["paid"], 2000);
        let fees = [(
            13,
            json!({"FeeScheduleSet": {"currency": "EUR", "default_fee": 5000, "no_show_fee": null, "rules": []}}),
        )];
        let state = replay("FeeSchedule", stored(&fees))
            .unwrap()
            .unwrap()
            .to_json();
        assert_eq!(state["schedule"]["default_fee"], 5000);
    }
}
