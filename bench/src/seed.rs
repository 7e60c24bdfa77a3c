//! Big data, fast: valid domain events inserted with SQL (`INSERT … SELECT … generate_series`)
//! in exactly the JSON the domain's serde writes, through the event store's own triggers
//! (MRN and slot claims), then turned into read models by `clinic rebuild` or the workers.

use std::time::Instant;

use sqlx::{Executor, PgConnection};
use uuid::Uuid;

use crate::error::Result;

/// `to_char` of an instant as the domain writes it (RFC 3339, UTC, `Z`).
fn ts(expr: &str) -> String {
    format!("to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
}

fn metadata(clinic: Uuid) -> String {
    format!(
        "json_build_object('tenant_id', '{clinic}', 'actor_id', '{}', 'actor_role', 'system', \
         'request_id', 'clinic-bench-seed', 'occurred_at', now())",
        Uuid::nil()
    )
}

const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)";

/// What a clinic gets.
pub struct ClinicSeed<'a> {
    pub clinic: Uuid,
    pub patients: u64,
    /// Doctors for appointments: none means no appointments. With doctors, half the patients
    /// have a past appointment (a quarter of those marked no-show), and `future` more are
    /// booked over the next days (30 minutes apart, 08:00–18:00 UTC).
    pub doctors: &'a [Uuid],
    pub future: u64,
}

/// Registers `seed.patients` patients in one transaction (registration plus a demographics
/// update each), with appointments when doctors are given; MRNs continue the clinic's counter.
pub async fn clinic(conn: &mut PgConnection, seed: &ClinicSeed<'_>) -> Result<()> {
    if seed.patients == 0 {
        return Ok(());
    }
    let c = seed.clinic;
    let (from,): (i64,) = sqlx::query_as(
        "SELECT coalesce(max(last_value), 0) FROM mrn_counters WHERE clinic_id = $1",
    )
    .bind(c)
    .fetch_one(&mut *conn)
    .await?;
    let to = from + seed.patients as i64;
    let meta = metadata(c);
    let mut sql = format!(
        "BEGIN;
CREATE TEMP TABLE seed_patients ON COMMIT DROP AS
  SELECT n, gen_random_uuid() AS id FROM generate_series({from} + 1, {to}) n;
{INSERT}
SELECT 'Patient', '{c}:' || p.id, 1, 'PatientRegistered', '1.0',
  json_build_object('PatientRegistered', json_build_object(
    'patient_id', p.id, 'clinic_id', '{c}',
    'mrn', 'MRN-' || CASE WHEN p.n < 1000000 THEN lpad(p.n::text, 6, '0') ELSE p.n::text END,
    'name', json_build_object('given', 'Given' || p.n, 'family', 'Família' || (p.n % 997)),
    'birth_date', (date '1950-01-01' + (p.n % 20000)::int)::text, 'sex', 'female',
    'phone', '+4930' || lpad(p.n::text, 7, '0'), 'email', null, 'address', null,
    'emergency_contact', null, 'insurance', null, 'allergies', json_build_array('latex'))),
  {meta}
FROM seed_patients p ORDER BY p.n;
{INSERT}
SELECT 'Patient', '{c}:' || p.id, 2, 'PatientDemographicsUpdated', '1.0',
  json_build_object('PatientDemographicsUpdated', json_build_object(
    'name', null, 'birth_date', null, 'sex', null, 'phone', '+4940' || lpad(p.n::text, 7, '0'),
    'email', null, 'address', null, 'emergency_contact', null, 'insurance', null,
    'allergies', null)),
  {meta}
FROM seed_patients p ORDER BY p.n;
INSERT INTO mrn_counters (clinic_id, last_value) VALUES ('{c}', {to})
  ON CONFLICT (clinic_id) DO UPDATE SET last_value = greatest(mrn_counters.last_value, excluded.last_value);
"
    );
    if !seed.doctors.is_empty() {
        sql.push_str(&appointments(seed, from));
    }
    sql.push_str("COMMIT;");
    conn.execute(sql.as_str()).await?;
    Ok(())
}

fn appointments(seed: &ClinicSeed<'_>, from: i64) -> String {
    let c = seed.clinic;
    let meta = metadata(c);
    let past = (seed.patients / 2) as i64;
    let future = seed.future.min(seed.patients - seed.patients / 2) as i64;
    let doctors = seed
        .doctors
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(",");
    let count = seed.doctors.len();
    let (start, end) = (ts("a.start"), ts("a.start + interval '15 minutes'"));
    let (booked_at, noshow_at) = (
        ts("least(a.start, now()) - interval '7 days'"),
        ts("a.start + interval '20 minutes'"),
    );
    format!(
        "CREATE TEMP TABLE seed_appointments ON COMMIT DROP AS
  SELECT p.n, gen_random_uuid() AS id, p.id AS patient,
    (ARRAY[{doctors}]::uuid[])[1 + (p.n % {count})] AS doctor,
    p.n - {from} <= {past} AS past,
    CASE WHEN p.n - {from} <= {past}
      THEN date_trunc('hour', now()) - (p.n - {from}) * interval '15 minutes'
      ELSE date_trunc('day', now()) + interval '1 day 8 hours'
           + ((p.n - {from} - {past} - 1) / 20) * interval '1 day'
           + ((p.n - {from} - {past} - 1) % 20) * interval '30 minutes'
    END AS start
  FROM seed_patients p WHERE p.n - {from} <= {past} + {future};
{INSERT}
SELECT 'Appointment', '{c}:' || a.id, 1, 'AppointmentBooked', '1.0',
  json_build_object('AppointmentBooked', json_build_object(
    'appointment_id', a.id, 'clinic_id', '{c}', 'patient_id', a.patient, 'doctor_id', a.doctor,
    'slot', json_build_object('start', {start}, 'end', {end}),
    'reason', null, 'override_hours', false, 'at', {booked_at})),
  {meta}
FROM seed_appointments a ORDER BY a.n;
{INSERT}
SELECT 'Appointment', '{c}:' || a.id, 2, 'AppointmentMarkedNoShow', '1.0',
  json_build_object('AppointmentMarkedNoShow', json_build_object('at', {noshow_at})),
  {meta}
FROM seed_appointments a WHERE a.past AND a.n % 4 = 0 ORDER BY a.n;
"
    )
}

/// Patients spread over `clinics` until the store holds about `target` events.
pub async fn fill(conn: &mut PgConnection, clinics: &[Uuid], target: i64) -> Result<()> {
    let missing = target - event_count(conn).await?;
    if missing <= 0 || clinics.is_empty() {
        return Ok(());
    }
    let per_clinic = (missing as u64 / 2).div_ceil(clinics.len() as u64);
    for clinic in clinics {
        let seed = ClinicSeed {
            clinic: *clinic,
            patients: per_clinic,
            doctors: &[],
            future: 0,
        };
        self::clinic(conn, &seed).await?;
    }
    Ok(())
}

pub async fn event_count(conn: &mut PgConnection) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// `ANALYZE` after seeding; returns the seconds since `started`.
pub async fn timed_analyze(conn: &mut PgConnection, started: Instant) -> Result<f64> {
    conn.execute("ANALYZE").await?;
    Ok(started.elapsed().as_secs_f64())
}
