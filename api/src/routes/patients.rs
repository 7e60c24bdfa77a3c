//! Patients: register (the clinic assigns the MRN), update demographics, merge, deactivate.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
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
use crate::auth::Principal;
use crate::http::{CommandAccepted, CommandRequest, CommandResponse, IdPath, JsonBody};
use crate::problem::ApiError;
use crate::startup::AppState;

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

async fn execute(
    state: &AppState,
    principal: &Principal,
    cmd: &CommandRequest,
    id: Uuid,
    command: PatientCommand,
) -> Result<CommandResponse, ApiError> {
    let committed = state
        .store
        .execute::<Patient>(&principal.meta()?, id, command, cmd.expect)
        .await
        .map_err(ApiError::from_command)?;
    Ok(CommandResponse::updated(id, &committed))
}

/// Register a patient. The clinic assigns the MRN.
#[utoipa::path(post, path = "/v1/patients", tag = "patients", request_body = RegisterPatient,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Registered; `Location` names the patient", body = CommandAccepted), CommandProblems))]
async fn register(
    State(state): State<AppState>,
    principal: Principal,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PATIENT_DESK)?;
    cmd.run(&state, &principal, &body, async {
        let req: RegisterPatient = body.parse()?;
        let meta = principal.meta()?;
        let mrn = commands::registry::next_mrn(&state.pool, meta.clinic_id)
            .await
            .map_err(ApiError::internal)?;
        let patient_id = PatientId::new();
        let committed = state
            .store
            .execute::<Patient>(
                &meta,
                patient_id.as_uuid(),
                PatientCommand::Register {
                    patient_id,
                    clinic_id: meta.clinic_id,
                    mrn,
                    name: req.name,
                    birth_date: req.birth_date,
                    sex: req.sex,
                    phone: req.phone,
                    email: req.email,
                    address: req.address,
                    emergency_contact: req.emergency_contact,
                    insurance: req.insurance,
                    allergies: req.allergies,
                },
                cmd.expect,
            )
            .await
            .map_err(ApiError::from_command)?;
        Ok(CommandResponse::created(
            patient_id.as_uuid(),
            format!("/v1/patients/{patient_id}"),
            &committed,
        ))
    })
    .await
}

/// Update a patient's demographics. Doctors may do this too.
#[utoipa::path(patch, path = "/v1/patients/{id}", tag = "patients", request_body = UpdatePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PATIENT_DEMOGRAPHICS)?;
    cmd.run(&state, &principal, &body, async {
        let req: UpdatePatient = body.parse()?;
        let command = PatientCommand::UpdateDemographics {
            name: req.name,
            birth_date: req.birth_date,
            sex: req.sex,
            phone: req.phone,
            email: req.email,
            address: req.address,
            emergency_contact: req.emergency_contact,
            insurance: req.insurance,
            allergies: req.allergies,
        };
        execute(&state, &principal, &cmd, id, command).await
    })
    .await
}

/// Merge a duplicate record into the surviving one (FHIR `Patient.link` replaced-by).
#[utoipa::path(post, path = "/v1/patients/{id}/merge", tag = "patients", request_body = MergePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "The duplicate's id")),
    responses((status = 200, description = "Merged", body = CommandAccepted), CommandProblems))]
async fn merge(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PATIENT_DESK)?;
    cmd.run(&state, &principal, &body, async {
        let req: MergePatient = body.parse()?;
        let clinic = principal.clinic()?;
        // The record itself must exist here first (404), then the survivor (422).
        if state
            .store
            .load::<Patient>(clinic, id)
            .await
            .map_err(ApiError::internal)?
            .is_none()
        {
            return Err(ApiError::NotFound("patient not found".into()));
        }
        match state
            .store
            .load::<Patient>(clinic, req.into)
            .await
            .map_err(ApiError::internal)?
        {
            Some((survivor, _)) if survivor.is_active() => {}
            Some(_) => {
                return Err(ApiError::field(
                    "into",
                    "the surviving patient is not active",
                ))
            }
            None => return Err(ApiError::field("into", "no such patient in your clinic")),
        }
        let survivor = PatientId::from_uuid(req.into);
        execute(
            &state,
            &principal,
            &cmd,
            id,
            PatientCommand::MergeInto { survivor },
        )
        .await
    })
    .await
}

/// Deactivate a patient.
#[utoipa::path(post, path = "/v1/patients/{id}/deactivate", tag = "patients", request_body = DeactivatePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Deactivated", body = CommandAccepted), CommandProblems))]
async fn deactivate(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    cmd: CommandRequest,
    body: JsonBody,
) -> Result<Response, ApiError> {
    principal.require(roles::PATIENT_DESK)?;
    cmd.run(&state, &principal, &body, async {
        let req: DeactivatePatient = body.parse()?;
        execute(
            &state,
            &principal,
            &cmd,
            id,
            PatientCommand::Deactivate { reason: req.reason },
        )
        .await
    })
    .await
}
