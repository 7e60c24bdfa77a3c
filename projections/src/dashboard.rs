//! The clinic's dashboard: counts over the appointments, staff and patients read models, in
//! the clinic's local time zone; and its billing figures over the invoices read model.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::{ClinicId, StaffId};
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::invoices::CurrencyAmount;
use crate::scope::{clinic_generic_plan_tx, end_read};

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

/// The whole dashboard in one statement (one round trip): the clinic's clock (local today,
/// the window of days, the local week and month; UTC for a clinic not projected yet), then
/// each figure as a subquery over that frame. `$1` is the clinic, `$2` the number of days,
/// `$3` now, `$4` now minus the longest appointment, `$5` how many upcoming appointments, `$6`
/// the doctor (`{appointment_doctor}`, `{payment_doctor}` and `{invoice_doctor}` read the
/// upcoming appointments and the billing figures of the clinic, requiring it null, or of the
/// doctor: [`DASHBOARD_STATEMENTS`]), `$7` whether to sum the
/// billing figures (the month's revenue and what is outstanding; when false their subqueries
/// read nothing). The billing figures were a transaction of their own with three statements,
/// after the dashboard's.
///
/// The listed appointments' patient names are a subquery per appointment (a primary-key
/// look-up each): as a join, the generic plan, which cannot see `LIMIT $5`, once estimated
/// 151 appointments and a hash join over every patient of the clinic (100,000 read at the
/// benchmark's large clinic: 45 ms of CPU per dashboard).
///
/// An appointment not over yet (`end_at > now`) started less than the longest appointment
/// ago: the upcoming scan starts there, in start order, and stops at the last one listed.
/// The clinic's scan reads the partial index `(clinic_id, start_at, appointment_id)`, a
/// doctor's `(clinic_id, doctor_id, start_at, appointment_id)`, both `WHERE status IN (the
/// active ones)` (migration `20261207000003_active_appointments_index.sql`): the status list
/// must stay the indexes' predicate word for word, or the planner cannot use them (the e2e
/// test `the_dashboard_lists_the_next_appointments_without_reading_the_cancelled_ones_ahead`
/// counts the rows read). One scan in start order filtered on the status read every
/// cancelled appointment ahead of the ones it listed: at the benchmark's large clinic, whose
/// first 1,444 appointments ahead were cancelled, 1,454 rows for 10 listed, 0.45 ms of a
/// 0.88 ms statement (`EXPLAIN ANALYZE`); a doctor's dashboard did so until 2026-12-07 (the
/// clinic's read one range per active status, then sorted them, since 584dcb2).
///
/// The week's new patients are its 15-minute buckets from the first one that starts at or
/// after the week's start, plus the patients of the partial bucket before it (none where
/// the week starts on a bucket boundary, as every time zone's midnight does today).
///
/// The window's appointments are read once, counted per local day, status and doctor; the
/// per-day and per-doctor figures are summed from those counts here, with the clinic's staff
/// (names, and which doctors are active) read alongside. It read the window twice, once
/// joined to the staff: 0.45 ms of the statement at the benchmark's large clinic, now
/// 0.2 ms.
///
/// The 30 days' no-shows are counted one status at a time, each a range of the
/// `(clinic_id, status, start_at)` index read without the heap. Counted in one scan of the
/// window by start, every appointment of the 30 days was read and its status tested: at the
/// benchmark's large clinic 2,875 index entries for 718 counted, 1.18 ms of a 2.1 ms
/// dashboard (`EXPLAIN ANALYZE`); one range per status reads only the 718, 0.41 ms.
///
/// The time zone `z` is materialised: inlined, each of the frame's uses of `tz` became an
/// InitPlan of its own: the clinic's row was read 15 times, and the frame took 0.19 ms in
/// `EXPLAIN ANALYZE` (0.03–0.06 ms now).
const DASHBOARD_SQL: &str = "\
WITH z AS MATERIALIZED (SELECT coalesce((SELECT time_zone FROM rm.clinics WHERE clinic_id = $1), 'UTC') AS tz), \
     l AS (SELECT tz, $3::timestamptz AS now, ($3::timestamptz AT TIME ZONE tz) AS local_now FROM z), \
     w AS ( \
       SELECT tz, now, local_now::date AS today, \
              (local_now::date::timestamp AT TIME ZONE tz) AS window_start, \
              ((local_now::date + $2::int)::timestamp AT TIME ZONE tz) AS window_end, \
              date_trunc('week', local_now)::date AS week_start, \
              (date_trunc('week', local_now) AT TIME ZONE tz) AS week_start_at, \
              now - interval '30 days' AS no_show_since, \
              date_trunc('month', local_now)::date AS month_start, \
              (date_trunc('month', local_now) AT TIME ZONE tz) AS month_from, \
              ((date_trunc('month', local_now) + interval '1 month') AT TIME ZONE tz) AS month_to \
       FROM l), \
     f AS MATERIALIZED ( \
       SELECT w.*, CASE WHEN rm_bucket(week_start_at) = week_start_at THEN week_start_at \
                        ELSE rm_bucket(week_start_at) + interval '15 minutes' END AS first_bucket \
       FROM w) \
SELECT f.tz, f.now, f.today, f.week_start, f.no_show_since, f.month_start, \
       wc.window_counts, st.staff, ns.noshow, ns.counted, np.new_patients, nx.next, \
       rv.revenue, os.outstanding \
FROM f \
CROSS JOIN LATERAL ( \
  SELECT coalesce(json_agg(json_build_array(w.day, w.status, w.doctor_id, w.n)), '[]') AS window_counts \
  FROM (SELECT (a.start_at AT TIME ZONE f.tz)::date AS day, a.status, a.doctor_id, count(*) AS n \
        FROM rm.appointments a \
        WHERE a.clinic_id = $1 AND a.start_at >= f.window_start AND a.start_at < f.window_end \
        GROUP BY 1, 2, 3) w) wc \
CROSS JOIN LATERAL ( \
  SELECT coalesce(json_agg(json_build_array(s.staff_id, s.name, s.role = 'doctor' AND s.active)), '[]') AS staff \
  FROM rm.staff s WHERE s.clinic_id = $1) st \
CROSS JOIN LATERAL ( \
  SELECT coalesce(sum(c.n) FILTER (WHERE s.status = 'noshow'), 0)::bigint AS noshow, \
         coalesce(sum(c.n), 0)::bigint AS counted \
  FROM unnest('{noshow,fulfilled,checked-in,in-progress}'::text[]) s(status) \
  CROSS JOIN LATERAL ( \
    SELECT count(*) AS n FROM rm.appointments a \
    WHERE a.clinic_id = $1 AND a.status = s.status \
      AND a.start_at >= f.no_show_since AND a.start_at <= f.now) c) ns \
CROSS JOIN LATERAL ( \
  SELECT coalesce((SELECT sum(r.registered) FROM rm.patient_registrations r \
                   WHERE r.clinic_id = $1 AND r.bucket >= f.first_bucket), 0)::bigint \
       + (SELECT count(*) FROM rm.patients p \
          WHERE p.clinic_id = $1 AND p.registered_at >= f.week_start_at \
            AND p.registered_at < f.first_bucket) AS new_patients) np \
CROSS JOIN LATERAL ( \
  SELECT coalesce(json_agg(json_build_object( \
           'appointment_id', u.appointment_id, 'start_at', u.start_at, 'end_at', u.end_at, \
           'status', u.status, 'doctor_id', u.doctor_id, 'doctor_name', u.doctor_name, \
           'patient_id', u.patient_id, 'patient_name', u.patient_name) \
           ORDER BY u.start_at, u.appointment_id), '[]') AS next \
  FROM (SELECT a.appointment_id, a.start_at, a.end_at, a.status, a.doctor_id, \
               s.name AS doctor_name, a.patient_id, \
               (SELECT p.given || ' ' || p.family FROM rm.patients p \
                WHERE p.clinic_id = a.clinic_id AND p.patient_id = a.patient_id) AS patient_name \
        FROM (SELECT a.clinic_id, a.appointment_id, a.start_at, a.end_at, a.status, a.doctor_id, a.patient_id \
              FROM rm.appointments a \
              WHERE a.clinic_id = $1 AND a.status IN ('booked', 'checked-in', 'in-progress') \
                AND a.end_at > f.now AND a.start_at > $4 {appointment_doctor} \
              ORDER BY a.start_at, a.appointment_id LIMIT $5) a \
        LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id) u) nx \
CROSS JOIN LATERAL ( \
  SELECT coalesce(json_agg(json_build_array(r.currency, r.amount) ORDER BY r.currency), '[]') AS revenue \
  FROM (SELECT ip.currency, \
               sum(CASE WHEN ip.kind = 'payment' THEN ip.amount ELSE -ip.amount END)::bigint AS amount \
        FROM rm.invoice_payments ip \
        WHERE $7 AND ip.clinic_id = $1 AND ip.recorded_at >= f.month_from \
          AND ip.recorded_at < f.month_to {payment_doctor} \
        GROUP BY ip.currency) r) rv \
CROSS JOIN LATERAL ( \
  SELECT coalesce(json_agg(json_build_array(o.currency, o.amount) ORDER BY o.currency), '[]') AS outstanding \
  FROM (SELECT i.currency, sum(i.balance)::bigint AS amount \
        FROM rm.invoices i \
        WHERE $7 AND i.clinic_id = $1 AND i.status IN ('issued', 'partially-paid') {invoice_doctor} \
        GROUP BY i.currency) o) os";

/// [`DASHBOARD_SQL`] as it is sent: for the clinic (the doctor parameter must be null), and
/// for a doctor's own upcoming appointments and invoices. Two statements, not `($6 IS NULL OR doctor_id =
/// $6)`: each keeps a plan of its own. Written once, not for every request.
static DASHBOARD_STATEMENTS: LazyLock<[String; 2]> = LazyLock::new(|| {
    [
        [
            "AND $6::uuid IS NULL",
            "AND $6::uuid IS NULL",
            "AND $6::uuid IS NULL",
        ],
        [
            "AND a.doctor_id = $6",
            "AND ip.doctor_id = $6",
            "AND i.doctor_id = $6",
        ],
    ]
    .map(|[appointments, payments, invoices]| {
        DASHBOARD_SQL
            .replace("{appointment_doctor}", appointments)
            .replace("{payment_doctor}", payments)
            .replace("{invoice_doctor}", invoices)
    })
});

/// The dashboard's statement as it is sent for the clinic (`doctor` false: `$6` must be null)
/// or for a doctor (`$6`), for tests that look at its plan.
pub fn dashboard_statement(doctor: bool) -> &'static str {
    &DASHBOARD_STATEMENTS[usize::from(doctor)]
}

/// A local day of the window, a status, a doctor and how many of their appointments that
/// day have that status.
type WindowCount = (NaiveDate, String, Uuid, i64);

/// A member of staff: id, name, and whether they are an active doctor.
type StaffEntry = (Uuid, String, bool);

#[derive(sqlx::FromRow)]
struct DashboardRow {
    tz: String,
    now: DateTime<Utc>,
    today: NaiveDate,
    week_start: NaiveDate,
    no_show_since: DateTime<Utc>,
    window_counts: Json<Vec<WindowCount>>,
    staff: Json<Vec<StaffEntry>>,
    noshow: i64,
    counted: i64,
    new_patients: i64,
    next: Json<Vec<UpcomingRow>>,
    month_start: NaiveDate,
    revenue: Json<Vec<(String, i64)>>,
    outstanding: Json<Vec<(String, i64)>>,
}

#[derive(Deserialize)]
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
/// With `with_billing`, its billing figures too (with `doctor`, over that doctor's invoices
/// only). One statement in one read transaction.
pub async fn dashboard(
    pool: &PgPool,
    clinic: ClinicId,
    doctor: Option<StaffId>,
    now: DateTime<Utc>,
    with_billing: bool,
) -> Result<Dashboard, sqlx::Error> {
    let mut tx = clinic_generic_plan_tx(pool, clinic).await?;
    let sql = dashboard_statement(doctor.is_some());
    let row: DashboardRow = sqlx::query_as(sql)
        .bind(clinic.as_uuid())
        .bind(DASHBOARD_DAYS as i32)
        .bind(now)
        .bind(now - longest_appointment())
        .bind(DASHBOARD_NEXT)
        .bind(doctor.map(|d| d.as_uuid()))
        .bind(with_billing)
        .fetch_one(&mut *tx)
        .await?;
    end_read(tx);
    let DashboardRow {
        tz,
        now,
        today,
        week_start,
        no_show_since,
        window_counts: Json(window_counts),
        staff: Json(staff),
        noshow,
        counted,
        new_patients,
        next: Json(next),
        month_start,
        revenue: Json(revenue),
        outstanding: Json(outstanding),
    } = row;

    let dates: Vec<NaiveDate> = today.iter_days().take(DASHBOARD_DAYS as usize).collect();
    let index = |date: NaiveDate| dates.iter().position(|d| *d == date);

    let mut days: Vec<DayStatus> = dates
        .iter()
        .map(|&date| DayStatus {
            date,
            total: 0,
            by_status: StatusCounts::default(),
        })
        .collect();
    let names: BTreeMap<Uuid, &str> = staff
        .iter()
        .map(|(id, name, _)| (*id, name.as_str()))
        .collect();
    let mut loads: BTreeMap<Uuid, DoctorLoad> = BTreeMap::new();
    let empty = |doctor_id: Uuid| DoctorLoad {
        doctor_id,
        doctor_name: names.get(&doctor_id).map(|name| (*name).to_owned()),
        total: 0,
        days: dates
            .iter()
            .map(|&date| DayLoad {
                date,
                appointments: 0,
            })
            .collect(),
    };
    // Every active doctor is listed, with or without appointments.
    for (id, _, active_doctor) in &staff {
        if *active_doctor {
            loads.entry(*id).or_insert_with(|| empty(*id));
        }
    }
    for (date, status, doctor_id, n) in window_counts {
        let Some(i) = index(date) else { continue };
        if let Some(day) = days.get_mut(i) {
            day.total += n;
            day.by_status.add(&status, n);
        }
        // A doctor's load leaves out cancelled appointments.
        if status != "cancelled" {
            let load = loads.entry(doctor_id).or_insert_with(|| empty(doctor_id));
            if let Some(day) = load.days.get_mut(i) {
                day.appointments += n;
                load.total += n;
            }
        }
    }
    let mut doctor_load: Vec<DoctorLoad> = loads.into_values().collect();
    doctor_load.sort_by(|a, b| (&a.doctor_name, a.doctor_id).cmp(&(&b.doctor_name, b.doctor_id)));

    Ok(Dashboard {
        time_zone: tz,
        generated_at: now,
        today,
        days,
        doctor_load,
        no_show_30d: NoShowRate {
            since: no_show_since,
            noshow,
            counted,
            rate: (counted > 0).then(|| noshow as f64 / counted as f64),
        },
        week_start,
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
        billing: with_billing.then(|| BillingFigures {
            month_start,
            revenue_this_month: amounts(revenue),
            outstanding: amounts(outstanding),
        }),
    })
}

fn amounts(rows: Vec<(String, i64)>) -> Vec<CurrencyAmount> {
    rows.into_iter()
        .map(|(currency, amount)| CurrencyAmount { currency, amount })
        .collect()
}

/// The longest an appointment can last (the domain refuses longer ones): an appointment that
/// is not over at `t` started after `t` minus this.
pub(crate) fn longest_appointment() -> chrono::Duration {
    chrono::Duration::hours(domain::appointment::MAX_DURATION_HOURS)
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
