//! End-to-end tests: one binary, one set of helpers. Every test gets its own database, cloned
//! from a migrated template, on a real PostgreSQL (DATABASE_URL, else 127.0.0.1:5432, else a
//! private cluster started for this run).

mod abuse;
mod audit;
mod auth;
mod billing;
mod booking;
mod calendar;
mod chain;
mod cli;
mod clinic_setup;
mod endpoints;
mod event_store;
mod fees;
mod flow;
mod health;
mod helpers;
mod invoice_api;
mod invoices;
mod isolation;
mod metrics;
mod plans;
mod projections;
mod queries;
mod reports;
mod scheduling;
mod security;
mod tenant_writes;
mod write_path;
