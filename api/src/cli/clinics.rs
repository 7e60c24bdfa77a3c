//! `clinic clinics list|suspend|reactivate|set-plan`: the platform admin's clinic commands
//! (`GET /v1/clinics`, `POST /v1/clinics/{id}/suspend`, `/reactivate`,
//! `PUT /v1/clinics/{id}/plan`) for an operator at the command line. A clinic is named by its
//! code. The events record the system as their actor and `cli:clinics <subcommand>` as their
//! request; the answers are the API's, one line each.

use clap::{Args, Subcommand};
use commands::{Actor, CommandMeta, EventStore, Expect};
use domain::clinic::{Clinic, ClinicCommand};
use domain::ids::ClinicId;
use domain::values::{ClinicCode, NonEmptyText, Plan};

use super::{invalid, open_store, CliError};
use crate::infra::config::DatabaseArgs;

#[derive(Debug, Args)]
pub struct ClinicsArgs {
    #[command(subcommand)]
    pub command: ClinicsCommand,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
pub enum ClinicsCommand {
    /// Every clinic: code, plan, status, trial end, counts and name, one line each.
    List,
    /// Suspend a clinic: its users can no longer log in, refresh or issue commands.
    Suspend {
        #[arg(long)]
        code: String,
        #[arg(long)]
        reason: String,
    },
    /// Reactivate a suspended clinic.
    Reactivate {
        #[arg(long)]
        code: String,
    },
    /// Put a clinic on another plan: basic, professional or enterprise.
    SetPlan {
        #[arg(long)]
        code: String,
        #[arg(long)]
        plan: String,
        /// Why, for the clinic's history.
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(args: ClinicsArgs) -> Result<(), CliError> {
    // Every flag is checked before the database is opened.
    let (code, command, name) = match args.command {
        ClinicsCommand::List => {
            let (_database, store) = open_store(&args.database).await?;
            let list = projections::clinics::platform_clinics(store.pool())
                .await
                .map_err(|e| CliError::Refused(e.to_string()))?;
            for c in list.items {
                let trial = c
                    .trial_ends_at
                    .map(|t| format!("trial ends {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\t{}\t{}\tstaff {}\tpatients {}\tappointments {}\t{}\t{}",
                    c.code,
                    c.plan,
                    c.status,
                    trial,
                    c.staff_count,
                    c.patient_count,
                    c.appointment_count,
                    c.name,
                    c.clinic_id
                );
            }
            store.pool().close().await;
            return Ok(());
        }
        ClinicsCommand::Suspend { code, reason } => {
            let reason = NonEmptyText::parse(&reason).map_err(|e| invalid("--reason", e))?;
            (code, ClinicCommand::Suspend { reason }, "suspend")
        }
        ClinicsCommand::Reactivate { code } => (code, ClinicCommand::Reactivate, "reactivate"),
        ClinicsCommand::SetPlan { code, plan, reason } => {
            let plan: Plan = plan.parse().map_err(|e| invalid("--plan", e))?;
            let reason = NonEmptyText::parse(&reason).map_err(|e| invalid("--reason", e))?;
            (code, ClinicCommand::ChangePlan { plan, reason }, "set-plan")
        }
    };
    let code = ClinicCode::parse(&code).map_err(|e| invalid("--code", e))?;
    let (_database, store) = open_store(&args.database).await?;
    let result = on_clinic(&store, &code, command, name).await;
    store.pool().close().await;
    let version = result?;
    println!("clinic {code}: {name} done (version {version})");
    Ok(())
}

async fn on_clinic(
    store: &EventStore,
    code: &ClinicCode,
    command: ClinicCommand,
    name: &str,
) -> Result<u64, CliError> {
    let clinic: ClinicId = commands::registry::clinic_by_code(store.pool(), code)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?
        .ok_or_else(|| invalid("--code", format!("no clinic has the code {code}")))?;
    let meta = CommandMeta::new(clinic, Actor::system(), format!("cli:clinics {name}"));
    let committed = store
        .execute::<Clinic>(&meta, clinic.as_uuid(), command, Expect::Any)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?;
    Ok(committed.version)
}
