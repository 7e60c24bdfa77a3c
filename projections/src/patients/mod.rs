//! The patients read model: one row per patient record. Its apply function, patient search and
//! the whole record.

mod apply;
mod queries;

pub use apply::fold_expression;
pub use queries::*;

use crate::projection::Projection;

/// The projection of `rm.patients` (and its registrations per 15-minute bucket).
pub const PROJECTION: Projection = Projection::read_model(
    "patients",
    &["patients", "patient_registrations"],
    Some("Patient"),
    |schema, conn, events| Box::pin(apply::apply(schema, conn, events)),
);
