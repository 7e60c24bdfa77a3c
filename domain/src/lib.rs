//! Pure clinic domain model: aggregates, their commands and events, value types
//! and invariants. No IO, no async runtime, no SQL.
//!
//! Every aggregate uses [`clock::Services`] as its cqrs-es `Services`, so the
//! current time is always injected (and fixed in tests).

pub mod appointment;
pub mod clinic;
pub mod clock;
pub mod error;
pub mod ids;
pub mod patient;
pub mod replay;
pub mod schedule;
pub mod staff;
pub mod values;

#[cfg(test)]
pub(crate) mod testing;
