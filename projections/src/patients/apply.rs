//! `rm.patients`: one row per patient record; the searchable columns (folded names, phone
//! digits) beside the whole record as JSON. `rm.patient_registrations`: the clinic's
//! registrations per 15-minute bucket, added to by the statement that inserts the rows. A batch of events is merged per patient in memory
//! and written with one `INSERT` and one `UPDATE` (see [`crate::changes`]).

use chrono::{DateTime, NaiveDate, Utc};
use domain::patient::PatientEvent;
use serde_json::{json, Map, Value};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::changes::{self, Changes, Entry, Merge, Unnest};
use crate::event::{to_json, Applied, StoredEvent};

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// A patient row (from `PatientRegistered`) or a patch of one (the columns an event sets).
#[derive(Default)]
struct Row {
    mrn: Option<String>,
    given: Option<String>,
    family: Option<String>,
    birth_date: Option<NaiveDate>,
    sex: Option<String>,
    phone: Option<String>,
    phone_digits: Option<String>,
    email: Option<String>,
    status: Option<String>,
    merged_into: Option<Uuid>,
    /// The record's top-level fields this event sets (`record || patch`).
    record: Map<String, Value>,
    registered_at: Option<DateTime<Utc>>,
}

impl Merge for Row {
    fn merge(&mut self, n: Row) {
        changes::merge_newer! { self, n; mrn, given, family, birth_date, sex, phone, phone_digits, email, status, merged_into, registered_at }
        self.record.extend(n.record);
    }

    fn columns(rows: &[Entry<Row>]) -> Unnest<'_, Row> {
        Unnest::new(rows)
            .col(|r| r.mrn.as_deref())
            .col(|r| r.given.as_deref())
            .col(|r| r.family.as_deref())
            .col(|r| r.birth_date)
            .col(|r| r.sex.as_deref())
            .col(|r| r.phone.as_deref())
            .col(|r| r.phone_digits.as_deref())
            .col(|r| r.email.as_deref())
            .col(|r| r.status.as_deref())
            .col(|r| r.merged_into)
            .col(|r| r.registered_at)
            .col(|r| Json(&r.record))
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// Folds one event into `rows`.
fn fold(rows: &mut Changes<Row>, e: &StoredEvent) -> Applied {
    let mut row = Row::default();
    match e.decode::<PatientEvent>()? {
        PatientEvent::PatientRegistered {
            mrn,
            demographics: d,
            ..
        } => {
            let mut record = object(to_json(&d));
            record.insert("patient_id".into(), json!(changes::key(e)?.1));
            record.insert("mrn".into(), json!(mrn));
            record.insert("status".into(), json!("active"));
            record.insert("merged_into".into(), Value::Null);
            row.mrn = Some(mrn.to_string());
            row.given = Some(d.name.given.as_str().to_owned());
            row.family = Some(d.name.family.as_str().to_owned());
            row.birth_date = Some(d.birth_date);
            row.sex = Some(d.sex.as_str().to_owned());
            row.phone_digits = d.phone.as_ref().map(|p| digits(p.as_str()));
            row.phone = d.phone.map(|p| p.as_str().to_owned());
            row.email = d.email.map(|m| m.as_str().to_owned());
            row.status = Some("active".into());
            row.record = record;
            row.registered_at = Some(e.at()?);
            return rows.create(e, row);
        }
        PatientEvent::PatientDemographicsUpdated { changes: c } => {
            // The fields that changed: the ones that are not null.
            let mut patch = object(to_json(&c));
            patch.retain(|_, v| !v.is_null());
            if let Some(name) = c.name {
                row.given = Some(name.given.as_str().to_owned());
                row.family = Some(name.family.as_str().to_owned());
            }
            row.birth_date = c.birth_date;
            row.sex = c.sex.map(|x| x.as_str().to_owned());
            row.phone_digits = c.phone.as_ref().map(|p| digits(p.as_str()));
            row.phone = c.phone.map(|p| p.as_str().to_owned());
            row.email = c.email.map(|m| m.as_str().to_owned());
            row.record = patch;
        }
        PatientEvent::PatientMerged { survivor } => {
            row.status = Some("merged".into());
            row.merged_into = Some(survivor.as_uuid());
            row.record = object(json!({"status": "merged", "merged_into": survivor.as_uuid()}));
        }
        PatientEvent::PatientDeactivated { .. } => {
            row.status = Some("inactive".into());
            row.record = object(json!({"status": "inactive"}));
        }
    }
    rows.patch(e, row)
}

/// `rm_fold(x)` written out (its body in `migrations/20261125000004_projections.sql`).
/// PostgreSQL does not inline `rm_fold`, an IMMUTABLE wrapper around the STABLE `unaccent`,
/// and each call through it costs about three times the expression (3.7 µs against 1.1 µs);
/// the patients' writes fold two names per row. The e2e test
/// `the_written_out_fold_folds_like_rm_fold` checks they agree.
pub fn fold_expression(x: &str) -> String {
    format!("lower(public.unaccent('public.unaccent'::regdictionary, coalesce({x}, '')))")
}

const UNNEST: &str = "unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::date[], \
     $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::uuid[], $13::timestamptz[], \
     $14::jsonb[], $15::timestamptz[], $16::int8[]) \
     AS u(clinic_id, patient_id, mrn, given, family, birth_date, sex, phone, phone_digits, email, \
          status, merged_into, registered_at, record, updated_at, version)";

/// Applies `events` (this projection's, in commit order) to `s.patients`.
pub(super) async fn apply(s: &str, conn: &mut PgConnection, events: &[&StoredEvent]) -> Applied {
    // The new rows, and in the same statement the clinic's registrations per 15-minute
    // bucket (what the dashboard sums for "new patients this week"), added in key order: a
    // rebuild's writers add to the same buckets at once, and wait for each other there in the
    // same order (no deadlock).
    let insert = format!(
            "WITH new AS (INSERT INTO {s}.patients (clinic_id, patient_id, mrn, given, family, given_key, family_key, \
             birth_date, sex, phone, phone_digits, email, status, merged_into, record, registered_at, \
             updated_at, version) \
             SELECT clinic_id, patient_id, mrn, given, family, {fold_given}, {fold_family}, birth_date, \
             sex, phone, phone_digits, email, status, merged_into, record, registered_at, updated_at, version \
             FROM {UNNEST} RETURNING clinic_id, patient_id, registered_at), \
             counted AS (INSERT INTO {s}.patient_registrations AS t (clinic_id, bucket, registered) \
             SELECT clinic_id, rm_bucket(registered_at), count(*) FROM new GROUP BY 1, 2 ORDER BY 1, 2 \
             ON CONFLICT (clinic_id, bucket) DO UPDATE SET registered = t.registered + excluded.registered) \
             SELECT clinic_id, patient_id FROM new",
            fold_given = fold_expression("given"),
            fold_family = fold_expression("family"),
        );
    let update = format!(
            "UPDATE {s}.patients t SET given = coalesce(u.given, t.given), family = coalesce(u.family, t.family), \
             given_key = CASE WHEN u.given IS NULL THEN t.given_key ELSE {fold_u_given} END, \
             family_key = CASE WHEN u.family IS NULL THEN t.family_key ELSE {fold_u_family} END, \
             birth_date = coalesce(u.birth_date, t.birth_date), sex = coalesce(u.sex, t.sex), \
             phone = coalesce(u.phone, t.phone), phone_digits = coalesce(u.phone_digits, t.phone_digits), \
             email = coalesce(u.email, t.email), status = coalesce(u.status, t.status), \
             merged_into = coalesce(u.merged_into, t.merged_into), record = t.record || u.record, \
             updated_at = u.updated_at, version = u.version \
             FROM {UNNEST} WHERE t.clinic_id = u.clinic_id AND t.patient_id = u.patient_id \
             RETURNING t.clinic_id, t.patient_id",
            fold_u_given = fold_expression("u.given"),
            fold_u_family = fold_expression("u.family"),
        );
    changes::apply(conn, events, fold, &insert, &update).await
}
