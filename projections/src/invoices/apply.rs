//! `rm.invoices`: one row per invoice, as its events left it. `rm.invoice_payments`: one row
//! per payment and per refund, inserted by the statement after the invoices' own.
//!
//! A batch of events is merged per invoice in memory (see [`crate::changes`]) and written with
//! one `INSERT` and one `UPDATE`. The patch of an invoice is made of what its events add
//! (lines, their sum, payments, refunds) and what they set (the number, when it was finalised
//! or voided); the status and the balance are computed by the statement from the row's old
//! values and the patch, by the domain's rule (`Invoice::paid_status`): never finalised is
//! `draft`, voided is `void`, else `issued`, `partially-paid` or `paid` by what is still paid.

use chrono::{DateTime, Utc};
use domain::invoice::{Basis, InvoiceEvent};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::types::Json;
use sqlx::{Arguments, PgConnection};
use uuid::Uuid;

use crate::changes::{self, Changes, Entry, Merge, Unnest};
use crate::event::{to_json, Applied, StoredEvent};
use crate::ProjectionError;

/// An invoice row (from `InvoiceIssued`) or a patch of one.
#[derive(Default)]
struct Row {
    appointment_id: Option<Uuid>,
    patient_id: Option<Uuid>,
    doctor_id: Option<Uuid>,
    basis: Option<&'static str>,
    currency: Option<String>,
    issued_at: Option<DateTime<Utc>>,
    /// Lines added (appended in order).
    lines: Vec<Value>,
    /// The sum of `lines`.
    added: i64,
    number: Option<String>,
    finalised_at: Option<DateTime<Utc>>,
    /// Payments and refunds recorded (added to the row's).
    paid: i64,
    refunded: i64,
    voided_at: Option<DateTime<Utc>>,
    void_reason: Option<String>,
}

impl Merge for Row {
    fn merge(&mut self, n: Row) {
        changes::merge_newer! { self, n; appointment_id, patient_id, doctor_id, basis, currency, issued_at, number, finalised_at, voided_at, void_reason }
        self.lines.extend(n.lines);
        self.added += n.added;
        self.paid += n.paid;
        self.refunded += n.refunded;
    }

    fn columns(rows: &[Entry<Row>]) -> Unnest<'_, Row> {
        Unnest::new(rows)
            .col(|r| r.appointment_id)
            .col(|r| r.patient_id)
            .col(|r| r.doctor_id)
            .col(|r| r.basis.map(str::to_owned))
            .col(|r| r.currency.as_deref())
            .col(|r| r.issued_at)
            .col(|r| Json(&r.lines))
            .col(|r| r.added)
            .col(|r| r.number.as_deref())
            .col(|r| r.finalised_at)
            .col(|r| r.paid)
            .col(|r| r.refunded)
            .col(|r| r.voided_at)
            .col(|r| r.void_reason.as_deref())
    }
}

/// A payment or a refund, as `rm.invoice_payments` keeps it.
struct Movement {
    clinic_id: Uuid,
    invoice_id: Uuid,
    seq: i64,
    kind: &'static str,
    payment_id: Option<Uuid>,
    amount: i64,
    method: Option<String>,
    reference: Option<String>,
    reason: Option<String>,
    recorded_at: DateTime<Utc>,
}

fn basis(b: Basis) -> &'static str {
    match b {
        Basis::Visit => "visit",
        Basis::NoShow => "no_show",
    }
}

/// The payment or refund `e` records, if it records one.
fn movement(e: &StoredEvent) -> Result<Option<Movement>, ProjectionError> {
    let (kind, payment_id, amount, method, reference, reason) = match e.decode::<InvoiceEvent>()? {
        InvoiceEvent::PaymentRecorded {
            payment_id,
            amount,
            method,
            reference,
        } => (
            "payment",
            Some(payment_id.as_uuid()),
            amount,
            Some(method.as_str().to_owned()),
            reference.map(|r| r.as_str().to_owned()),
            None,
        ),
        InvoiceEvent::PaymentRefunded { amount, reason } => (
            "refund",
            None,
            amount,
            None,
            None,
            Some(reason.as_str().to_owned()),
        ),
        _ => return Ok(None),
    };
    let (clinic_id, invoice_id) = changes::key(e)?;
    Ok(Some(Movement {
        clinic_id,
        invoice_id,
        seq: e.sequence,
        kind,
        payment_id,
        amount: amount.minor(),
        method,
        reference,
        reason,
        recorded_at: e.at()?,
    }))
}

/// Folds one event into `rows`.
fn fold(rows: &mut Changes<Row>, e: &StoredEvent) -> Applied {
    let mut row = Row::default();
    match e.decode::<InvoiceEvent>()? {
        InvoiceEvent::InvoiceIssued(new) => {
            row.appointment_id = Some(new.appointment_id.as_uuid());
            row.patient_id = Some(new.patient_id.as_uuid());
            row.doctor_id = Some(new.doctor_id.as_uuid());
            row.basis = Some(basis(new.basis));
            row.currency = Some(new.currency.as_str().to_owned());
            row.issued_at = Some(e.at()?);
            row.added = new.lines.iter().map(|l| l.amount.minor()).sum();
            row.lines = new.lines.iter().map(to_json).collect();
            return rows.create(e, row);
        }
        InvoiceEvent::InvoiceLineAdded(line) => {
            row.added = line.amount.minor();
            row.lines = vec![to_json(&line)];
        }
        InvoiceEvent::InvoiceFinalised { number, .. } => {
            row.number = Some(number.to_string());
            row.finalised_at = Some(e.at()?);
        }
        InvoiceEvent::PaymentRecorded { amount, .. } => row.paid = amount.minor(),
        InvoiceEvent::PaymentRefunded { amount, .. } => row.refunded = amount.minor(),
        InvoiceEvent::InvoiceVoided { reason } => {
            row.voided_at = Some(e.at()?);
            row.void_reason = Some(reason.as_str().to_owned());
        }
    }
    rows.patch(e, row)
}

const UNNEST: &str = "unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], \
     $6::text[], $7::text[], $8::timestamptz[], $9::jsonb[], $10::int8[], $11::text[], \
     $12::timestamptz[], $13::int8[], $14::int8[], $15::timestamptz[], $16::text[], \
     $17::timestamptz[], $18::int8[]) \
     AS u(clinic_id, invoice_id, appointment_id, patient_id, doctor_id, basis, currency, \
          issued_at, lines, added, number, finalised_at, paid, refunded, voided_at, void_reason, \
          updated_at, version)";

/// The status of an invoice whose old status is `old` (`draft` for a new one), total `total`
/// and net paid `net` (SQL expressions), given the patch `u`.
fn status_sql(old: &str, total: &str, net: &str) -> String {
    format!(
        "CASE WHEN {old} = 'void' OR u.voided_at IS NOT NULL THEN 'void' \
              WHEN {old} = 'draft' AND u.finalised_at IS NULL THEN 'draft' \
              WHEN ({net}) <= 0 THEN 'issued' \
              WHEN ({net}) < ({total}) THEN 'partially-paid' \
              ELSE 'paid' END"
    )
}

/// The balance of such an invoice: what is still due once finalised and not void.
fn balance_sql(old: &str, total: &str, net: &str) -> String {
    format!(
        "CASE WHEN ({status}) IN ('issued', 'partially-paid', 'paid') THEN ({total}) - ({net}) \
              ELSE 0 END",
        status = status_sql(old, total, net)
    )
}

/// Applies `events` (this projection's, in commit order) to `s.invoices` and
/// `s.invoice_payments`.
pub(super) async fn apply(s: &str, conn: &mut PgConnection, events: &[&StoredEvent]) -> Applied {
    let (new_total, new_net) = ("u.added", "u.paid - u.refunded");
    let insert = format!(
        "INSERT INTO {s}.invoices (clinic_id, invoice_id, appointment_id, patient_id, doctor_id, \
         basis, status, number, currency, total, paid, refunded, balance, lines, void_reason, \
         issued_at, finalised_at, voided_at, updated_at, version) \
         SELECT u.clinic_id, u.invoice_id, u.appointment_id, u.patient_id, u.doctor_id, u.basis, \
                {status}, u.number, u.currency, {new_total}, u.paid, u.refunded, {balance}, u.lines, \
                u.void_reason, u.issued_at, u.finalised_at, u.voided_at, u.updated_at, u.version \
         FROM {UNNEST} RETURNING clinic_id, invoice_id",
        status = status_sql("'draft'", new_total, new_net),
        balance = balance_sql("'draft'", new_total, new_net),
    );
    let (total, net) = (
        "t.total + u.added",
        "(t.paid + u.paid) - (t.refunded + u.refunded)",
    );
    let update = format!(
        "UPDATE {s}.invoices t SET status = {status}, balance = {balance}, \
         total = {total}, paid = t.paid + u.paid, refunded = t.refunded + u.refunded, \
         lines = t.lines || u.lines, number = coalesce(u.number, t.number), \
         finalised_at = coalesce(u.finalised_at, t.finalised_at), \
         voided_at = coalesce(u.voided_at, t.voided_at), \
         void_reason = coalesce(u.void_reason, t.void_reason), \
         updated_at = u.updated_at, version = u.version \
         FROM {UNNEST} WHERE t.clinic_id = u.clinic_id AND t.invoice_id = u.invoice_id \
         RETURNING t.clinic_id, t.invoice_id",
        status = status_sql("t.status", total, net),
        balance = balance_sql("t.status", total, net),
    );
    // A failure stops the batch (its transaction is rolled back): no payments are written.
    changes::apply(conn, events, fold, &insert, &update).await?;
    // The payments and refunds, after the invoices they belong to.
    let payment_events = events
        .iter()
        .filter(|e| matches!(e.event_type.as_str(), "PaymentRecorded" | "PaymentRefunded"));
    let mut movements = Vec::new();
    for e in payment_events {
        movements.extend(movement(e)?);
    }
    if !movements.is_empty() {
        insert_movements(s, conn, &movements, events).await?;
    }
    Ok(())
}

/// Inserts `movements`, each with its invoice's currency, patient and doctor (the invoice rows
/// are written by then).
async fn insert_movements(
    s: &str,
    conn: &mut PgConnection,
    movements: &[Movement],
    events: &[&StoredEvent],
) -> Applied {
    let mut args = PgArguments::default();
    let add = |r: Result<(), sqlx::error::BoxDynError>| r.map_err(sqlx::Error::Encode);
    add(args.add(movements.iter().map(|m| m.clinic_id).collect::<Vec<_>>()))?;
    add(args.add(movements.iter().map(|m| m.invoice_id).collect::<Vec<_>>()))?;
    add(args.add(movements.iter().map(|m| m.seq).collect::<Vec<_>>()))?;
    add(args.add(movements.iter().map(|m| m.kind).collect::<Vec<_>>()))?;
    add(args.add(movements.iter().map(|m| m.payment_id).collect::<Vec<_>>()))?;
    add(args.add(movements.iter().map(|m| m.amount).collect::<Vec<_>>()))?;
    add(args.add(
        movements
            .iter()
            .map(|m| m.method.clone())
            .collect::<Vec<_>>(),
    ))?;
    add(args.add(
        movements
            .iter()
            .map(|m| m.reference.clone())
            .collect::<Vec<_>>(),
    ))?;
    add(args.add(
        movements
            .iter()
            .map(|m| m.reason.clone())
            .collect::<Vec<_>>(),
    ))?;
    add(args.add(movements.iter().map(|m| m.recorded_at).collect::<Vec<_>>()))?;
    let done = sqlx::query_with(
        &format!(
            "INSERT INTO {s}.invoice_payments (clinic_id, invoice_id, seq, kind, payment_id, amount, \
             currency, method, reference, reason, patient_id, doctor_id, recorded_at) \
             SELECT u.clinic_id, u.invoice_id, u.seq, u.kind, u.payment_id, u.amount, i.currency, \
                    u.method, u.reference, u.reason, i.patient_id, i.doctor_id, u.recorded_at \
             FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::uuid[], $6::int8[], \
                         $7::text[], $8::text[], $9::text[], $10::timestamptz[]) \
                  AS u(clinic_id, invoice_id, seq, kind, payment_id, amount, method, reference, \
                       reason, recorded_at) \
             JOIN {s}.invoices i ON i.clinic_id = u.clinic_id AND i.invoice_id = u.invoice_id"
        ),
        args,
    )
    .execute(conn)
    .await?;
    if done.rows_affected() as usize != movements.len() {
        // A payment of an invoice that is not in the table: name the first such event.
        let first = events
            .iter()
            .find(|e| matches!(e.event_type.as_str(), "PaymentRecorded" | "PaymentRefunded"))
            .map(|e| (e.position, e.event_type.clone()))
            .unwrap_or_default();
        return Err(ProjectionError::Poison {
            position: first.0,
            event_type: first.1,
            reason: format!(
                "{} of {} payments found no invoice row",
                movements.len() as u64 - done.rows_affected(),
                movements.len()
            ),
        });
    }
    Ok(())
}
