//! The `clinic` subcommands.

use crate::config::{CliCommand, DatabaseSettings, Settings};
use crate::db;
use crate::startup::{shutdown_signal, Application, StartupError};

pub async fn run(command: CliCommand) -> Result<(), StartupError> {
    match command {
        CliCommand::Serve(args) => {
            let settings = Settings::from_args(&args)?;
            let app = Application::build(settings).await?;
            app.run_until(shutdown_signal()).await
        }
        CliCommand::Migrate(args) => {
            let settings = DatabaseSettings::from_args(&args)?;
            let database = db::open_and_migrate(&settings).await?;
            tracing::info!(database = %database.describe(), "migrations applied");
            Ok(())
        }
    }
}
