//! The tenant isolation matrix (issue 15).
//!
//! One test reads the OpenAPI document as the service serves it (`GET /openapi.json`) and walks
//! every operation in it. For each one, as each role of clinic A, it sends clinic B's ids: in
//! the path, in each query parameter and in each body field that holds an id, and it slips
//! B's clinic id into the query or the body as `clinic_id`. Every answer must be a 403, a 404,
//! or a 422 naming the field that carried B's id; only a list filter described in [`FILTERS`]
//! may answer 200, and then with nothing of B's. Every request must write no event, and no
//! answer (body or header) may hold any of B's names, MRNs, e-mails or phone numbers. The same
//! request with an id that exists nowhere must get the same status: B's ids are not an oracle.
//!
//! Nothing here names a route that has ids. A route added later is covered as it is: its
//! parameters come from the document and their values from the tables below. A parameter the
//! tables cannot resolve fails the test with the route's name, until it is described there.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{all_day_hours, spawn_app, ClinicFixture, TestApp, PASSWORD};

// ---------------------------------------------------------------------------------------
// The tables: what the test knows about parameters, so that it knows nothing about routes.

/// Every role of a clinic, each of which is tried on every route.
const ROLES: [&str; 5] = ["clinic_admin", "doctor", "nurse", "receptionist", "auditor"];

/// The kinds of clinic-scoped record an id can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Clinic,
    Department,
    /// A staff member (the matrix uses a doctor, who is staff too).
    Staff,
    /// A staff member with the doctor role.
    Doctor,
    Patient,
    Appointment,
    Invoice,
}

/// `{id}` in a path names a record of the collection just before it.
const PATH_IDS: &[(&str, Kind)] = &[
    ("clinics", Kind::Clinic),
    ("departments", Kind::Department),
    ("staff", Kind::Staff),
    ("doctors", Kind::Doctor),
    ("patients", Kind::Patient),
    ("appointments", Kind::Appointment),
    ("invoices", Kind::Invoice),
];

/// Path parameters that are no id, and the value sent (the same for every clinic).
const PATH_VALUES: &[(&str, &str)] = &[
    // A module's name: every clinic has the same three.
    ("module", "laboratory"),
];

/// Query parameters that must go with an id (`aggregate_type` with `aggregate_id`).
type Companions = &'static [(&'static str, &'static str)];

/// Query parameters and body fields that hold an id, by name: the kind of record, and the
/// parameters that must go with it. A name listed more than once is tried with each kind.
const ID_FIELDS: &[(&str, Kind, Companions)] = &[
    ("patient_id", Kind::Patient, &[]),
    ("doctor_id", Kind::Doctor, &[]),
    ("department_id", Kind::Department, &[]),
    ("actor_id", Kind::Staff, &[]),
    ("clinic_id", Kind::Clinic, &[]),
    // A merge names the patient it keeps.
    ("into", Kind::Patient, &[]),
    (
        "aggregate_id",
        Kind::Patient,
        &[("aggregate_type", "Patient")],
    ),
    (
        "aggregate_id",
        Kind::Appointment,
        &[("aggregate_type", "Appointment")],
    ),
    ("aggregate_id", Kind::Staff, &[("aggregate_type", "Staff")]),
    (
        "aggregate_id",
        Kind::Clinic,
        &[("aggregate_type", "Clinic")],
    ),
];

/// Names that hold an id without saying so (besides `*_id` and `format: uuid`).
const ID_NAMES: &[&str] = &["id", "into"];

/// Query parameters sent with every request of a route that has them (a report needs its
/// month), unless the probe itself is about them.
const QUERY_VALUES: &[(&str, &str)] = &[("month", "2027-01")];

/// Bodies for the routes whose schema does not say enough to make a valid one (as JSON; the
/// probes put the ids in). A body that is not valid answers a 422 that names another field,
/// which fails the test: the id would not have been tried.
const BODIES: &[(&str, &str)] = &[
    // A rename or a closure, one of the two: the schema has neither as required.
    (
        "PATCH /v1/clinic/departments/{id}",
        r#"{"name": "Theatre"}"#,
    ),
];

/// The tag of the platform admin's routes, which every clinic role is refused.
const PLATFORM_TAG: &str = "clinics";

/// Routes that take no clinic-scoped id and no clinic from the request, each with why.
/// Every other route of the document is walked.
const EXEMPT: &[(&str, &str)] = &[
    ("GET /healthz", "liveness: no caller, no clinic"),
    ("GET /readyz", "readiness: no caller, no clinic"),
    (
        "GET /metrics",
        "process metrics, for the metrics token or the platform admin",
    ),
    (
        "POST /v1/auth/login",
        "no caller yet: an e-mail and a password",
    ),
    (
        "POST /v1/auth/refresh",
        "the refresh token is the only input",
    ),
    (
        "POST /v1/auth/logout",
        "the refresh token is the only input (and it would end the session)",
    ),
    ("GET /v1/me", "the caller's own account"),
    (
        "GET /v1/plans",
        "the platform's plans, the same for every clinic",
    ),
    (
        "GET /v1/ops/projections",
        "platform admin: projection progress, no clinic's data",
    ),
    (
        "POST /v1/clinics",
        "platform admin: creates a clinic, names no other",
    ),
    (
        "GET /v1/clinics",
        "platform admin: counts per clinic, no id taken",
    ),
    (
        "GET /v1/platform/overview",
        "platform admin: counts, no id taken",
    ),
    (
        "GET /v1/platform/billing",
        "platform admin: sums, no id taken",
    ),
];

/// What a list answers when a filter names another clinic's record.
#[derive(Clone, Copy, Debug)]
enum Finds {
    /// A 200 listing nothing: the filter matches no record of the caller's clinic.
    Nothing,
    /// A 200 listing only rows of the caller's clinic written by its own staff (the access
    /// log holds A's own reads that named B's id, each refused with a 404).
    OwnRows,
}

/// Query filters that may answer 200 (docs/api.md: a filter on another clinic's record finds
/// nothing) instead of 403, 404 or a 422 naming them, as `(route, parameter, answer)`.
const FILTERS: &[(&str, &str, Finds)] = &[
    ("GET /v1/appointments", "patient_id", Finds::Nothing),
    ("GET /v1/appointments", "doctor_id", Finds::Nothing),
    ("GET /v1/invoices", "patient_id", Finds::Nothing),
    ("GET /v1/invoices", "doctor_id", Finds::Nothing),
    ("GET /v1/staff", "department_id", Finds::Nothing),
    ("GET /v1/audit/events", "aggregate_id", Finds::Nothing),
    ("GET /v1/audit/access-log", "patient_id", Finds::OwnRows),
    ("GET /v1/audit/access-log", "actor_id", Finds::OwnRows),
];

// ---------------------------------------------------------------------------------------
// The two clinics.

/// A clinic of the matrix: its fixture and one record of each kind.
struct Tenant {
    fixture: ClinicFixture,
    ids: HashMap<Kind, Uuid>,
}

impl Tenant {
    fn id(&self, kind: Kind) -> Uuid {
        self.ids[&kind]
    }
}

/// Clinic A: the fixture, a department and an invoice of its own.
async fn tenant_a(app: &TestApp, platform: &str) -> Tenant {
    let a = app.clinic(platform, "tenant-a").await;
    let dept = app
        .post(
            "/v1/clinic/departments",
            &a.admin,
            json!({"name": "Surgery"}),
        )
        .await;
    assert_eq!(dept.status, 201, "{dept:?}");
    let invoice =
        crate::invoices::billed_visit(app, &a, a.patient_id, a.doctor_id, app.future(5, 9)).await;
    let ids = HashMap::from([
        (Kind::Clinic, a.id),
        (Kind::Department, dept.id()),
        (Kind::Staff, a.doctor_id),
        (Kind::Doctor, a.doctor_id),
        (Kind::Patient, a.patient_id),
        (Kind::Appointment, a.appointment_id),
        (Kind::Invoice, invoice.invoice_id),
    ]);
    Tenant { fixture: a, ids }
}

/// Clinic B, with records whose names, e-mails and phones appear nowhere in A: a renamed
/// clinic, a department, a doctor, a patient with contacts, her booked appointment and the
/// draft invoice of a visit of hers.
async fn tenant_b(app: &TestApp, platform: &str) -> Tenant {
    let b = app.clinic(platform, "tenant-b").await;
    let renamed = app
        .patch(
            "/v1/clinic",
            &b.admin,
            json!({"name": "Quokka Valley Health", "phone": "+44 20 7946 0000"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let dept = app
        .post(
            "/v1/clinic/departments",
            &b.admin,
            json!({"name": "Xenobotany Wing"}),
        )
        .await;
    assert_eq!(dept.status, 201, "{dept:?}");
    let doctor = app
        .post(
            "/v1/staff",
            &b.admin,
            json!({"name": "Bartholomew Wrexhamquine", "email": "bartholomew.wrexhamquine@tenant-b.example",
                   "role": "doctor", "licence_number": "LIC-B-7731", "specialty": "hyperbaric medicine",
                   "department_id": dept.id(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(doctor.status, 201, "{doctor:?}");
    let doctor = doctor.id();
    let hours = app
        .put(
            &format!("/v1/staff/{doctor}/working-hours"),
            &b.admin,
            all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200, "{hours:?}");
    let patient = app
        .post(
            "/v1/patients",
            &b.receptionist,
            json!({
                "name": {"given": "Zenobia", "family": "Quillfeather"},
                "birth_date": "1971-06-09",
                "sex": "female",
                "phone": "+44 20 7946 0958",
                "email": "zenobia.quillfeather@tenant-b.example",
                "address": {"lines": ["7 Marrowbone Crescent"], "city": "Llanfyllin"},
                "emergency_contact": {"name": "Peregrine Quillfeather", "phone": "+44 20 7946 0321",
                                      "relationship": "brother"},
                "insurance": {"provider": "Thistlewood Mutual", "policy_number": "TWM-88412"},
                "allergies": ["xylocaine"]
            }),
        )
        .await;
    assert_eq!(patient.status, 201, "{patient:?}");
    let patient = patient.id();
    let start = app.future(4, 10);
    let booked = app
        .post(
            "/v1/appointments",
            &b.receptionist,
            json!({"patient_id": patient, "doctor_id": doctor, "start": start,
                   "end": start + chrono::Duration::minutes(30), "reason": "vertigo after diving"}),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let invoice = crate::invoices::billed_visit(app, &b, patient, doctor, app.future(5, 11)).await;
    let ids = HashMap::from([
        (Kind::Clinic, b.id),
        (Kind::Department, dept.id()),
        (Kind::Staff, doctor),
        (Kind::Doctor, doctor),
        (Kind::Patient, patient),
        (Kind::Appointment, booked.id()),
        (Kind::Invoice, invoice.invoice_id),
    ]);
    Tenant { fixture: b, ids }
}

/// What A must never see of B, as B's own staff read it back (the stored forms).
async fn secrets_of(app: &TestApp, b: &Tenant) -> BTreeSet<String> {
    let at = app.head().await;
    let admin = &b.fixture.admin;
    let patient = app
        .read_at(&format!("/v1/patients/{}", b.id(Kind::Patient)), admin, at)
        .await;
    assert_eq!(patient.status, 200, "{patient:?}");
    let p = &patient.body;
    let doctor = app
        .read_at(&format!("/v1/staff/{}", b.id(Kind::Doctor)), admin, at)
        .await;
    assert_eq!(doctor.status, 200, "{doctor:?}");
    let clinic = app.read_at("/v1/clinic", admin, at).await;
    assert_eq!(clinic.status, 200, "{clinic:?}");
    let mut secrets: BTreeSet<String> = [
        &p["name"]["given"],
        &p["name"]["family"],
        &p["mrn"],
        &p["phone"],
        &p["email"],
        &p["emergency_contact"]["name"],
        &p["emergency_contact"]["phone"],
        &p["insurance"]["policy_number"],
        &doctor.body["name"],
        &doctor.body["email"],
        &clinic.body["name"],
        &clinic.body["phone"],
    ]
    .into_iter()
    .map(|v| {
        v.as_str()
            .unwrap_or_else(|| panic!("a string: {v} in {p} / {}", doctor.body))
            .to_owned()
    })
    .collect();
    secrets.insert("Xenobotany Wing".to_owned());
    secrets.extend(b.fixture.emails.values().cloned());
    secrets
}

// ---------------------------------------------------------------------------------------
// Reading the OpenAPI document.

/// `#/components/schemas/X` resolved, through any number of `$ref`s.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        schema = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("unresolved {reference}"));
    }
    schema
}

/// The schema's type other than `null` (3.1 writes an option as `["string", "null"]`), looking
/// through `oneOf`/`anyOf` of one real variant.
fn real<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let schema = resolve(doc, schema);
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            let kept: Vec<&Value> = variants
                .iter()
                .filter(|v| v.get("type") != Some(&json!("null")))
                .collect();
            if let [one] = kept.as_slice() {
                return real(doc, one);
            }
        }
    }
    schema
}

fn type_of(schema: &Value) -> &str {
    match schema.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "",
    }
}

/// Whether a parameter or field of this name and schema holds an id.
fn holds_id(doc: &Value, name: &str, schema: &Value) -> bool {
    let schema = real(doc, schema);
    name.ends_with("_id")
        || ID_NAMES.contains(&name)
        || schema.get("format") == Some(&json!("uuid"))
}

/// A field's place in a body, as the API's 422s name it (`rules[0].doctor_id`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Key(String),
    Index,
}

fn field_name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Index => out.push_str("[0]"),
        }
    }
    out
}

/// Every id field of a body schema, nested ones included (`rules[].doctor_id`).
fn id_fields(doc: &Value, schema: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    let schema = real(doc, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            id_fields(doc, part, at, out);
        }
    }
    match type_of(schema) {
        "object" => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    at.push(Step::Key(name.clone()));
                    let prop_type = type_of(real(doc, prop)).to_owned();
                    if prop_type != "object" && prop_type != "array" && holds_id(doc, name, prop) {
                        out.push(at.clone());
                    } else {
                        id_fields(doc, prop, at, out);
                    }
                    at.pop();
                }
            }
        }
        "array" => {
            if let Some(items) = schema.get("items") {
                at.push(Step::Index);
                id_fields(doc, items, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Values a generated body uses: A's ids and a free slot of A's doctor.
struct Samples<'a> {
    a: &'a Tenant,
    start: DateTime<Utc>,
}

impl Samples<'_> {
    /// A's id for a field of this name (the first kind [`ID_FIELDS`] gives it).
    fn id(&self, name: &str) -> Result<Uuid, String> {
        ID_FIELDS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, kind, _)| self.a.id(*kind))
            .ok_or_else(|| format!("the id field `{name}` is not in ID_FIELDS"))
    }
}

/// A minimal valid value for `schema`: an object with its required properties (and the
/// optional ones the document gives an example for), the document's examples, A's ids for
/// ids, and a future slot for `start`/`end`.
fn sample(doc: &Value, name: &str, schema: &Value, s: &Samples) -> Result<Value, String> {
    let schema = real(doc, schema);
    if type_of(schema) == "string" && holds_id(doc, name, schema) {
        return Ok(json!(s.id(name)?));
    }
    if let Some(example) = schema
        .get("example")
        .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
    {
        return Ok(example.clone());
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)) {
        return Ok(first.clone());
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = serde_json::Map::new();
        for part in all {
            if let Value::Object(map) = sample(doc, name, part, s)? {
                merged.extend(map);
            }
        }
        return Ok(Value::Object(merged));
    }
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    Ok(match type_of(schema) {
        "object" => {
            let required: BTreeSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, prop) in props {
                    let resolved = real(doc, prop);
                    let has_example =
                        resolved.get("example").is_some() || resolved.get("examples").is_some();
                    if required.contains(key.as_str()) || has_example {
                        out.insert(key.clone(), sample(doc, key, prop, s)?);
                    }
                }
            }
            Value::Object(out)
        }
        "array" => match schema.get("minItems").and_then(Value::as_u64) {
            Some(n) if n > 0 => {
                let items = schema.get("items").cloned().unwrap_or(json!({}));
                json!([sample(doc, name, &items, s)?])
            }
            _ => json!([]),
        },
        "string" if format == "date-time" => {
            if name == "end" {
                json!(s.start + chrono::Duration::minutes(30))
            } else {
                json!(s.start)
            }
        }
        "string" if format == "date" => json!("1984-02-29"),
        "string" if format == "email" => json!("probe@tenant-a.example"),
        "string" if format == "password" => json!(PASSWORD),
        "string" => json!("probe"),
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(1)),
        "boolean" => json!(false),
        other => {
            return Err(format!(
                "cannot make a `{name}` of type `{other}`: {schema}"
            ))
        }
    })
}

/// Sets `path` in `body` to `value`, making the objects and the first array element on the
/// way (from the schema) where the sample has none.
fn set_at(
    doc: &Value,
    body: &mut Value,
    schema: &Value,
    path: &[Step],
    value: Value,
    s: &Samples,
) -> Result<(), String> {
    let schema = real(doc, schema);
    let Some((step, rest)) = path.split_first() else {
        *body = value;
        return Ok(());
    };
    match step {
        Step::Key(key) => {
            let prop = schema
                .get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| {
                    schema
                        .get("allOf")
                        .and_then(Value::as_array)
                        .and_then(|all| {
                            all.iter()
                                .find_map(|part| real(doc, part).get("properties")?.get(key))
                        })
                })
                .cloned()
                .unwrap_or(json!({}));
            if !body.is_object() {
                *body = json!({});
            }
            let map = body.as_object_mut().expect("an object");
            if !map.contains_key(key) {
                let fresh = if rest.is_empty() {
                    Value::Null
                } else {
                    sample(doc, key, &prop, s)?
                };
                map.insert(key.clone(), fresh);
            }
            set_at(doc, map.get_mut(key).expect("set"), &prop, rest, value, s)
        }
        Step::Index => {
            let items = schema.get("items").cloned().unwrap_or(json!({}));
            if !body.is_array() {
                *body = json!([]);
            }
            let list = body.as_array_mut().expect("an array");
            if list.is_empty() {
                list.push(sample(doc, "item", &items, s)?);
            }
            set_at(doc, &mut list[0], &items, rest, value, s)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Probes: one request with B's ids, sent as each role of A.

/// Where a probe puts B's id.
#[derive(Clone, Debug)]
enum Target {
    /// Every id of the path is B's.
    Path,
    /// One query parameter names B's record.
    Query(String),
    /// One body field names B's record (its name as a 422 gives it).
    Body(String),
}

#[derive(Clone, Debug)]
struct Probe {
    route: String,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
    /// The request needs a fresh `Idempotency-Key`.
    keyed: bool,
    target: Target,
    /// B's ids in this request, each with a fresh id that exists nowhere.
    swaps: Vec<(Uuid, Uuid)>,
}

impl Probe {
    fn label(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let body = self
            .body
            .as_ref()
            .map(|b| format!(" {b}"))
            .unwrap_or_default();
        format!(
            "{} [{}{}{}]{body} ({:?})",
            self.route,
            self.path,
            if query.is_empty() { "" } else { "?" },
            query.join("&"),
            self.target
        )
    }

    /// The same request with an id that exists nowhere in place of each of B's.
    fn with_ids_of_nowhere(&self) -> Probe {
        let swap = |text: &str| {
            self.swaps.iter().fold(text.to_owned(), |t, (b, n)| {
                t.replace(&b.to_string(), &n.to_string())
            })
        };
        let mut probe = self.clone();
        probe.path = swap(&self.path);
        probe.query = self
            .query
            .iter()
            .map(|(k, v)| (k.clone(), swap(v)))
            .collect();
        probe.body = self
            .body
            .as_ref()
            .map(|b| serde_json::from_str(&swap(&b.to_string())).expect("json"));
        probe
    }

    /// Which field a 422 must name, if a 422 is a right answer at all.
    fn field(&self) -> Option<&str> {
        match &self.target {
            Target::Path => None,
            Target::Query(name) | Target::Body(name) => Some(name),
        }
    }
}

/// An operation of the document.
struct Operation<'a> {
    route: String,
    method: Method,
    template: &'a str,
    op: &'a Value,
}

/// The probes of one operation, or why the test cannot make them.
fn probes_of(
    doc: &Value,
    o: &Operation,
    a: &Tenant,
    b: &Tenant,
    s: &Samples,
) -> Result<Vec<Probe>, String> {
    let params: Vec<&Value> =
        o.op.get("parameters")
            .and_then(Value::as_array)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
    let of = |place: &str| {
        params
            .iter()
            .copied()
            .filter(|p| p["in"] == place)
            .collect::<Vec<&Value>>()
    };
    let keyed = of("header").iter().any(|p| {
        p["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("idempotency-key"))
            && p["required"] == true
    });

    // The path: each parameter is an id (by its name, or for `{id}` by the collection before
    // it) or a value of PATH_VALUES.
    let mut path_kinds: Vec<(String, Option<Kind>, String)> = Vec::new();
    let segments: Vec<&str> = o.template.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            continue;
        };
        let kind = ID_FIELDS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, k, _)| *k)
            .or_else(|| {
                (name == "id")
                    .then(|| i.checked_sub(1).map(|j| segments[j]))
                    .flatten()
                    .and_then(|before| PATH_IDS.iter().find(|(c, _)| *c == before))
                    .map(|(_, k)| *k)
            });
        match (kind, PATH_VALUES.iter().find(|(n, _)| *n == name)) {
            (Some(kind), _) => path_kinds.push((name.to_owned(), Some(kind), String::new())),
            (None, Some((_, value))) => {
                path_kinds.push((name.to_owned(), None, (*value).to_owned()))
            }
            (None, None) => {
                return Err(format!(
                    "path parameter `{name}`: describe it in PATH_IDS, ID_FIELDS or PATH_VALUES"
                ))
            }
        }
    }
    let path_with = |tenant_for_path: &Tenant| {
        let mut path = o.template.to_owned();
        for (name, kind, value) in &path_kinds {
            let value = match kind {
                Some(kind) => tenant_for_path.id(*kind).to_string(),
                None => value.clone(),
            };
            path = path.replace(&format!("{{{name}}}"), &value);
        }
        path
    };

    // The query: ids (by ID_FIELDS), then the values every request of the route sends
    // (QUERY_VALUES, and a sample of each other required parameter).
    let mut query_ids = Vec::new();
    let mut base_query: Vec<(String, String)> = Vec::new();
    for p in of("query") {
        let name = p["name"].as_str().unwrap_or_default();
        let schema = p.get("schema").cloned().unwrap_or(json!({}));
        if !holds_id(doc, name, &schema) {
            continue;
        }
        let kinds: Vec<_> = ID_FIELDS.iter().filter(|(n, _, _)| *n == name).collect();
        if kinds.is_empty() {
            return Err(format!(
                "query parameter `{name}` holds an id: describe it in ID_FIELDS"
            ));
        }
        if p["required"] == true {
            let (_, kind, with) = kinds[0];
            base_query.push((name.to_owned(), a.id(*kind).to_string()));
            base_query.extend(with.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        }
        query_ids.push((name.to_owned(), kinds));
    }
    for p in of("query") {
        let name = p["name"].as_str().unwrap_or_default();
        let schema = p.get("schema").cloned().unwrap_or(json!({}));
        if holds_id(doc, name, &schema) || base_query.iter().any(|(k, _)| k == name) {
            continue;
        }
        if let Some((_, value)) = QUERY_VALUES.iter().find(|(n, _)| *n == name) {
            base_query.push((name.to_owned(), (*value).to_owned()));
        } else if p["required"] == true {
            let value = match sample(doc, name, &schema, s)? {
                Value::String(v) => v,
                other => other.to_string(),
            };
            base_query.push((name.to_owned(), value));
        }
    }

    // The body: a sample, and its id fields.
    let body_schema = match o.op.get("requestBody") {
        None => None,
        Some(rb) => {
            let rb = resolve(doc, rb);
            let schema = rb
                .pointer("/content/application~1json/schema")
                .ok_or_else(|| format!("a body that is not application/json: {rb}"))?;
            Some(schema.clone())
        }
    };
    let (base_body, body_ids) = match &body_schema {
        None => (None, Vec::new()),
        Some(schema) => {
            let mut ids = Vec::new();
            id_fields(doc, schema, &mut Vec::new(), &mut ids);
            let body = match BODIES.iter().find(|(route, _)| *route == o.route) {
                Some((_, body)) => serde_json::from_str(body).expect("a body of BODIES"),
                None => sample(doc, "body", schema, s)?,
            };
            (Some(body), ids)
        }
    };

    let mut out = Vec::new();
    let probe = |path: String,
                 query: Vec<(String, String)>,
                 body: Option<Value>,
                 target: Target,
                 swaps: Vec<(Uuid, Uuid)>| Probe {
        route: o.route.clone(),
        method: o.method.clone(),
        path,
        query,
        body,
        keyed,
        target,
        swaps,
    };
    // 1. B's ids in the path.
    if path_kinds.iter().any(|(_, kind, _)| kind.is_some()) {
        let swaps = path_kinds
            .iter()
            .filter_map(|(_, kind, _)| kind.map(|k| (b.id(k), Uuid::new_v4())))
            .collect();
        out.push(probe(
            path_with(b),
            base_query.clone(),
            base_body.clone(),
            Target::Path,
            swaps,
        ));
    }
    // 2. B's id in each query parameter that holds one (with each kind it may name).
    for (name, kinds) in &query_ids {
        for (_, kind, with) in kinds {
            let mut query: Vec<(String, String)> = base_query
                .iter()
                .filter(|(k, _)| k != name && !with.iter().any(|(w, _)| w == k))
                .cloned()
                .collect();
            query.push((name.clone(), b.id(*kind).to_string()));
            query.extend(with.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            out.push(probe(
                path_with(a),
                query,
                base_body.clone(),
                Target::Query(name.clone()),
                vec![(b.id(*kind), Uuid::new_v4())],
            ));
        }
    }
    // 3. B's id in each body field that holds one.
    if let (Some(schema), Some(base)) = (&body_schema, &base_body) {
        for field in &body_ids {
            let Some(Step::Key(leaf)) = field.last() else {
                return Err(format!("an id field with no name: {field:?}"));
            };
            let kinds: Vec<_> = ID_FIELDS.iter().filter(|(n, _, _)| n == leaf).collect();
            if kinds.is_empty() {
                return Err(format!(
                    "body field `{}` holds an id: describe it in ID_FIELDS",
                    field_name(field)
                ));
            }
            for (_, kind, _) in kinds {
                let mut body = base.clone();
                set_at(doc, &mut body, schema, field, json!(b.id(*kind)), s)?;
                out.push(probe(
                    path_with(a),
                    base_query.clone(),
                    Some(body),
                    Target::Body(field_name(field)),
                    vec![(b.id(*kind), Uuid::new_v4())],
                ));
            }
        }
    }
    // 4. B's clinic slipped in as `clinic_id`: the clinic is the token's, never the request's.
    let clinic = (b.id(Kind::Clinic), Uuid::new_v4());
    let has_clinic_id = query_ids.iter().any(|(n, _)| n == "clinic_id")
        || body_ids
            .iter()
            .any(|f| f.len() == 1 && f[0] == Step::Key("clinic_id".into()));
    if !has_clinic_id {
        let into_body = match &base_body {
            Some(Value::Object(map)) => Some(map.clone()),
            // A command without a declared body still takes none: `{}` and a field is refused.
            None if o.method != Method::GET => Some(serde_json::Map::new()),
            _ => None,
        };
        match into_body {
            Some(mut map) => {
                map.insert("clinic_id".into(), json!(clinic.0));
                out.push(probe(
                    path_with(a),
                    base_query.clone(),
                    Some(Value::Object(map)),
                    Target::Body("clinic_id".into()),
                    vec![clinic],
                ));
            }
            _ => {
                let mut query = base_query.clone();
                query.push(("clinic_id".into(), clinic.0.to_string()));
                out.push(probe(
                    path_with(a),
                    query,
                    base_body.clone(),
                    Target::Query("clinic_id".into()),
                    vec![clinic],
                ));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Sending and judging.

/// An answer as the matrix reads it: status, headers, the JSON values of the body (one per
/// NDJSON line) and its text when it is not JSON.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    values: Vec<Value>,
    text: Option<String>,
}

impl Reply {
    fn problem_type(&self) -> Option<&str> {
        self.values.first().and_then(|v| v["type"].as_str())
    }

    fn names_field(&self, field: &str) -> bool {
        let leaf = field.rsplit('.').next().unwrap_or(field);
        self.values.first().is_some_and(|v| {
            v["errors"].as_array().is_some_and(|errors| {
                errors.iter().any(|e| {
                    let named = e["field"].as_str().unwrap_or_default();
                    named == field || named == leaf
                })
            })
        })
    }

    fn summary(&self) -> String {
        let body: String = match &self.text {
            Some(text) => text.chars().take(300).collect(),
            None => self
                .values
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
                .chars()
                .take(600)
                .collect(),
        };
        format!("{} {body}", self.status)
    }

    /// Every string the answer holds: JSON strings and keys, header values, and the text of a
    /// body that is not JSON.
    fn strings(&self) -> Vec<String> {
        fn walk(value: &Value, out: &mut Vec<String>) {
            match value {
                Value::String(s) => out.push(s.clone()),
                Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
                Value::Object(map) => {
                    for (k, v) in map {
                        out.push(k.clone());
                        walk(v, out);
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        self.values.iter().for_each(|v| walk(v, &mut out));
        out.extend(self.text.iter().cloned());
        out.extend(
            self.headers.iter().map(|(name, value)| {
                format!("{name}: {}", String::from_utf8_lossy(value.as_bytes()))
            }),
        );
        out
    }

    /// The rows of a list answer: `items`, or the lines of an NDJSON stream.
    fn rows(&self) -> Vec<&Value> {
        match self.values.as_slice() {
            [one] if one.get("items").is_some() => one["items"]
                .as_array()
                .map(|i| i.iter().collect())
                .unwrap_or_default(),
            [one] if one.is_array() => one.as_array().unwrap().iter().collect(),
            lines => lines.iter().collect(),
        }
    }
}

async fn send(app: &TestApp, probe: &Probe, token: &str) -> Reply {
    let mut req = app
        .client
        .request(probe.method.clone(), app.url(&probe.path))
        .bearer_auth(token);
    if !probe.query.is_empty() {
        req = req.query(&probe.query);
    }
    if let Some(body) = &probe.body {
        req = req.json(body);
    }
    if probe.keyed {
        req = req.header("Idempotency-Key", Uuid::new_v4().to_string());
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    if raw.trim().is_empty() {
        return Reply {
            status,
            headers,
            values: Vec::new(),
            text: None,
        };
    }
    if let Ok(value) = serde_json::from_str::<Value>(&raw) {
        return Reply {
            status,
            headers,
            values: vec![value],
            text: None,
        };
    }
    let lines: Result<Vec<Value>, _> = raw
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect();
    match lines {
        Ok(values) => Reply {
            status,
            headers,
            values,
            text: None,
        },
        Err(_) => Reply {
            status,
            headers,
            values: Vec::new(),
            text: Some(raw),
        },
    }
}

/// Every event in the store, the billing process manager's included.
async fn events(owner: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(owner)
        .await
        .expect("count events")
}

#[derive(Default)]
struct Tally {
    requests: usize,
    probes: usize,
    /// Probes by where B's id went: `path`, `query`, `body`, or `clinic_id` slipped in.
    by_target: BTreeMap<&'static str, usize>,
    by_status: BTreeMap<u16, usize>,
    failures: Vec<String>,
}

#[tokio::test]
async fn every_route_refuses_another_clinics_ids_to_every_role_and_shows_nothing_of_it() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let a = tenant_a(&app, &platform).await;
    let b = tenant_b(&app, &platform).await;
    let secrets = secrets_of(&app, &b).await;
    // B's secrets are B's alone: A's patient is another person with another MRN.
    let a_patient = app
        .read_at(
            &format!("/v1/patients/{}", a.id(Kind::Patient)),
            &a.fixture.admin,
            app.head().await,
        )
        .await;
    assert_eq!(a_patient.status, 200, "{a_patient:?}");
    let a_text = a_patient.body.to_string();
    for secret in &secrets {
        assert!(!a_text.contains(secret.as_str()), "{secret} is A's too");
    }
    // A's own accounts: the only actors of A's access log.
    let mut a_accounts = BTreeSet::new();
    for role in ROLES {
        let me = app
            .send(Method::GET, "/v1/me", Some(a.fixture.token(role)), None)
            .await;
        assert_eq!(me.status, 200, "{me:?}");
        a_accounts.insert(me.id().to_string());
    }
    // Nothing is left to write on its own time (the billing process manager's drafts).
    app.db.caught_up().await;

    let doc: Value = app
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("the document");
    let samples = Samples {
        a: &a,
        start: app.future(6, 10),
    };
    let mut owner = app.db.owner_connection().await;
    let written_before = events(&mut owner).await;

    let mut tally = Tally::default();
    let mut walked = BTreeSet::new();
    let mut exempted = BTreeSet::new();
    let mut platform_routes = BTreeSet::new();
    let mut past_the_roles = BTreeSet::new();
    let paths = doc["paths"].as_object().expect("paths");
    for (template, item) in paths {
        for (verb, op) in item.as_object().expect("a path item") {
            let Ok(method) = Method::from_bytes(verb.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if !["get", "post", "put", "patch", "delete"].contains(&verb.as_str()) {
                if op.is_object() && ["head", "options", "trace"].contains(&verb.as_str()) {
                    tally.failures.push(format!(
                        "{} {template}: the matrix does not send {verb}: describe it",
                        verb.to_ascii_uppercase()
                    ));
                }
                continue;
            }
            let route = format!("{method} {template}");
            if EXEMPT.iter().any(|(r, _)| *r == route) {
                exempted.insert(route);
                continue;
            }
            let operation = Operation {
                route: route.clone(),
                method,
                template,
                op,
            };
            let probes = match probes_of(&doc, &operation, &a, &b, &samples) {
                Ok(p) => p,
                Err(why) => {
                    tally
                        .failures
                        .push(format!("{route}: cannot be exercised: {why}"));
                    continue;
                }
            };
            walked.insert(route.clone());
            if op["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == PLATFORM_TAG))
            {
                platform_routes.insert(route.clone());
            }
            for probe in &probes {
                tally.probes += 1;
                let place = match &probe.target {
                    Target::Query(n) | Target::Body(n) if n == "clinic_id" => "clinic_id",
                    Target::Path => "path",
                    Target::Query(_) => "query",
                    Target::Body(_) => "body",
                };
                *tally.by_target.entry(place).or_default() += 1;
                let nowhere = probe.with_ids_of_nowhere();
                for role in ROLES {
                    let token = a.fixture.token(role);
                    let label = format!("{} as A's {role}", probe.label());
                    let before = events(&mut owner).await;
                    let reply = send(&app, probe, token).await;
                    let after = events(&mut owner).await;
                    let control = send(&app, &nowhere, token).await;
                    let after_control = events(&mut owner).await;
                    tally.requests += 2;
                    *tally.by_status.entry(reply.status).or_default() += 1;
                    if reply.status != 403 {
                        past_the_roles.insert(route.clone());
                    }
                    judge(&mut tally, &label, probe, &reply, &a_accounts);
                    if after != before || after_control != after {
                        tally.failures.push(format!(
                            "{label}: wrote {} event(s) (and {} with an id of nowhere)",
                            after - before,
                            after_control - after
                        ));
                    }
                    if control.status != reply.status
                        || control.problem_type() != reply.problem_type()
                    {
                        tally.failures.push(format!(
                            "{label}: B's id answers {} but an id of nowhere {}: B's ids are an oracle",
                            reply.summary(),
                            control.summary()
                        ));
                    }
                    for answer in [&reply, &control] {
                        let seen = answer.strings();
                        for secret in &secrets {
                            if seen.iter().any(|s| s.contains(secret.as_str())) {
                                tally.failures.push(format!(
                                    "{label}: the answer holds B's {secret:?}: {}",
                                    answer.summary()
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    // Nothing was written meanwhile, on the workers' time either.
    app.db.caught_up().await;
    let written_after = events(&mut owner).await;
    if written_after != written_before {
        tally.failures.push(format!(
            "the matrix wrote {} event(s) in all",
            written_after - written_before
        ));
    }
    // Each route let some role of A past its role check, so B's ids met the tenancy check;
    // but the platform admin's routes (tag `clinics`) refuse every clinic role.
    for route in &walked {
        let platform = platform_routes.contains(route);
        if platform == past_the_roles.contains(route) {
            tally.failures.push(if platform {
                format!("{route}: a platform admin's route let a clinic role past its role check")
            } else {
                format!("{route}: every role of A got 403, so no probe reached B's ids")
            });
        }
    }
    // The allow-list names only routes the document has.
    for (route, _) in EXEMPT {
        if !exempted.contains(*route) {
            tally.failures.push(format!(
                "EXEMPT names {route}, which the document does not list"
            ));
        }
    }
    assert!(
        tally.failures.is_empty(),
        "{} failure(s) in {} requests ({} routes, {} probes x {} roles, each also with an id of nowhere):\n  {}",
        tally.failures.len(),
        tally.requests,
        walked.len(),
        tally.probes,
        ROLES.len(),
        tally.failures.join("\n  ")
    );
    // The matrix reached the routes it should (a document it could not read would pass).
    assert!(
        walked.len() >= 50,
        "only {} routes walked: {walked:?}",
        walked.len()
    );
    println!(
        "isolation matrix: {} routes ({} exempt), {} probes {:?} x {} roles, {} requests; answers {:?}",
        walked.len(),
        exempted.len(),
        tally.probes,
        tally.by_target,
        ROLES.len(),
        tally.requests,
        tally.by_status
    );
}

/// Whether `reply` is a right answer to `probe`: 403, 404, a 422 naming the field that
/// carried B's id, or for a filter of [`FILTERS`] a 200 that finds nothing of B's.
fn judge(
    tally: &mut Tally,
    label: &str,
    probe: &Probe,
    reply: &Reply,
    a_accounts: &BTreeSet<String>,
) {
    match reply.status {
        403 | 404 => {}
        422 => match probe.field() {
            Some(field) if reply.names_field(field) => {}
            Some(field) => tally.failures.push(format!(
                "{label}: a 422 that does not name `{field}` (the sample body or query is not \
                 valid: describe the route in BODIES or QUERY_VALUES): {}",
                reply.summary()
            )),
            None => tally.failures.push(format!(
                "{label}: a 422 for B's ids in the path: {}",
                reply.summary()
            )),
        },
        200 => {
            let filter = match &probe.target {
                Target::Query(name) => FILTERS
                    .iter()
                    .find(|(route, param, _)| *route == probe.route && param == name),
                _ => None,
            };
            match filter {
                Some((_, _, Finds::Nothing)) if reply.rows().is_empty() => {}
                Some((_, _, Finds::OwnRows))
                    if reply.rows().iter().all(|row| {
                        row["actor_id"]
                            .as_str()
                            .is_some_and(|actor| a_accounts.contains(actor))
                    }) => {}
                Some(_) => tally.failures.push(format!(
                    "{label}: the filter found rows that are not A's own: {}",
                    reply.summary()
                )),
                None => tally.failures.push(format!(
                    "{label}: answered 200 (describe it in FILTERS if it is a filter that finds \
                     nothing): {}",
                    reply.summary()
                )),
            }
        }
        _ => tally.failures.push(format!(
            "{label}: expected 403, 404 or a 422 naming the id: {}",
            reply.summary()
        )),
    }
}
