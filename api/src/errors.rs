//! How the errors of the layers below become an [`ApiError`]: one `From` impl each, so a
//! handler writes `?` and never maps an error by hand.

use std::convert::Infallible;

use commands::appointments::BookingError;
use commands::clinics::ClinicsError;
use commands::fees::FeesError;
use commands::modules::ModuleError;
use commands::patients::PatientsError;
use commands::staff::StaffingError;
use commands::{Busy, CommandError, StoreError};
use domain::error::DomainError;

use crate::problem::{ApiError, ConflictingRange};

impl<E> From<CommandError<E>> for ApiError
where
    E: DomainError + Send + Sync + 'static,
{
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Domain(e) => ApiError::from_domain(&e),
            CommandError::Concurrency => ApiError::Conflict {
                slug: "concurrent-update",
                detail: "The record was changed by a concurrent request; retry.".into(),
                field: None,
            },
            CommandError::VersionMismatch { expected, actual } => {
                ApiError::PreconditionFailed { expected, actual }
            }
            CommandError::ClinicCodeTaken => ApiError::Conflict {
                slug: "clinic-code-taken",
                detail: "The clinic code is already registered.".into(),
                field: Some("code".into()),
            },
            CommandError::MrnTaken => ApiError::Conflict {
                slug: "mrn-taken",
                detail: "The MRN is already assigned in this clinic; retry.".into(),
                field: None,
            },
            CommandError::EmailTaken => email_taken("email"),
            CommandError::SlotTaken { busy, conflicts } => ApiError::SlotTaken {
                detail: match busy {
                    Busy::Doctor => "The doctor already has an appointment at that time.",
                    Busy::Patient => "The patient already has an appointment at that time.",
                }
                .into(),
                conflicts: conflicts
                    .into_iter()
                    .map(|c| ConflictingRange {
                        start: c.start,
                        end: c.end,
                    })
                    .collect(),
            },
            CommandError::OverLimit(over) => ApiError::PlanLimit(over),
            CommandError::Store(e) => e.into(),
        }
    }
}

fn email_taken(field: &str) -> ApiError {
    ApiError::Conflict {
        slug: "email-taken",
        detail: "The e-mail address already belongs to an account.".into(),
        field: Some(field.into()),
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::internal(err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::internal(err)
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        ApiError::internal(err)
    }
}

impl From<jsonwebtoken::errors::Error> for ApiError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        ApiError::internal(err)
    }
}

impl From<domain::replay::ReplayError> for ApiError {
    fn from(err: domain::replay::ReplayError) -> Self {
        ApiError::internal(err)
    }
}

impl From<commands::accounts::LogInError> for ApiError {
    fn from(err: commands::accounts::LogInError) -> Self {
        use commands::accounts::LogInError;
        match err {
            LogInError::BadCredentials => ApiError::Unauthorized(err.to_string()),
            LogInError::LockedOut { retry_after_secs } => ApiError::TooManyRequests {
                retry_after_secs,
                detail: "Too many failed log-ins for this e-mail; try again later.".into(),
            },
            LogInError::ClientLockedOut { retry_after_secs } => ApiError::TooManyRequests {
                retry_after_secs,
                detail: "Too many failed log-ins from this address; try again later.".into(),
            },
            LogInError::Busy => ApiError::TooManyRequests {
                retry_after_secs: 1,
                detail: "Too many log-ins are being checked right now; try again in a second."
                    .into(),
            },
            LogInError::ClinicSuspended => ApiError::ClinicSuspended,
            LogInError::Store(e) => e.into(),
        }
    }
}

impl From<Infallible> for ApiError {
    fn from(err: Infallible) -> Self {
        match err {}
    }
}

/// A field error naming `field`, or `otherwise` with the message for the errors about no
/// field.
fn field_or(
    field: Option<&'static str>,
    e: &impl ToString,
    otherwise: fn(String) -> ApiError,
) -> ApiError {
    match field {
        Some(field) => ApiError::field(field, e.to_string()),
        None => otherwise(e.to_string()),
    }
}

impl From<BookingError> for ApiError {
    fn from(err: BookingError) -> Self {
        match err {
            BookingError::Command(e) => e.into(),
            BookingError::Store(e) => e.into(),
            BookingError::AppointmentNotFound | BookingError::ClinicNotFound => {
                ApiError::NotFound(err.to_string())
            }
            e if e.is_forbidden() => ApiError::Forbidden(e.to_string()),
            e => field_or(e.field(), &e, ApiError::BadRequest),
        }
    }
}

impl From<PatientsError> for ApiError {
    fn from(err: PatientsError) -> Self {
        match err {
            PatientsError::Command(e) => e.into(),
            PatientsError::Store(e) => e.into(),
            e => field_or(e.field(), &e, ApiError::NotFound),
        }
    }
}

impl From<StaffingError> for ApiError {
    fn from(err: StaffingError) -> Self {
        match err {
            StaffingError::Command(e) => e.into(),
            StaffingError::Store(e) => e.into(),
            StaffingError::LastClinicAdmin => ApiError::Conflict {
                slug: "last-clinic-admin",
                detail: format!("{}. Nothing was written.", StaffingError::LastClinicAdmin),
                field: None,
            },
            e => field_or(e.field(), &e, ApiError::BadRequest),
        }
    }
}

impl From<ClinicsError> for ApiError {
    fn from(err: ClinicsError) -> Self {
        match err {
            ClinicsError::Clinic(e) => e.into(),
            ClinicsError::Admin(e) => e.into(),
            ClinicsError::Store(e) => e.into(),
            ClinicsError::AdminEmailTaken => email_taken("admin.email"),
            e => field_or(e.field(), &e, ApiError::BadRequest),
        }
    }
}

impl From<FeesError> for ApiError {
    fn from(err: FeesError) -> Self {
        if let Some(field) = err.field() {
            return ApiError::field(field, err.to_string());
        }
        match err {
            FeesError::Command(e) => e.into(),
            FeesError::Store(e) => e.into(),
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<ModuleError> for ApiError {
    fn from(err: ModuleError) -> Self {
        match err {
            ModuleError::FeeScheduleMissing => ApiError::Conflict {
                slug: "fee-schedule-required",
                detail: "Billing prices every visit by the fee schedule: set it first \
                         (PUT /v1/clinic/fees). Nothing was written."
                    .into(),
                field: None,
            },
            ModuleError::Command(e) => e.into(),
            ModuleError::Store(e) => e.into(),
        }
    }
}
