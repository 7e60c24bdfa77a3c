//! The clinic itself, and the platform admin's view of every clinic (no patient data).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::clinic::DEFAULT_APPOINTMENT_MINUTES;
use domain::ids::ClinicId;
use domain::values::Plan;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scope::{clinic_tx, end_read, platform_tx};

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
    /// `trial`, `basic`, `professional` or `enterprise` (`GET /v1/plans`).
    #[schema(example = "professional")]
    pub plan: String,
    /// When the trial ends (the clinic is read-only from then on); absent on a paid plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// `active` or `suspended`.
    pub status: String,
    /// The slot step: bookings start on this grid, in minutes.
    pub slot_minutes: i32,
    /// The default length of an appointment, in minutes.
    pub appointment_minutes: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub address: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The working week a new doctor starts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub working_week: Option<Value>,
    /// The enabled modules (`appointments`, `billing`, `laboratory`).
    pub modules: Vec<String>,
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
    trial_ends_at: Option<DateTime<Utc>>,
    status: String,
    slot_minutes: i32,
    departments: Json<Vec<DepartmentView>>,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    modules: Vec<String>,
    settings: Json<ClinicSettings>,
}

/// `rm.clinics.settings`: the settings without a column of their own.
#[derive(Debug, Default, Deserialize)]
struct ClinicSettings {
    logo_url: Option<String>,
    address: Option<Value>,
    phone: Option<String>,
    appointment_minutes: Option<i32>,
    working_week: Option<Value>,
}

/// The clinic itself; `None` before its registration is projected.
pub async fn clinic(pool: &PgPool, clinic: ClinicId) -> Result<Option<ClinicView>, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    let row: Option<ClinicRow> = sqlx::query_as(
        "SELECT clinic_id, name, code, time_zone, plan, trial_ends_at, status, slot_minutes, \
                departments, registered_at, updated_at, modules, settings \
         FROM rm.clinics WHERE clinic_id = $1",
    )
    .bind(clinic.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    end_read(tx);
    Ok(row.map(|r| {
        let settings = r.settings.0;
        ClinicView {
            clinic_id: r.clinic_id,
            name: r.name,
            code: r.code,
            time_zone: r.time_zone,
            plan: r.plan,
            trial_ends_at: r.trial_ends_at,
            status: r.status,
            slot_minutes: r.slot_minutes,
            appointment_minutes: settings
                .appointment_minutes
                .unwrap_or(DEFAULT_APPOINTMENT_MINUTES as i32),
            logo_url: settings.logo_url,
            address: settings.address,
            phone: settings.phone,
            working_week: settings.working_week,
            modules: r.modules,
            departments: r.departments.0,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
        }
    }))
}

/// A clinic as the platform admin sees it: no patient data, only counts.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ClinicSummary {
    pub clinic_id: Uuid,
    pub name: String,
    pub code: String,
    /// `trial`, `basic`, `professional` or `enterprise`.
    pub plan: String,
    /// When the trial ends; absent on a paid plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_ends_at: Option<DateTime<Utc>>,
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
        "SELECT clinic_id, name, code, plan, trial_ends_at, status, time_zone, staff_count, \
                patient_count, appointment_count, registered_at \
         FROM rm.clinics ORDER BY name, clinic_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);
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
    /// Each clinic's bookings of its current calendar month (in its time zone).
    pub bookings_this_month: Vec<crate::reports::ClinicBookings>,
    /// The clinics closest to a limit of their plan: each clinic's fullest limit, fullest
    /// first, at most ten.
    pub closest_to_limits: Vec<crate::reports::LimitUse>,
}

/// Platform-level: counts over every clinic, and their use of their plans at `now`.
pub async fn platform_overview(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<PlatformOverview, sqlx::Error> {
    let (bookings_this_month, closest_to_limits) = crate::reports::platform_use(pool, now).await?;
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
    end_read(tx);

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
        bookings_this_month,
        closest_to_limits,
    })
}
