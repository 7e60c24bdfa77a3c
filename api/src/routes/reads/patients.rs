//! `GET /v1/patients` (search) and `GET /v1/patients/{id}`.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use domain::ids::PatientId;
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::patients::{
    self, PatientCursor, PatientPage, PatientQuery, PatientRecord, PatientSearch,
};
use projections::{appointments, Projection};
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{doctor_scope, with_etag, ReadProblems};
use crate::access_log::{self, ClientIp};
use crate::auth::Principal;
use crate::http::IdPath;
use crate::problem::ApiError;
use crate::query::{self, NoParams, Query, ReadQuery};
use crate::read::{wait_for, MinPosition, MinPositionHeader, MinPositionQuery};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients))
        .routes(routes!(get_patient))
}

/// The projections the patient endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[patients::PROJECTION];
/// A doctor's view of patients depends on their appointments too.
const READS_FOR_DOCTOR: &[Projection] = &[patients::PROJECTION, appointments::PROJECTION];

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
fn reads(doctor: Option<domain::ids::StaffId>) -> &'static [Projection] {
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
/// family name, given name and id; a doctor sees only patients who have (or had) an
/// appointment with them.
#[utoipa::path(get, path = "/v1/patients", tag = "patients", security(("bearer" = [])),
    params(PatientSearchParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "One page of patients", body = PatientPage), ReadProblems))]
async fn list_patients(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<PatientSearchParams>, ApiError>,
) -> Result<Json<PatientPage>, ApiError> {
    principal.require(roles::read::PATIENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(&principal)?;
    let Query(params) = params?;
    wait_for(&state, reads(doctor), min).await?;
    let query = PatientQuery {
        search: params.q.unwrap_or(PatientSearch::All),
        doctor,
        after: params.page_token,
        limit: params.limit.unwrap_or(DEFAULT_PAGE_SIZE),
    };
    patients::search_patients(&state.pool, clinic, &query)
        .await
        .map(Json)
        .map_err(Into::into)
}

/// A patient's whole record (`ETag` carries its version). A doctor gets a 404 for a patient
/// they have never had an appointment with.
#[utoipa::path(get, path = "/v1/patients/{id}", tag = "patients", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Patient id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The patient", body = PatientRecord), ReadProblems))]
async fn get_patient(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    IdPath(id): IdPath,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Response, ApiError> {
    let result = read_patient(&state, &principal, id, min, params).await;
    let endpoint = "GET /v1/patients/{id}";
    access_log::logged(&state, &principal, Some(id), endpoint, client_ip, result).await
}

async fn read_patient(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    min: Option<i64>,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(roles::read::PATIENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(principal)?;
    params?;
    wait_for(state, reads(doctor), min).await?;
    let record = patients::patient(&state.pool, clinic, PatientId::from_uuid(id), doctor)
        .await?
        .ok_or_else(|| ApiError::NotFound("patient not found".into()))?;
    Ok(with_etag(record.version, record))
}
