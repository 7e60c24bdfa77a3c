//! Commands over HTTP: create a patient, book, and reschedule or cancel, from clients spread
//! over the work clinics and their roles (admin, receptionist, doctor). Every accepted
//! command goes into the [`Ledger`], which the end of the run checks against the read models.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::client::{Outcome, Reply};
use crate::fixture::{next_slot, Clinic, Role};
use crate::load::{self, Stats};
use crate::scenarios::Ctx;

/// An appointment the bench booked, and what its record must say at the end.
#[derive(Debug, Clone)]
pub struct Booked {
    pub clinic: usize,
    pub id: Uuid,
    pub doctor: usize,
    pub start: String,
    pub cancelled: bool,
    /// A reschedule or cancel got no clear answer (the server died or answered 5xx): it may
    /// or may not have been applied, so its final state is not checked (and it is not moved
    /// again). Only `clinic-bench --faults` causes this.
    pub uncertain: bool,
}

/// Every command the service accepted.
#[derive(Default)]
pub struct Ledger {
    /// (clinic index, patient id) of each created patient.
    pub patients: Mutex<Vec<(usize, Uuid)>>,
    /// Every booked appointment, by id, with its expected final state.
    pub appointments: Mutex<Vec<Booked>>,
    /// Indexes into `appointments` that can still be rescheduled or cancelled.
    movable: Mutex<VecDeque<usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    fn patient_of(&self, clinic: usize, n: u64) -> Option<Uuid> {
        let patients = lock(&self.patients);
        let mine: Vec<Uuid> = patients
            .iter()
            .filter(|(c, _)| *c == clinic)
            .map(|(_, id)| *id)
            .take(64)
            .collect();
        mine.get(n as usize % mine.len().max(1)).copied()
    }
}

/// Which clinic and role a client acts as: clients go round the work clinics, then the
/// roles (doctors never register patients).
fn seat(ctx: &Ctx, client: usize, roles: &[Role]) -> (usize, Role) {
    let work = ctx.fixture.work();
    let clinic = &work[client % work.len()];
    (clinic.index, roles[(client / work.len()) % roles.len()])
}

pub fn patient_body(client: usize, n: u64) -> serde_json::Value {
    json!({"name": {"given": format!("Bench{n}"), "family": format!("Load{client}")},
           "birth_date": "1980-01-01", "sex": "female", "phone": "+49 30 1234567"})
}

/// `POST /v1/patients` as `clinic`'s admin or receptionist; the answer goes in the ledger.
pub async fn create_patient(ctx: &Ctx, clinic: usize, role: Role, client: usize, n: u64) -> Reply {
    let token = ctx.fixture.clinics[clinic].token(role, 0);
    let reply = ctx
        .api
        .post("/v1/patients", &token, patient_body(client, n))
        .await;
    if let (Outcome::Accepted, Some(id)) = (reply.outcome, reply.id()) {
        lock(&ctx.ledger.patients).push((clinic, id));
    }
    reply
}

/// `POST /v1/appointments` at the clinic's next free slot.
pub async fn book(ctx: &Ctx, clinic: &Clinic, role: Role) -> Outcome {
    let (n, start, end) = next_slot(clinic);
    let doctor = n as usize % clinic.doctors.len();
    let Some(patient) = ctx.ledger.patient_of(clinic.index, n) else {
        return Outcome::Skipped;
    };
    let body = json!({"patient_id": patient, "doctor_id": clinic.doctors[doctor].id,
                      "start": start, "end": end});
    let reply = ctx
        .api
        .post("/v1/appointments", &clinic.token(role, doctor), body)
        .await;
    if let (Outcome::Accepted, Some(id)) = (reply.outcome, reply.id()) {
        let mut all = lock(&ctx.ledger.appointments);
        all.push(Booked {
            clinic: clinic.index,
            id,
            doctor,
            start,
            cancelled: false,
            uncertain: false,
        });
        lock(&ctx.ledger.movable).push_back(all.len() - 1);
    }
    reply.outcome
}

/// Reschedules (even `n`) or cancels (odd `n`) one of the bench's booked appointments.
pub async fn reschedule_or_cancel(ctx: &Ctx, role: Role, n: u64) -> Outcome {
    let Some(index) = lock(&ctx.ledger.movable).pop_front() else {
        return Outcome::Skipped;
    };
    let booked = lock(&ctx.ledger.appointments)[index].clone();
    let clinic = &ctx.fixture.clinics[booked.clinic];
    let token = clinic.token(role, booked.doctor);
    let path = format!("/v1/appointments/{}", booked.id);
    if n % 2 == 0 {
        let (_, start, end) = next_slot(clinic);
        let body = json!({"start": start, "end": end});
        let reply = ctx
            .api
            .post(&format!("{path}/reschedule"), &token, body)
            .await;
        match reply.outcome {
            Outcome::Accepted => lock(&ctx.ledger.appointments)[index].start = start,
            Outcome::Failed | Outcome::NotYet => {
                lock(&ctx.ledger.appointments)[index].uncertain = true;
                return reply.outcome;
            }
            Outcome::Refused | Outcome::Skipped => {}
        }
        lock(&ctx.ledger.movable).push_back(index);
        reply.outcome
    } else {
        let body = json!({"reason": "clinic-bench"});
        let reply = ctx.api.post(&format!("{path}/cancel"), &token, body).await;
        match reply.outcome {
            Outcome::Accepted => lock(&ctx.ledger.appointments)[index].cancelled = true,
            Outcome::Failed | Outcome::NotYet => {
                lock(&ctx.ledger.appointments)[index].uncertain = true
            }
            Outcome::Refused | Outcome::Skipped => lock(&ctx.ledger.movable).push_back(index),
        }
        reply.outcome
    }
}

const DESK: &[Role] = &[Role::Admin, Role::Receptionist];
const BOOKING: &[Role] = &[Role::Admin, Role::Receptionist, Role::Doctor];

/// Create-patient load.
pub async fn create_load(ctx: &Ctx, name: &str, clients: usize, duration: Duration) -> Stats {
    let ctx = ctx.clone();
    load::run(name, clients, duration, move |client, n| {
        let ctx = ctx.clone();
        async move {
            let (clinic, role) = seat(&ctx, client, DESK);
            create_patient(&ctx, clinic, role, client, n).await.outcome
        }
    })
    .await
}

/// The three commands, each at every client count.
pub async fn run(ctx: &Ctx, clients: &[usize], duration: Duration) -> Vec<Stats> {
    let mut all = Vec::new();
    for &c in clients {
        all.push(create_load(ctx, "POST /v1/patients", c, duration).await);
        for rebooking in [false, true] {
            let name = if rebooking {
                "reschedule or cancel"
            } else {
                "POST /v1/appointments"
            };
            let ctx = ctx.clone();
            let stats = load::run(name, c, duration, move |client, n| {
                let ctx = ctx.clone();
                async move {
                    let (clinic, role) = seat(&ctx, client, BOOKING);
                    if rebooking {
                        reschedule_or_cancel(&ctx, role, n).await
                    } else {
                        book(&ctx, &ctx.fixture.clinics[clinic], role).await
                    }
                }
            })
            .await;
            all.push(stats);
        }
    }
    all
}
