//! The staff read model: one row per staff member, with working hours and time off. Its apply
//! function and the roster queries.

mod apply;
mod queries;

pub use queries::*;

use crate::projection::Projection;

/// The projection of `rm.staff`.
pub const PROJECTION: Projection =
    Projection::read_model("staff", &["staff"], Some("Staff"), |schema, conn, event| {
        Box::pin(apply::apply(schema, conn, event))
    });
