//! Read-model queries, always scoped to one clinic.
//!
//! Every clinic query opens its own read transaction with [`clinic_tx`], so row-level security
//! limits it to the caller's clinic, and filters on `clinic_id` itself as well (defence in
//! depth). The two platform queries ([`platform_clinics`], [`platform_overview`]) use
//! [`platform_tx`] and read `rm.clinics` only, which holds no patient data.
//!
//! Who may see what (a doctor only their own patients and appointments, a receptionist no
//! clinical notes) is decided by the API; these functions take the resulting restriction as an
//! explicit argument.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use domain::appointment::AppointmentStatus;
use domain::ids::{AppointmentId, ClinicId, DepartmentId, PatientId, StaffId};
use domain::values::{Mrn, Plan, Role, TimeRange, TimeZone, WorkingHours};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scope::{clinic_tx, platform_tx};

/// Page sizes of the paginated lists.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

/// How many days the dashboard covers: today and the next 7.
pub const DASHBOARD_DAYS: i64 = 8;
/// How many upcoming appointments the dashboard lists.
pub const DASHBOARD_NEXT: i64 = 10;

/// A search or page token the caller sent that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuery {
    #[error("a phone number search needs at least 4 digits")]
    PhoneTooShort,
    #[error("not a valid date (YYYY-MM-DD)")]
    BadDate,
    #[error("not a valid MRN (e.g. MRN-000012)")]
    BadMrn,
    #[error("not a page token from a previous answer")]
    BadPageToken,
}

// ---------------------------------------------------------------------------------------
// Page tokens: opaque base64url of the last row's sort key.

fn encode_token<T: Serialize>(key: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode_token<T: DeserializeOwned>(token: &str) -> Result<T, InvalidQuery> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| InvalidQuery::BadPageToken)?;
    serde_json::from_slice(&bytes).map_err(|_| InvalidQuery::BadPageToken)
}

/// The position after the last patient of a page: (family_key, given_key, patient_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientCursor {
    #[serde(rename = "f")]
    family_key: String,
    #[serde(rename = "g")]
    given_key: String,
    #[serde(rename = "i")]
    patient_id: Uuid,
}

impl PatientCursor {
    pub fn decode(token: &str) -> Result<Self, InvalidQuery> {
        decode_token(token)
    }

    pub fn encode(&self) -> String {
        encode_token(self)
    }
}

/// The position after the last appointment of a page: (start, appointment_id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentCursor {
    #[serde(rename = "s")]
    start: DateTime<Utc>,
    #[serde(rename = "i")]
    appointment_id: Uuid,
}

impl AppointmentCursor {
    pub fn decode(token: &str) -> Result<Self, InvalidQuery> {
        decode_token(token)
    }

    pub fn encode(&self) -> String {
        encode_token(self)
    }
}

// ---------------------------------------------------------------------------------------
// Patients.

/// What a patient search looks for, decided from the shape of `q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientSearch {
    /// No `q`: every patient.
    All,
    /// A prefix of the given or family name, or of "given family" (or "family given"),
    /// ignoring case and accents.
    Name(String),
    /// An MRN, exactly (normalised: `mrn-12` is `MRN-000012`).
    Mrn(Mrn),
    /// A prefix of the phone number's digits (at least 4).
    Phone(String),
    /// A date of birth.
    BirthDate(NaiveDate),
}

impl PatientSearch {
    pub const MIN_PHONE_DIGITS: usize = 4;

    /// `YYYY-MM-DD` is a birth date, `MRN-…` an MRN, digits (with `+`, spaces, `-`, `.`,
    /// `(`, `)`) a phone number, anything else a name.
    pub fn parse(q: Option<&str>) -> Result<Self, InvalidQuery> {
        let q = q.map(str::trim).unwrap_or("");
        if q.is_empty() {
            return Ok(PatientSearch::All);
        }
        let date_shaped = q.len() == 10
            && q.char_indices().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            });
        if date_shaped {
            return NaiveDate::parse_from_str(q, "%Y-%m-%d")
                .map(PatientSearch::BirthDate)
                .map_err(|_| InvalidQuery::BadDate);
        }
        if q.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("mrn-")) {
            return Mrn::parse(q)
                .map(PatientSearch::Mrn)
                .map_err(|_| InvalidQuery::BadMrn);
        }
        let phone_shaped = q.chars().any(|c| c.is_ascii_digit())
            && q.chars()
                .all(|c| c.is_ascii_digit() || " +-.()/".contains(c));
        if phone_shaped {
            let digits: String = q.chars().filter(char::is_ascii_digit).collect();
            if digits.len() < Self::MIN_PHONE_DIGITS {
                return Err(InvalidQuery::PhoneTooShort);
            }
            return Ok(PatientSearch::Phone(digits));
        }
        Ok(PatientSearch::Name(
            q.split_whitespace().collect::<Vec<_>>().join(" "),
        ))
    }
}

/// A patient search.
#[derive(Debug, Clone)]
pub struct PatientQuery {
    pub search: PatientSearch,
    /// Only patients who have (or had) an appointment with this doctor.
    pub doctor: Option<StaffId>,
    pub after: Option<PatientCursor>,
    /// 1..=[`MAX_PAGE_SIZE`].
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NameView {
    #[schema(example = "Ada")]
    pub given: String,
    #[schema(example = "Lovelace")]
    pub family: String,
}

/// A patient in a search result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientSummary {
    pub patient_id: Uuid,
    #[schema(example = "MRN-000012")]
    pub mrn: String,
    pub name: NameView,
    pub birth_date: NaiveDate,
    /// `male`, `female`, `other` or `unknown`.
    pub sex: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `active`, `merged` or `inactive`.
    pub status: String,
    /// For a merged record, the surviving record.
    pub merged_into: Option<Uuid>,
}

/// One page of patients.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientPage {
    pub items: Vec<PatientSummary>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PatientSummaryRow {
    patient_id: Uuid,
    mrn: String,
    given: String,
    family: String,
    birth_date: NaiveDate,
    sex: String,
    phone: Option<String>,
    email: Option<String>,
    status: String,
    merged_into: Option<Uuid>,
    family_key: String,
    given_key: String,
}

/// Searches the clinic's patients, ordered by (family name, given name, id), one page at a
/// time.
pub async fn search_patients(
    pool: &PgPool,
    clinic: ClinicId,
    query: &PatientQuery,
) -> Result<PatientPage, sqlx::Error> {
    let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT p.patient_id, p.mrn, p.given, p.family, p.birth_date, p.sex, p.phone, p.email, \
                p.status, p.merged_into, p.family_key, p.given_key \
         FROM rm.patients p",
    );
    if let PatientSearch::Name(name) = &query.search {
        sql.push(" CROSS JOIN (SELECT rm_fold(")
            .push_bind(name.clone())
            .push(") AS f) q");
    }
    sql.push(" WHERE p.clinic_id = ")
        .push_bind(clinic.as_uuid());
    match &query.search {
        PatientSearch::All => {}
        PatientSearch::Name(_) => {
            sql.push(
                " AND (starts_with(p.family_key, q.f) OR starts_with(p.given_key, q.f) \
                   OR starts_with(p.given_key || ' ' || p.family_key, q.f) \
                   OR starts_with(p.family_key || ' ' || p.given_key, q.f))",
            );
        }
        PatientSearch::Mrn(mrn) => {
            sql.push(" AND p.mrn = ").push_bind(mrn.as_str().to_owned());
        }
        PatientSearch::Phone(digits) => {
            sql.push(" AND starts_with(p.phone_digits, ")
                .push_bind(digits.clone())
                .push(")");
        }
        PatientSearch::BirthDate(date) => {
            sql.push(" AND p.birth_date = ").push_bind(*date);
        }
    }
    if let Some(doctor) = query.doctor {
        push_seen_by(&mut sql, doctor);
    }
    if let Some(after) = &query.after {
        sql.push(" AND (p.family_key, p.given_key, p.patient_id) > (")
            .push_bind(after.family_key.clone())
            .push(", ")
            .push_bind(after.given_key.clone())
            .push(", ")
            .push_bind(after.patient_id)
            .push(")");
    }
    sql.push(" ORDER BY p.family_key, p.given_key, p.patient_id LIMIT ")
        .push_bind(limit + 1);

    let mut tx = clinic_tx(pool, clinic).await?;
    let mut rows: Vec<PatientSummaryRow> = sql.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;

    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => Some(
            PatientCursor {
                family_key: last.family_key.clone(),
                given_key: last.given_key.clone(),
                patient_id: last.patient_id,
            }
            .encode(),
        ),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(|r| PatientSummary {
            patient_id: r.patient_id,
            mrn: r.mrn,
            name: NameView {
                given: r.given,
                family: r.family,
            },
            birth_date: r.birth_date,
            sex: r.sex,
            phone: r.phone,
            email: r.email,
            status: r.status,
            merged_into: r.merged_into,
        })
        .collect();
    Ok(PatientPage {
        items,
        next_page_token,
    })
}

/// `AND` the patient `p` has (or had) an appointment with `doctor`.
fn push_seen_by(sql: &mut QueryBuilder<'_, Postgres>, doctor: StaffId) {
    sql.push(
        " AND EXISTS (SELECT 1 FROM rm.appointments a \
           WHERE a.clinic_id = p.clinic_id AND a.patient_id = p.patient_id AND a.doctor_id = ",
    )
    .push_bind(doctor.as_uuid())
    .push(")");
}

/// A patient's whole record, as `GET /v1/patients/{id}` serves it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientRecord {
    pub patient_id: Uuid,
    #[schema(example = "MRN-000012")]
    pub mrn: String,
    pub name: NameView,
    pub birth_date: NaiveDate,
    /// `male`, `female`, `other` or `unknown`.
    pub sex: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `{lines, city, postal_code, country}`.
    #[schema(value_type = Option<Object>)]
    pub address: Option<serde_json::Value>,
    /// `{name, phone, relationship}`.
    #[schema(value_type = Option<Object>)]
    pub emergency_contact: Option<serde_json::Value>,
    /// `{provider, policy_number}`.
    #[schema(value_type = Option<Object>)]
    pub insurance: Option<serde_json::Value>,
    pub allergies: Vec<String>,
    /// `active`, `merged` or `inactive`.
    pub status: String,
    /// For a merged record, the surviving record.
    pub merged_into: Option<Uuid>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The record's version; send it back as `If-Match` with a command.
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct PatientRecordRow {
    patient_id: Uuid,
    mrn: String,
    given: String,
    family: String,
    birth_date: NaiveDate,
    sex: String,
    phone: Option<String>,
    email: Option<String>,
    address: Option<Json<serde_json::Value>>,
    emergency_contact: Option<Json<serde_json::Value>>,
    insurance: Option<Json<serde_json::Value>>,
    allergies: Json<Vec<String>>,
    status: String,
    merged_into: Option<Uuid>,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// One patient of the clinic; `None` if there is none with this id, or (with `doctor`) if
/// that doctor has never had an appointment with them.
pub async fn patient(
    pool: &PgPool,
    clinic: ClinicId,
    patient: PatientId,
    doctor: Option<StaffId>,
) -> Result<Option<PatientRecord>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(
        "SELECT p.patient_id, p.mrn, p.given, p.family, p.birth_date, p.sex, p.phone, p.email, \
                nullif(p.record -> 'address', 'null'::jsonb) AS address, \
                nullif(p.record -> 'emergency_contact', 'null'::jsonb) AS emergency_contact, \
                nullif(p.record -> 'insurance', 'null'::jsonb) AS insurance, \
                coalesce(nullif(p.record -> 'allergies', 'null'::jsonb), '[]'::jsonb) AS allergies, \
                p.status, p.merged_into, p.registered_at, p.updated_at, p.version \
         FROM rm.patients p WHERE p.clinic_id = ",
    );
    sql.push_bind(clinic.as_uuid())
        .push(" AND p.patient_id = ")
        .push_bind(patient.as_uuid());
    if let Some(doctor) = doctor {
        push_seen_by(&mut sql, doctor);
    }
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<PatientRecordRow> = sql.build_query_as().fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    Ok(row.map(|r| PatientRecord {
        patient_id: r.patient_id,
        mrn: r.mrn,
        name: NameView {
            given: r.given,
            family: r.family,
        },
        birth_date: r.birth_date,
        sex: r.sex,
        phone: r.phone,
        email: r.email,
        address: r.address.map(|Json(v)| v),
        emergency_contact: r.emergency_contact.map(|Json(v)| v),
        insurance: r.insurance.map(|Json(v)| v),
        allergies: r.allergies.0,
        status: r.status,
        merged_into: r.merged_into,
        registered_at: r.registered_at,
        updated_at: r.updated_at,
        version: r.version,
    }))
}

// ---------------------------------------------------------------------------------------
// Staff.

/// Filters of the staff roster; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct StaffFilter {
    pub role: Option<Role>,
    pub department: Option<DepartmentId>,
    pub active: Option<bool>,
}

/// One working interval, in clinic-local time.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HoursView {
    #[schema(example = "09:00:00")]
    pub start: String,
    #[schema(example = "17:00:00")]
    pub end: String,
}

/// A recorded absence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TimeOffView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A staff member, with working hours and time off.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffMember {
    pub staff_id: Uuid,
    pub name: String,
    pub email: String,
    /// `clinic_admin`, `doctor`, `nurse`, `receptionist` or `auditor`.
    pub role: String,
    pub department_id: Option<Uuid>,
    pub specialty: Option<String>,
    pub licence_number: Option<String>,
    pub active: bool,
    /// Per weekday (`mon` … `sun`), the working intervals in clinic-local time.
    pub working_hours: BTreeMap<String, Vec<HoursView>>,
    pub time_off: Vec<TimeOffView>,
    pub hired_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The staff roster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffList {
    pub items: Vec<StaffMember>,
}

#[derive(sqlx::FromRow)]
struct StaffRow {
    staff_id: Uuid,
    name: String,
    email: String,
    role: String,
    department_id: Option<Uuid>,
    specialty: Option<String>,
    licence_number: Option<String>,
    active: bool,
    working_hours: Json<BTreeMap<String, Vec<HoursView>>>,
    time_off: Json<Vec<TimeOffView>>,
    hired_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<StaffRow> for StaffMember {
    fn from(r: StaffRow) -> Self {
        StaffMember {
            staff_id: r.staff_id,
            name: r.name,
            email: r.email,
            role: r.role,
            department_id: r.department_id,
            specialty: r.specialty,
            licence_number: r.licence_number,
            active: r.active,
            working_hours: r.working_hours.0,
            time_off: r.time_off.0,
            hired_at: r.hired_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

const STAFF_COLUMNS: &str = "SELECT s.staff_id, s.name, s.email, s.role, s.department_id, \
     s.specialty, s.licence_number, s.active, s.working_hours, s.time_off, s.hired_at, \
     s.updated_at, s.version FROM rm.staff s WHERE s.clinic_id = ";

/// The clinic's staff, ordered by name.
pub async fn staff_list(
    pool: &PgPool,
    clinic: ClinicId,
    filter: &StaffFilter,
) -> Result<StaffList, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(STAFF_COLUMNS);
    sql.push_bind(clinic.as_uuid());
    if let Some(role) = filter.role {
        sql.push(" AND s.role = ").push_bind(role.as_str());
    }
    if let Some(department) = filter.department {
        sql.push(" AND s.department_id = ")
            .push_bind(department.as_uuid());
    }
    if let Some(active) = filter.active {
        sql.push(" AND s.active = ").push_bind(active);
    }
    sql.push(" ORDER BY s.name, s.staff_id");
    let mut tx = clinic_tx(pool, clinic).await?;
    let rows: Vec<StaffRow> = sql.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(StaffList {
        items: rows.into_iter().map(StaffMember::from).collect(),
    })
}

/// One staff member of the clinic.
pub async fn staff_member(
    pool: &PgPool,
    clinic: ClinicId,
    staff: StaffId,
) -> Result<Option<StaffMember>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(STAFF_COLUMNS);
    sql.push_bind(clinic.as_uuid())
        .push(" AND s.staff_id = ")
        .push_bind(staff.as_uuid());
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<StaffRow> = sql.build_query_as().fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    Ok(row.map(StaffMember::from))
}

// ---------------------------------------------------------------------------------------
// Appointments.

/// Filters of the appointment list; `None` means any. `from`/`to` bound the start time,
/// `[from, to)`.
#[derive(Debug, Clone)]
pub struct AppointmentFilter {
    pub doctor: Option<StaffId>,
    pub patient: Option<PatientId>,
    pub status: Option<AppointmentStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<AppointmentCursor>,
    /// 1..=[`MAX_PAGE_SIZE`].
    pub limit: i64,
}

/// An appointment, with the patient's and the doctor's names.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppointmentView {
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    /// "Given Family" (absent if the patient's record is not projected yet).
    pub patient_name: Option<String>,
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// FHIR code: `booked`, `checked-in`, `in-progress`, `fulfilled`, `cancelled`, `noshow`.
    pub status: String,
    /// The reason for the visit (clinical). Absent, not null, for receptionists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<Option<String>>,
    pub cancel_reason: Option<String>,
    pub booked_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl AppointmentView {
    /// Drops the clinical notes (for roles that may not see them): `reason` disappears from
    /// the JSON.
    pub fn without_clinical_notes(mut self) -> Self {
        self.reason = None;
        self
    }
}

/// One page of appointments.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AppointmentPage {
    pub items: Vec<AppointmentView>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AppointmentRow {
    appointment_id: Uuid,
    patient_id: Uuid,
    patient_name: Option<String>,
    doctor_id: Uuid,
    doctor_name: Option<String>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    status: String,
    reason: Option<String>,
    cancel_reason: Option<String>,
    booked_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

impl From<AppointmentRow> for AppointmentView {
    fn from(r: AppointmentRow) -> Self {
        AppointmentView {
            appointment_id: r.appointment_id,
            patient_id: r.patient_id,
            patient_name: r.patient_name,
            doctor_id: r.doctor_id,
            doctor_name: r.doctor_name,
            start: r.start_at,
            end: r.end_at,
            status: r.status,
            reason: Some(r.reason),
            cancel_reason: r.cancel_reason,
            booked_at: r.booked_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }
}

const APPOINTMENT_COLUMNS: &str = "SELECT a.appointment_id, a.patient_id, \
     p.given || ' ' || p.family AS patient_name, a.doctor_id, s.name AS doctor_name, \
     a.start_at, a.end_at, a.status, a.reason, a.cancel_reason, a.booked_at, a.updated_at, \
     a.version \
     FROM rm.appointments a \
     LEFT JOIN rm.patients p ON p.clinic_id = a.clinic_id AND p.patient_id = a.patient_id \
     LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
     WHERE a.clinic_id = ";

/// The clinic's appointments, ordered by start time, one page at a time.
pub async fn appointments(
    pool: &PgPool,
    clinic: ClinicId,
    filter: &AppointmentFilter,
) -> Result<AppointmentPage, sqlx::Error> {
    let limit = filter.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql = QueryBuilder::<Postgres>::new(APPOINTMENT_COLUMNS);
    sql.push_bind(clinic.as_uuid());
    if let Some(doctor) = filter.doctor {
        sql.push(" AND a.doctor_id = ").push_bind(doctor.as_uuid());
    }
    if let Some(patient) = filter.patient {
        sql.push(" AND a.patient_id = ")
            .push_bind(patient.as_uuid());
    }
    if let Some(status) = filter.status {
        sql.push(" AND a.status = ").push_bind(status.as_str());
    }
    if let Some(from) = filter.from {
        sql.push(" AND a.start_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        sql.push(" AND a.start_at < ").push_bind(to);
    }
    if let Some(after) = &filter.after {
        sql.push(" AND (a.start_at, a.appointment_id) > (")
            .push_bind(after.start)
            .push(", ")
            .push_bind(after.appointment_id)
            .push(")");
    }
    sql.push(" ORDER BY a.start_at, a.appointment_id LIMIT ")
        .push_bind(limit + 1);

    let mut tx = clinic_tx(pool, clinic).await?;
    let mut rows: Vec<AppointmentRow> = sql.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;

    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => Some(
            AppointmentCursor {
                start: last.start_at,
                appointment_id: last.appointment_id,
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(AppointmentPage {
        items: rows.into_iter().map(AppointmentView::from).collect(),
        next_page_token,
    })
}

/// One appointment of the clinic; with `doctor`, only if it is that doctor's.
pub async fn appointment(
    pool: &PgPool,
    clinic: ClinicId,
    appointment: AppointmentId,
    doctor: Option<StaffId>,
) -> Result<Option<AppointmentView>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(APPOINTMENT_COLUMNS);
    sql.push_bind(clinic.as_uuid())
        .push(" AND a.appointment_id = ")
        .push_bind(appointment.as_uuid());
    if let Some(doctor) = doctor {
        sql.push(" AND a.doctor_id = ").push_bind(doctor.as_uuid());
    }
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<AppointmentRow> = sql.build_query_as().fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    Ok(row.map(AppointmentView::from))
}

// ---------------------------------------------------------------------------------------
// Dashboard.

/// Appointments per FHIR status.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct StatusCounts {
    pub booked: i64,
    #[serde(rename = "checked-in")]
    pub checked_in: i64,
    #[serde(rename = "in-progress")]
    pub in_progress: i64,
    pub fulfilled: i64,
    pub cancelled: i64,
    pub noshow: i64,
}

impl StatusCounts {
    fn add(&mut self, status: &str, n: i64) {
        match status {
            "booked" => self.booked += n,
            "checked-in" => self.checked_in += n,
            "in-progress" => self.in_progress += n,
            "fulfilled" => self.fulfilled += n,
            "cancelled" => self.cancelled += n,
            "noshow" => self.noshow += n,
            _ => {}
        }
    }
}

/// One local day of the dashboard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayStatus {
    /// The clinic-local date.
    pub date: NaiveDate,
    pub total: i64,
    pub by_status: StatusCounts,
}

/// A doctor's appointments on one local day (cancelled ones not counted).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DayLoad {
    pub date: NaiveDate,
    pub appointments: i64,
}

/// A doctor's load over the dashboard's days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DoctorLoad {
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    /// Appointments over all the days (cancelled ones not counted).
    pub total: i64,
    /// One entry per day, today first.
    pub days: Vec<DayLoad>,
}

/// The no-show rate of the last 30 days.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NoShowRate {
    pub since: DateTime<Utc>,
    /// Appointments that started since then and were marked no-show.
    pub noshow: i64,
    /// Appointments that started since then and were no-show, checked in, in progress or
    /// fulfilled.
    pub counted: i64,
    /// `noshow / counted`; null when nothing was counted.
    pub rate: Option<f64>,
}

/// An upcoming appointment on the dashboard.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UpcomingAppointment {
    pub appointment_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: String,
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    pub patient_id: Uuid,
    pub patient_name: Option<String>,
}

/// The clinic's dashboard, in its local time zone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dashboard {
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    pub generated_at: DateTime<Utc>,
    /// The clinic-local date today.
    pub today: NaiveDate,
    /// Today and the next 7 days: appointments per status.
    pub days: Vec<DayStatus>,
    /// Per doctor (every active doctor, and any other doctor with appointments in the
    /// window), appointments per day over the same days.
    pub doctor_load: Vec<DoctorLoad>,
    pub no_show_30d: NoShowRate,
    /// The Monday that starts the current local ISO week.
    pub week_start: NaiveDate,
    /// Patients registered since the start of the local week.
    pub new_patients_this_week: i64,
    /// The next (at most 10) active appointments that are not over yet, soonest first.
    pub next_appointments: Vec<UpcomingAppointment>,
}

#[derive(sqlx::FromRow)]
struct DashboardFrame {
    tz: String,
    now: DateTime<Utc>,
    today: NaiveDate,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    week_start: NaiveDate,
    week_start_at: DateTime<Utc>,
    no_show_since: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct UpcomingRow {
    appointment_id: Uuid,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    status: String,
    doctor_id: Uuid,
    doctor_name: Option<String>,
    patient_id: Uuid,
    patient_name: Option<String>,
}

/// The clinic's dashboard at `now` (the service clock's). With `doctor`, the list of next
/// appointments holds only that doctor's (the counts stay clinic-wide and name no patients).
pub async fn dashboard(
    pool: &PgPool,
    clinic: ClinicId,
    doctor: Option<StaffId>,
    now: DateTime<Utc>,
) -> Result<Dashboard, sqlx::Error> {
    let clinic_uuid = clinic.as_uuid();
    let mut tx = clinic_tx(pool, clinic).await?;

    // The clinic's clock: local today, the window of days, the local week. A clinic not
    // projected yet counts in UTC.
    let frame: DashboardFrame = sqlx::query_as(
        "WITH z AS (SELECT coalesce((SELECT time_zone FROM rm.clinics WHERE clinic_id = $1), 'UTC') AS tz), \
              l AS (SELECT tz, $3::timestamptz AS now, ($3::timestamptz AT TIME ZONE tz) AS local_now FROM z) \
         SELECT tz, now, local_now::date AS today, \
                (local_now::date::timestamp AT TIME ZONE tz) AS window_start, \
                ((local_now::date + $2::int)::timestamp AT TIME ZONE tz) AS window_end, \
                date_trunc('week', local_now)::date AS week_start, \
                (date_trunc('week', local_now) AT TIME ZONE tz) AS week_start_at, \
                now - interval '30 days' AS no_show_since \
         FROM l",
    )
    .bind(clinic_uuid)
    .bind(DASHBOARD_DAYS as i32)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;

    let per_status: Vec<(NaiveDate, String, i64)> = sqlx::query_as(
        "SELECT (a.start_at AT TIME ZONE $2)::date, a.status, count(*) \
         FROM rm.appointments a \
         WHERE a.clinic_id = $1 AND a.start_at >= $3 AND a.start_at < $4 \
         GROUP BY 1, 2",
    )
    .bind(clinic_uuid)
    .bind(&frame.tz)
    .bind(frame.window_start)
    .bind(frame.window_end)
    .fetch_all(&mut *tx)
    .await?;

    let per_doctor: Vec<(Uuid, Option<String>, Option<NaiveDate>, i64)> = sqlx::query_as(
        "SELECT d.staff_id, d.name, NULL::date, 0::bigint \
         FROM rm.staff d WHERE d.clinic_id = $1 AND d.role = 'doctor' AND d.active \
         UNION ALL \
         SELECT a.doctor_id, s.name, (a.start_at AT TIME ZONE $2)::date, count(*) \
         FROM rm.appointments a \
         LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
         WHERE a.clinic_id = $1 AND a.start_at >= $3 AND a.start_at < $4 \
           AND a.status <> 'cancelled' \
         GROUP BY 1, 2, 3",
    )
    .bind(clinic_uuid)
    .bind(&frame.tz)
    .bind(frame.window_start)
    .bind(frame.window_end)
    .fetch_all(&mut *tx)
    .await?;

    let (noshow, counted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE a.status = 'noshow'), count(*) \
         FROM rm.appointments a \
         WHERE a.clinic_id = $1 AND a.start_at >= $2 AND a.start_at <= $3 \
           AND a.status IN ('noshow', 'fulfilled', 'checked-in', 'in-progress')",
    )
    .bind(clinic_uuid)
    .bind(frame.no_show_since)
    .bind(frame.now)
    .fetch_one(&mut *tx)
    .await?;

    let new_patients: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm.patients p WHERE p.clinic_id = $1 AND p.registered_at >= $2",
    )
    .bind(clinic_uuid)
    .bind(frame.week_start_at)
    .fetch_one(&mut *tx)
    .await?;

    let next: Vec<UpcomingRow> = sqlx::query_as(
        "SELECT a.appointment_id, a.start_at, a.end_at, a.status, a.doctor_id, \
                s.name AS doctor_name, a.patient_id, p.given || ' ' || p.family AS patient_name \
         FROM rm.appointments a \
         LEFT JOIN rm.patients p ON p.clinic_id = a.clinic_id AND p.patient_id = a.patient_id \
         LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
         WHERE a.clinic_id = $1 AND a.status IN ('booked', 'checked-in', 'in-progress') \
           AND a.end_at > $2 AND ($3::uuid IS NULL OR a.doctor_id = $3) \
         ORDER BY a.start_at, a.appointment_id LIMIT $4",
    )
    .bind(clinic_uuid)
    .bind(frame.now)
    .bind(doctor.map(|d| d.as_uuid()))
    .bind(DASHBOARD_NEXT)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let dates: Vec<NaiveDate> = frame
        .today
        .iter_days()
        .take(DASHBOARD_DAYS as usize)
        .collect();
    let index = |date: NaiveDate| dates.iter().position(|d| *d == date);

    let mut days: Vec<DayStatus> = dates
        .iter()
        .map(|&date| DayStatus {
            date,
            total: 0,
            by_status: StatusCounts::default(),
        })
        .collect();
    for (date, status, n) in per_status {
        if let Some(day) = index(date).and_then(|i| days.get_mut(i)) {
            day.total += n;
            day.by_status.add(&status, n);
        }
    }

    let mut loads: BTreeMap<Uuid, DoctorLoad> = BTreeMap::new();
    for (doctor_id, name, date, n) in per_doctor {
        let load = loads.entry(doctor_id).or_insert_with(|| DoctorLoad {
            doctor_id,
            doctor_name: None,
            total: 0,
            days: dates
                .iter()
                .map(|&date| DayLoad {
                    date,
                    appointments: 0,
                })
                .collect(),
        });
        if load.doctor_name.is_none() {
            load.doctor_name = name;
        }
        if let Some(day) = date.and_then(index).and_then(|i| load.days.get_mut(i)) {
            day.appointments += n;
            load.total += n;
        }
    }
    let mut doctor_load: Vec<DoctorLoad> = loads.into_values().collect();
    doctor_load.sort_by(|a, b| (&a.doctor_name, a.doctor_id).cmp(&(&b.doctor_name, b.doctor_id)));

    Ok(Dashboard {
        time_zone: frame.tz,
        generated_at: frame.now,
        today: frame.today,
        days,
        doctor_load,
        no_show_30d: NoShowRate {
            since: frame.no_show_since,
            noshow,
            counted,
            rate: (counted > 0).then(|| noshow as f64 / counted as f64),
        },
        week_start: frame.week_start,
        new_patients_this_week: new_patients,
        next_appointments: next
            .into_iter()
            .map(|r| UpcomingAppointment {
                appointment_id: r.appointment_id,
                start: r.start_at,
                end: r.end_at,
                status: r.status,
                doctor_id: r.doctor_id,
                doctor_name: r.doctor_name,
                patient_id: r.patient_id,
                patient_name: r.patient_name,
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Clinics.

/// A department of the clinic.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepartmentView {
    pub department_id: Uuid,
    pub name: String,
    /// False once the department is closed.
    pub open: bool,
}

/// The caller's own clinic.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClinicView {
    pub clinic_id: Uuid,
    pub name: String,
    #[schema(example = "north")]
    pub code: String,
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// `free`, `standard` or `enterprise`.
    pub plan: String,
    /// `active` or `suspended`.
    pub status: String,
    /// The length of a booking slot, in minutes.
    pub slot_minutes: i32,
    pub departments: Vec<DepartmentView>,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ClinicRow {
    clinic_id: Uuid,
    name: String,
    code: String,
    time_zone: String,
    plan: String,
    status: String,
    slot_minutes: i32,
    departments: Json<Vec<DepartmentView>>,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// The clinic itself; `None` before its registration is projected.
pub async fn clinic(pool: &PgPool, clinic: ClinicId) -> Result<Option<ClinicView>, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<ClinicRow> = sqlx::query_as(
        "SELECT clinic_id, name, code, time_zone, plan, status, slot_minutes, departments, \
                registered_at, updated_at \
         FROM rm.clinics WHERE clinic_id = $1",
    )
    .bind(clinic.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.map(|r| ClinicView {
        clinic_id: r.clinic_id,
        name: r.name,
        code: r.code,
        time_zone: r.time_zone,
        plan: r.plan,
        status: r.status,
        slot_minutes: r.slot_minutes,
        departments: r.departments.0,
        registered_at: r.registered_at,
        updated_at: r.updated_at,
    }))
}

/// A clinic as the platform admin sees it: no patient data, only counts.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ClinicSummary {
    pub clinic_id: Uuid,
    pub name: String,
    pub code: String,
    /// `free`, `standard` or `enterprise`.
    pub plan: String,
    /// `active` or `suspended`.
    pub status: String,
    pub time_zone: String,
    pub staff_count: i32,
    pub patient_count: i32,
    pub appointment_count: i32,
    pub registered_at: DateTime<Utc>,
}

/// Every clinic of the platform.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClinicList {
    pub items: Vec<ClinicSummary>,
}

/// Platform-level: every clinic, ordered by name.
pub async fn platform_clinics(pool: &PgPool) -> Result<ClinicList, sqlx::Error> {
    let mut tx = platform_tx(pool).await?;
    let items: Vec<ClinicSummary> = sqlx::query_as(
        "SELECT clinic_id, name, code, plan, status, time_zone, staff_count, patient_count, \
                appointment_count, registered_at \
         FROM rm.clinics ORDER BY name, clinic_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ClinicList { items })
}

/// Platform statistics: no patient data, only counts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformOverview {
    pub clinics: i64,
    /// Clinics per plan (every plan listed, zero included).
    pub clinics_by_plan: BTreeMap<String, i64>,
    /// Clinics per status (`active`, `suspended`).
    pub clinics_by_status: BTreeMap<String, i64>,
    /// Staff members of every clinic.
    pub staff: i64,
    pub patients: i64,
    pub appointments: i64,
}

/// Platform-level: counts over every clinic.
pub async fn platform_overview(pool: &PgPool) -> Result<PlatformOverview, sqlx::Error> {
    let mut tx = platform_tx(pool).await?;
    let by_plan: Vec<(String, i64)> =
        sqlx::query_as("SELECT plan, count(*) FROM rm.clinics GROUP BY plan")
            .fetch_all(&mut *tx)
            .await?;
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM rm.clinics GROUP BY status")
            .fetch_all(&mut *tx)
            .await?;
    let (clinics, staff, patients, appointments): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(staff_count), 0)::bigint, \
                coalesce(sum(patient_count), 0)::bigint, coalesce(sum(appointment_count), 0)::bigint \
         FROM rm.clinics",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut clinics_by_plan: BTreeMap<String, i64> = Plan::ALL
        .iter()
        .map(|p| (p.as_str().to_owned(), 0))
        .collect();
    clinics_by_plan.extend(by_plan);
    let mut clinics_by_status: BTreeMap<String, i64> = ["active", "suspended"]
        .iter()
        .map(|s| ((*s).to_owned(), 0))
        .collect();
    clinics_by_status.extend(by_status);
    Ok(PlatformOverview {
        clinics,
        clinics_by_plan,
        clinics_by_status,
        staff,
        patients,
        appointments,
    })
}

// ---------------------------------------------------------------------------------------
// Availability.

/// What a doctor's availability is computed from (see `domain::schedule::Schedule`): the
/// doctor's weekly hours and time off, the clinic's time zone and slot step, and the doctor's
/// active appointments (`booked`, `checked-in`, `in-progress`) overlapping the window asked
/// about.
#[derive(Debug, Clone)]
pub struct DoctorSchedule {
    pub doctor_id: Uuid,
    pub hours: WorkingHours,
    pub time_off: Vec<TimeRange>,
    pub time_zone: TimeZone,
    /// The clinic's slot step in minutes.
    pub step_minutes: u32,
    /// The doctor's active appointments overlapping `[from, to)`, by start time.
    pub busy: Vec<TimeRange>,
}

#[derive(sqlx::FromRow)]
struct DoctorScheduleRow {
    working_hours: Json<serde_json::Value>,
    time_off: Json<Vec<TimeOffView>>,
    time_zone: String,
    slot_minutes: i32,
}

/// A read-model value that does not parse as its domain type (a projection bug, not the
/// caller's): surfaced as a decode error.
fn corrupt(what: &str, error: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("rm: {what}: {error}").into())
}

/// Everything availability needs for one doctor of `clinic` over `[from, to)`, read in one
/// clinic-scoped transaction. `None` unless `doctor` is an active member of the clinic with the
/// doctor role (and the clinic itself is projected).
pub async fn doctor_schedule(
    pool: &PgPool,
    clinic: ClinicId,
    doctor: StaffId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DoctorSchedule>, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<DoctorScheduleRow> = sqlx::query_as(
        "SELECT s.working_hours, s.time_off, c.time_zone, c.slot_minutes \
         FROM rm.staff s JOIN rm.clinics c ON c.clinic_id = s.clinic_id \
         WHERE s.clinic_id = $1 AND s.staff_id = $2 AND s.role = 'doctor' AND s.active",
    )
    .bind(clinic.as_uuid())
    .bind(doctor.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(None);
    };
    let busy: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT a.start_at, a.end_at FROM rm.appointments a \
         WHERE a.clinic_id = $1 AND a.doctor_id = $2 \
           AND a.status IN ('booked', 'checked-in', 'in-progress') \
           AND a.start_at < $4 AND a.end_at > $3 \
         ORDER BY a.start_at, a.appointment_id",
    )
    .bind(clinic.as_uuid())
    .bind(doctor.as_uuid())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let hours: WorkingHours = serde_json::from_value(row.working_hours.0)
        .map_err(|e| corrupt("staff.working_hours", e))?;
    let time_off = row
        .time_off
        .0
        .into_iter()
        .map(|off| TimeRange::new(off.start, off.end).map_err(|e| corrupt("staff.time_off", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let time_zone = TimeZone::parse(&row.time_zone).map_err(|e| corrupt("clinics.time_zone", e))?;
    let step_minutes = u32::try_from(row.slot_minutes)
        .ok()
        .filter(|m| *m > 0)
        .ok_or_else(|| corrupt("clinics.slot_minutes", row.slot_minutes))?;
    let busy = busy
        .into_iter()
        .map(|(start, end)| TimeRange::new(start, end).map_err(|e| corrupt("appointments", e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(DoctorSchedule {
        doctor_id: doctor.as_uuid(),
        hours,
        time_off,
        time_zone,
        step_minutes,
        busy,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_shapes() {
        assert_eq!(PatientSearch::parse(None), Ok(PatientSearch::All));
        assert_eq!(PatientSearch::parse(Some("  ")), Ok(PatientSearch::All));
        assert_eq!(
            PatientSearch::parse(Some("1984-02-29")),
            Ok(PatientSearch::BirthDate(
                NaiveDate::from_ymd_opt(1984, 2, 29).unwrap()
            ))
        );
        assert_eq!(
            PatientSearch::parse(Some("1985-02-29")),
            Err(InvalidQuery::BadDate)
        );
        assert_eq!(
            PatientSearch::parse(Some("mrn-12")),
            Ok(PatientSearch::Mrn(Mrn::from_number(12)))
        );
        assert_eq!(
            PatientSearch::parse(Some("MRN-x")),
            Err(InvalidQuery::BadMrn)
        );
        assert_eq!(
            PatientSearch::parse(Some("+49 (30) 1234")),
            Ok(PatientSearch::Phone("49301234".into()))
        );
        assert_eq!(
            PatientSearch::parse(Some("030")),
            Err(InvalidQuery::PhoneTooShort)
        );
        assert_eq!(
            PatientSearch::parse(Some("  Zoë   Ång ")),
            Ok(PatientSearch::Name("Zoë Ång".into()))
        );
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let cursor = PatientCursor {
            family_key: "angstrom".into(),
            given_key: "zoe".into(),
            patient_id: Uuid::now_v7(),
        };
        assert_eq!(PatientCursor::decode(&cursor.encode()), Ok(cursor));
        let cursor = AppointmentCursor {
            start: "2027-01-13T08:00:00.123456Z".parse().unwrap(),
            appointment_id: Uuid::now_v7(),
        };
        assert_eq!(AppointmentCursor::decode(&cursor.encode()), Ok(cursor));
        assert_eq!(
            PatientCursor::decode("not a token"),
            Err(InvalidQuery::BadPageToken)
        );
        assert_eq!(
            PatientCursor::decode(&URL_SAFE_NO_PAD.encode(b"{}")),
            Err(InvalidQuery::BadPageToken)
        );
    }

    #[test]
    fn hidden_reason_is_absent_not_null() {
        let at: DateTime<Utc> = "2027-01-13T08:00:00Z".parse().unwrap();
        let view = AppointmentView {
            appointment_id: Uuid::nil(),
            patient_id: Uuid::nil(),
            patient_name: None,
            doctor_id: Uuid::nil(),
            doctor_name: None,
            start: at,
            end: at,
            status: "booked".into(),
            reason: Some(None),
            cancel_reason: None,
            booked_at: at,
            updated_at: at,
            version: 1,
        };
        let shown = serde_json::to_value(&view).unwrap();
        assert!(shown.as_object().unwrap().contains_key("reason"));
        let hidden = serde_json::to_value(view.without_clinical_notes()).unwrap();
        assert!(!hidden.as_object().unwrap().contains_key("reason"));
    }
}
