//! `clinic create-superadmin` and `clinic setup-clinic`: the accounts an installation starts
//! with. Both are idempotent.

use clap::Args;
use commands::accounts::{self, PlatformAdminOutcome};
use commands::clinics::{self, NewAdmin, RegisterClinic};
use commands::{Actor, CommandMeta};
use domain::ids::ClinicId;
use domain::values::{ClinicCode, Email, NonEmptyText, PersonName, Plan, TimeZone};

use crate::infra::config::DatabaseArgs;

use super::{invalid, open_pool, open_store, CliError};

#[derive(Debug, Clone, Args)]
pub struct CreateSuperadminArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long)]
    pub email: String,
    /// Prefer the environment variable: a flag is visible to other users in `ps`.
    #[arg(long, env = "CLINIC_SUPERADMIN_PASSWORD", hide_env_values = true)]
    pub password: String,
}

#[derive(Debug, Clone, Args)]
pub struct SetupClinicArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[arg(long)]
    pub name: String,
    /// Unique clinic code: 2–32 lowercase letters, digits and `-`.
    #[arg(long)]
    pub code: String,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: String,
    /// trial, basic, professional or enterprise (a trial ends 30 days after the registration).
    #[arg(long, default_value = "trial")]
    pub plan: String,
    #[arg(long)]
    pub admin_email: String,
    #[arg(long, default_value = "Clinic Admin")]
    pub admin_name: String,
    /// Prefer the environment variable: a flag is visible to other users in `ps`.
    #[arg(long, env = "CLINIC_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
}

pub async fn create_superadmin(args: CreateSuperadminArgs) -> Result<(), CliError> {
    let email = Email::parse(&args.email).map_err(|e| invalid("--email", e))?;
    commands::accounts::credentials::check_policy(&args.password)
        .map_err(|m| invalid("--password", m))?;
    let (_database, pool) = open_pool(&args.database).await?;
    let hash = commands::accounts::credentials::hash(args.password)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let outcome = accounts::ensure_platform_admin(&pool, &email, &hash)
        .await
        .map_err(|e| match e {
            accounts::PlatformAdminError::EmailIsStaff(_) => invalid("--email", e),
            other => CliError::Refused(other.to_string()),
        })?;
    match outcome {
        PlatformAdminOutcome::Created(id) => println!("created platform admin {email} ({id})"),
        PlatformAdminOutcome::PasswordUpdated(id) => {
            println!(
                "platform admin {email} ({id}) already existed; its password is now the one given"
            )
        }
    }
    pool.close().await;
    Ok(())
}

pub async fn setup_clinic(args: SetupClinicArgs) -> Result<(), CliError> {
    let name = NonEmptyText::parse(&args.name).map_err(|e| invalid("--name", e))?;
    let code = ClinicCode::parse(&args.code).map_err(|e| invalid("--code", e))?;
    let time_zone = TimeZone::parse(&args.timezone).map_err(|e| invalid("--timezone", e))?;
    let plan: Plan = args.plan.parse().map_err(|e| invalid("--plan", e))?;
    let admin_email = Email::parse(&args.admin_email).map_err(|e| invalid("--admin-email", e))?;
    let admin_name = PersonName::parse(&args.admin_name).map_err(|e| invalid("--admin-name", e))?;
    commands::accounts::credentials::check_policy(&args.admin_password)
        .map_err(|m| invalid("--admin-password", m))?;
    let (_database, store) = open_store(&args.database).await?;
    let refused = |e: &dyn std::error::Error| CliError::Refused(e.to_string());

    let existing = commands::registry::clinic_by_code(store.pool(), &code)
        .await
        .map_err(|e| refused(&e))?;
    let account = accounts::find_by_email(store.pool(), admin_email.as_str())
        .await
        .map_err(|e| refused(&e))?;
    match (existing, account) {
        (Some(clinic_id), Some(account)) if account.clinic_id == Some(clinic_id.as_uuid()) => {
            println!("clinic {code} ({clinic_id}) is already set up with admin {admin_email}; nothing to do");
        }
        (_, Some(account)) => {
            return Err(invalid(
                "--admin-email",
                format!(
                    "{admin_email} already belongs to another account ({}); choose another e-mail",
                    account.role
                ),
            ));
        }
        (Some(clinic_id), None) => {
            // A clinic without this admin (e.g. a setup that stopped half way): add the admin.
            let hash = commands::accounts::credentials::hash(args.admin_password)
                .await
                .map_err(|e| refused(&e))?;
            let meta = CommandMeta::new(clinic_id, Actor::system(), "cli:setup-clinic");
            clinics::hire_admin(&store, &meta, admin_name, admin_email.clone(), hash)
                .await
                .map_err(|e| refused(&e))?;
            println!(
                "clinic {code} ({clinic_id}) already existed; added clinic admin {admin_email}"
            );
        }
        (None, None) => {
            let clinic_id = ClinicId::new();
            let meta = CommandMeta::new(clinic_id, Actor::system(), "cli:setup-clinic");
            let admin = NewAdmin {
                name: admin_name,
                email: admin_email.clone(),
                password: args.admin_password,
            };
            let req = RegisterClinic {
                name,
                code: code.clone(),
                time_zone,
                plan,
                admin,
            };
            clinics::register_with_admin(&store, &meta, req)
                .await
                .map_err(|e| refused(&e))?;
            println!("created clinic {code} ({clinic_id}) with clinic admin {admin_email}");
        }
    }
    store.pool().close().await;
    Ok(())
}
