//! The HTTP API and the `clinic` binary's building blocks.

pub mod access_log;
pub mod audit_streams;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod errors;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod infra;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod problem;
pub mod query;
pub mod read;
pub mod roles;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
