//! The HTTP API and the `clinic` binary's building blocks.

pub mod cli;
pub mod config;
pub mod db;
pub mod embedded_pg;
pub mod health;
pub mod problem;
pub mod startup;
pub mod telemetry;
