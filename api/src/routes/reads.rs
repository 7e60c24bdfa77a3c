//! The query endpoints: patients, staff, appointments, the dashboard, the clinic, and the
//! platform's clinics and overview. They read the read models (through the read-model modules of `projections`,
//! always scoped by clinic) under role checks:
//!
//! - a doctor sees only their own appointments and the patients they have (or had) an
//!   appointment with; anything else is a 404 (a filter on another doctor is a 403);
//! - a receptionist sees no clinical notes (an appointment's `reason` is absent);
//! - the platform admin sees clinics and counts, never patient data.
//!
//! Every endpoint honours `X-Min-Position` / `?min_position=` (see [`crate::read`]).

use std::str::FromStr;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::ETAG;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use commands::ActorRole;
use domain::appointment::AppointmentStatus;
use domain::ids::{AppointmentId, DepartmentId, PatientId, StaffId};
use domain::schedule::Schedule;
use domain::values::Role;
use projections::appointments::{
    self, AppointmentCursor, AppointmentFilter, AppointmentPage, AppointmentView,
};
use projections::clinics::{self, ClinicList, ClinicView, PlatformOverview};
use projections::dashboard::{self, Dashboard};
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::patients::{
    self, PatientCursor, PatientPage, PatientQuery, PatientRecord, PatientSearch,
};
use projections::staff::{self, StaffFilter, StaffList, StaffMember};
use projections::{availability, Projection};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access_log::{self, ClientIp};
use crate::auth::Principal;
use crate::http::IdPath;
use crate::problem::{ApiError, FieldError, Problem};
use crate::read::{wait_for, MinPosition, MinPositionHeader, MinPositionQuery, MIN_POSITION_PARAM};
use crate::startup::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_patients))
        .routes(routes!(get_patient))
        .routes(routes!(list_staff))
        .routes(routes!(get_staff))
        .routes(routes!(list_appointments))
        .routes(routes!(get_appointment))
        .routes(routes!(get_dashboard))
        .routes(routes!(get_clinic))
        .routes(routes!(list_clinics))
        .routes(routes!(platform_overview))
        .routes(routes!(doctor_availability))
}

/// Who may read what (docs/api.md, "Query endpoints").
pub mod read_roles {
    use commands::ActorRole::{self, *};

    pub const PATIENTS: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
    pub const STAFF: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist, Auditor];
    pub const APPOINTMENTS: &[ActorRole] = &[ClinicAdmin, Nurse, Receptionist, Doctor];
    pub const DASHBOARD: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist];
    pub const CLINIC: &[ActorRole] = &[ClinicAdmin, Doctor, Nurse, Receptionist, Auditor];
    pub const PLATFORM: &[ActorRole] = &[PlatformAdmin];
    /// A doctor's free slots name no patient: every booking role may look.
    pub const AVAILABILITY: &[ActorRole] = &[ClinicAdmin, Receptionist, Nurse, Doctor];
}

/// The projections each endpoint reads, for `X-Min-Position`.
mod reads_from {
    use super::Projection;
    use projections::{appointments, clinics, patients, staff};

    pub const PATIENTS: &[Projection] = &[patients::PROJECTION];
    /// A doctor's view of patients depends on their appointments too.
    pub const PATIENTS_FOR_DOCTOR: &[Projection] =
        &[patients::PROJECTION, appointments::PROJECTION];
    pub const STAFF: &[Projection] = &[staff::PROJECTION];
    pub const APPOINTMENTS: &[Projection] = &[
        appointments::PROJECTION,
        patients::PROJECTION,
        staff::PROJECTION,
    ];
    pub const DASHBOARD: &[Projection] = &[
        clinics::PROJECTION,
        staff::PROJECTION,
        patients::PROJECTION,
        appointments::PROJECTION,
    ];
    pub const CLINICS: &[Projection] = &[clinics::PROJECTION];
    pub const AVAILABILITY: &[Projection] = &[
        staff::PROJECTION,
        appointments::PROJECTION,
        clinics::PROJECTION,
    ];
}

/// The problems any query endpoint may answer with (documentation only).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ReadProblems {
    #[response(
        status = 400,
        description = "Malformed `X-Min-Position` / `min_position`",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "No token, or an invalid, expired, `alg: none` or wrong-audience token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "The caller's role may not read this (or, for a doctor, filters on another doctor), or the clinic is suspended",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such record in the caller's clinic (for a doctor: not one of theirs)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 422,
        description = "An invalid query parameter (or a malformed `{id}`), named in `errors`",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
    #[response(
        status = 503,
        description = "The read models have not reached `X-Min-Position` within 2 s; retry after `Retry-After`",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

// ---------------------------------------------------------------------------------------
// Query parameters.

/// The query string as name/value pairs. Each endpoint names the parameters it knows; an
/// unknown one, one given twice, or a value that does not parse is a 422 naming it. An empty
/// value counts as absent.
#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_none() {
            return Ok(Params::default());
        }
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| Params(pairs))
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
    }
}

impl Params {
    /// Starts reading: every parameter must be one of `known` (or `min_position`).
    fn reader(&self, known: &[&str]) -> ParamReader<'_> {
        let mut errors: Vec<FieldError> = Vec::new();
        for (i, (name, _)) in self.0.iter().enumerate() {
            if errors.iter().any(|e| &e.field == name) {
                continue;
            }
            if name != MIN_POSITION_PARAM && !known.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    name.clone(),
                    format!("unknown query parameter (known: {})", known.join(", ")),
                ));
            } else if self.0[..i].iter().any(|(n, _)| n == name) {
                errors.push(FieldError::new(name.clone(), "given more than once"));
            }
        }
        ParamReader {
            params: self,
            errors,
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

struct ParamReader<'a> {
    params: &'a Params,
    errors: Vec<FieldError>,
}

impl ParamReader<'_> {
    /// The raw value of `name`, if given.
    fn raw(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// Parses `name` with `parse`; a failure is recorded under that name.
    fn parse<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self.params.get(name)?;
        match parse(raw) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(name, message);
                None
            }
        }
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// A 422 listing every invalid parameter, if any.
    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

fn uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| "must be a UUID".into())
}

fn limit(raw: &str) -> Result<i64, String> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
        .ok_or_else(|| format!("must be an integer from 1 to {}", MAX_PAGE_SIZE))
}

/// An RFC 3339 instant. A `+` left unencoded in the query string arrives as a space; it is
/// read back as the `+` it was.
fn instant(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 instant, e.g. 2026-03-01T09:00:00Z".into())
}

fn boolean(raw: &str) -> Result<bool, String> {
    match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be `true` or `false`".into()),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

/// The caller as a doctor, if they are one: their view is limited to their own records.
fn doctor_scope(principal: &Principal) -> Result<Option<StaffId>, ApiError> {
    if principal.role != ActorRole::Doctor {
        return Ok(None);
    }
    principal
        .staff_id()
        .map(Some)
        .ok_or_else(|| ApiError::Forbidden("a doctor must belong to a clinic".into()))
}

/// A record with its version in `ETag`, as command answers carry it.
fn with_etag<T: Serialize>(version: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, v);
    }
    response
}

// ---------------------------------------------------------------------------------------
// Patients.

/// Search the clinic's patients.
///
/// `q` is read by its shape: `YYYY-MM-DD` is a date of birth, `MRN-…` an MRN (exact, any
/// case, `mrn-12` = `MRN-000012`), digits (with `+`, spaces, `-`, `(`, `)`) a prefix of the
/// phone number's digits (at least 4), anything else a prefix of the given name, the family
/// name or "given family", ignoring case and accents. Without `q`, every patient. Ordered by
/// family name, given name and id; a doctor sees only patients who have (or had) an
/// appointment with them.
#[utoipa::path(get, path = "/v1/patients", tag = "patients", security(("bearer" = [])),
    params(
        ("q" = Option<String>, Query, description = "Name prefix, MRN, phone digits or YYYY-MM-DD"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 200 (default 50)", minimum = 1, maximum = 200),
        MinPositionQuery, MinPositionHeader,
    ),
    responses((status = 200, description = "One page of patients", body = PatientPage), ReadProblems))]
async fn list_patients(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<PatientPage>, ApiError> {
    principal.require(read_roles::PATIENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(&principal)?;
    let mut p = params.reader(&["q", "page_token", "limit"]);
    let search = p.parse("q", |q| {
        PatientSearch::parse(Some(q)).map_err(|e| e.to_string())
    });
    let after = p.parse("page_token", |t| {
        PatientCursor::decode(t).map_err(|e| e.to_string())
    });
    let limit = p.parse("limit", limit).unwrap_or(DEFAULT_PAGE_SIZE);
    p.finish()?;

    let reads = if doctor.is_some() {
        reads_from::PATIENTS_FOR_DOCTOR
    } else {
        reads_from::PATIENTS
    };
    wait_for(&state, reads, min).await?;
    let query = PatientQuery {
        search: search.unwrap_or(PatientSearch::All),
        doctor,
        after,
        limit,
    };
    patients::search_patients(&state.pool, clinic, &query)
        .await
        .map(Json)
        .map_err(ApiError::internal)
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
    params: Params,
) -> Result<Response, ApiError> {
    let result = read_patient(&state, &principal, id, min, &params).await;
    let endpoint = "GET /v1/patients/{id}";
    access_log::logged(&state, &principal, Some(id), endpoint, client_ip, result).await
}

async fn read_patient(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    min: Option<i64>,
    params: &Params,
) -> Result<Response, ApiError> {
    principal.require(read_roles::PATIENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(principal)?;
    params.reader(&[]).finish()?;
    let reads = if doctor.is_some() {
        reads_from::PATIENTS_FOR_DOCTOR
    } else {
        reads_from::PATIENTS
    };
    wait_for(state, reads, min).await?;
    let record = patients::patient(&state.pool, clinic, PatientId::from_uuid(id), doctor)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("patient not found".into()))?;
    Ok(with_etag(record.version, record))
}

// ---------------------------------------------------------------------------------------
// Staff.

/// The staff roster with working hours and time off, ordered by name.
#[utoipa::path(get, path = "/v1/staff", tag = "staff", security(("bearer" = [])),
    params(
        ("role" = Option<String>, Query, description = "`clinic_admin`, `doctor`, `nurse`, `receptionist` or `auditor`"),
        ("department_id" = Option<Uuid>, Query, description = "Only this department's members"),
        ("active" = Option<bool>, Query, description = "Only active (`true`) or deactivated (`false`) members"),
        MinPositionQuery, MinPositionHeader,
    ),
    responses((status = 200, description = "The staff", body = StaffList), ReadProblems))]
async fn list_staff(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<StaffList>, ApiError> {
    principal.require(read_roles::STAFF)?;
    let clinic = principal.clinic()?;
    let mut p = params.reader(&["role", "department_id", "active"]);
    let filter = StaffFilter {
        role: p.parse("role", |r| Role::from_str(r).map_err(|e| e.to_string())),
        department: p.parse("department_id", uuid).map(DepartmentId::from_uuid),
        active: p.parse("active", boolean),
    };
    p.finish()?;
    wait_for(&state, reads_from::STAFF, min).await?;
    staff::staff_list(&state.pool, clinic, &filter)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

/// One staff member (`ETag` carries the version).
#[utoipa::path(get, path = "/v1/staff/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Staff id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The staff member", body = StaffMember), ReadProblems))]
async fn get_staff(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Response, ApiError> {
    principal.require(read_roles::STAFF)?;
    let clinic = principal.clinic()?;
    params.reader(&[]).finish()?;
    wait_for(&state, reads_from::STAFF, min).await?;
    let member = staff::staff_member(&state.pool, clinic, StaffId::from_uuid(id))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NotFound("staff member not found".into()))?;
    Ok(with_etag(member.version, member))
}

// ---------------------------------------------------------------------------------------
// Appointments.

/// Appointments, ordered by start time, with the patient's and doctor's names.
///
/// A doctor sees only their own: without `doctor_id` they get theirs, and `doctor_id` naming
/// another doctor is a 403. For receptionists `reason` (a clinical note) is absent.
#[utoipa::path(get, path = "/v1/appointments", tag = "appointments", security(("bearer" = [])),
    params(
        ("doctor_id" = Option<Uuid>, Query, description = "Only this doctor's"),
        ("patient_id" = Option<Uuid>, Query, description = "Only this patient's"),
        ("status" = Option<String>, Query, description = "FHIR code: `booked`, `checked-in`, `in-progress`, `fulfilled`, `cancelled`, `noshow`"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Starting at or after this instant (RFC 3339)"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Starting before this instant (RFC 3339)"),
        ("page_token" = Option<String>, Query, description = "`next_page_token` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 200 (default 50)", minimum = 1, maximum = 200),
        MinPositionQuery, MinPositionHeader,
    ),
    responses((status = 200, description = "One page of appointments", body = AppointmentPage), ReadProblems))]
async fn list_appointments(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<AppointmentPage>, ApiError> {
    let result = read_appointments(&state, &principal, min, &params).await;
    // A list of one patient's appointments is a read of that patient's data.
    match params.get("patient_id").and_then(|raw| uuid(raw).ok()) {
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
    params: &Params,
) -> Result<Json<AppointmentPage>, ApiError> {
    principal.require(read_roles::APPOINTMENTS)?;
    let clinic = principal.clinic()?;
    let own = doctor_scope(principal)?;
    let mut p = params.reader(&[
        "doctor_id",
        "patient_id",
        "status",
        "from",
        "to",
        "page_token",
        "limit",
    ]);
    let doctor = p.parse("doctor_id", uuid).map(StaffId::from_uuid);
    let patient = p.parse("patient_id", uuid).map(PatientId::from_uuid);
    let status = p.parse("status", |s| {
        AppointmentStatus::from_str(s).map_err(|_| {
            "must be a FHIR status: booked, checked-in, in-progress, fulfilled, cancelled or noshow"
                .to_owned()
        })
    });
    let from = p.parse("from", instant);
    let to = p.parse("to", instant);
    if let (Some(from), Some(to)) = (from, to) {
        if to <= from {
            p.error("to", "must be after `from`");
        }
    }
    let after = p.parse("page_token", |t| {
        AppointmentCursor::decode(t).map_err(|e| e.to_string())
    });
    let limit = p.parse("limit", limit).unwrap_or(DEFAULT_PAGE_SIZE);
    let doctor_given = p.raw("doctor_id").is_some();
    p.finish()?;

    let doctor = match own {
        None => doctor,
        Some(me) if !doctor_given || doctor == Some(me) => Some(me),
        Some(_) => {
            return Err(ApiError::Forbidden(
                "a doctor may only list their own appointments".into(),
            ))
        }
    };
    wait_for(state, reads_from::APPOINTMENTS, min).await?;
    let filter = AppointmentFilter {
        doctor,
        patient,
        status,
        from,
        to,
        after,
        limit,
    };
    let mut page = appointments::appointments(&state.pool, clinic, &filter)
        .await
        .map_err(ApiError::internal)?;
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
    params: Params,
) -> Result<Response, ApiError> {
    let result = read_appointment(&state, &principal, id, min, &params).await;
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
    params: &Params,
) -> Result<AppointmentView, ApiError> {
    principal.require(read_roles::APPOINTMENTS)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(principal)?;
    params.reader(&[]).finish()?;
    wait_for(state, reads_from::APPOINTMENTS, min).await?;
    let mut view =
        appointments::appointment(&state.pool, clinic, AppointmentId::from_uuid(id), doctor)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound("appointment not found".into()))?;
    if principal.role == ActorRole::Receptionist {
        view = view.without_clinical_notes();
    }
    Ok(view)
}

// ---------------------------------------------------------------------------------------
// Dashboard and clinic.

/// The clinic's dashboard, in its local time zone: appointments per status for today and the
/// next 7 days, each doctor's load per day, the no-show rate of the last 30 days, patients
/// registered this (ISO) week and the next 10 active appointments. For a doctor the next
/// appointments are their own.
#[utoipa::path(get, path = "/v1/dashboard", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The dashboard", body = Dashboard), ReadProblems))]
async fn get_dashboard(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<Dashboard>, ApiError> {
    principal.require(read_roles::DASHBOARD)?;
    let clinic = principal.clinic()?;
    let doctor = doctor_scope(&principal)?;
    params.reader(&[]).finish()?;
    wait_for(&state, reads_from::DASHBOARD, min).await?;
    dashboard::dashboard(&state.pool, clinic, doctor, state.clock.now())
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

/// The caller's clinic: name, code, time zone, plan, status, slot length and departments.
#[utoipa::path(get, path = "/v1/clinic", tag = "clinic", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinic", body = ClinicView), ReadProblems))]
async fn get_clinic(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<ClinicView>, ApiError> {
    principal.require(read_roles::CLINIC)?;
    let clinic = principal.clinic()?;
    params.reader(&[]).finish()?;
    wait_for(&state, reads_from::CLINICS, min).await?;
    clinics::clinic(&state.pool, clinic)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound("clinic not found".into()))
}

// ---------------------------------------------------------------------------------------
// Platform.

/// Every clinic of the platform, with counts (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/clinics", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The clinics", body = ClinicList), ReadProblems))]
async fn list_clinics(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<ClinicList>, ApiError> {
    principal.require(read_roles::PLATFORM)?;
    params.reader(&[]).finish()?;
    wait_for(&state, reads_from::CLINICS, min).await?;
    clinics::platform_clinics(&state.pool)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

/// Platform statistics: clinics by plan and by status, and totals of staff, patients and
/// appointments (platform admin; no patient data).
#[utoipa::path(get, path = "/v1/platform/overview", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The platform's figures", body = PlatformOverview), ReadProblems))]
async fn platform_overview(
    State(state): State<AppState>,
    principal: Principal,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<PlatformOverview>, ApiError> {
    principal.require(read_roles::PLATFORM)?;
    params.reader(&[]).finish()?;
    wait_for(&state, reads_from::CLINICS, min).await?;
    clinics::platform_overview(&state.pool)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------------------
// Availability.

/// How far ahead availability looks without `to`.
pub const AVAILABILITY_DEFAULT_DAYS: i64 = 14;
/// The longest window one availability request may cover.
pub const AVAILABILITY_MAX_DAYS: i64 = 31;
/// The slot length without `duration`, in minutes.
pub const AVAILABILITY_DEFAULT_MINUTES: i64 = 30;
/// The allowed slot lengths, in minutes.
pub const AVAILABILITY_MINUTES: std::ops::RangeInclusive<i64> = 5..=480;

/// A doctor's free slots.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Availability {
    pub doctor_id: Uuid,
    /// The clinic's time zone, in which working hours are read and `local_*` are given.
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// The clinic's slot grid: a slot starts at a local time whose minutes since midnight are
    /// a multiple of this.
    #[schema(example = 15)]
    pub step_minutes: u32,
    /// The length of every slot listed.
    #[schema(example = 30)]
    pub duration_minutes: i64,
    /// The bookable slots, soonest first.
    pub slots: Vec<FreeSlot>,
}

/// One bookable slot `[start, end)`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FreeSlot {
    /// UTC, RFC 3339.
    #[schema(example = "2027-03-29T07:00:00Z")]
    pub start: DateTime<Utc>,
    /// UTC, RFC 3339.
    #[schema(example = "2027-03-29T07:30:00Z")]
    pub end: DateTime<Utc>,
    /// `start` in the clinic's time zone, RFC 3339 with its offset.
    #[schema(example = "2027-03-29T09:00:00+02:00")]
    pub local_start: String,
    /// `end` in the clinic's time zone, RFC 3339 with its offset.
    #[schema(example = "2027-03-29T09:30:00+02:00")]
    pub local_end: String,
}

fn duration_minutes(raw: &str) -> Result<i64, String> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| AVAILABILITY_MINUTES.contains(n))
        .ok_or_else(|| {
            format!(
                "must be a whole number of minutes from {} to {}",
                AVAILABILITY_MINUTES.start(),
                AVAILABILITY_MINUTES.end()
            )
        })
}

/// A doctor's bookable slots: the start times in `[from, to)` at which a slot of `duration`
/// minutes fits the doctor's working hours (clinic-local time) on the clinic's slot grid, is
/// clear of their time off and active appointments, is not in the past and ends by `to`.
/// Exactly these slots can be booked (`POST /v1/appointments`), other patients' bookings
/// permitting; the answer names no patient.
///
/// `from` defaults to now and `to` to 14 days after `from`; the window is at most 31 days.
/// Another clinic's doctor, a staff member who is not a doctor, a deactivated doctor or an
/// unknown id is a 404.
#[utoipa::path(get, path = "/v1/doctors/{id}/availability", tag = "appointments", security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The doctor's staff id"),
        ("from" = Option<DateTime<Utc>>, Query, description = "Window start (RFC 3339); default now"),
        ("to" = Option<DateTime<Utc>>, Query, description = "Window end (RFC 3339), after `from` and at most 31 days later; default `from` + 14 days"),
        ("duration" = Option<i64>, Query, description = "Slot length in minutes, 5 to 480 (default 30)", minimum = 5, maximum = 480),
        MinPositionQuery, MinPositionHeader,
    ),
    responses((status = 200, description = "The doctor's free slots", body = Availability), ReadProblems))]
async fn doctor_availability(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    MinPosition(min): MinPosition,
    params: Params,
) -> Result<Json<Availability>, ApiError> {
    principal.require(read_roles::AVAILABILITY)?;
    let clinic = principal.clinic()?;
    let mut p = params.reader(&["from", "to", "duration"]);
    let from_given = p.parse("from", instant);
    let to_given = p.parse("to", instant);
    let duration = p
        .parse("duration", duration_minutes)
        .unwrap_or(AVAILABILITY_DEFAULT_MINUTES);
    let from_ok = from_given.is_some() || p.raw("from").is_none();
    let to_ok = to_given.is_some() || p.raw("to").is_none();
    let now = state.clock.now();
    let from = from_given.unwrap_or(now);
    let to = to_given.unwrap_or(from + Duration::days(AVAILABILITY_DEFAULT_DAYS));
    if from_ok && to_ok {
        if to <= from {
            p.error("to", "must be after `from`");
        } else if to - from > Duration::days(AVAILABILITY_MAX_DAYS) {
            p.error(
                "to",
                format!("the window may cover at most {AVAILABILITY_MAX_DAYS} days"),
            );
        }
    }
    p.finish()?;

    wait_for(&state, reads_from::AVAILABILITY, min).await?;
    let schedule =
        availability::doctor_schedule(&state.pool, clinic, StaffId::from_uuid(id), from, to)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::NotFound("doctor not found".into()))?;
    let length = Duration::minutes(duration);
    let starts = Schedule {
        hours: &schedule.hours,
        time_off: &schedule.time_off,
        time_zone: &schedule.time_zone,
        step_minutes: schedule.step_minutes,
    }
    .free_starts(from, to, length, &schedule.busy, now);
    let tz = schedule.time_zone.tz();
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    };
    let slots = starts
        .into_iter()
        .map(|start| {
            let end = start + length;
            FreeSlot {
                start,
                end,
                local_start: local(start),
                local_end: local(end),
            }
        })
        .collect();
    Ok(Json(Availability {
        doctor_id: schedule.doctor_id,
        time_zone: schedule.time_zone.name().to_owned(),
        step_minutes: schedule.step_minutes,
        duration_minutes: duration,
        slots,
    }))
}
