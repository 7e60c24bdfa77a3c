//! The invoices read model (issue 14): one row per invoice with its status, number, amounts
//! and lines, and one row per payment or refund. Its apply function and the invoice queries
//! (lists, one invoice, a patient's balance, the platform's per-clinic totals); the dashboard's
//! billing figures are in [`crate::dashboard`].

mod apply;
mod queries;

pub use queries::*;

use crate::projection::Projection;

/// The projection of `rm.invoices` and `rm.invoice_payments`.
pub const PROJECTION: Projection = Projection::read_model(
    "invoices",
    &["invoices", "invoice_payments"],
    Some("Invoice"),
    |schema, conn, events| Box::pin(apply::apply(schema, conn, events)),
);
