//! The appointments read model: one row per appointment, with its FHIR status. Its apply
//! function and the appointment queries.

mod apply;
mod queries;

pub use queries::*;

use crate::projection::Projection;

/// The projection of `rm.appointments`.
pub const PROJECTION: Projection = Projection::read_model(
    "appointments",
    &["appointments"],
    Some("Appointment"),
    |schema, conn, events| Box::pin(apply::apply(schema, conn, events)),
);
