//! `clinic rebuild [--projection NAME] [--writers N] [--batch-size N]`: rebuilds read models
//! from position zero into fresh tables, then swaps them in.

use clap::Args;

use crate::infra::config::{DatabaseArgs, DatabaseSettings};
use crate::infra::db;

use super::{invalid, CliError};

#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only this projection (clinics, staff, patients, appointments); default all.
    #[arg(long)]
    pub projection: Option<String>,
    /// Connections that write the rebuilt tables, each a share of the streams (1–16). One
    /// more reads the log ahead of them.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub writers: u8,
    /// Events read and applied per batch (1–100,000). A batch's events and rows are held in
    /// memory while it is written; larger batches mean fewer statements.
    #[arg(long, default_value_t = projections::rebuild::BATCH,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,
}

pub async fn run(args: RebuildArgs) -> Result<(), CliError> {
    let settings = DatabaseSettings::from_args(&args.database)?;
    let database = db::open_and_migrate(&settings).await?;
    // One connection writes (and swaps); another reads the log ahead of it; the other writers
    // write a share of each batch beside the first.
    let connect = || async {
        sqlx::ConnectOptions::connect(&database.owner_options)
            .await
            .map_err(|e| CliError::Refused(format!("DATABASE_URL: {e}")))
    };
    let mut conn = connect().await?;
    let mut writers = Vec::new();
    for _ in 1..args.writers {
        writers.push(connect().await?);
    }
    let helpers = projections::rebuild::Helpers {
        reader: Some(connect().await?),
        writers,
    };
    let reports = projections::rebuild::rebuild_with(
        &mut conn,
        helpers,
        args.projection.as_deref(),
        args.batch_size,
    )
    .await
    .map_err(|e| match e {
        projections::ProjectionError::UnknownProjection(_) => invalid("--projection", e),
        other => CliError::Refused(other.to_string()),
    })?;
    for r in &reports {
        println!(
            "rebuilt {}: {} events in {:.2} s ({:.0} events/s), at position {}; {} of them its own, \
             written in {:.2} s",
            r.projection,
            r.events,
            r.duration.as_secs_f64(),
            r.events_per_second(),
            r.position,
            r.applied,
            r.apply_time.as_secs_f64()
        );
    }
    Ok(())
}
