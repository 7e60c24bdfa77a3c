//! Billing use cases (issue 14): the draft invoice of a completed (or no-show) appointment,
//! which the billing process manager (`projections::billing`) asks for when it reads the
//! appointment's `AppointmentCompleted` or `AppointmentMarkedNoShow`, and the backfill a
//! clinic admin runs after billing was off.
//!
//! Exactly one invoice per appointment: the invoice's id is derived from the appointment's
//! ([`InvoiceId::of_appointment`]), so a second issue — a retried batch, a second worker, a
//! replay from position zero, a backfill racing the process manager — finds the stream taken
//! and issues nothing.
//!
//! The decision is taken as of the event's place in the commit order: the appointment, the
//! clinic (is billing on?) and the fee schedule are read as they stood when the event
//! committed, so a late or repeated run prices a visit with the fee that applied then, and a
//! fee change never alters an invoice already issued (it keeps its lines).

use domain::appointment::Appointment;
use domain::clinic::Clinic;
use domain::clock::Services;
use domain::fees::FeeSchedule;
use domain::ids::{AppointmentId, ClinicId, InvoiceId};
use domain::invoice::{Basis, Invoice, InvoiceCommand, InvoiceError, InvoiceLine, NewInvoice};
use domain::values::{Module, NonEmptyText};
use sqlx::PgConnection;

use crate::error::{CommandError, StoreError};
use crate::metadata::{Actor, CommandMeta};
use crate::store::{EventStore, Expect};
use crate::tx::{stream, CommandTx};

/// An event that may be billed: an appointment completed or marked no-show, and where it
/// sits in the commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub clinic_id: ClinicId,
    pub appointment_id: AppointmentId,
    pub basis: Basis,
    /// The event's `transaction_id` (`xid8`, as text) and `position`.
    pub transaction_id: String,
    pub position: i64,
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The process manager: only while billing was on when the event committed.
    Live,
    /// A clinic admin's backfill: also events of a time billing was off.
    Backfill,
}

/// Why an event was not billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The clinic had billing off when the event committed.
    BillingDisabled,
    /// The clinic had no fee schedule (no currency) when the event committed.
    NoFeeSchedule,
    /// The clinic did not charge for no-shows when the event committed.
    NoShowNotCharged,
    /// The appointment's stream holds no booking (not an appointment of this clinic).
    NoSuchAppointment,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::BillingDisabled => "billing_disabled",
            Skip::NoFeeSchedule => "no_fee_schedule",
            Skip::NoShowNotCharged => "no_show_not_charged",
            Skip::NoSuchAppointment => "no_such_appointment",
        }
    }
}

/// What [`issue_for`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A draft invoice was appended (it commits with the caller's transaction).
    Issued {
        invoice_id: InvoiceId,
        position: i64,
    },
    /// The appointment's invoice exists already: nothing was written.
    AlreadyIssued(InvoiceId),
    Skipped(Skip),
}

/// Issues the draft invoice `charge` calls for, inside the transaction open on `conn` (as a
/// savepoint: a refusal or a lost race leaves the caller's transaction usable). Reads the
/// invoice (now) and the appointment, the clinic and the fee schedule (as of the charge) in
/// two statements, then appends at most one event.
pub async fn issue_for(
    conn: &mut PgConnection,
    services: Services,
    charge: &Charge,
    mode: Mode,
) -> Result<Outcome, StoreError> {
    let clinic = charge.clinic_id;
    let invoice_id = InvoiceId::of_appointment(charge.appointment_id);
    let mut tx = CommandTx::within(conn, services).await?;
    if tx
        .load::<Invoice>(clinic, invoice_id.as_uuid())
        .await?
        .is_some()
    {
        tx.rollback().await?;
        return Ok(Outcome::AlreadyIssued(invoice_id));
    }
    let facts = tx
        .load_streams_upto(
            &[
                stream::<Appointment>(clinic, charge.appointment_id.as_uuid()),
                stream::<Clinic>(clinic, clinic.as_uuid()),
                stream::<FeeSchedule>(clinic, clinic.as_uuid()),
            ],
            (&charge.transaction_id, charge.position),
        )
        .await?;
    let new = match draft(charge, invoice_id, &facts, mode)? {
        Ok(new) => new,
        Err(skip) => {
            tx.rollback().await?;
            return Ok(Outcome::Skipped(skip));
        }
    };
    let meta = CommandMeta::new(
        clinic,
        Actor::system(),
        format!("billing:{}", charge.position),
    );
    let command = InvoiceCommand::Issue(new);
    match tx
        .decide::<Invoice>(&meta, invoice_id.as_uuid(), None, command, Expect::Any)
        .await
    {
        Ok(committed) => {
            tx.commit().await?;
            let position = committed.last_position().unwrap_or_default();
            Ok(Outcome::Issued {
                invoice_id,
                position,
            })
        }
        // Another worker (or a backfill) appended it between our read and our append.
        Err(CommandError::Concurrency | CommandError::Domain(InvoiceError::AlreadyIssued)) => {
            tx.rollback().await?;
            Ok(Outcome::AlreadyIssued(invoice_id))
        }
        Err(CommandError::Store(e)) => Err(e),
        Err(other) => Err(StoreError(Box::new(other))),
    }
}

/// The draft `charge` calls for, from the streams as they stood at the charge, or why none.
fn draft(
    charge: &Charge,
    invoice_id: InvoiceId,
    facts: &crate::tx::Streams,
    mode: Mode,
) -> Result<Result<NewInvoice, Skip>, StoreError> {
    let clinic = charge.clinic_id;
    let Some((appointment, _)) =
        facts.get::<Appointment>(clinic, charge.appointment_id.as_uuid())?
    else {
        return Ok(Err(Skip::NoSuchAppointment));
    };
    let (Some(patient_id), Some(doctor_id)) = (appointment.patient_id(), appointment.doctor_id())
    else {
        return Ok(Err(Skip::NoSuchAppointment));
    };
    let billing_on = facts
        .get::<Clinic>(clinic, clinic.as_uuid())?
        .is_some_and(|(c, _)| c.has_module(Module::Billing));
    if mode == Mode::Live && !billing_on {
        return Ok(Err(Skip::BillingDisabled));
    }
    let Some(schedule) = facts
        .get::<FeeSchedule>(clinic, clinic.as_uuid())?
        .and_then(|(f, _)| f.schedule().cloned())
    else {
        return Ok(Err(Skip::NoFeeSchedule));
    };
    let lines = match charge.basis {
        Basis::Visit => {
            let kind = appointment.appointment_type();
            let description = match kind {
                Some(kind) => format!("Visit ({kind})"),
                None => "Visit".to_owned(),
            };
            schedule
                .fee_for(kind, doctor_id)
                .map(|amount| line(&description, amount))
                .transpose()?
                .into_iter()
                .collect()
        }
        Basis::NoShow => match schedule.no_show_fee {
            Some(amount) => vec![line("No-show fee", amount)?],
            None => return Ok(Err(Skip::NoShowNotCharged)),
        },
    };
    Ok(Ok(NewInvoice {
        invoice_id,
        clinic_id: clinic,
        appointment_id: charge.appointment_id,
        patient_id,
        doctor_id,
        basis: charge.basis,
        currency: schedule.currency,
        lines,
    }))
}

fn line(description: &str, amount: domain::values::Amount) -> Result<InvoiceLine, StoreError> {
    Ok(InvoiceLine {
        description: NonEmptyText::parse(description).map_err(|e| StoreError(Box::new(e)))?,
        amount,
    })
}

/// Why a backfill did not run.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("the clinic is not registered")]
    ClinicNotFound,
    #[error("billing is off for this clinic: enable the billing module first")]
    BillingDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a backfill did, event by event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backfilled {
    /// Completions and no-shows of the clinic read.
    pub considered: usize,
    pub issued: usize,
    pub already_issued: usize,
    /// Not billed, with why (no schedule then, no-show fee off then, …).
    pub skipped: Vec<(AppointmentId, Skip)>,
}

/// Issues the missing invoices of every completed (and, where the clinic charged for them
/// then, no-show) appointment of `clinic`, including those of a time billing was off, each
/// priced as of its event; one short transaction per invoice. Billing must be on now.
/// Appointments already invoiced are left as they are.
pub async fn backfill(store: &EventStore, clinic: ClinicId) -> Result<Backfilled, BackfillError> {
    let state = store
        .load::<Clinic>(clinic, clinic.as_uuid())
        .await?
        .map(|(c, _)| c)
        .ok_or(BackfillError::ClinicNotFound)?;
    if !state.has_module(Module::Billing) {
        return Err(BackfillError::BillingDisabled);
    }
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT e.transaction_id::text, e.position, e.aggregate_id, e.event_type FROM events e \
         WHERE e.tenant_id = $1 AND e.aggregate_type = 'Appointment' \
           AND e.event_type IN ('AppointmentCompleted', 'AppointmentMarkedNoShow') \
         ORDER BY e.transaction_id, e.position",
    )
    .bind(clinic.as_uuid())
    .fetch_all(store.pool())
    .await
    .map_err(StoreError::from)?;
    let mut done = Backfilled {
        considered: rows.len(),
        ..Backfilled::default()
    };
    for (transaction_id, position, aggregate_id, event_type) in rows {
        let appointment = aggregate_id
            .split_once(':')
            .and_then(|(_, id)| id.parse().ok())
            .map(AppointmentId::from_uuid)
            .ok_or_else(|| StoreError(format!("malformed stream id {aggregate_id}").into()))?;
        let charge = Charge {
            clinic_id: clinic,
            appointment_id: appointment,
            basis: basis_of(&event_type).unwrap_or(Basis::Visit),
            transaction_id,
            position,
        };
        let mut tx = store.pool().begin().await.map_err(StoreError::from)?;
        let outcome = issue_for(&mut tx, store.services().clone(), &charge, Mode::Backfill).await?;
        tx.commit().await.map_err(StoreError::from)?;
        match outcome {
            Outcome::Issued { .. } => done.issued += 1,
            Outcome::AlreadyIssued(_) => done.already_issued += 1,
            Outcome::Skipped(skip) => done.skipped.push((appointment, skip)),
        }
    }
    Ok(done)
}

/// What an appointment event of `event_type` bills, if anything.
pub fn basis_of(event_type: &str) -> Option<Basis> {
    match event_type {
        "AppointmentCompleted" => Some(Basis::Visit),
        "AppointmentMarkedNoShow" => Some(Basis::NoShow),
        _ => None,
    }
}
