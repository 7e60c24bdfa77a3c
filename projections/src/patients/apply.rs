//! `rm.patients`: one row per patient record; the searchable columns (folded names, phone
//! digits) beside the whole record as JSON.

use domain::patient::PatientEvent;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::event::{one, to_json, Applied, StoredEvent};

fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

pub(super) async fn apply(s: &str, conn: &mut PgConnection, e: &StoredEvent) -> Applied {
    let clinic = e.tenant_id;
    let id = e.entity()?;
    let at = e.at()?;
    let version = e.sequence;
    match e.decode::<PatientEvent>()? {
        PatientEvent::PatientRegistered {
            mrn,
            name,
            birth_date,
            sex,
            phone,
            email,
            address,
            emergency_contact,
            insurance,
            allergies,
            ..
        } => {
            let record = json!({
                "patient_id": id, "mrn": mrn, "name": name, "birth_date": birth_date, "sex": sex,
                "phone": phone, "email": email, "address": address,
                "emergency_contact": emergency_contact, "insurance": insurance,
                "allergies": allergies, "status": "active", "merged_into": null,
            });
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
                    .bind(name.given.as_str())
                    .bind(name.family.as_str())
                    .bind(birth_date)
                    .bind(sex.as_str())
                    .bind(phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(email.map(|m| m.as_str().to_owned()))
                    .bind(record)
                    .bind(at)
                    .bind(version),
            )
            .await
        }
        PatientEvent::PatientDemographicsUpdated {
            name,
            birth_date,
            sex,
            phone,
            email,
            address,
            emergency_contact,
            insurance,
            allergies,
        } => {
            let mut patch = serde_json::Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(v) = value {
                    patch.insert(key.to_owned(), v);
                }
            };
            put("name", name.as_ref().map(to_json));
            put("birth_date", birth_date.as_ref().map(to_json));
            put("sex", sex.as_ref().map(to_json));
            put("phone", phone.as_ref().map(to_json));
            put("email", email.as_ref().map(to_json));
            put("address", address.as_ref().map(to_json));
            put("emergency_contact", emergency_contact.as_ref().map(to_json));
            put("insurance", insurance.as_ref().map(to_json));
            put("allergies", allergies.as_ref().map(to_json));
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
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(name.as_ref().map(|n| n.given.as_str().to_owned()))
                    .bind(name.as_ref().map(|n| n.family.as_str().to_owned()))
                    .bind(birth_date)
                    .bind(sex.map(|x| x.as_str()))
                    .bind(phone.as_ref().map(|p| p.as_str().to_owned()))
                    .bind(phone.as_ref().map(|p| digits(p.as_str())))
                    .bind(email.map(|m| m.as_str().to_owned()))
                    .bind(Value::Object(patch)),
            )
            .await
        }
        PatientEvent::PatientMerged { survivor } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'merged', merged_into = $5, \
                 record = record || jsonb_build_object('status', 'merged', 'merged_into', $5), \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version)
                    .bind(survivor.as_uuid()),
            )
            .await
        }
        PatientEvent::PatientDeactivated { .. } => {
            let sql = format!(
                "UPDATE {s}.patients SET status = 'inactive', record = record || '{{\"status\": \"inactive\"}}'::jsonb, \
                 updated_at = $3, version = $4 WHERE clinic_id = $1 AND patient_id = $2"
            );
            one(
                conn,
                e,
                sqlx::query(&sql)
                    .bind(clinic)
                    .bind(id)
                    .bind(at)
                    .bind(version),
            )
            .await
        }
    }
}
