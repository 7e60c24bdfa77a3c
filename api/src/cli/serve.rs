//! `clinic serve`, `clinic work` and `clinic migrate`.

use clap::Args;

use crate::infra::config::{DatabaseArgs, DatabaseSettings, ServeArgs, Settings, WorkerArgs};
use crate::infra::db;
use crate::startup::{shutdown_signal, Application, Workers};

use super::CliError;

#[derive(Debug, Clone, Args)]
pub struct WorkArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub workers: WorkerArgs,
}

/// Serves the HTTP API until Ctrl-C / SIGTERM.
pub async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let settings = Settings::from_args(&args)?;
    let app = Application::build(settings).await?;
    Ok(app.run_until(shutdown_signal()).await?)
}

/// Applies the migrations and exits.
pub async fn migrate(args: DatabaseArgs) -> Result<(), CliError> {
    let settings = DatabaseSettings::from_args(&args)?;
    let database = db::open_and_migrate(&settings).await?;
    tracing::info!(database = %database.describe(), "migrations applied");
    Ok(())
}

/// Runs the projection workers (no HTTP) until Ctrl-C / SIGTERM.
pub async fn work(args: WorkArgs) -> Result<(), CliError> {
    let settings = DatabaseSettings::from_args(&args.database)?;
    let config = projections::worker::WorkerConfig {
        // The billing process manager runs with the workers, as in `serve`.
        billing: Some(crate::billing::config(domain::clock::Services::system())),
        ..args.workers.config()?
    };
    let database = db::open_and_migrate(&settings).await?;
    let workers = Workers::start(&database, config).await?;
    tracing::info!(database = %database.describe(), "projection workers running");
    shutdown_signal().await;
    workers.stop().await;
    Ok(())
}
