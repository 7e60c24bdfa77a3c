//! The `clinic` subcommands.

mod replay;
mod verify;

use std::sync::Arc;

use commands::accounts::{self, PlatformAdminOutcome};
use commands::clinics::{self, NewAdmin, RegisterClinic};
use commands::{Actor, CommandMeta, EventStore};
use domain::ids::ClinicId;
use domain::values::{ClinicCode, Email, NonEmptyText, PersonName, Plan, TimeZone};

use crate::infra::config::{
    AuthSettings, CliCommand, CreateSuperadminArgs, DatabaseSettings, Settings, SetupClinicArgs,
};
use crate::infra::db::{self, Database};
use crate::startup::{jwt_keys, shutdown_signal, Application, StartupError};
use crate::state::AppState;

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
        CliCommand::Serve(args) => {
            let settings = Settings::from_args(&args)?;
            let app = Application::build(settings).await?;
            Ok(app.run_until(shutdown_signal()).await?)
        }
        CliCommand::Migrate(args) => {
            let settings = DatabaseSettings::from_args(&args)?;
            let database = db::open_and_migrate(&settings).await?;
            tracing::info!(database = %database.describe(), "migrations applied");
            Ok(())
        }
        CliCommand::Work(args) => {
            let settings = DatabaseSettings::from_args(&args.database)?;
            let config = args.workers.config()?;
            let database = db::open_and_migrate(&settings).await?;
            let workers = crate::startup::Workers::start(&database, config).await?;
            tracing::info!(database = %database.describe(), "projection workers running");
            shutdown_signal().await;
            workers.stop().await;
            Ok(())
        }
        CliCommand::Rebuild(args) => {
            let settings = DatabaseSettings::from_args(&args.database)?;
            let database = db::open_and_migrate(&settings).await?;
            let mut conn = sqlx::ConnectOptions::connect(&database.owner_options)
                .await
                .map_err(|e| CliError::Refused(format!("DATABASE_URL: {e}")))?;
            let reports = projections::rebuild::rebuild(&mut conn, args.projection.as_deref())
                .await
                .map_err(|e| match e {
                    projections::ProjectionError::UnknownProjection(_) => {
                        invalid("--projection", e)
                    }
                    other => CliError::Refused(other.to_string()),
                })?;
            for r in reports {
                println!(
                    "rebuilt {}: {} events in {:.2} s ({:.0} events/s), at position {}",
                    r.projection,
                    r.events,
                    r.duration.as_secs_f64(),
                    r.events_per_second(),
                    r.position
                );
            }
            Ok(())
        }
        CliCommand::Replay(args) => replay::run(args).await,
        CliCommand::Verify(args) => verify::run(args).await,
        CliCommand::CreateSuperadmin(args) => create_superadmin(args).await,
        CliCommand::SetupClinic(args) => setup_clinic(args).await,
    }
}

/// Opens (and migrates) the database and builds the event store the use cases run on.
pub(crate) async fn open_store(
    args: &crate::infra::config::DatabaseArgs,
) -> Result<(Database, EventStore), CliError> {
    let settings = DatabaseSettings::from_args(args)?;
    let database = db::open_and_migrate(&settings).await?;
    let pool = db::app_pool(&database.owner_options, 2).await?;
    let store = EventStore::new(pool, domain::clock::Services::system());
    Ok((database, store))
}

/// Opens (and migrates) the database and builds the state the handlers use.
pub(crate) async fn open_state(
    args: &crate::infra::config::DatabaseArgs,
) -> Result<(Database, AppState), CliError> {
    let (database, store) = open_store(args).await?;
    let state = AppState {
        clock: store.services().clone(),
        pool: store.pool().clone(),
        store,
        jwt: Arc::new(jwt_keys(&AuthSettings {
            jwt_secret: Some(vec![0; 32]),
            access_ttl: std::time::Duration::from_secs(60),
        })),
    };
    Ok((database, state))
}

pub(crate) fn invalid(flag: &'static str, message: impl ToString) -> CliError {
    CliError::Invalid {
        flag,
        message: message.to_string(),
    }
}

async fn create_superadmin(args: CreateSuperadminArgs) -> Result<(), CliError> {
    let email = Email::parse(&args.email).map_err(|e| invalid("--email", e))?;
    commands::credentials::check_policy(&args.password).map_err(|m| invalid("--password", m))?;
    let (_database, state) = open_state(&args.database).await?;
    let hash = commands::credentials::hash(args.password)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let outcome = accounts::ensure_platform_admin(&state.pool, &email, &hash)
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
    state.pool.close().await;
    Ok(())
}

async fn setup_clinic(args: SetupClinicArgs) -> Result<(), CliError> {
    let name = NonEmptyText::parse(&args.name).map_err(|e| invalid("--name", e))?;
    let code = ClinicCode::parse(&args.code).map_err(|e| invalid("--code", e))?;
    let time_zone = TimeZone::parse(&args.timezone).map_err(|e| invalid("--timezone", e))?;
    let plan: Plan = args.plan.parse().map_err(|e| invalid("--plan", e))?;
    let admin_email = Email::parse(&args.admin_email).map_err(|e| invalid("--admin-email", e))?;
    let admin_name = PersonName::parse(&args.admin_name).map_err(|e| invalid("--admin-name", e))?;
    commands::credentials::check_policy(&args.admin_password)
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
            let hash = commands::credentials::hash(args.admin_password)
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
