//! The clinic's dashboard: counts over the appointments, staff and patients read models, in
//! the clinic's local time zone; and its billing figures over the invoices read model.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::{ClinicId, StaffId};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::invoices::CurrencyAmount;
use crate::scope::clinic_tx;

/// How many days the dashboard covers: today and the next 7.
pub const DASHBOARD_DAYS: i64 = 8;
/// How many upcoming appointments the dashboard lists.
pub const DASHBOARD_NEXT: i64 = 10;

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
    /// Revenue this month and the amount outstanding, for the roles that handle invoices
    /// (clinic admins and receptionists: the clinic's; a doctor: their own invoices') when the
    /// billing module is enabled; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing: Option<BillingFigures>,
}

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

    let per_status: Vec<(NaiveDate, String, i64)> = in_window(
        &mut tx,
        "SELECT (a.start_at AT TIME ZONE $2)::date, a.status, count(*) \
         FROM rm.appointments a \
         WHERE a.clinic_id = $1 AND a.start_at >= $3 AND a.start_at < $4 \
         GROUP BY 1, 2",
        clinic_uuid,
        &frame,
    )
    .await?;

    let per_doctor: Vec<(Uuid, Option<String>, Option<NaiveDate>, i64)> = in_window(
        &mut tx,
        "SELECT d.staff_id, d.name, NULL::date, 0::bigint \
         FROM rm.staff d WHERE d.clinic_id = $1 AND d.role = 'doctor' AND d.active \
         UNION ALL \
         SELECT a.doctor_id, s.name, (a.start_at AT TIME ZONE $2)::date, count(*) \
         FROM rm.appointments a \
         LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
         WHERE a.clinic_id = $1 AND a.start_at >= $3 AND a.start_at < $4 \
           AND a.status <> 'cancelled' \
         GROUP BY 1, 2, 3",
        clinic_uuid,
        &frame,
    )
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

    // The week's 15-minute buckets from the first one that starts at or after the week's
    // start, plus the patients of the partial bucket before it (none where the week starts on
    // a bucket boundary, as every time zone's midnight does today).
    let new_patients: i64 = sqlx::query_scalar(
        "WITH b AS (SELECT CASE WHEN rm_bucket($2) = $2 THEN $2 \
                           ELSE rm_bucket($2) + interval '15 minutes' END AS first) \
         SELECT coalesce((SELECT sum(r.registered) FROM rm.patient_registrations r, b \
                          WHERE r.clinic_id = $1 AND r.bucket >= b.first), 0)::bigint \
              + (SELECT count(*) FROM rm.patients p, b \
                 WHERE p.clinic_id = $1 AND p.registered_at >= $2 AND p.registered_at < b.first)",
    )
    .bind(clinic_uuid)
    .bind(frame.week_start_at)
    .fetch_one(&mut *tx)
    .await?;

    // Not over yet (`end_at > now`) means it started less than the longest appointment ago:
    // the scan starts there, in start order, and stops at the tenth.
    let next: Vec<UpcomingRow> = sqlx::query_as(&format!(
        "SELECT a.appointment_id, a.start_at, a.end_at, a.status, a.doctor_id, \
                s.name AS doctor_name, a.patient_id, p.given || ' ' || p.family AS patient_name \
         FROM rm.appointments a \
         LEFT JOIN rm.patients p ON p.clinic_id = a.clinic_id AND p.patient_id = a.patient_id \
         LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
         WHERE a.clinic_id = $1 AND a.status IN ('booked', 'checked-in', 'in-progress') \
           AND a.end_at > $2 AND a.start_at > $3 {} \
         ORDER BY a.start_at, a.appointment_id LIMIT $4",
        if doctor.is_some() {
            "AND a.doctor_id = $5"
        } else {
            "AND $5::uuid IS NULL"
        }
    ))
    .bind(clinic_uuid)
    .bind(frame.now)
    .bind(frame.now - longest_appointment())
    .bind(DASHBOARD_NEXT)
    .bind(doctor.map(|d| d.as_uuid()))
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
        billing: None,
    })
}

/// The longest an appointment can last (the domain refuses longer ones): an appointment that
/// is not over at `t` started after `t` minus this.
pub(crate) fn longest_appointment() -> chrono::Duration {
    chrono::Duration::hours(domain::appointment::MAX_DURATION_HOURS)
}

/// Runs `sql` over the clinic's appointments in the dashboard's window of days: `$1` is the
/// clinic, `$2` its time zone, `$3` and `$4` the window's start and end.
async fn in_window<T>(
    conn: &mut PgConnection,
    sql: &str,
    clinic: Uuid,
    frame: &DashboardFrame,
) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(sql)
        .bind(clinic)
        .bind(&frame.tz)
        .bind(frame.window_start)
        .bind(frame.window_end)
        .fetch_all(conn)
        .await
}

/// The dashboard's billing figures (issue 14), in the clinic's local time zone: what was taken
/// this month and what is still due, per currency (minor units).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BillingFigures {
    /// The first day of the current local month.
    pub month_start: NaiveDate,
    /// Payments minus refunds recorded since the start of the local month.
    pub revenue_this_month: Vec<CurrencyAmount>,
    /// Still due on issued and partially-paid invoices.
    pub outstanding: Vec<CurrencyAmount>,
}

/// The clinic's billing figures at `now` (the service clock's); with `doctor`, over that
/// doctor's invoices only.
pub async fn billing(
    pool: &PgPool,
    clinic: ClinicId,
    doctor: Option<StaffId>,
    now: DateTime<Utc>,
) -> Result<BillingFigures, sqlx::Error> {
    let clinic_uuid = clinic.as_uuid();
    let doctor = doctor.map(|d| d.as_uuid());
    let mut tx = clinic_tx(pool, clinic).await?;
    // The local month: its first day, and its bounds as instants.
    let (month_start, from, to): (NaiveDate, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "WITH z AS (SELECT coalesce((SELECT time_zone FROM rm.clinics WHERE clinic_id = $1), 'UTC') AS tz), \
              m AS (SELECT tz, date_trunc('month', $2::timestamptz AT TIME ZONE tz) AS local_start FROM z) \
         SELECT local_start::date, local_start AT TIME ZONE tz, \
                (local_start + interval '1 month') AT TIME ZONE tz \
         FROM m",
    )
    .bind(clinic_uuid)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let revenue: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency, sum(CASE WHEN kind = 'payment' THEN amount ELSE -amount END)::bigint \
         FROM rm.invoice_payments \
         WHERE clinic_id = $1 AND recorded_at >= $2 AND recorded_at < $3 \
           AND ($4::uuid IS NULL OR doctor_id = $4) \
         GROUP BY currency ORDER BY currency",
    )
    .bind(clinic_uuid)
    .bind(from)
    .bind(to)
    .bind(doctor)
    .fetch_all(&mut *tx)
    .await?;
    let outstanding: Vec<(String, i64)> = sqlx::query_as(
        "SELECT currency, sum(balance)::bigint FROM rm.invoices \
         WHERE clinic_id = $1 AND status IN ('issued', 'partially-paid') \
           AND ($2::uuid IS NULL OR doctor_id = $2) \
         GROUP BY currency ORDER BY currency",
    )
    .bind(clinic_uuid)
    .bind(doctor)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let amounts = |rows: Vec<(String, i64)>| {
        rows.into_iter()
            .map(|(currency, amount)| CurrencyAmount { currency, amount })
            .collect()
    };
    Ok(BillingFigures {
        month_start,
        revenue_this_month: amounts(revenue),
        outstanding: amounts(outstanding),
    })
}
