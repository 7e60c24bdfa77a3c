//! Patient search and records.

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::{ClinicId, PatientId, StaffId};
use domain::values::Mrn;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{decode_token, encode_token, page_end, InvalidQuery, MAX_PAGE_SIZE};
use crate::scope::{clinic_generic_plan_tx, clinic_search_tx, clinic_tx, end_read};

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
    /// Only patients this doctor may see (an appointment with them that is not cancelled or
    /// a no-show).
    pub doctor: Option<StaffId>,
    pub after: Option<PatientCursor>,
    /// 1..=[`MAX_PAGE_SIZE`].
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct NameView {
    #[schema(example = "Ada")]
    pub given: String,
    #[schema(example = "Lovelace")]
    pub family: String,
}

/// A patient in a search result (also the columns every patient view reads).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PatientSummary {
    pub patient_id: Uuid,
    #[schema(example = "MRN-000012")]
    pub mrn: String,
    #[sqlx(flatten)]
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
    #[sqlx(flatten)]
    summary: PatientSummary,
    family_key: String,
    given_key: String,
}

/// Searches the clinic's patients, ordered by (family name, given name, id), one page at a
/// time.
///
/// Every page walks index ranges in the "C" order of the folded keys (see the migration
/// `read_keys`), so its cost follows the page and the matches, not the clinic. A name search
/// is two ranges merged: patients whose family key starts with the query's first word, read
/// in page order, and those whose given key does (and family key does not), sorted; the
/// exact rule (a prefix of given, family, "given family" or "family given") then filters
/// both.
pub async fn search_patients(
    pool: &PgPool,
    clinic: ClinicId,
    query: &PatientQuery,
) -> Result<PatientPage, sqlx::Error> {
    let limit = query.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql = QueryBuilder::<Postgres>::new("");
    if let PatientSearch::Name(name) = &query.search {
        // The folded query `f`, its first word `w`, and `e`, the least key above every key
        // that starts with `w`: computed once per execution, and read by the ranges below
        // through InitPlans (`(SELECT w FROM q)`), which a plan made once for every value
        // uses as index bounds. Joined instead, the folding was substituted into each
        // reference and evaluated at every row of a generic plan.
        sql.push(
            "WITH q AS MATERIALIZED (SELECT f, w, rm_prefix_upper(w) AS e FROM \
               (SELECT f, split_part(f, ' ', 1) AS w FROM (SELECT rm_fold(",
        )
        .push_bind(name.clone())
        .push(") AS f) f0) f1) SELECT * FROM ((");
        push_page(&mut sql, clinic, query, limit, NameRange::Family);
        sql.push(") UNION ALL (");
        push_page(&mut sql, clinic, query, limit, NameRange::GivenOnly);
        sql.push(")) p ORDER BY p.family_key, p.given_key, p.patient_id LIMIT ")
            .push_bind(limit + 1);
    } else {
        push_page(&mut sql, clinic, query, limit, NameRange::Family);
    }

    // No search or a name: index ranges in page order, whose bounds are parameters (or
    // computed once per execution), so one plan serves every value.
    let mut tx = match query.search {
        PatientSearch::All | PatientSearch::Name(_) => clinic_generic_plan_tx(pool, clinic).await?,
        PatientSearch::Phone(_) => clinic_search_tx(pool, clinic).await?,
        PatientSearch::Mrn(_) | PatientSearch::BirthDate(_) => clinic_tx(pool, clinic).await?,
    };
    let mut rows: Vec<PatientSummaryRow> = sql.build_query_as().fetch_all(&mut *tx).await?;
    end_read(tx);

    let next_page_token = page_end(&mut rows, limit).map(|last| {
        PatientCursor {
            family_key: last.family_key.clone(),
            given_key: last.given_key.clone(),
            patient_id: last.summary.patient_id,
        }
        .encode()
    });
    let items = rows.into_iter().map(|r| r.summary).collect();
    Ok(PatientPage {
        items,
        next_page_token,
    })
}

/// Which index range a name search reads: `w` is the query's first word (folded), `e` the
/// least key above every key that starts with it (both from the statement's `q`).
#[derive(Clone, Copy)]
enum NameRange {
    Family,
    GivenOnly,
}

/// One page of the search, in page order: every filter, the cursor and the limit.
fn push_page(
    sql: &mut QueryBuilder<'_, Postgres>,
    clinic: ClinicId,
    query: &PatientQuery,
    limit: i64,
    range: NameRange,
) {
    sql.push(
        "SELECT p.patient_id, p.mrn, p.given, p.family, p.birth_date, p.sex, p.phone, p.email, \
                p.status, p.merged_into, p.family_key, p.given_key \
         FROM rm.patients p",
    );
    sql.push(" WHERE p.clinic_id = ")
        .push_bind(clinic.as_uuid());
    match &query.search {
        PatientSearch::All => {}
        PatientSearch::Name(_) => {
            // Any match's family or given key starts with the first word: the range is a
            // superset, the rule below the exact test.
            sql.push(match range {
                NameRange::Family => {
                    " AND p.family_key >= (SELECT w FROM q) AND p.family_key < (SELECT e FROM q)"
                }
                NameRange::GivenOnly => {
                    " AND p.given_key >= (SELECT w FROM q) AND p.given_key < (SELECT e FROM q) \
                      AND NOT (p.family_key >= (SELECT w FROM q) \
                               AND p.family_key < (SELECT e FROM q))"
                }
            });
            sql.push(
                " AND (starts_with(p.family_key, (SELECT f FROM q)) \
                   OR starts_with(p.given_key, (SELECT f FROM q)) \
                   OR starts_with(p.given_key || ' ' || p.family_key, (SELECT f FROM q)) \
                   OR starts_with(p.family_key || ' ' || p.given_key, (SELECT f FROM q)))",
            );
        }
        PatientSearch::Mrn(mrn) => {
            sql.push(" AND p.mrn = ").push_bind(mrn.as_str().to_owned());
        }
        PatientSearch::Phone(digits) => {
            sql.push(" AND p.phone_digits >= ")
                .push_bind(digits.clone())
                .push(" AND p.phone_digits < rm_prefix_upper(")
                .push_bind(digits.clone())
                .push(")");
        }
        PatientSearch::BirthDate(date) => {
            sql.push(" AND p.birth_date = ").push_bind(*date);
        }
    }
    if let Some(doctor) = query.doctor {
        push_seen_by(sql, doctor);
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
}

/// The appointment states that let a doctor see the patient (`commands::registry::
/// doctor_sees_patient` holds the same rule for the write side): a cancelled appointment or a
/// no-show grants nothing.
pub const STATUSES_THAT_GRANT: &str = "('booked', 'checked-in', 'in-progress', 'fulfilled')";

/// `AND` the patient `p` has an appointment with `doctor` that lets the doctor see them.
fn push_seen_by(sql: &mut QueryBuilder<'_, Postgres>, doctor: StaffId) {
    sql.push(format!(
        " AND EXISTS (SELECT 1 FROM rm.appointments a \
           WHERE a.clinic_id = p.clinic_id AND a.patient_id = p.patient_id \
             AND a.status IN {STATUSES_THAT_GRANT} AND a.doctor_id = "
    ))
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
    #[sqlx(flatten)]
    summary: PatientSummary,
    address: Option<Json<serde_json::Value>>,
    emergency_contact: Option<Json<serde_json::Value>>,
    insurance: Option<Json<serde_json::Value>>,
    allergies: Json<Vec<String>>,
    registered_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
}

/// One patient of the clinic; `None` if there is none with this id, or (with `doctor`) if
/// that doctor may not see them.
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
    end_read(tx);
    Ok(row.map(|r| {
        let s = r.summary;
        PatientRecord {
            patient_id: s.patient_id,
            mrn: s.mrn,
            name: s.name,
            birth_date: s.birth_date,
            sex: s.sex,
            phone: s.phone,
            email: s.email,
            address: r.address.map(|Json(v)| v),
            emergency_contact: r.emergency_contact.map(|Json(v)| v),
            insurance: r.insurance.map(|Json(v)| v),
            allergies: r.allergies.0,
            status: s.status,
            merged_into: s.merged_into,
            registered_at: r.registered_at,
            updated_at: r.updated_at,
            version: r.version,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

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
        assert_eq!(
            PatientCursor::decode("not a token"),
            Err(InvalidQuery::BadPageToken)
        );
        assert_eq!(
            PatientCursor::decode(&URL_SAFE_NO_PAD.encode(b"{}")),
            Err(InvalidQuery::BadPageToken)
        );
    }
}
