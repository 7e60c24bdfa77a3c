//! Patients: search and read; register (the clinic assigns the MRN), update demographics,
//! merge, deactivate.

use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use commands::patients;
use domain::ids::{PatientId, StaffId};
use domain::patient::{Demographics, DemographicsChanges, Patient, PatientCommand};
use domain::values::{
    Address, Allergy, Email, EmergencyContact, Insurance, NonEmptyText, PatientName, Phone, Sex,
};
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::patients::{
    PatientCursor, PatientPage, PatientQuery, PatientRecord, PatientSearch,
};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::access_log::{self, ClientIp, Subjects};
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::Command;
use crate::problem::ApiError;
use crate::query::{self, NoParams};
use crate::read::{clinic_and_doctor, found, with_etag, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients))
        .routes(routes!(get_patient))
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

/// A documentation shape of a patient body: the given fields, then the optional contact fields
/// that both bodies have. The handlers read the bodies straight into the domain's
/// `Demographics` and `DemographicsChanges`, which have the same fields.
macro_rules! patient_body {
    ($(#[$meta:meta])* $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        #[allow(dead_code)]
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($fields)*
            #[schema(value_type = Option<String>)]
            pub email: Option<Email>,
            #[schema(value_type = Option<schema::Address>)]
            pub address: Option<Address>,
            #[schema(value_type = Option<schema::EmergencyContact>)]
            pub emergency_contact: Option<EmergencyContact>,
            #[schema(value_type = Option<schema::Insurance>)]
            pub insurance: Option<Insurance>,
        }
    };
}

// The body of a registration (no description in the document).
patient_body!(RegisterPatient {
    #[schema(value_type = schema::Name)]
    pub name: PatientName,
    pub birth_date: NaiveDate,
    /// `male`, `female`, `other` or `unknown` (FHIR AdministrativeGender).
    #[schema(value_type = String, example = "female")]
    pub sex: Sex,
    #[schema(value_type = Option<String>, example = "+49 30 1234567")]
    pub phone: Option<Phone>,
    /// At most 50.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub allergies: Vec<Allergy>,
});

patient_body!(
    /// Fields to change; absent fields stay as they are. `allergies` replaces the list.
    UpdatePatient {
        #[schema(value_type = Option<schema::Name>)]
        pub name: Option<PatientName>,
        pub birth_date: Option<NaiveDate>,
        #[schema(value_type = Option<String>)]
        pub sex: Option<Sex>,
        #[schema(value_type = Option<String>)]
        pub phone: Option<Phone>,
        #[schema(value_type = Option<Vec<String>>)]
        pub allergies: Option<Vec<Allergy>>,
    }
);

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

/// Register a patient. The clinic assigns the MRN.
#[utoipa::path(post, path = "/v1/patients", tag = "patients", request_body = RegisterPatient,
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 201, description = "Registered; `Location` names the patient", body = CommandAccepted), CommandProblems))]
async fn register(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::PATIENT_DESK, |req: Demographics, ctx| async move {
        let meta = ctx.meta()?;
        let registered = patients::register(ctx.store(), &meta, ctx.expect, req).await?;
        let (id, committed) = (registered.patient_id, &registered.committed);
        Ok(CommandResponse::created_in("/v1/patients", id, committed))
    })
    .await
}

/// Update a patient's demographics. Doctors may do this too, for a patient they may see
/// (see `GET /v1/patients/{id}`); any other patient is a 404 to them.
#[utoipa::path(patch, path = "/v1/patients/{id}", tag = "patients", request_body = UpdatePatient,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Updated", body = CommandAccepted), CommandProblems))]
async fn update(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(
        roles::PATIENT_DEMOGRAPHICS,
        |changes: DemographicsChanges, ctx| async move {
            let meta = ctx.meta()?;
            let committed =
                patients::update_demographics(ctx.store(), &meta, ctx.expect, ctx.id(), changes)
                    .await?;
            Ok(CommandResponse::updated(ctx.id(), &committed))
        },
    )
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
#[utoipa::path(post, path = "/v1/patients/{id}/deactivate", tag = "patients", request_body = Option<DeactivatePatient>,
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "Deactivated", body = CommandAccepted), CommandProblems))]
async fn deactivate(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::PATIENT_DESK, |req: DeactivatePatient, ctx| {
        ctx.update::<Patient>(PatientCommand::Deactivate { reason: req.reason })
    })
    .await
}

/// The projections the patient endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[projections::patients::PROJECTION];
/// A doctor's view of patients depends on their appointments too.
const READS_FOR_DOCTOR: &[Projection] = &[
    projections::patients::PROJECTION,
    projections::appointments::PROJECTION,
];

/// The parameters of a patient search.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PatientSearchParams {
    /// Name prefix, MRN, phone digits or YYYY-MM-DD
    #[serde(default, deserialize_with = "search")]
    #[param(value_type = Option<String>)]
    pub q: Option<PatientSearch>,
    /// `next_page_token` of the previous page
    #[serde(default, deserialize_with = "page_token")]
    #[param(value_type = Option<String>)]
    pub page_token: Option<PatientCursor>,
    /// Page size, 1 to 200 (default 50)
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_PAGE_SIZE>")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn search<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PatientSearch>, D::Error> {
    query::with(d, |q| {
        PatientSearch::parse(Some(q)).map_err(|e| e.to_string())
    })
}

fn page_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PatientCursor>, D::Error> {
    query::with(d, |t| PatientCursor::decode(t).map_err(|e| e.to_string()))
}

/// The projections a read of patients waits for.
fn reads(doctor: Option<StaffId>) -> &'static [Projection] {
    if doctor.is_some() {
        READS_FOR_DOCTOR
    } else {
        READS
    }
}

/// Search the clinic's patients.
///
/// `q` is read by its shape: `YYYY-MM-DD` is a date of birth, `MRN-…` an MRN (exact, any
/// case, `mrn-12` = `MRN-000012`), digits (with `+`, spaces, `-`, `(`, `)`) a prefix of the
/// phone number's digits (at least 4), anything else a prefix of the given name, the family
/// name or "given family", ignoring case and accents. Without `q`, every patient. Ordered by
/// family name, given name and id; a doctor sees only the patients they may see: those with an
/// appointment with them that is booked, checked in, in progress or fulfilled.
#[utoipa::path(get, path = "/v1/patients", tag = "patients", security(("bearer" = [])),
    params(PatientSearchParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "One page of patients", body = PatientPage), ReadProblems))]
async fn list_patients(
    client_ip: ClientIp,
    uri: Uri,
    mut read: Read<PatientSearchParams>,
) -> Result<Json<PatientPage>, ApiError> {
    let result = search_patients(&mut read).await;
    // A page names its patients: recorded with the patients it returned and the search.
    let returned = result.iter().flat_map(|Json(page)| &page.items);
    let subjects = Subjects::list(&uri, returned.map(|p| p.patient_id));
    let (state, principal) = (&read.state, &read.principal);
    access_log::logged(
        state,
        principal,
        subjects,
        "GET /v1/patients",
        client_ip,
        result,
    )
    .await
}

async fn search_patients(
    read: &mut Read<PatientSearchParams>,
) -> Result<Json<PatientPage>, ApiError> {
    let ((clinic, doctor), params) = read.authorise(roles::read::PATIENTS, clinic_and_doctor)?;
    read.wait(reads(doctor)).await?;
    let query = PatientQuery {
        search: params.q.unwrap_or(PatientSearch::All),
        doctor,
        after: params.page_token,
        limit: params.limit.unwrap_or(DEFAULT_PAGE_SIZE),
    };
    let page = projections::patients::search_patients(&read.state.pool, clinic, &query).await?;
    Ok(Json(page))
}

/// A patient's whole record (`ETag` carries its version). A doctor gets a 404 for a patient
/// without an appointment with them that is booked, checked in, in progress or fulfilled (a
/// cancelled one or a no-show grants nothing).
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "patients", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Patient id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The patient", body = PatientRecord), ReadProblems))]
async fn get_patient(
    client_ip: ClientIp,
    mut read: Read<NoParams, IdPath>,
) -> Result<Response, ApiError> {
    let result = read_patient(&mut read).await;
    let (IdPath(id), endpoint) = (read.path, "GET /v1/patients/{id}");
    access_log::logged(
        &read.state,
        &read.principal,
        Subjects::patient(Some(id)),
        endpoint,
        client_ip,
        result,
    )
    .await
}

async fn read_patient(read: &mut Read<NoParams, IdPath>) -> Result<Response, ApiError> {
    let ((clinic, doctor), _) = read.authorise(roles::read::PATIENTS, clinic_and_doctor)?;
    read.wait(reads(doctor)).await?;
    let id = PatientId::from_uuid(read.path.0);
    let record = projections::patients::patient(&read.state.pool, clinic, id, doctor).await?;
    let record = found(record, "patient")?;
    Ok(with_etag(record.version, record))
}
