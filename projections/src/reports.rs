//! Reports from the read models: a clinic's month (clinic admin), and the platform's view of
//! clinics against their plans (platform admin). Neither names a patient.

use std::collections::BTreeMap;

use chrono::{DateTime, Months, NaiveDate, Utc};
use domain::ids::ClinicId;
use domain::plan::{start_of_day, Limit, PlanLimits};
use domain::values::{Plan, TimeZone};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scope::{clinic_tx, end_read, platform_tx};

/// Every appointment status, in the order of their life (FHIR R4).
pub const STATUSES: [&str; 6] = [
    "booked",
    "checked-in",
    "in-progress",
    "fulfilled",
    "cancelled",
    "noshow",
];

/// The no-show rate of the visits of a month.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MonthNoShows {
    /// Visits of the month marked no-show.
    pub noshow: i64,
    /// Visits of the month that were no-show, checked in, in progress or fulfilled.
    pub counted: i64,
    /// `noshow / counted`; null when nothing was counted.
    pub rate: Option<f64>,
}

/// Appointments booked with one doctor in the month.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct DoctorBookings {
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    pub bookings: i64,
}

/// The visits of the month that start in one clinic-local hour.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HourLoad {
    /// 0–23, clinic-local.
    pub hour: i32,
    pub appointments: i64,
}

/// The month's visits of one status that start in one clinic-local hour.
#[derive(sqlx::FromRow)]
struct VisitGroup {
    status: String,
    hour: i32,
    visits: i64,
    lead_seconds: f64,
}

/// A clinic's month, in its time zone.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MonthlyReport {
    #[schema(example = "2027-03")]
    pub month: String,
    #[schema(example = "Europe/Berlin")]
    pub time_zone: String,
    /// The month's first instant.
    pub from: DateTime<Utc>,
    /// The next month's first instant.
    pub to: DateTime<Utc>,
    /// Appointments whose visit starts in the month, by status (every status, zero included).
    pub appointments_by_status: BTreeMap<String, i64>,
    pub no_show_rate: MonthNoShows,
    /// Patients registered in the month.
    pub new_patients: i64,
    /// Appointments booked in the month (whenever the visit is), per doctor, most first.
    pub bookings_per_doctor: Vec<DoctorBookings>,
    /// The month's visits (cancelled ones left out) by the clinic-local hour they start in,
    /// busiest first; hours without a visit are left out.
    pub busiest_hours: Vec<HourLoad>,
    /// The mean time from booking to visit, in hours, of the month's visits (cancelled ones
    /// left out); null when there is none.
    pub average_lead_time_hours: Option<f64>,
}

/// A month of the calendar (`YYYY-MM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Month(NaiveDate);

impl Month {
    /// `2027-03`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Month> {
        let (year, month) = text.split_once('-')?;
        if year.len() != 4 || month.len() != 2 {
            return None;
        }
        let first = NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1)?;
        Some(Month(first))
    }

    /// Its first and the next month's first instant in `tz`.
    pub fn bounds(self, tz: TimeZone) -> (DateTime<Utc>, DateTime<Utc>) {
        let next = self.0 + Months::new(1);
        (start_of_day(self.0, tz), start_of_day(next, tz))
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m"))
    }
}

/// `clinic`'s report of `month`; `None` before its registration is projected.
pub async fn monthly(
    pool: &PgPool,
    clinic: ClinicId,
    month: Month,
) -> Result<Option<MonthlyReport>, sqlx::Error> {
    let id = clinic.as_uuid();
    let mut tx = clinic_tx(pool, clinic).await?;
    let zone: Option<String> =
        sqlx::query_scalar("SELECT time_zone FROM rm.clinics WHERE clinic_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(tz) = zone.and_then(|z| TimeZone::parse(z).ok()) else {
        return Ok(None);
    };
    let (from, to) = month.bounds(tz);
    // The month's visits in one pass over the clinic's (clinic_id, start_at) index range:
    // counted per status and clinic-local starting hour, with their summed lead time. The
    // statuses, the busiest hours and the mean lead time (cancelled visits left out) are
    // folded from these at most 6 × 24 rows.
    let visits: Vec<VisitGroup> = sqlx::query_as(
        "SELECT status, extract(hour FROM start_at AT TIME ZONE $4)::int AS hour, \
                count(*) AS visits, \
                sum(extract(epoch FROM start_at - booked_at))::float8 AS lead_seconds \
         FROM rm.appointments \
         WHERE clinic_id = $1 AND start_at >= $2 AND start_at < $3 \
         GROUP BY 1, 2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(tz.to_string())
    .fetch_all(&mut *tx)
    .await?;
    // Registrations: the month starts and ends on 15-minute buckets (every offset in use is
    // a multiple of 15 minutes).
    let new_patients: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(registered), 0)::bigint FROM rm.patient_registrations \
         WHERE clinic_id = $1 AND bucket >= $2 AND bucket < $3",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    let bookings_per_doctor: Vec<DoctorBookings> = sqlx::query_as(
        "SELECT a.doctor_id, s.name AS doctor_name, count(*) AS bookings \
         FROM rm.appointments a \
         LEFT JOIN rm.staff s ON s.clinic_id = a.clinic_id AND s.staff_id = a.doctor_id \
         WHERE a.clinic_id = $1 AND a.booked_at >= $2 AND a.booked_at < $3 \
         GROUP BY a.doctor_id, s.name ORDER BY 3 DESC, 2, 1",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);

    let mut appointments_by_status: BTreeMap<String, i64> =
        STATUSES.iter().map(|s| ((*s).to_owned(), 0)).collect();
    let mut hours: BTreeMap<i32, i64> = BTreeMap::new();
    let (mut held, mut lead_seconds) = (0_i64, 0_f64);
    for g in &visits {
        *appointments_by_status.entry(g.status.clone()).or_default() += g.visits;
        if g.status != "cancelled" {
            *hours.entry(g.hour).or_default() += g.visits;
            held += g.visits;
            lead_seconds += g.lead_seconds;
        }
    }
    let mut busiest_hours: Vec<HourLoad> = hours
        .into_iter()
        .map(|(hour, appointments)| HourLoad { hour, appointments })
        .collect();
    // Busiest first; an hour's tie is broken by the earlier hour.
    busiest_hours.sort_by(|a, b| {
        b.appointments
            .cmp(&a.appointments)
            .then(a.hour.cmp(&b.hour))
    });
    let of = |s: &str| appointments_by_status.get(s).copied().unwrap_or(0);
    let noshow = of("noshow");
    let counted = noshow + of("fulfilled") + of("checked-in") + of("in-progress");
    Ok(Some(MonthlyReport {
        month: month.to_string(),
        time_zone: tz.to_string(),
        from,
        to,
        no_show_rate: MonthNoShows {
            noshow,
            counted,
            rate: (counted > 0).then(|| noshow as f64 / counted as f64),
        },
        appointments_by_status,
        new_patients,
        bookings_per_doctor,
        busiest_hours,
        average_lead_time_hours: (held > 0).then(|| lead_seconds / held as f64 / 3600.0),
    }))
}

impl MonthlyReport {
    /// The report as CSV (RFC 4180): one `metric,key,label,value` row per figure.
    pub fn to_csv(&self) -> String {
        let mut rows: Vec<[String; 4]> = vec![
            [
                "month".into(),
                String::new(),
                String::new(),
                self.month.clone(),
            ],
            [
                "time_zone".into(),
                String::new(),
                String::new(),
                self.time_zone.clone(),
            ],
        ];
        for (status, n) in &self.appointments_by_status {
            rows.push([
                "appointments_by_status".into(),
                status.clone(),
                String::new(),
                n.to_string(),
            ]);
        }
        let r = &self.no_show_rate;
        rows.push([
            "no_show_rate".into(),
            "noshow".into(),
            String::new(),
            r.noshow.to_string(),
        ]);
        rows.push([
            "no_show_rate".into(),
            "counted".into(),
            String::new(),
            r.counted.to_string(),
        ]);
        rows.push([
            "no_show_rate".into(),
            "rate".into(),
            String::new(),
            r.rate.map(|x| x.to_string()).unwrap_or_default(),
        ]);
        rows.push([
            "new_patients".into(),
            String::new(),
            String::new(),
            self.new_patients.to_string(),
        ]);
        for d in &self.bookings_per_doctor {
            rows.push([
                "bookings_per_doctor".into(),
                d.doctor_id.to_string(),
                d.doctor_name.clone().unwrap_or_default(),
                d.bookings.to_string(),
            ]);
        }
        for h in &self.busiest_hours {
            rows.push([
                "busiest_hours".into(),
                h.hour.to_string(),
                String::new(),
                h.appointments.to_string(),
            ]);
        }
        rows.push([
            "average_lead_time_hours".into(),
            String::new(),
            String::new(),
            self.average_lead_time_hours
                .map(|x| x.to_string())
                .unwrap_or_default(),
        ]);
        let mut out = String::from("metric,key,label,value\r\n");
        for row in rows {
            let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break. A field that a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@` first) gets a leading `'`.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) && value.parse::<f64>().is_err() {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Appointments booked this month (the clinic's own calendar month) in one clinic.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ClinicBookings {
    pub clinic_id: Uuid,
    pub code: String,
    pub bookings: i64,
}

/// A clinic's use of one limit of its plan.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LimitUse {
    pub clinic_id: Uuid,
    pub code: String,
    pub plan: String,
    /// `active_doctors`, `active_staff`, `patients` or `monthly_bookings`.
    pub limit: String,
    pub in_use: i64,
    pub allowed: u32,
    /// `in_use / allowed` (over 1 after a downgrade).
    pub ratio: f64,
}

/// How many clinics [`closest_to_limits`] lists.
pub const CLOSEST: usize = 10;

#[derive(sqlx::FromRow)]
struct ClinicUse {
    clinic_id: Uuid,
    code: String,
    plan: String,
    doctors: i64,
    staff: i64,
    patients: i64,
    bookings: i64,
}

/// Each clinic's bookings of its current calendar month (`now` in its time zone), and the
/// clinics closest to a limit of their plan: each clinic's fullest limit, fullest first, at
/// most [`CLOSEST`]. Counts only; no patient data.
pub async fn platform_use(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<(Vec<ClinicBookings>, Vec<LimitUse>), sqlx::Error> {
    let mut tx = platform_tx(pool).await?;
    // Counts of rows the platform may not read itself (`rm_platform_use`, see its migration).
    let rows: Vec<ClinicUse> = sqlx::query_as(
        "SELECT c.clinic_id, c.code, c.plan, u.doctors, u.staff, u.patients, u.bookings \
         FROM rm_platform_use($1) u JOIN rm.clinics c ON c.clinic_id = u.clinic_id \
         ORDER BY c.code",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);
    let bookings = rows
        .iter()
        .map(|r| ClinicBookings {
            clinic_id: r.clinic_id,
            code: r.code.clone(),
            bookings: r.bookings,
        })
        .collect();
    let mut fullest: Vec<LimitUse> = rows
        .iter()
        .filter_map(|r| {
            let plan = domain::plan::stored::parse(&r.plan).unwrap_or(Plan::Enterprise);
            let limits = PlanLimits::of(plan);
            [
                (Limit::ActiveDoctors, r.doctors),
                (Limit::ActiveStaff, r.staff),
                (Limit::Patients, r.patients),
                (Limit::MonthlyBookings, r.bookings),
            ]
            .into_iter()
            .filter_map(|(limit, in_use)| {
                let allowed = limits.allowed(limit)?;
                Some(LimitUse {
                    clinic_id: r.clinic_id,
                    code: r.code.clone(),
                    plan: plan.as_str().to_owned(),
                    limit: limit.as_str().to_owned(),
                    in_use,
                    allowed,
                    ratio: in_use as f64 / f64::from(allowed.max(1)),
                })
            })
            .max_by(|a, b| a.ratio.total_cmp(&b.ratio))
        })
        .collect();
    fullest.sort_by(|a, b| b.ratio.total_cmp(&a.ratio).then(a.code.cmp(&b.code)));
    fullest.truncate(CLOSEST);
    Ok((bookings, fullest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_bound_in_the_clinics_zone() {
        assert_eq!(Month::parse("2027-3"), None);
        assert_eq!(Month::parse("2027-13"), None);
        assert_eq!(Month::parse("27-03"), None);
        assert_eq!(Month::parse("2027-03-01"), None);
        let march = Month::parse("2027-03").unwrap();
        assert_eq!(march.to_string(), "2027-03");
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        let (from, to) = march.bounds(berlin);
        assert_eq!(
            from,
            "2027-02-28T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(to, "2027-03-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let december = Month::parse("2027-12").unwrap();
        let (_, to) = december.bounds(TimeZone::parse("UTC").unwrap());
        assert_eq!(to, "2028-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap());
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("Doe, Jane"), "\"Doe, Jane\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-0.5"), "-0.5");
        assert_eq!(csv_field("@cmd"), "'@cmd");
    }
}
