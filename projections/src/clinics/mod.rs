//! The clinics read model: one row per clinic, with its departments and the counts the platform
//! admin sees. Its apply function, the clinic's own view and the platform's views.

mod apply;
mod queries;

pub use queries::*;

use crate::projection::Projection;

/// The projection of `rm.clinics`.
pub const PROJECTION: Projection =
    Projection::read_model("clinics", &["clinics"], None, |schema, conn, event| {
        Box::pin(apply::apply(schema, conn, event))
    });
