//! Patients: register (the clinic assigns the MRN), update demographics, merge, deactivate.

use axum::response::Response;
use chrono::NaiveDate;
use commands::patients::{self, Register};
use domain::ids::PatientId;
use domain::patient::{Patient, PatientCommand};
use domain::values::{
    Address, Allergy, Email, EmergencyContact, Insurance, NonEmptyText, PatientName, Phone, Sex,
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::Command;
use crate::problem::ApiError;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(update))
        .routes(routes!(merge))
        .routes(routes!(deactivate))
}

/// Documentation shapes of the nested patient values (the domain types parse them).
pub mod schema {
    use utoipa::ToSchema;

    #[allow(dead_code)]
    #[derive(ToSchema)]
    pub struct Name {
        #[schema(example = "Ada")]
        pub given: String,
        #[schema(example = "Lovelace")]
        pub family: String,
    }

    #[allow(dead_code)]
    #[derive(ToSchema)]
    pub struct Address {
        /// Up to 4 lines.
        pub lines: Vec<String>,
        pub city: Option<String>,
        pub postal_code: Option<String>,
        pub country: Option<String>,
    }

    #[allow(dead_code)]
    #[derive(ToSchema)]
    pub struct EmergencyContact {
        pub name: String,
        pub phone: String,
        pub relationship: String,
    }

    #[allow(dead_code)]
    #[derive(ToSchema)]
    pub struct Insurance {
        pub provider: String,
        pub policy_number: String,
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterPatient {
    #[schema(value_type = schema::Name)]
    pub name: PatientName,
    pub birth_date: NaiveDate,
    /// `male`, `female`, `other` or `unknown` (FHIR AdministrativeGender).
    #[schema(value_type = String, example = "female")]
    pub sex: Sex,
    #[schema(value_type = Option<String>, example = "+49 30 1234567")]
    pub phone: Option<Phone>,
    #[schema(value_type = Option<String>)]
    pub email: Option<Email>,
    #[schema(value_type = Option<schema::Address>)]
    pub address: Option<Address>,
    #[schema(value_type = Option<schema::EmergencyContact>)]
    pub emergency_contact: Option<EmergencyContact>,
    #[schema(value_type = Option<schema::Insurance>)]
    pub insurance: Option<Insurance>,
    /// At most 50.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub allergies: Vec<Allergy>,
}

/// Fields to change; absent fields stay as they are. `allergies` replaces the list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePatient {
    #[schema(value_type = Option<schema::Name>)]
    pub name: Option<PatientName>,
    pub birth_date: Option<NaiveDate>,
    #[schema(value_type = Option<String>)]
    pub sex: Option<Sex>,
    #[schema(value_type = Option<String>)]
    pub phone: Option<Phone>,
    #[schema(value_type = Option<String>)]
    pub email: Option<Email>,
    #[schema(value_type = Option<schema::Address>)]
    pub address: Option<Address>,
    #[schema(value_type = Option<schema::EmergencyContact>)]
    pub emergency_contact: Option<EmergencyContact>,
    #[schema(value_type = Option<schema::Insurance>)]
    pub insurance: Option<Insurance>,
    #[schema(value_type = Option<Vec<String>>)]
    pub allergies: Option<Vec<Allergy>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergePatient {
    /// The surviving record (same clinic, active); this record will point at it.
    pub into: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivatePatient {
    #[schema(value_type = Option<String>)]
    pub reason: Option<NonEmptyText>,
}

impl From<RegisterPatient> for Register {
    fn from(req: RegisterPatient) -> Self {
        Register {
            name: req.name,
            birth_date: req.birth_date,
            sex: req.sex,
            phone: req.phone,
            email: req.email,
            address: req.address,
            emergency_contact: req.emergency_contact,
            insurance: req.insurance,
            allergies: req.allergies,
        }
    }
}

impl From<UpdatePatient> for PatientCommand {
    fn from(req: UpdatePatient) -> Self {
        PatientCommand::UpdateDemographics {
            name: req.name,
            birth_date: req.birth_date,
            sex: req.sex,
            phone: req.phone,
            email: req.email,
            address: req.address,
            emergency_contact: req.emergency_contact,
            insurance: req.insurance,
            allergies: req.allergies,
        }
    }
}

/// Register a patient. The clinic assigns the MRN.
#[utoipa::path(post, path = "/v1/patients", tag = "patients", request_body = RegisterPatient,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Registered; `Location` names the patient", body = CommandAccepted), CommandProblems))]
async fn register(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(
        roles::PATIENT_DESK,
        |req: RegisterPatient, ctx| async move {
            let meta = ctx.meta()?;
            let registered = patients::register(ctx.store(), &meta, ctx.expect, req.into()).await?;
            let (id, committed) = (registered.patient_id, &registered.committed);
            Ok(CommandResponse::created_in("/v1/patients", id, committed))
        },
    )
    .await
}

/// Update a patient's demographics. Doctors may do this too.
#[utoipa::path(patch, path = "/v1/patients/{id}", tag = "patients", request_body = UpdatePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PATIENT_DEMOGRAPHICS, |req: UpdatePatient, ctx| {
        ctx.update::<Patient>(req.into())
    })
    .await
}

/// Merge a duplicate record into the surviving one (FHIR `Patient.link` replaced-by).
#[utoipa::path(post, path = "/v1/patients/{id}/merge", tag = "patients", request_body = MergePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "The duplicate's id")),
    responses((status = 200, description = "Merged", body = CommandAccepted), CommandProblems))]
async fn merge(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PATIENT_DESK, |req: MergePatient, ctx| async move {
        let (meta, into) = (ctx.meta()?, PatientId::from_uuid(req.into));
        let committed = patients::merge(ctx.store(), &meta, ctx.expect, ctx.id(), into).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Deactivate a patient.
#[utoipa::path(post, path = "/v1/patients/{id}/deactivate", tag = "patients", request_body = DeactivatePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Deactivated", body = CommandAccepted), CommandProblems))]
async fn deactivate(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PATIENT_DESK, |req: DeactivatePatient, ctx| {
        ctx.update::<Patient>(PatientCommand::Deactivate { reason: req.reason })
    })
    .await
}
