//! The staff roster.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::ids::{ClinicId, DepartmentId, StaffId};
use domain::values::Role;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scope::{clinic_tx, end_read};

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
    end_read(tx);
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
    end_read(tx);
    Ok(row.map(StaffMember::from))
}
