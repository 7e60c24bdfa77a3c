//! The `clinic` binary's subcommands: the command line ([`Cli`]) and one module per group of
//! subcommands.
//!
//! | subcommands | module |
//! | --- | --- |
//! | `serve`, `work`, `migrate` | [`serve`] |
//! | `rebuild` | [`rebuild`] |
//! | `replay` | [`replay`] |
//! | `verify` | [`verify`] |
//! | `create-superadmin`, `setup-clinic` | [`accounts`] |
//! | `clinics list`, `suspend`, `reactivate`, `set-plan` | [`clinics`] |
//!
//! The flags and variables the subcommands share (database, server, workers) are in
//! [`crate::infra::config`].

pub mod accounts;
pub mod billing;
pub mod clinics;
pub mod rebuild;
pub mod replay;
pub mod serve;
pub mod verify;

use clap::{Parser, Subcommand};
use commands::EventStore;
use sqlx::PgPool;

use crate::infra::config::{DatabaseArgs, DatabaseSettings, ServeArgs};
use crate::infra::db::{self, Database};
use crate::startup::StartupError;

use self::accounts::{CreateSuperadminArgs, SetupClinicArgs};
use self::billing::BillingArgs;
use self::clinics::ClinicsArgs;
use self::rebuild::RebuildArgs;
use self::replay::ReplayArgs;
use self::serve::WorkArgs;
use self::verify::VerifyArgs;

#[derive(Debug, Parser)]
#[command(
    name = "clinic",
    version,
    about = "Multi-tenant clinic management backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Serve the HTTP API (applies pending migrations first unless CLINIC_MIGRATE_ON_START=0).
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Run the projection workers only (no HTTP), until Ctrl-C / SIGTERM.
    Work(WorkArgs),
    /// Rebuild read models from position zero into fresh tables, then swap them in.
    Rebuild(RebuildArgs),
    /// Export a clinic's event history as NDJSON, or (--check) replay every aggregate and
    /// compare it with the read models.
    Replay(ReplayArgs),
    /// Recompute a clinic's hash chain and report the first altered position, or "intact".
    Verify(VerifyArgs),
    /// Create (or reset the password of) a platform admin. Idempotent.
    CreateSuperadmin(CreateSuperadminArgs),
    /// Register a clinic with its first clinic admin. Idempotent: a clinic that exists with
    /// that code is left as it is, and a missing admin is added.
    SetupClinic(SetupClinicArgs),
    /// The platform's clinics: list them, suspend, reactivate, change a plan.
    Clinics(ClinicsArgs),
    /// Billing: backfill the invoices of visits completed while billing was off.
    Billing(BillingArgs),
}

/// A CLI failure: one line that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("{flag}: {message}")]
    Invalid { flag: &'static str, message: String },
    #[error("{0}")]
    Refused(String),
}

impl From<crate::infra::config::ConfigError> for CliError {
    fn from(e: crate::infra::config::ConfigError) -> Self {
        CliError::Startup(e.into())
    }
}

impl From<db::DbError> for CliError {
    fn from(e: db::DbError) -> Self {
        CliError::Startup(e.into())
    }
}

pub async fn run(command: CliCommand) -> Result<(), CliError> {
    match command {
        CliCommand::Serve(args) => serve::serve(args).await,
        CliCommand::Migrate(args) => serve::migrate(args).await,
        CliCommand::Work(args) => serve::work(args).await,
        CliCommand::Rebuild(args) => rebuild::run(args).await,
        CliCommand::Replay(args) => replay::run(args).await,
        CliCommand::Verify(args) => verify::run(args).await,
        CliCommand::CreateSuperadmin(args) => accounts::create_superadmin(args).await,
        CliCommand::SetupClinic(args) => accounts::setup_clinic(args).await,
        CliCommand::Clinics(args) => clinics::run(args).await,
        CliCommand::Billing(args) => billing::run(args).await,
    }
}

/// Opens (and migrates) the database and a small pool on it. Keep the [`Database`] while the
/// pool is in use: it owns the private cluster, if one was started.
pub(crate) async fn open_pool(args: &DatabaseArgs) -> Result<(Database, PgPool), CliError> {
    let settings = DatabaseSettings::from_args(args)?;
    let database = db::open_and_migrate(&settings).await?;
    let pool = db::app_pool(&database.app_login(), 2).await?;
    Ok((database, pool))
}

/// Opens (and migrates) the database and builds the event store the use cases run on.
pub(crate) async fn open_store(args: &DatabaseArgs) -> Result<(Database, EventStore), CliError> {
    let (database, pool) = open_pool(args).await?;
    let store = EventStore::new(pool, domain::clock::Services::system());
    Ok((database, store))
}

pub(crate) fn invalid(flag: &'static str, message: impl ToString) -> CliError {
    CliError::Invalid {
        flag,
        message: message.to_string(),
    }
}
