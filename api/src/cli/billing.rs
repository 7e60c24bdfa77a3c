//! `clinic billing backfill --clinic CODE`: issues the draft invoices the billing process
//! manager did not issue because billing was off when the visits were completed (each priced
//! with the fee schedule as it stood at its completion). Appointments already invoiced are
//! left as they are, so running it twice issues nothing the second time. Billing must be on.

use clap::{Args, Subcommand};
use domain::ids::ClinicId;
use domain::values::ClinicCode;

use super::{invalid, open_store, CliError};
use crate::infra::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct BillingArgs {
    #[command(subcommand)]
    pub command: BillingCommand,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Issue the missing invoices of a clinic's completed visits (and charged no-shows),
    /// including those of a time billing was off.
    Backfill {
        /// The clinic's code.
        #[arg(long)]
        clinic: String,
    },
}

pub async fn run(args: BillingArgs) -> Result<(), CliError> {
    let BillingCommand::Backfill { clinic } = args.command;
    let code = ClinicCode::parse(&clinic).map_err(|e| invalid("--clinic", e))?;
    let (_database, store) = open_store(&args.database).await?;
    let result = backfill(&store, &code).await;
    store.pool().close().await;
    let done = result?;
    println!(
        "clinic {code}: {} visits and no-shows read, {} invoices issued, {} already invoiced, {} not billed",
        done.considered,
        done.issued,
        done.already_issued,
        done.skipped.len()
    );
    for (appointment, skip) in done.skipped {
        println!("not billed\t{appointment}\t{}", skip.as_str());
    }
    Ok(())
}

async fn backfill(
    store: &commands::EventStore,
    code: &ClinicCode,
) -> Result<commands::billing::Backfilled, CliError> {
    let clinic: ClinicId = commands::registry::clinic_by_code(store.pool(), code)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?
        .ok_or_else(|| invalid("--clinic", format!("no clinic has the code {code}")))?;
    commands::billing::backfill(store, clinic)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))
}
