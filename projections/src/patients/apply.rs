//! `rm.patients`: one row per patient record; the searchable columns (folded names, phone
//! digits) beside the whole record as JSON.

use domain::patient::PatientEvent;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::event::{one, to_json, Applied, StoredEvent};

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// A statement on the event's row, with `$1` to `$4` bound to the clinic, the patient, the
/// time of the event and the row's new version.
pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
    let clinic = e.tenant_id;
    let id = e.entity()?;
    let at = e.at()?;
    let version = e.sequence;
    match e.decode::<PatientEvent>()? {
        PatientEvent::PatientRegistered {
            mrn,
            demographics: d,
            ..
        } => {
            let mut record = to_json(&d);
            if let Value::Object(fields) = &mut record {
                fields.insert("patient_id".into(), json!(id));
                fields.insert("mrn".into(), json!(mrn));
                fields.insert("status".into(), json!("active"));
                fields.insert("merged_into".into(), Value::Null);
            }
            let sql = format!(
                "INSERT INTO {s}.patients (clinic_id, patient_id, mrn, given, family, given_key, family_key, \
                 birth_date, sex, phone, phone_digits, email, status, record, registered_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, rm_fold($4), rm_fold($5), $6, $7, $8, $9, $10, 'active', $11, $12, $12, $13)"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(mrn.to_string())
                    .bind(d.name.given.as_str())
                    .bind(d.name.family.as_str())
                    .bind(d.birth_date)
                    .bind(d.sex.as_str())
                    .bind(d.phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(d.phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(d.email.map(|m| m.as_str().to_owned()))
                    .bind(record)
                    .bind(at)
                    .bind(version),
            )
            .await
        }
        PatientEvent::PatientDemographicsUpdated { changes: c } => {
            // The fields that changed: the ones that are not null.
            let mut patch = to_json(&c);
            if let Value::Object(fields) = &mut patch {
                fields.retain(|_, v| !v.is_null());
            }
            let sql = format!(
                "UPDATE {s}.patients SET given = coalesce($5, given), family = coalesce($6, family), \
                 given_key = rm_fold(coalesce($5, given)), family_key = rm_fold(coalesce($6, family)), \
                 birth_date = coalesce($7, birth_date), sex = coalesce($8, sex), phone = coalesce($9, phone), \
                 phone_digits = coalesce($10, phone_digits), email = coalesce($11, email), \
                 record = record || $12, updated_at = $3, version = $4 \
                 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                e.entity_query(&sql)?
                    .bind(c.name.as_ref().map(|n| n.given.as_str().to_owned()))
                    .bind(c.name.as_ref().map(|n| n.family.as_str().to_owned()))
                    .bind(c.birth_date)
                    .bind(c.sex.map(|x| x.as_str()))
                    .bind(c.phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(c.phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(c.email.map(|m| m.as_str().to_owned()))
                    .bind(patch),
            )
            .await
        }
        PatientEvent::PatientMerged { survivor } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'merged', merged_into = $5, \
                 record = record || jsonb_build_object('status', 'merged', 'merged_into', $5), \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(conn, e, e.entity_query(&sql)?.bind(survivor.as_uuid())).await
        }
        PatientEvent::PatientDeactivated { .. } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'inactive', record = record || '{{\"status\": \"inactive\"}}'::jsonb, \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(conn, e, e.entity_query(&sql)?).await
        }
    }
}
