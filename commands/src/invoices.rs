//! Invoice use cases (issue 14): issuing a draft, adding lines, finalising it under the
//! clinic's next gap-free number, recording payments, refunding and voiding. HTTP handlers (and
//! the process manager that issues drafts) call these; none loads an invoice itself. Another
//! clinic's invoice is an empty stream here: the domain answers `NotFound`.

use chrono::Datelike;
use domain::clinic::Clinic;
use domain::ids::{InvoiceId, PaymentId};
use domain::invoice::{
    Invoice, InvoiceCommand, InvoiceError, InvoiceLine, InvoiceNumber, NewInvoice,
};
use domain::values::{Amount, NonEmptyText, PaymentMethod};
use sqlx::PgConnection;

use crate::error::{CommandError, StoreError};
use crate::metadata::CommandMeta;
use crate::store::{Committed, EventStore, Expect};
use crate::tx::stream;

/// Issues `new` as a draft (a new stream; the id is the appointment's invoice id, so issuing
/// twice is the append conflict of one stream, never a second invoice).
pub async fn issue(
    store: &EventStore,
    meta: &CommandMeta,
    new: NewInvoice,
) -> Result<Committed, CommandError<InvoiceError>> {
    let id = new.invoice_id.as_uuid();
    let mut tx = store.begin().await?;
    let loaded = tx.load::<Invoice>(meta.clinic_id, id).await?;
    let committed = tx
        .decide(meta, id, loaded, InvoiceCommand::Issue(new), Expect::Any)
        .await?;
    tx.commit().await?;
    Ok(committed)
}

/// Finalises draft `id` under the clinic's next number of the current year (in the clinic's
/// time zone), in one transaction: the invoice and the clinic are read in one statement, the
/// domain decides, and only then is the number taken, right before the append. A refusal
/// takes no number; a failure after taking one rolls it back.
pub async fn finalise(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: InvoiceId,
) -> Result<Committed, CommandError<InvoiceError>> {
    let clinic = meta.clinic_id;
    let mut tx = store.begin().await?;
    let facts = tx
        .load_streams(&[
            stream::<Invoice>(clinic, id.as_uuid()),
            stream::<Clinic>(clinic, clinic.as_uuid()),
        ])
        .await?;
    let loaded = facts.get::<Invoice>(clinic, id.as_uuid())?;
    let time_zone = facts
        .get::<Clinic>(clinic, clinic.as_uuid())?
        .and_then(|(c, _)| c.time_zone())
        .ok_or_else(|| StoreError("the invoice's clinic is not registered".into()))?;
    // The domain's own refusals (not a draft, no lines) first, with a placeholder number.
    if let Some((invoice, _)) = &loaded {
        let probe = InvoiceNumber::new(2000, 1).expect("a valid number");
        invoice
            .decide(InvoiceCommand::Finalise { number: probe })
            .map_err(CommandError::Domain)?;
    }
    let year = tx.now().with_timezone(&time_zone.tz()).year();
    let number = next_number(tx.conn(), meta, year).await?;
    let command = InvoiceCommand::Finalise { number };
    let committed = tx
        .decide(meta, id.as_uuid(), loaded, command, expect)
        .await?;
    tx.commit().await?;
    Ok(committed)
}

/// Adds `line` to draft `id`.
pub async fn add_line(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: InvoiceId,
    line: InvoiceLine,
) -> Result<Committed, CommandError<InvoiceError>> {
    store
        .execute::<Invoice>(meta, id.as_uuid(), InvoiceCommand::AddLine(line), expect)
        .await
}

/// A payment to record: its id (one payment is recorded once: the API derives it from the
/// request's `Idempotency-Key`), amount, method and the payer's reference, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: PaymentId,
    pub amount: Amount,
    pub method: PaymentMethod,
    pub reference: Option<NonEmptyText>,
}

/// Records `payment` on invoice `id` (issued or partially paid; at most its balance).
pub async fn record_payment(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: InvoiceId,
    payment: Payment,
) -> Result<Committed, CommandError<InvoiceError>> {
    let command = InvoiceCommand::RecordPayment {
        payment_id: payment.payment_id,
        amount: payment.amount,
        method: payment.method,
        reference: payment.reference,
    };
    store
        .execute::<Invoice>(meta, id.as_uuid(), command, expect)
        .await
}

/// Refunds `amount` of invoice `id` (at most what was paid and not refunded yet).
pub async fn refund(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: InvoiceId,
    amount: Amount,
    reason: NonEmptyText,
) -> Result<Committed, CommandError<InvoiceError>> {
    let command = InvoiceCommand::Refund { amount, reason };
    store
        .execute::<Invoice>(meta, id.as_uuid(), command, expect)
        .await
}

/// Voids invoice `id` (a draft or an issued one with nothing paid left).
pub async fn void(
    store: &EventStore,
    meta: &CommandMeta,
    expect: Expect,
    id: InvoiceId,
    reason: NonEmptyText,
) -> Result<Committed, CommandError<InvoiceError>> {
    store
        .execute::<Invoice>(meta, id.as_uuid(), InvoiceCommand::Void { reason }, expect)
        .await
}

/// The clinic's next invoice number of `year`; its counter row stays locked until the
/// transaction ends.
async fn next_number(
    conn: &mut PgConnection,
    meta: &CommandMeta,
    year: i32,
) -> Result<InvoiceNumber, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "INSERT INTO invoice_counters (clinic_id, year, last_value) VALUES ($1, $2, 1) \
         ON CONFLICT (clinic_id, year) DO UPDATE SET last_value = invoice_counters.last_value + 1 \
         RETURNING last_value",
    )
    .bind(meta.clinic_id.as_uuid())
    .bind(year)
    .fetch_one(conn)
    .await?;
    InvoiceNumber::new(year, n as u64).map_err(|e| StoreError(Box::new(e)))
}
