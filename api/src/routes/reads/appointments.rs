//! `GET /v1/appointments` (a page of them) and `GET /v1/appointments/{id}`.

use std::str::FromStr;

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::ActorRole;
use domain::appointment::AppointmentStatus;
use domain::ids::{AppointmentId, PatientId, StaffId};
use projections::appointments::{
    self, AppointmentCursor, AppointmentFilter, AppointmentPage, AppointmentView,
};
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::{patients, staff, Projection};
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
        .routes(routes!(list_appointments))
        .routes(routes!(get_appointment))
}

/// The projections the appointment endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[
    appointments::PROJECTION,
    patients::PROJECTION,
    staff::PROJECTION,
];

/// The filters of the appointment list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AppointmentParams {
    /// Only this doctor's
    #[serde(default, deserialize_with = "query::uuid")]
    pub doctor_id: Option<Uuid>,
    /// Only this patient's
    #[serde(default, deserialize_with = "query::uuid")]
    pub patient_id: Option<Uuid>,
    /// FHIR code: `booked`, `checked-in`, `in-progress`, `fulfilled`, `cancelled`, `noshow`
    #[serde(default, deserialize_with = "status")]
    #[param(value_type = Option<String>)]
    pub status: Option<AppointmentStatus>,
    /// Starting at or after this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub from: Option<DateTime<Utc>>,
    /// Starting before this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub to: Option<DateTime<Utc>>,
    /// `next_page_token` of the previous page
    #[serde(default, deserialize_with = "page_token")]
    #[param(value_type = Option<String>)]
    pub page_token: Option<AppointmentCursor>,
    /// Page size, 1 to 200 (default 50)
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_PAGE_SIZE>")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppointmentStatus>, D::Error> {
    query::with(d, |s| {
        AppointmentStatus::from_str(s).map_err(|_| {
            "must be a FHIR status: booked, checked-in, in-progress, fulfilled, cancelled or noshow"
                .to_owned()
        })
    })
}

fn page_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<AppointmentCursor>, D::Error> {
    query::with(d, |t| {
        AppointmentCursor::decode(t).map_err(|e| e.to_string())
    })
}

/// Appointments, ordered by start time, with the patient's and doctor's names.
///
/// A doctor sees only their own: without `doctor_id` they get theirs, and `doctor_id` naming
/// another doctor is a 403. For receptionists `reason` (a clinical note) is absent.
#[utoipa::path(get, path = "/v1/appointments", tag = "appointments", security(("bearer" = [])),
    params(AppointmentParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "One page of appointments", body = AppointmentPage), ReadProblems))]
async fn list_appointments(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    MinPosition(min): MinPosition,
    uri: Uri,
    params: Result<ReadQuery<AppointmentParams>, ApiError>,
) -> Result<Json<AppointmentPage>, ApiError> {
    // A list of one patient's appointments is a read of that patient's data, whether or not
    // the rest of the query is valid.
    let patient = query::raw(&uri, "patient_id").and_then(|raw| Uuid::parse_str(&raw).ok());
    let result = read_appointments(&state, &principal, min, params).await;
    match patient {
        Some(patient) => {
            let endpoint = "GET /v1/appointments";
            access_log::logged(
                &state,
                &principal,
                Some(patient),
                endpoint,
                client_ip,
                result,
            )
            .await
        }
        None => result,
    }
}

async fn read_appointments(
    state: &AppState,
    principal: &Principal,
    min: Option<i64>,
    params: Result<ReadQuery<AppointmentParams>, ApiError>,
) -> Result<Json<AppointmentPage>, ApiError> {
    principal.require(roles::read::APPOINTMENTS)?;
    let clinic = principal.clinic()?;
    let own = doctor_scope(principal)?;
    let Query(params) = params?;
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if to <= from {
            return Err(ApiError::field("to", "must be after `from`"));
        }
    }
    let doctor = params.doctor_id.map(StaffId::from_uuid);
    let doctor = match own {
        None => doctor,
        Some(me) if doctor.is_none() || doctor == Some(me) => Some(me),
        Some(_) => {
            return Err(ApiError::Forbidden(
                "a doctor may only list their own appointments".into(),
            ))
        }
    };
    wait_for(state, READS, min).await?;
    let filter = AppointmentFilter {
        doctor,
        patient: params.patient_id.map(PatientId::from_uuid),
        status: params.status,
        from: params.from,
        to: params.to,
        after: params.page_token,
        limit: params.limit.unwrap_or(DEFAULT_PAGE_SIZE),
    };
    let mut page = appointments::appointments(&state.pool, clinic, &filter).await?;
    if principal.role == ActorRole::Receptionist {
        page.items = page
            .items
            .into_iter()
            .map(AppointmentView::without_clinical_notes)
            .collect();
    }
    Ok(Json(page))
}

/// One appointment (`ETag` carries its version). A doctor gets a 404 for another doctor's;
/// for receptionists `reason` is absent.
#[utoipa::path(get, path = "/v1/appointments/{id}", tag = "appointments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Appointment id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The appointment", body = AppointmentView), ReadProblems))]
async fn get_appointment(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    IdPath(id): IdPath,
    MinPosition(min): MinPosition,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<Response, ApiError> {
    let result = read_appointment(&state, &principal, id, min, params).await;
    // The answer names the patient; a refused read is logged without one.
    let patient = result.as_ref().ok().map(|view| view.patient_id);
    let endpoint = "GET /v1/appointments/{id}";
    access_log::logged(&state, &principal, patient, endpoint, client_ip, result)
        .await
        .map(|view| with_etag(view.version, view))
}

async fn read_appointment(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    min: Option<i64>,
    params: Result<ReadQuery<NoParams>, ApiError>,
) -> Result<AppointmentView, ApiError> {
    principal.require(roles::read::APPOINTMENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(principal)?;
    params?;
    wait_for(state, READS, min).await?;
    let mut view =
        appointments::appointment(&state.pool, clinic, AppointmentId::from_uuid(id), doctor)
            .await?
            .ok_or_else(|| ApiError::NotFound("appointment not found".into()))?;
    if principal.role == ActorRole::Receptionist {
        view = view.without_clinical_notes();
    }
    Ok(view)
}
