//! Every command endpoint: 401, 403, 404, 422; idempotency and If-Match.
//!
//! The endpoints are described once, in [`cases`]: method and path, a valid body, the roles
//! that may use it, another clinic's record (or a body that points at one) and bad bodies with
//! the field they must name. Each test walks the whole table and reports every case that
//! failed, not just the first.

use std::collections::{BTreeSet, HashMap};

use api::auth::AccessClaims;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use commands::ActorRole;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    default_now, future_from, patient_body, spawn_app, spawn_app_at, test_jwt, Answer,
    ClinicFixture, TestApp, PASSWORD,
};

// ---------------------------------------------------------------------------------------
// The endpoints and who may use them (docs/api.md; api/src/routes/mod.rs `roles`).

/// Every command endpoint. The OpenAPI document must list exactly these (besides /v1/auth),
/// and the case table must cover each.
const ENDPOINTS: &[&str] = &[
    "POST /v1/clinics",
    "POST /v1/clinics/{id}/suspend",
    "POST /v1/clinics/{id}/reactivate",
    "PUT /v1/clinics/{id}/plan",
    "PATCH /v1/clinic",
    "POST /v1/clinic/departments",
    "PATCH /v1/clinic/departments/{id}",
    "PUT /v1/clinic/modules/{module}",
    "PUT /v1/clinic/fees",
    "POST /v1/staff",
    "PATCH /v1/staff/{id}",
    "PUT /v1/staff/{id}/role",
    "PUT /v1/staff/{id}/working-hours",
    "POST /v1/staff/{id}/time-off",
    "POST /v1/staff/{id}/deactivate",
    "POST /v1/staff/{id}/reactivate",
    "POST /v1/patients",
    "PATCH /v1/patients/{id}",
    "POST /v1/patients/{id}/merge",
    "POST /v1/patients/{id}/deactivate",
    "POST /v1/appointments",
    "POST /v1/appointments/{id}/reschedule",
    "POST /v1/appointments/{id}/cancel",
    "POST /v1/appointments/{id}/check-in",
    "POST /v1/appointments/{id}/start",
    "POST /v1/appointments/{id}/complete",
    "POST /v1/appointments/{id}/no-show",
    "POST /v1/invoices/{id}/lines",
    "POST /v1/invoices/{id}/finalise",
    "POST /v1/invoices/{id}/payments",
    "POST /v1/invoices/{id}/refunds",
    "POST /v1/invoices/{id}/void",
];

/// Every role a caller can have.
pub(crate) const ALL_ROLES: &[&str] = &[
    "platform_admin",
    "clinic_admin",
    "doctor",
    "nurse",
    "receptionist",
    "auditor",
];

const PLATFORM: &[&str] = &["platform_admin"];
const CLINIC_ADMIN: &[&str] = &["clinic_admin"];
const PATIENT_DESK: &[&str] = &["clinic_admin", "receptionist", "nurse"];
const PATIENT_DEMOGRAPHICS: &[&str] = &["clinic_admin", "receptionist", "nurse", "doctor"];
/// A doctor only for their own appointments (the fixture's appointments are its doctor's).
const BOOKING: &[&str] = &["clinic_admin", "receptionist", "nurse", "doctor"];
const CLINICAL: &[&str] = &["clinic_admin", "nurse", "doctor"];
const INVOICE_DESK: &[&str] = &["clinic_admin", "receptionist"];

// ---------------------------------------------------------------------------------------
// The world every test starts from: two clinics and a few records to act on.

pub(crate) struct World {
    /// The service clock's now when the world was set up.
    now: DateTime<Utc>,
    platform: String,
    pub(crate) north: ClinicFixture,
    south: ClinicFixture,
    /// Account ids by role: the platform admin's and North's staff.
    ids: HashMap<&'static str, Uuid>,
    /// North departments: one the table renames, one it closes. South has `south_dept`.
    dept: Uuid,
    dept_to_close: Uuid,
    south_dept: Uuid,
    /// A North receptionist the staff commands act on.
    staff: Uuid,
    /// North patients: one the table merges into the fixture's patient, one it deactivates.
    duplicate: Uuid,
    leaving: Uuid,
    /// North appointments (with North's doctor): one the table reschedules (booked in
    /// `to_move_slot`), one it cancels, one it marks no-show.
    to_move: Uuid,
    to_move_slot: Value,
    to_cancel: Uuid,
    no_show: Uuid,
    /// A draft invoice of a North visit (the table adds a line, finalises it, takes a payment,
    /// refunds it and voids it), and one of South's.
    invoice: Uuid,
    south_invoice: Uuid,
}

impl World {
    pub(crate) fn token(&self, role: &str) -> &str {
        if role == "platform_admin" {
            &self.platform
        } else {
            self.north.token(role)
        }
    }

    /// A world of made-up ids, to build the case table without a server.
    fn dummy() -> World {
        let clinic = |code: &str| ClinicFixture {
            id: Uuid::new_v4(),
            code: code.to_owned(),
            admin: String::new(),
            doctor: String::new(),
            doctor_id: Uuid::new_v4(),
            nurse: String::new(),
            receptionist: String::new(),
            auditor: String::new(),
            patient_id: Uuid::new_v4(),
            appointment_id: Uuid::new_v4(),
            emails: HashMap::new(),
        };
        World {
            now: default_now(),
            platform: String::new(),
            north: clinic("north"),
            south: clinic("south"),
            ids: HashMap::new(),
            dept: Uuid::new_v4(),
            dept_to_close: Uuid::new_v4(),
            south_dept: Uuid::new_v4(),
            staff: Uuid::new_v4(),
            duplicate: Uuid::new_v4(),
            leaving: Uuid::new_v4(),
            to_move: Uuid::new_v4(),
            to_move_slot: slot(default_now(), 3, 10),
            to_cancel: Uuid::new_v4(),
            no_show: Uuid::new_v4(),
            invoice: Uuid::new_v4(),
            south_invoice: Uuid::new_v4(),
        }
    }
}

/// `{start, end}` of a 30-minute slot `days` after `now` at `hour` (UTC).
fn slot(now: DateTime<Utc>, days: i64, hour: u32) -> Value {
    let start = future_from(now, days, hour);
    json!({"start": start, "end": start + Duration::minutes(30)})
}

/// A slot whose end is 30 minutes before its start.
fn backwards(now: DateTime<Utc>, days: i64, hour: u32) -> Value {
    let start = future_from(now, days, hour);
    json!({"start": start, "end": start - Duration::minutes(30)})
}

/// `base` with `key` (dotted for nesting, e.g. `admin.email`) set to `value`.
fn with(base: &Value, key: &str, value: Value) -> Value {
    let mut out = base.clone();
    let (parent, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let target = if parent.is_empty() {
        &mut out
    } else {
        out.pointer_mut(&format!("/{}", parent.replace('.', "/")))
            .unwrap_or_else(|| panic!("no {parent} in {base}"))
    };
    target[leaf] = value;
    out
}

/// `base` without its top-level `key`.
fn without(base: &Value, key: &str) -> Value {
    let mut out = base.clone();
    out.as_object_mut().expect("an object").remove(key);
    out
}

async fn add_department(app: &TestApp, admin: &str, name: &str) -> Uuid {
    let added = app
        .post("/v1/clinic/departments", admin, json!({ "name": name }))
        .await;
    assert_eq!(added.status, 201, "{added:?}");
    added.id()
}

fn hire_body(email: &str, role: &str) -> Value {
    let mut body = json!({
        "name": format!("{role} person"),
        "email": email,
        "role": role,
        "password": PASSWORD
    });
    if role == "doctor" {
        body["licence_number"] = json!("LIC-2");
    }
    body
}

async fn book(app: &TestApp, clinic: &ClinicFixture, at: &Value) -> Uuid {
    let body = with(
        &with(at, "patient_id", json!(clinic.patient_id)),
        "doctor_id",
        json!(clinic.doctor_id),
    );
    let booked = app
        .post("/v1/appointments", &clinic.receptionist, body)
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    booked.id()
}

pub(crate) async fn setup(app: &TestApp) -> World {
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    let dept = add_department(app, &north.admin, "Surgery").await;
    let dept_to_close = add_department(app, &north.admin, "Radiology").await;
    let south_dept = add_department(app, &south.admin, "Surgery").await;
    let hired = app
        .post(
            "/v1/staff",
            &north.admin,
            hire_body("target@north.example", "receptionist"),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let mut patients = Vec::new();
    for given in ["Dupli", "Leaving"] {
        let registered = app
            .post("/v1/patients", &north.receptionist, patient_body(given))
            .await;
        assert_eq!(registered.status, 201, "{registered:?}");
        patients.push(registered.id());
    }
    let to_move_slot = slot(app.now(), 3, 10);
    let to_move = book(app, &north, &to_move_slot).await;
    let to_cancel = book(app, &north, &slot(app.now(), 3, 11)).await;
    let no_show = book(app, &north, &slot(app.now(), 3, 12)).await;
    let (np, nd, sp, sd) = (
        north.patient_id,
        north.doctor_id,
        south.patient_id,
        south.doctor_id,
    );
    let at = future_from(app.now(), 5, 9);
    let invoice = crate::invoices::billed_visit(app, &north, np, nd, at).await;
    let south_invoice = crate::invoices::billed_visit(app, &south, sp, sd, at).await;
    let mut world = World {
        now: app.now(),
        platform,
        north,
        south,
        ids: HashMap::new(),
        dept,
        dept_to_close,
        south_dept,
        staff: hired.id(),
        duplicate: patients[0],
        leaving: patients[1],
        to_move,
        to_move_slot,
        to_cancel,
        no_show,
        invoice: invoice.invoice_id,
        south_invoice: south_invoice.invoice_id,
    };
    for role in ALL_ROLES {
        let me = app
            .send(Method::GET, "/v1/me", Some(world.token(role)), None)
            .await;
        assert_eq!(me.status, 200, "{me:?}");
        assert_eq!(me.body["role"], *role, "{me:?}");
        if let Some(email) = world.north.emails.get(role) {
            assert_eq!(me.body["email"], *email, "{me:?}");
        }
        world.ids.insert(role, me.id());
    }
    world
}

// ---------------------------------------------------------------------------------------
// The case table.

/// What another clinic's record (or a reference to one) must get.
#[derive(Clone, Debug)]
enum Outcome {
    /// 404: the record is not in the caller's clinic.
    NotFound,
    /// 422 naming the field that refers to another clinic's record.
    Field(&'static str),
}

#[derive(Clone, Debug)]
struct Cross {
    role: &'static str,
    path: String,
    body: Value,
    outcome: Outcome,
}

#[derive(Clone, Debug)]
pub(crate) struct Case {
    /// One of [`ENDPOINTS`].
    pub(crate) endpoint: &'static str,
    pub(crate) method: Method,
    /// The path, acting on a North record (or a platform path).
    pub(crate) path: String,
    /// A valid body for `actor`.
    pub(crate) body: Value,
    allowed: &'static [&'static str],
    /// The allowed role the table acts as (for 401 forgeries, 422s and the success run).
    pub(crate) actor: &'static str,
    /// The status of a success: 201 for a create, else 200.
    status: u16,
    /// The events a success writes, in order.
    writes: &'static [&'static str],
    /// Whether a success writes into the clinic it creates (else into North).
    new_clinic: bool,
    /// Requests about another clinic's records.
    cross: Vec<Cross>,
    /// Bad bodies and the field each must name.
    bad: Vec<(Value, &'static str)>,
    /// The endpoint requires `Idempotency-Key` (a payment): [`send_case`] sends a fresh one.
    keyed: bool,
}

impl Case {
    fn new(
        endpoint: &'static str,
        path: impl Into<String>,
        body: Value,
        allowed: &'static [&'static str],
        actor: &'static str,
    ) -> Case {
        let verb = endpoint.split(' ').next().unwrap_or_default();
        assert!(
            allowed.contains(&actor),
            "{endpoint}: {actor} is not allowed"
        );
        Case {
            endpoint,
            method: Method::from_bytes(verb.as_bytes()).expect("a method"),
            path: path.into(),
            body,
            allowed,
            actor,
            status: 200,
            writes: &[],
            new_clinic: false,
            cross: Vec::new(),
            bad: Vec::new(),
            keyed: false,
        }
    }

    fn label(&self) -> String {
        format!("{} [{}]", self.endpoint, self.path)
    }

    fn forbidden(&self) -> Vec<&'static str> {
        ALL_ROLES
            .iter()
            .copied()
            .filter(|r| !self.allowed.contains(r))
            .collect()
    }

    fn created(mut self) -> Case {
        self.status = 201;
        self
    }

    fn writes(mut self, events: &'static [&'static str]) -> Case {
        self.writes = events;
        self
    }

    fn in_new_clinic(mut self) -> Case {
        self.new_clinic = true;
        self
    }

    /// Every allowed role gets 404 for `path` with the valid body.
    fn not_found_at(mut self, path: impl Into<String>) -> Case {
        let path = path.into();
        for role in self.allowed {
            self.cross.push(Cross {
                role,
                path: path.clone(),
                body: self.body.clone(),
                outcome: Outcome::NotFound,
            });
        }
        self
    }

    /// `roles` get a 422 naming `field` for this path with `body`.
    fn refuses(mut self, roles: &[&'static str], body: Value, field: &'static str) -> Case {
        for role in roles {
            self.cross.push(Cross {
                role,
                path: self.path.clone(),
                body: body.clone(),
                outcome: Outcome::Field(field),
            });
        }
        self
    }

    fn bad(mut self, body: Value, field: &'static str) -> Case {
        self.bad.push((body, field));
        self
    }

    /// The endpoint requires `Idempotency-Key`.
    fn keyed(mut self) -> Case {
        self.keyed = true;
        self
    }
}

/// The table, in an order in which every valid body succeeds once (see
/// `valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic`).
pub(crate) fn cases(w: &World) -> Vec<Case> {
    let (n, s) = (&w.north, &w.south);
    let nowhere = Uuid::new_v4();
    let a = n.appointment_id;
    let sa = s.appointment_id;
    let (inv, sinv) = (w.invoice, w.south_invoice);
    let other_clinic = json!(s.id);

    let new_clinic = json!({
        "name": "East Clinic",
        "code": "east",
        "time_zone": "Europe/Berlin",
        "plan": "trial",
        "admin": {"name": "East Admin", "email": "admin@east.example", "password": PASSWORD}
    });
    let hire = with(
        &hire_body("extra-nurse@north.example", "nurse"),
        "department_id",
        json!(w.dept),
    );
    let booking = with(
        &with(
            &with(&slot(w.now, 5, 10), "patient_id", json!(n.patient_id)),
            "doctor_id",
            json!(n.doctor_id),
        ),
        "appointment_type",
        json!("follow-up"),
    );
    let fees = json!({
        "currency": "EUR",
        "default_fee": 6000,
        "no_show_fee": 2500,
        "rules": [
            {"appointment_type": "follow-up", "doctor_id": n.doctor_id, "amount": 4000},
            {"appointment_type": "consultation", "amount": 5000}
        ]
    });
    let fee_rule = |rule: Value| with(&fees, "rules", json!([rule]));
    let time_off = with(&slot(w.now, 10, 8), "reason", json!("training"));
    let patient = with(
        &with(
            &with(
                &patient_body("Grace"),
                "address",
                json!({"lines": ["1 High Street"], "city": "Berlin"}),
            ),
            "emergency_contact",
            json!({"name": "Alan Example", "phone": "+49 30 7654321", "relationship": "brother"}),
        ),
        "insurance",
        json!({"provider": "AOK", "policy_number": "A-123"}),
    );
    let not_doctors: Vec<&'static str> =
        BOOKING.iter().copied().filter(|r| *r != "doctor").collect();

    vec![
        // --- clinics (platform admin) ---
        Case::new(
            "POST /v1/clinics",
            "/v1/clinics",
            new_clinic.clone(),
            PLATFORM,
            "platform_admin",
        )
        .created()
        .writes(&[
            "ClinicRegistered",
            "DepartmentAdded",
            "DepartmentAdded",
            "DepartmentAdded",
            "DepartmentAdded",
            "DepartmentAdded",
            "StaffHired",
        ])
        .in_new_clinic()
        .bad(
            with(&new_clinic, "admin.email", json!("not-an-email")),
            "admin.email",
        )
        .bad(with(&new_clinic, "plan", json!("platinum")), "plan")
        .bad(with(&new_clinic, "code", json!("Not A Code!")), "code")
        .bad(
            with(&new_clinic, "time_zone", json!("Mars/Olympus")),
            "time_zone",
        )
        .bad(
            with(&new_clinic, "admin.password", json!("short")),
            "admin.password",
        )
        .bad(with(&new_clinic, "suspended", json!(true)), "suspended"),
        Case::new(
            "POST /v1/clinics/{id}/suspend",
            format!("/v1/clinics/{}/suspend", n.id),
            json!({"reason": "unpaid invoices"}),
            PLATFORM,
            "platform_admin",
        )
        .writes(&["ClinicSuspended"])
        .not_found_at(format!("/v1/clinics/{nowhere}/suspend"))
        .bad(json!({"reason": ""}), "reason")
        .bad(json!({}), "reason")
        .bad(json!({"reason": "unpaid", "until": "2030-01-01"}), "until"),
        Case::new(
            "POST /v1/clinics/{id}/reactivate",
            format!("/v1/clinics/{}/reactivate", n.id),
            json!({}),
            PLATFORM,
            "platform_admin",
        )
        .writes(&["ClinicReactivated"])
        .not_found_at(format!("/v1/clinics/{nowhere}/reactivate"))
        .bad(json!({"reason": "paid"}), "reason"),
        Case::new(
            "PUT /v1/clinics/{id}/plan",
            format!("/v1/clinics/{}/plan", n.id),
            json!({"plan": "enterprise", "reason": "contract"}),
            PLATFORM,
            "platform_admin",
        )
        .writes(&["ClinicPlanChanged"])
        .not_found_at(format!("/v1/clinics/{nowhere}/plan"))
        .bad(json!({"plan": "platinum", "reason": "x"}), "plan")
        .bad(json!({"plan": "standard", "reason": "x"}), "plan")
        .bad(json!({"plan": "trial", "reason": "x"}), "plan")
        .bad(json!({"plan": "enterprise"}), "reason")
        .bad(json!({}), "plan"),
        // --- own clinic (clinic admin) ---
        Case::new(
            "PATCH /v1/clinic",
            "/v1/clinic",
            json!({"name": "North Renamed", "slot_minutes": 20}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["ClinicSettingsUpdated"])
        .refuses(
            CLINIC_ADMIN,
            json!({"name": "Hijacked", "clinic_id": other_clinic}),
            "clinic_id",
        )
        .bad(json!({"slot_minutes": 3}), "slot_minutes")
        .bad(json!({"time_zone": "Mars/Olympus"}), "time_zone")
        .bad(json!({"name": ""}), "name")
        .bad(json!({"plan": "enterprise"}), "plan"),
        Case::new(
            "PUT /v1/clinic/modules/{module}",
            "/v1/clinic/modules/laboratory",
            json!({"enabled": false}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["ModuleDisabled"])
        .refuses(
            CLINIC_ADMIN,
            json!({"enabled": false, "clinic_id": other_clinic}),
            "clinic_id",
        )
        .not_found_at("/v1/clinic/modules/radiology")
        .bad(json!({"enabled": "no"}), "enabled")
        .bad(json!({}), "enabled"),
        Case::new(
            "PUT /v1/clinic/fees",
            "/v1/clinic/fees",
            fees.clone(),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["FeeScheduleSet"])
        .refuses(
            CLINIC_ADMIN,
            fee_rule(json!({"doctor_id": s.doctor_id, "amount": 4000})),
            "rules[0].doctor_id",
        )
        .refuses(
            CLINIC_ADMIN,
            with(&fees, "clinic_id", other_clinic.clone()),
            "clinic_id",
        )
        .bad(with(&fees, "currency", json!("EURO")), "currency")
        .bad(without(&fees, "currency"), "currency")
        .bad(with(&fees, "default_fee", json!(0)), "default_fee")
        .bad(with(&fees, "no_show_fee", json!(-1)), "no_show_fee")
        .bad(
            fee_rule(json!({"appointment_type": "x", "amount": 12.5})),
            "rules[0].amount",
        )
        .bad(fee_rule(json!({"amount": 100})), "rules[0]")
        .bad(
            fee_rule(json!({"appointment_type": "Not A Type!", "amount": 100})),
            "rules[0].appointment_type",
        )
        .bad(
            fee_rule(json!({"doctor_id": "not-a-uuid", "amount": 100})),
            "rules[0].doctor_id",
        ),
        Case::new(
            "POST /v1/clinic/departments",
            "/v1/clinic/departments",
            json!({"name": "Dermatology"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .created()
        .writes(&["DepartmentAdded"])
        .refuses(
            CLINIC_ADMIN,
            json!({"name": "Oncology", "clinic_id": other_clinic}),
            "clinic_id",
        )
        .bad(json!({"name": ""}), "name")
        .bad(json!({}), "name")
        .bad(json!({"name": "Oncology", "id": Uuid::new_v4()}), "id"),
        Case::new(
            "PATCH /v1/clinic/departments/{id}",
            format!("/v1/clinic/departments/{}", w.dept),
            json!({"name": "Theatre"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["DepartmentRenamed"])
        .not_found_at(format!("/v1/clinic/departments/{}", w.south_dept))
        .bad(json!({"name": "Theatre", "closed": true}), "closed")
        .bad(json!({}), "name")
        .bad(json!({"name": ""}), "name"),
        Case::new(
            "PATCH /v1/clinic/departments/{id}",
            format!("/v1/clinic/departments/{}", w.dept_to_close),
            json!({"closed": true}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["DepartmentClosed"])
        .not_found_at(format!("/v1/clinic/departments/{}", w.south_dept))
        .bad(json!({"closed": "yes"}), "closed"),
        // --- staff (clinic admin) ---
        Case::new(
            "POST /v1/staff",
            "/v1/staff",
            hire.clone(),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .created()
        .writes(&["StaffHired"])
        .refuses(
            CLINIC_ADMIN,
            with(&hire, "department_id", json!(w.south_dept)),
            "department_id",
        )
        .refuses(
            CLINIC_ADMIN,
            with(&hire, "clinic_id", other_clinic.clone()),
            "clinic_id",
        )
        .bad(with(&hire, "email", json!("not-an-email")), "email")
        .bad(with(&hire, "role", json!("janitor")), "role")
        .bad(with(&hire, "role", json!("platform_admin")), "role")
        .bad(with(&hire, "password", json!("short")), "password")
        .bad(with(&hire, "role", json!("doctor")), "licence_number")
        .bad(without(&hire, "name"), "name")
        .bad(with(&hire, "name", json!("x".repeat(201))), "name")
        .bad(
            with(
                &hire,
                "email",
                json!(format!("{}@north.example", "x".repeat(250))),
            ),
            "email",
        ),
        Case::new(
            "PATCH /v1/staff/{id}",
            format!("/v1/staff/{}", w.staff),
            json!({"specialty": "triage", "department_id": w.dept}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["StaffProfileUpdated"])
        .not_found_at(format!("/v1/staff/{}", s.doctor_id))
        .refuses(
            CLINIC_ADMIN,
            json!({"department_id": w.south_dept}),
            "department_id",
        )
        .bad(json!({"email": "not-an-email"}), "email")
        .bad(json!({"role": "doctor"}), "role")
        .bad(json!({"name": ""}), "name"),
        Case::new(
            "PUT /v1/staff/{id}/role",
            format!("/v1/staff/{}/role", w.staff),
            json!({"role": "nurse"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["StaffRoleChanged"])
        .not_found_at(format!("/v1/staff/{}/role", s.doctor_id))
        .bad(json!({"role": "janitor"}), "role")
        .bad(json!({"role": "platform_admin"}), "role")
        .bad(json!({}), "role"),
        Case::new(
            "PUT /v1/staff/{id}/working-hours",
            format!("/v1/staff/{}/working-hours", w.staff),
            json!({"mon": [{"start": "09:00", "end": "17:00"}]}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["WorkingHoursSet"])
        .not_found_at(format!("/v1/staff/{}/working-hours", s.doctor_id))
        .bad(
            json!({"funday": [{"start": "09:00", "end": "17:00"}]}),
            "funday",
        )
        .bad(
            json!({"mon": [{"start": "nine", "end": "17:00"}]}),
            "mon[0].start",
        ),
        Case::new(
            "POST /v1/staff/{id}/time-off",
            format!("/v1/staff/{}/time-off", w.staff),
            time_off.clone(),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["TimeOffAdded"])
        .not_found_at(format!("/v1/staff/{}/time-off", s.doctor_id))
        .bad(backwards(w.now, 10, 8), "end")
        // Time off that is over: the error names a field of the body (or the whole `body`).
        .bad(
            with(&slot(w.now, -3, 8), "reason", json!("training")),
            "start|end|body",
        )
        .bad(with(&time_off, "reason", json!("")), "reason")
        .bad(without(&time_off, "start"), "start"),
        Case::new(
            "POST /v1/staff/{id}/deactivate",
            format!("/v1/staff/{}/deactivate", w.staff),
            json!({"reason": "left the clinic"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["StaffDeactivated"])
        .not_found_at(format!("/v1/staff/{}/deactivate", s.doctor_id))
        .bad(json!({"reason": ""}), "reason")
        .bad(json!({"until": "2030-01-01"}), "until"),
        Case::new(
            "POST /v1/staff/{id}/reactivate",
            format!("/v1/staff/{}/reactivate", w.staff),
            json!({}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["StaffReactivated"])
        .not_found_at(format!("/v1/staff/{}/reactivate", s.doctor_id))
        .bad(json!({"reason": "back"}), "reason"),
        // --- patients ---
        Case::new(
            "POST /v1/patients",
            "/v1/patients",
            patient.clone(),
            PATIENT_DESK,
            "receptionist",
        )
        .created()
        .writes(&["PatientRegistered"])
        .refuses(
            PATIENT_DESK,
            with(&patient, "clinic_id", other_clinic.clone()),
            "clinic_id",
        )
        .bad(with(&patient, "clinic_id", json!(n.id)), "clinic_id")
        .bad(with(&patient, "role", json!("doctor")), "role")
        .bad(with(&patient, "mrn", json!("MRN-1")), "mrn")
        .bad(with(&patient, "email", json!("not-an-email")), "email")
        .bad(with(&patient, "sex", json!("robot")), "sex")
        .bad(
            with(&patient, "birth_date", json!("yesterday")),
            "birth_date",
        )
        .bad(
            with(&patient, "name.given", json!("x".repeat(201))),
            "name.given",
        )
        .bad(without(&patient, "name"), "name")
        // Unknown fields are refused inside nested objects too (docs/api.md: "never
        // silently taken").
        .bad(
            with(&patient, "address.clinic_id", other_clinic.clone()),
            "address.clinic_id",
        )
        .bad(
            with(&patient, "name.clinic_id", other_clinic.clone()),
            "name.clinic_id",
        )
        .bad(
            with(&patient, "emergency_contact.role", json!("doctor")),
            "emergency_contact.role",
        )
        .bad(
            with(&patient, "insurance.clinic_id", other_clinic.clone()),
            "insurance.clinic_id",
        ),
        Case::new(
            "PATCH /v1/patients/{id}",
            format!("/v1/patients/{}", n.patient_id),
            json!({"phone": "+49 30 7654321"}),
            PATIENT_DEMOGRAPHICS,
            "doctor",
        )
        .writes(&["PatientDemographicsUpdated"])
        .not_found_at(format!("/v1/patients/{}", s.patient_id))
        .bad(json!({"clinic_id": n.id}), "clinic_id")
        .bad(json!({"role": "doctor"}), "role")
        .bad(json!({"email": "not-an-email"}), "email")
        .bad(json!({"birth_date": "2999-01-01"}), "birth_date")
        .bad(
            json!({"name": {"given": "Adaline", "family": "Example", "mrn": "MRN-9"}}),
            "name.mrn",
        ),
        Case::new(
            "POST /v1/patients/{id}/merge",
            format!("/v1/patients/{}/merge", w.duplicate),
            json!({"into": n.patient_id}),
            PATIENT_DESK,
            "nurse",
        )
        .writes(&["PatientMerged"])
        .not_found_at(format!("/v1/patients/{}/merge", s.patient_id))
        .refuses(PATIENT_DESK, json!({"into": s.patient_id}), "into")
        .bad(json!({"into": "not-a-uuid"}), "into")
        .bad(json!({}), "into")
        .bad(json!({"into": w.duplicate}), "into"),
        Case::new(
            "POST /v1/patients/{id}/deactivate",
            format!("/v1/patients/{}/deactivate", w.leaving),
            json!({"reason": "moved away"}),
            PATIENT_DESK,
            "clinic_admin",
        )
        .writes(&["PatientDeactivated"])
        .not_found_at(format!("/v1/patients/{}/deactivate", s.patient_id))
        .bad(json!({"reason": ""}), "reason")
        .bad(json!({"clinic_id": n.id}), "clinic_id"),
        // --- appointments ---
        Case::new(
            "POST /v1/appointments",
            "/v1/appointments",
            booking.clone(),
            BOOKING,
            "receptionist",
        )
        .created()
        .writes(&["AppointmentBooked"])
        .refuses(
            BOOKING,
            with(&booking, "patient_id", json!(s.patient_id)),
            "patient_id",
        )
        .refuses(
            &not_doctors,
            with(&booking, "doctor_id", json!(s.doctor_id)),
            "doctor_id",
        )
        .refuses(
            BOOKING,
            with(&booking, "clinic_id", other_clinic.clone()),
            "clinic_id",
        )
        .bad(
            with(&booking, "end", backwards(w.now, 5, 10)["end"].clone()),
            "end",
        )
        .bad(
            with(
                &with(&booking, "start", json!(future_from(w.now, -2, 10))),
                "end",
                json!(future_from(w.now, -2, 11)),
            ),
            "start",
        )
        .bad(
            with(&booking, "patient_id", json!("not-a-uuid")),
            "patient_id",
        )
        .bad(
            with(
                &booking,
                "doctor_id",
                json!(w.ids.get("nurse").copied().unwrap_or_default()),
            ),
            "doctor_id",
        )
        .bad(without(&booking, "start"), "start")
        .bad(
            with(&booking, "appointment_type", json!("Follow Up!")),
            "appointment_type",
        ),
        Case::new(
            "POST /v1/appointments/{id}/reschedule",
            format!("/v1/appointments/{}/reschedule", w.to_move),
            slot(w.now, 4, 11),
            BOOKING,
            "nurse",
        )
        .writes(&["AppointmentRescheduled"])
        .not_found_at(format!("/v1/appointments/{sa}/reschedule"))
        .bad(backwards(w.now, 4, 11), "end")
        // The slot it already has: named by a field of the body, or `body`.
        .bad(w.to_move_slot.clone(), "start|end|body")
        .bad(without(&slot(w.now, 4, 11), "end"), "end")
        .bad(
            with(&slot(w.now, 4, 11), "doctor_id", json!(n.doctor_id)),
            "doctor_id",
        ),
        Case::new(
            "POST /v1/appointments/{id}/cancel",
            format!("/v1/appointments/{}/cancel", w.to_cancel),
            json!({"reason": "patient called"}),
            BOOKING,
            "receptionist",
        )
        .writes(&["AppointmentCancelled"])
        .not_found_at(format!("/v1/appointments/{sa}/cancel"))
        .bad(json!({}), "reason")
        .bad(json!({"reason": ""}), "reason")
        .bad(json!({"reason": "x".repeat(1001)}), "reason"),
        Case::new(
            "POST /v1/appointments/{id}/check-in",
            format!("/v1/appointments/{a}/check-in"),
            json!({}),
            BOOKING,
            "receptionist",
        )
        .writes(&["PatientCheckedIn"])
        .not_found_at(format!("/v1/appointments/{sa}/check-in"))
        .bad(json!({"note": "early"}), "note"),
        Case::new(
            "POST /v1/appointments/{id}/start",
            format!("/v1/appointments/{a}/start"),
            json!({}),
            CLINICAL,
            "doctor",
        )
        .writes(&["AppointmentStarted"])
        .not_found_at(format!("/v1/appointments/{sa}/start"))
        .bad(json!({"room": 3}), "room"),
        Case::new(
            "POST /v1/appointments/{id}/complete",
            format!("/v1/appointments/{a}/complete"),
            json!({}),
            CLINICAL,
            "nurse",
        )
        .writes(&["AppointmentCompleted"])
        .not_found_at(format!("/v1/appointments/{sa}/complete"))
        .bad(json!({"outcome": "fine"}), "outcome"),
        Case::new(
            "POST /v1/appointments/{id}/no-show",
            format!("/v1/appointments/{}/no-show", w.no_show),
            json!({}),
            BOOKING,
            "doctor",
        )
        .writes(&["AppointmentMarkedNoShow"])
        .not_found_at(format!("/v1/appointments/{sa}/no-show"))
        .bad(json!({"reason": "late"}), "reason"),
        // Invoices: a line on the draft, finalised, a payment refunded in full, voided.
        Case::new(
            "POST /v1/invoices/{id}/lines",
            format!("/v1/invoices/{inv}/lines"),
            json!({"description": "ECG", "amount": 2500}),
            INVOICE_DESK,
            "receptionist",
        )
        .writes(&["InvoiceLineAdded"])
        .not_found_at(format!("/v1/invoices/{sinv}/lines"))
        .bad(json!({"description": "ECG", "amount": 0}), "amount")
        .bad(json!({"description": "ECG", "amount": 12.5}), "amount")
        .bad(json!({"description": "ECG", "amount": "25.00"}), "amount")
        .bad(json!({"description": " ", "amount": 100}), "description")
        .bad(
            json!({"description": "x".repeat(1001), "amount": 100}),
            "description",
        )
        .bad(
            json!({"description": "bell\u{7}", "amount": 100}),
            "description",
        )
        .bad(json!({"amount": 100}), "description"),
        Case::new(
            "POST /v1/invoices/{id}/finalise",
            format!("/v1/invoices/{inv}/finalise"),
            json!({}),
            INVOICE_DESK,
            "clinic_admin",
        )
        .writes(&["InvoiceFinalised"])
        .not_found_at(format!("/v1/invoices/{sinv}/finalise"))
        .bad(json!({"number": "INV-2027-000009"}), "number"),
        Case::new(
            "POST /v1/invoices/{id}/payments",
            format!("/v1/invoices/{inv}/payments"),
            json!({"amount": 1000, "method": "card", "reference": "slip 0042"}),
            INVOICE_DESK,
            "receptionist",
        )
        .keyed()
        .writes(&["PaymentRecorded"])
        .not_found_at(format!("/v1/invoices/{sinv}/payments"))
        .bad(json!({"amount": 1000, "method": "cheque"}), "method")
        .bad(json!({"amount": -5, "method": "cash"}), "amount")
        .bad(
            json!({"amount": 1000, "method": "cash", "reference": ""}),
            "reference",
        )
        .bad(json!({"method": "cash"}), "amount"),
        Case::new(
            "POST /v1/invoices/{id}/refunds",
            format!("/v1/invoices/{inv}/refunds"),
            json!({"amount": 1000, "reason": "overcharged"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["PaymentRefunded"])
        .not_found_at(format!("/v1/invoices/{sinv}/refunds"))
        .bad(json!({"amount": 1000}), "reason")
        .bad(json!({"amount": "ten", "reason": "x"}), "amount"),
        Case::new(
            "POST /v1/invoices/{id}/void",
            format!("/v1/invoices/{inv}/void"),
            json!({"reason": "billed in error"}),
            CLINIC_ADMIN,
            "clinic_admin",
        )
        .writes(&["InvoiceVoided"])
        .not_found_at(format!("/v1/invoices/{sinv}/void"))
        .bad(json!({}), "reason")
        .bad(json!({"reason": "x".repeat(1001)}), "reason"),
    ]
}

/// The table covers every endpoint, and every case can fail: it has forbidden roles, bad
/// bodies, events to write and (but for creating a clinic) another clinic's record.
fn assert_complete(table: &[Case]) {
    let covered: BTreeSet<&str> = table.iter().map(|c| c.endpoint).collect();
    let expected: BTreeSet<&str> = ENDPOINTS.iter().copied().collect();
    assert_eq!(
        covered, expected,
        "the case table must cover exactly ENDPOINTS"
    );
    for case in table {
        let label = case.label();
        assert!(!case.forbidden().is_empty(), "{label}: no forbidden role");
        assert!(
            case.forbidden().contains(&"auditor"),
            "{label}: auditors issue no commands"
        );
        assert!(!case.bad.is_empty(), "{label}: no bad body");
        assert!(!case.writes.is_empty(), "{label}: writes nothing");
        assert_eq!(
            case.cross.is_empty(),
            case.endpoint == "POST /v1/clinics",
            "{label}: every endpoint but POST /v1/clinics has another clinic's record to try"
        );
        if case.endpoint.contains("{id}") {
            assert!(
                case.cross
                    .iter()
                    .any(|c| matches!(c.outcome, Outcome::NotFound) && c.path != case.path),
                "{label}: an endpoint with an id needs a 404 for another clinic's id"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checking answers, collecting every failure.

#[derive(Default)]
struct Checks {
    done: usize,
    failures: Vec<String>,
}

impl Checks {
    fn fail(&mut self, label: &str, message: String) {
        self.failures.push(format!("{label}: {message}"));
    }

    fn that(&mut self, label: &str, ok: bool, message: impl FnOnce() -> String) -> bool {
        self.done += 1;
        if !ok {
            self.fail(label, message());
        }
        ok
    }

    /// A problem+json answer with `status` (as `Answer::problem` asserts).
    fn problem(&mut self, label: &str, answer: &Answer, status: u16) -> bool {
        let ok = answer.status == status
            && answer.header("content-type") == Some("application/problem+json")
            && answer.body["status"] == status;
        self.that(label, ok, || {
            format!(
                "expected a {status} problem+json, got {} ({:?}) {}",
                answer.status,
                answer.header("content-type"),
                answer.body
            )
        })
    }

    /// A problem with `status` whose `type` ends with `/slug`.
    fn problem_type(&mut self, label: &str, answer: &Answer, status: u16, slug: &str) -> bool {
        if !self.problem(label, answer, status) {
            return false;
        }
        let ty = answer.body["type"].as_str().unwrap_or_default();
        self.that(label, ty.ends_with(&format!("/{slug}")), || {
            format!("expected problem type …/{slug}, got {}", answer.body)
        })
    }

    /// A 422 whose `errors` name `field` (as `Answer::names_field` asserts); `a|b` accepts
    /// either name.
    fn names_field(&mut self, label: &str, answer: &Answer, field: &str) -> bool {
        if !self.problem(label, answer, 422) {
            return false;
        }
        let named = answer.body["errors"].as_array().is_some_and(|errors| {
            errors
                .iter()
                .any(|e| field.split('|').any(|f| e["field"] == f))
        });
        self.that(label, named, || {
            format!("expected field `{field}` in {}", answer.body)
        })
    }

    fn no_new_events(&mut self, label: &str, before: i64, after: i64) {
        self.that(label, before == after, || {
            format!("wrote {} event(s); expected none", after - before)
        });
    }

    #[track_caller]
    fn finish(self, at_least: usize) {
        assert!(
            self.done >= at_least,
            "only {} checks ran, expected at least {at_least}",
            self.done
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n  {}",
            self.failures.len(),
            self.done,
            self.failures.join("\n  ")
        );
    }
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Answer {
    app.send(method.clone(), path, token, Some(body)).await
}

/// Sends `case`'s method to `path` as `token` with `body`, and a fresh `Idempotency-Key` when
/// the endpoint requires one.
async fn send_case(app: &TestApp, case: &Case, path: &str, token: &str, body: &Value) -> Answer {
    let key = Uuid::new_v4().to_string();
    let headers: &[(&str, &str)] = if case.keyed {
        &[("Idempotency-Key", key.as_str())]
    } else {
        &[]
    };
    app.send_with(case.method.clone(), path, Some(token), Some(body), headers)
        .await
}

/// Sends raw bytes with an optional content type.
async fn send_raw(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = app.client.post(app.url(path)).bearer_auth(token).body(body);
    if let Some(ct) = content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// `(position, tenant, event type)` of the events after `position`, in order.
async fn events_after(app: &TestApp, position: i64) -> Vec<(i64, Uuid, String)> {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_as(
        "SELECT position, tenant_id, event_type FROM events WHERE position > $1 \
         AND metadata ->> 'request_id' NOT LIKE 'billing:%' ORDER BY position",
    )
    .bind(position)
    .fetch_all(&mut conn)
    .await
    .expect("read events")
}

async fn last_position(app: &TestApp) -> i64 {
    let mut conn = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
        .fetch_one(&mut conn)
        .await
        .expect("read events")
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn the_case_table_covers_every_command_endpoint() {
    let table = cases(&World::dummy());
    assert_complete(&table);

    // The OpenAPI document lists exactly these commands (a new endpoint needs a case here).
    let doc = api::startup::openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        if !path.starts_with("/v1/") || path.starts_with("/v1/auth/") {
            continue;
        }
        for (verb, op) in [
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ] {
            if op.is_some() {
                documented.insert(format!("{verb} {path}"));
            }
        }
    }
    let listed: BTreeSet<String> = ENDPOINTS.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        documented, listed,
        "the command endpoints of the OpenAPI document"
    );
}

/// 1. A role that may not use an endpoint gets 403 with an otherwise valid body: clinic
/// staff on the platform endpoints; the platform admin, the auditor and the other roles
/// outside the endpoint's set on the clinic endpoints. Nothing is written.
#[tokio::test]
async fn roles_that_may_not_use_an_endpoint_get_403_and_write_nothing() {
    roles_that_may_not_use_an_endpoint_get_403_and_write_nothing_at(default_now()).await;
}

/// [`roles_that_may_not_use_an_endpoint_get_403_and_write_nothing`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn roles_that_may_not_use_an_endpoint_get_403_and_write_nothing_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let table = cases(&w);
    assert_complete(&table);
    let mut checks = Checks::default();
    for case in &table {
        let before = app.event_count().await;
        for role in case.forbidden() {
            let label = format!("{} as {role}", case.label());
            let answer = send(
                &app,
                &case.method,
                &case.path,
                Some(w.token(role)),
                &case.body,
            )
            .await;
            checks.problem_type(&label, &answer, 403, "forbidden");
        }
        checks.no_new_events(&case.label(), before, app.event_count().await);
    }
    // Platform endpoints are refused to every clinic role, clinic endpoints to the platform
    // admin and the auditor.
    checks.finish(table.len() * 3);
}

/// 2. Another clinic's record is a 404 (a random id for the platform endpoints); a body that
/// points at another clinic's record is a 422 naming the field. Nothing is written.
#[tokio::test]
async fn another_clinics_records_are_404_or_a_422_naming_the_field() {
    another_clinics_records_are_404_or_a_422_naming_the_field_at(default_now()).await;
}

/// [`another_clinics_records_are_404_or_a_422_naming_the_field`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn another_clinics_records_are_404_or_a_422_naming_the_field_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let table = cases(&w);
    assert_complete(&table);
    let mut checks = Checks::default();
    let mut tried = BTreeSet::new();
    for case in &table {
        for cross in &case.cross {
            let label = format!(
                "{} as {} at {} with {}",
                case.endpoint, cross.role, cross.path, cross.body
            );
            let before = app.event_count().await;
            let token = w.token(cross.role);
            let answer = send_case(&app, case, &cross.path, token, &cross.body).await;
            match cross.outcome {
                Outcome::NotFound => checks.problem_type(&label, &answer, 404, "not-found"),
                Outcome::Field(field) => checks.names_field(&label, &answer, field),
            };
            checks.no_new_events(&label, before, app.event_count().await);
            tried.insert(case.endpoint);
        }
    }
    assert_eq!(
        tried.len(),
        ENDPOINTS.len() - 1,
        "every endpoint but POST /v1/clinics"
    );

    // South's records are untouched: its appointment is still booked (cancelling works).
    let cancelled = app
        .post(
            &format!("/v1/appointments/{}/cancel", w.south.appointment_id),
            &w.south.receptionist,
            json!({"reason": "still South's to cancel"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.body["version"], 2, "{cancelled:?}");
    checks.finish(40);
}

/// 3. A bad body is a 422 naming the field, for a role that may use the endpoint; fields the
/// client may not set (`clinic_id`, `role`, `mrn` on a patient) are refused by name.
#[tokio::test]
async fn bad_bodies_get_422_naming_the_field_and_write_nothing() {
    bad_bodies_get_422_naming_the_field_and_write_nothing_at(default_now()).await;
}

/// [`bad_bodies_get_422_naming_the_field_and_write_nothing`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn bad_bodies_get_422_naming_the_field_and_write_nothing_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let table = cases(&w);
    assert_complete(&table);
    let mut checks = Checks::default();
    for case in &table {
        let token = w.token(case.actor);
        for (body, field) in &case.bad {
            let label = format!("{} as {} with a bad `{field}`", case.label(), case.actor);
            let before = app.event_count().await;
            let answer = send(&app, &case.method, &case.path, Some(token), body).await;
            checks.names_field(&label, &answer, field);
            checks.no_new_events(&label, before, app.event_count().await);
        }
    }

    // Values that must be unique are a 409 naming the field (docs/api.md, "Errors").
    let taken: [(&str, &str, Value, &str, &str); 3] = [
        (
            "/v1/clinics",
            w.platform.as_str(),
            json!({"name": "North Again", "code": w.north.code, "time_zone": "Europe/Berlin",
                   "plan": "trial",
                   "admin": {"name": "Other Admin", "email": "admin@north-again.example",
                             "password": PASSWORD}}),
            "clinic-code-taken",
            "code",
        ),
        (
            "/v1/clinics",
            w.platform.as_str(),
            json!({"name": "West", "code": "west", "time_zone": "Europe/Berlin", "plan": "trial",
                   "admin": {"name": "Other Admin", "email": w.south.emails["clinic_admin"],
                             "password": PASSWORD}}),
            "email-taken",
            "admin.email",
        ),
        (
            "/v1/staff",
            w.north.admin.as_str(),
            hire_body(&w.south.emails["nurse"], "nurse"),
            "email-taken",
            "email",
        ),
    ];
    for (path, token, body, slug, field) in &taken {
        let label = format!("POST {path} with a taken `{field}`");
        let before = app.event_count().await;
        let answer = app.post(path, token, body.clone()).await;
        if checks.problem_type(&label, &answer, 409, slug) {
            let named = answer.body["errors"]
                .as_array()
                .is_some_and(|errors| errors.iter().any(|e| e["field"] == *field));
            checks.that(&label, named, || {
                format!("expected field `{field}` in {}", answer.body)
            });
        }
        checks.no_new_events(&label, before, app.event_count().await);
    }
    checks.finish(table.len() * 2 + taken.len() * 3);
}

/// 4. No token, an expired token, an `alg: none` token and a token for another audience get
/// 401 with `WWW-Authenticate`. The tokens are forged for the real account of the case's
/// role, so only the expiry, the algorithm or the audience is wrong.
#[tokio::test]
async fn missing_expired_unsigned_and_foreign_audience_tokens_get_401() {
    missing_expired_unsigned_and_foreign_audience_tokens_get_401_at(default_now()).await;
}

/// [`missing_expired_unsigned_and_foreign_audience_tokens_get_401`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn missing_expired_unsigned_and_foreign_audience_tokens_get_401_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let table = cases(&w);
    assert_complete(&table);
    let jwt = test_jwt();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = app.now().timestamp();
    let claims_for = |role: &str| AccessClaims {
        sub: w.ids[role],
        clinic: (role != "platform_admin").then_some(w.north.id),
        role: serde_json::from_value::<ActorRole>(json!(role)).expect("a role"),
        aud: api::auth::jwt::AUDIENCE.to_owned(),
        iat: now,
        exp: now + 600,
        jti: Uuid::new_v4(),
    };

    let mut checks = Checks::default();
    // The control: the same forgery, valid, is accepted, so a 401 below is for what is wrong.
    for role in ALL_ROLES {
        let token = jwt.sign(&claims_for(role)).expect("sign");
        let me = app.send(Method::GET, "/v1/me", Some(&token), None).await;
        checks.that(
            &format!("valid forged token for {role}"),
            me.status == 200 && me.body["id"] == json!(w.ids[role]),
            || format!("{me:?}"),
        );
    }

    let before = app.event_count().await;
    for case in &table {
        let valid = claims_for(case.actor);
        let expired = AccessClaims {
            iat: now - 3600,
            exp: now - 1800,
            ..valid.clone()
        };
        let foreign = AccessClaims {
            aud: "another-api".into(),
            ..valid.clone()
        };
        let unsigned = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&valid).expect("claims"))
        );
        let tokens = [
            ("no token", None),
            ("an expired token", Some(jwt.sign(&expired).expect("sign"))),
            ("an alg:none token", Some(unsigned)),
            (
                "a wrong-audience token",
                Some(jwt.sign(&foreign).expect("sign")),
            ),
        ];
        for (what, token) in &tokens {
            let label = format!("{} with {what} for {}", case.label(), case.actor);
            let answer = send(&app, &case.method, &case.path, token.as_deref(), &case.body).await;
            if checks.problem_type(&label, &answer, 401, "unauthorized") {
                let challenge = answer.header("www-authenticate").unwrap_or_default();
                checks.that(&label, challenge.starts_with("Bearer"), || {
                    format!(
                        "expected a Bearer WWW-Authenticate header, got {:?}",
                        answer.headers
                    )
                });
            }
        }
    }
    checks.no_new_events("all 401s", before, app.event_count().await);
    checks.finish(table.len() * 4);
}

/// The valid bodies of the table are valid: each succeeds once for its role, in the table's
/// order, writes exactly the listed events into the caller's clinic (or the clinic it
/// creates) and answers with the id, version, `ETag` and position of the last event.
#[tokio::test]
async fn valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic() {
    valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic_at(default_now()).await;
}

/// [`valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let table = cases(&w);
    assert_complete(&table);
    let mut checks = Checks::default();
    let mut position = last_position(&app).await;
    for case in &table {
        let label = format!("{} as {}", case.label(), case.actor);
        let token = w.token(case.actor);
        let answer = send_case(&app, case, &case.path, token, &case.body).await;
        if !checks.that(&label, answer.status == case.status, || {
            format!("expected {}, got {answer:?}", case.status)
        }) {
            position = last_position(&app).await;
            continue;
        }
        let events = events_after(&app, position).await;
        position = events.last().map_or(position, |e| e.0);
        let types: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
        checks.that(&label, types == case.writes, || {
            format!("wrote {types:?}, expected {:?}", case.writes)
        });
        let tenant = if case.new_clinic {
            answer.id()
        } else {
            w.north.id
        };
        checks.that(&label, events.iter().all(|e| e.1 == tenant), || {
            format!("events {events:?} not all in clinic {tenant}")
        });
        checks.that(&label, answer.body["position"] == json!(position), || {
            format!(
                "answer position {} != last event {position}",
                answer.body["position"]
            )
        });
        let version = answer.body["version"].as_u64().unwrap_or_default();
        checks.that(
            &label,
            version > 0 && answer.header("etag") == Some(format!("\"{version}\"").as_str()),
            || format!("version/ETag: {answer:?}"),
        );
        if case.status == 201 {
            let location = answer.header("location").unwrap_or_default();
            checks.that(&label, location.ends_with(&answer.id().to_string()), || {
                format!("Location: {answer:?}")
            });
        }
    }
    checks.finish(table.len() * 4);
}

/// 5. `Idempotency-Key`: a retry with the same key and body gets the first answer again and
/// writes nothing; the same key with another body (or on another path) is a 422.
#[tokio::test]
async fn idempotency_keys_replay_the_first_answer_and_refuse_another_request() {
    idempotency_keys_replay_the_first_answer_and_refuse_another_request_at(default_now()).await;
}

/// [`idempotency_keys_replay_the_first_answer_and_refuse_another_request`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn idempotency_keys_replay_the_first_answer_and_refuse_another_request_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let desk = &w.north.receptionist;
    let key = [("Idempotency-Key", "register-grace-1")];

    // A create: POST /v1/patients.
    let body = patient_body("Grace");
    let first = app
        .send_with(Method::POST, "/v1/patients", Some(desk), Some(&body), &key)
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.header("idempotent-replayed"), None, "{first:?}");
    let after_first = app.event_count().await;
    let retry = app
        .send_with(Method::POST, "/v1/patients", Some(desk), Some(&body), &key)
        .await;
    assert_eq!(retry.status, 201, "{retry:?}");
    assert_eq!(retry.id(), first.id());
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(
        retry.header("idempotent-replayed"),
        Some("true"),
        "{retry:?}"
    );
    assert_eq!(
        app.event_count().await,
        after_first,
        "a replay writes nothing"
    );
    let other = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(desk),
            Some(&patient_body("Ada")),
            &key,
        )
        .await;
    assert!(
        other.problem(422)["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-reused"),
        "{other:?}"
    );
    assert_eq!(app.event_count().await, after_first);

    // Keys belong to the account: the nurse's identical request is a request of its own.
    let nurses = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(&w.north.nurse),
            Some(&body),
            &key,
        )
        .await;
    assert_eq!(nurses.status, 201, "{nurses:?}");
    assert_ne!(nurses.id(), first.id());
    assert_eq!(nurses.header("idempotent-replayed"), None);
    assert_eq!(app.event_count().await, after_first + 1);

    // A failed request does not keep its key: fixing the body and retrying works.
    let fix = [("Idempotency-Key", "register-lin-1")];
    let broken = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(desk),
            Some(&with(&body, "sex", json!("robot"))),
            &fix,
        )
        .await;
    broken.names_field("sex");
    let fixed = app
        .send_with(Method::POST, "/v1/patients", Some(desk), Some(&body), &fix)
        .await;
    assert_eq!(fixed.status, 201, "{fixed:?}");
    assert_eq!(fixed.header("idempotent-replayed"), None);

    // A retry while the first attempt is still running is a 409: the first is held up at its
    // append (the events table is locked), the retry comes in, then the first completes and
    // later retries replay it.
    let slow = [("Idempotency-Key", "register-hopper-1")];
    let hopper = patient_body("Hopper");
    let mut locker = app.db.owner_connection().await;
    let mut lock = sqlx::Connection::begin(&mut locker).await.unwrap();
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let held = tokio::spawn(
        app.client
            .post(app.url("/v1/patients"))
            .bearer_auth(desk)
            .header(slow[0].0, slow[0].1)
            .json(&hopper)
            .send(),
    );
    let mut watcher = app.db.owner_connection().await;
    let claimed = async {
        loop {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = $1")
                .bind(slow[0].1)
                .fetch_one(&mut watcher)
                .await
                .unwrap();
            if n > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), claimed)
        .await
        .expect("the first attempt claims its key");
    let during = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(desk),
            Some(&hopper),
            &slow,
        )
        .await;
    assert!(
        during.problem(409)["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-in-progress"),
        "{during:?}"
    );
    lock.rollback().await.unwrap();
    let held = held.await.unwrap().expect("the held request");
    assert_eq!(held.status().as_u16(), 201);
    let held_id = held.json::<Value>().await.unwrap()["id"].clone();
    let after = app
        .send_with(
            Method::POST,
            "/v1/patients",
            Some(desk),
            Some(&hopper),
            &slow,
        )
        .await;
    assert_eq!(after.status, 201, "{after:?}");
    assert_eq!(after.body["id"], held_id);
    assert_eq!(after.header("idempotent-replayed"), Some("true"));

    // A command that is not a create: cancelling (run again, it would be a 409).
    let path = format!("/v1/appointments/{}/cancel", w.north.appointment_id);
    let key = [("Idempotency-Key", "cancel-1")];
    let reason = json!({"reason": "patient called"});
    let cancelled = app
        .send_with(Method::POST, &path, Some(desk), Some(&reason), &key)
        .await;
    assert_eq!(cancelled.status, 200, "{cancelled:?}");
    assert_eq!(cancelled.body["version"], 2);
    let after_cancel = app.event_count().await;
    let retry = app
        .send_with(Method::POST, &path, Some(desk), Some(&reason), &key)
        .await;
    assert_eq!(retry.status, 200, "{retry:?}");
    assert_eq!(retry.body, cancelled.body);
    assert_eq!(retry.header("etag"), Some("\"2\""));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let changed = app
        .send_with(
            Method::POST,
            &path,
            Some(desk),
            Some(&json!({"reason": "another"})),
            &key,
        )
        .await;
    assert!(
        changed.problem(422)["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-reused"),
        "{changed:?}"
    );
    let elsewhere = app
        .send_with(
            Method::POST,
            &format!("/v1/appointments/{}/cancel", w.to_cancel),
            Some(desk),
            Some(&reason),
            &key,
        )
        .await;
    assert!(
        elsewhere.problem(422)["type"]
            .as_str()
            .unwrap()
            .ends_with("/idempotency-key-reused"),
        "{elsewhere:?}"
    );
    assert_eq!(
        app.event_count().await,
        after_cancel,
        "no replay or refusal writes"
    );
    // Without the key the same request runs again and is refused by the domain.
    let again = app.post(&path, desk, reason).await;
    again.problem(409);
}

/// 6. `If-Match: "<version>"`: a stale (or future) version is a 412 and writes nothing; the
/// current version succeeds, and every answer carries the new version as `ETag`.
#[tokio::test]
async fn if_match_refuses_other_versions_with_412_and_accepts_the_current_one() {
    if_match_refuses_other_versions_with_412_and_accepts_the_current_one_at(default_now()).await;
}

/// [`if_match_refuses_other_versions_with_412_and_accepts_the_current_one`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn if_match_refuses_other_versions_with_412_and_accepts_the_current_one_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let (n, s) = (&w.north, &w.south);
    let dept = add_department(&app, &n.admin, "Ward").await;
    // Hours on Monday only, then on Tuesday only; the reschedule goes to the next Tuesday
    // (of the clinic's calendar), inside those hours, whatever day the clock shows.
    let hours = |day: &str| json!({ day: [{"start": "08:00", "end": "12:00"}] });
    let tuesday = |hour: u32| {
        let start = app.next_weekday(chrono::Weekday::Tue, hour);
        json!({"start": start, "end": start + Duration::minutes(30)})
    };
    let versioned: Vec<(&str, Method, String, &str, Value, Value)> = vec![
        (
            "PATCH /v1/patients/{id}",
            Method::PATCH,
            format!("/v1/patients/{}", n.patient_id),
            n.receptionist.as_str(),
            json!({"phone": "+49 30 1111111"}),
            json!({"phone": "+49 30 2222222"}),
        ),
        (
            "PATCH /v1/clinic",
            Method::PATCH,
            "/v1/clinic".into(),
            &n.admin,
            json!({"name": "North One"}),
            json!({"name": "North Two"}),
        ),
        (
            "PATCH /v1/clinic/departments/{id}",
            Method::PATCH,
            format!("/v1/clinic/departments/{dept}"),
            &n.admin,
            json!({"name": "Ward A"}),
            json!({"name": "Ward B"}),
        ),
        (
            "PUT /v1/clinics/{id}/plan",
            Method::PUT,
            format!("/v1/clinics/{}/plan", s.id),
            &w.platform,
            json!({"plan": "enterprise", "reason": "contract"}),
            json!({"plan": "basic", "reason": "smaller"}),
        ),
        (
            "PUT /v1/staff/{id}/working-hours",
            Method::PUT,
            format!("/v1/staff/{}/working-hours", n.doctor_id),
            &n.admin,
            hours("mon"),
            hours("tue"),
        ),
        (
            "POST /v1/appointments/{id}/reschedule",
            Method::POST,
            format!("/v1/appointments/{}/reschedule", n.appointment_id),
            &n.nurse,
            tuesday(9),
            tuesday(10),
        ),
    ];
    let mut checks = Checks::default();
    for (label, method, path, token, first, second) in &versioned {
        let done = send(&app, method, path, Some(token), first).await;
        let Some(version) = done.body["version"].as_u64().filter(|_| done.status == 200) else {
            checks.fail(label, format!("the first command failed: {done:?}"));
            continue;
        };
        let etag = |v: u64| format!("\"{v}\"");
        checks.that(
            label,
            done.header("etag") == Some(etag(version).as_str()),
            || format!("ETag of {done:?}"),
        );
        let before = app.event_count().await;
        for other in [version - 1, version + 1] {
            let if_match = etag(other);
            let refused = app
                .send_with(
                    method.clone(),
                    path,
                    Some(token),
                    Some(second),
                    &[("If-Match", if_match.as_str())],
                )
                .await;
            checks.problem_type(
                &format!("{label} If-Match {if_match}"),
                &refused,
                412,
                "version-mismatch",
            );
        }
        checks.no_new_events(label, before, app.event_count().await);
        let current = etag(version);
        let accepted = app
            .send_with(
                method.clone(),
                path,
                Some(token),
                Some(second),
                &[("If-Match", current.as_str())],
            )
            .await;
        checks.that(
            label,
            accepted.status == 200 && accepted.body["version"] == version + 1,
            || format!("If-Match {current}: {accepted:?}"),
        );
        checks.that(
            label,
            accepted.header("etag") == Some(etag(version + 1).as_str()),
            || format!("ETag of {accepted:?}"),
        );
        let after = app.event_count().await;
        checks.that(label, after == before + 1, || {
            format!("the accepted command wrote {} events", after - before)
        });
    }

    // A malformed If-Match is a 400 (docs/api.md, "Errors"; the OpenAPI 400 "Malformed JSON or
    // header"), and writes nothing.
    let path = format!("/v1/patients/{}", n.patient_id);
    let before = app.event_count().await;
    for malformed in ["\"abc\"", "W/\"x1\"", "-1"] {
        let answer = app
            .send_with(
                Method::PATCH,
                &path,
                Some(&n.receptionist),
                Some(&json!({"phone": "+49 30 3333333"})),
                &[("If-Match", malformed)],
            )
            .await;
        checks.problem_type(
            &format!("PATCH {path} with If-Match {malformed}"),
            &answer,
            400,
            "bad-request",
        );
    }
    checks.no_new_events("malformed If-Match", before, app.event_count().await);
    checks.finish(versioned.len() * 6 + 3);
}

/// 7. Doctors: only their own appointments (another doctor of the same clinic is refused
/// every transition and booking for someone else); they may update a patient's demographics
/// but not register, merge or deactivate a patient.
#[tokio::test]
async fn doctors_act_only_on_their_own_appointments_and_only_update_patients() {
    doctors_act_only_on_their_own_appointments_and_only_update_patients_at(default_now()).await;
}

/// [`doctors_act_only_on_their_own_appointments_and_only_update_patients`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn doctors_act_only_on_their_own_appointments_and_only_update_patients_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let w = setup(&app).await;
    let n = &w.north;
    let hired = app
        .post(
            "/v1/staff",
            &n.admin,
            hire_body("second-doctor@north.example", "doctor"),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let second_id = hired.id();
    let second = app.login("second-doctor@north.example").await;
    let hours = app
        .put(
            &format!("/v1/staff/{second_id}/working-hours"),
            &n.admin,
            crate::helpers::all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200, "{hours:?}");

    let theirs = n.appointment_id;
    let mut checks = Checks::default();
    let before = app.event_count().await;
    let refused: Vec<(String, Value)> = vec![
        (
            format!("/v1/appointments/{theirs}/reschedule"),
            slot(app.now(), 4, 13),
        ),
        (
            format!("/v1/appointments/{theirs}/cancel"),
            json!({"reason": "not mine"}),
        ),
        (format!("/v1/appointments/{theirs}/check-in"), json!({})),
        (format!("/v1/appointments/{theirs}/start"), json!({})),
        (format!("/v1/appointments/{theirs}/complete"), json!({})),
        (format!("/v1/appointments/{theirs}/no-show"), json!({})),
        (
            "/v1/appointments".into(),
            with(
                &with(&slot(app.now(), 4, 14), "patient_id", json!(n.patient_id)),
                "doctor_id",
                json!(n.doctor_id),
            ),
        ),
        ("/v1/patients".into(), patient_body("Grace")),
        (
            format!("/v1/patients/{}/merge", w.duplicate),
            json!({"into": n.patient_id}),
        ),
        (
            format!("/v1/patients/{}/deactivate", w.leaving),
            json!({"reason": "moved"}),
        ),
    ];
    for (path, body) in &refused {
        let answer = app.post(path, &second, body.clone()).await;
        checks.problem_type(
            &format!("second doctor: POST {path}"),
            &answer,
            403,
            "forbidden",
        );
    }
    checks.no_new_events(
        "second doctor's refused commands",
        before,
        app.event_count().await,
    );

    // The desk books the patient's first visit with the second doctor (a doctor books only
    // patients they may already see: `security::f02_…`).
    let first_visit = app
        .post(
            "/v1/appointments",
            &n.receptionist,
            with(
                &with(&slot(app.now(), 5, 11), "patient_id", json!(n.patient_id)),
                "doctor_id",
                json!(second_id),
            ),
        )
        .await;
    checks.that(
        "the desk books the second doctor",
        first_visit.status == 201,
        || format!("{first_visit:?}"),
    );

    // Their own booking works; the first doctor may not touch it, its own doctor may.
    let own = app
        .post(
            "/v1/appointments",
            &second,
            with(
                &with(&slot(app.now(), 4, 15), "patient_id", json!(n.patient_id)),
                "doctor_id",
                json!(second_id),
            ),
        )
        .await;
    checks.that(
        "second doctor books for themselves",
        own.status == 201,
        || format!("{own:?}"),
    );
    let own_id = own.id();
    let before = app.event_count().await;
    let poached = app
        .post(
            &format!("/v1/appointments/{own_id}/check-in"),
            &n.doctor,
            json!({}),
        )
        .await;
    checks.problem_type(
        "first doctor checks in the second's patient",
        &poached,
        403,
        "forbidden",
    );
    checks.no_new_events(
        "first doctor on the second's appointment",
        before,
        app.event_count().await,
    );
    let checked_in = app
        .post(
            &format!("/v1/appointments/{own_id}/check-in"),
            &second,
            json!({}),
        )
        .await;
    checks.that(
        "second doctor checks in their own",
        checked_in.status == 200,
        || format!("{checked_in:?}"),
    );
    let mine = app
        .post(
            &format!("/v1/appointments/{theirs}/check-in"),
            &n.doctor,
            json!({}),
        )
        .await;
    checks.that(
        "first doctor checks in their own",
        mine.status == 200,
        || format!("{mine:?}"),
    );

    // Demographics: yes.
    let updated = app
        .patch(
            &format!("/v1/patients/{}", n.patient_id),
            &second,
            json!({"phone": "+49 30 5555555"}),
        )
        .await;
    checks.that("a doctor updates a patient", updated.status == 200, || {
        format!("{updated:?}")
    });
    checks.finish(refused.len() + 6);
}

/// 8. A body that is not JSON is a 415, one over 64 KiB a 413 and malformed JSON a 400, all
/// problem+json, none writing anything.
#[tokio::test]
async fn non_json_oversized_and_malformed_bodies_are_refused() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let desk = north.receptionist.as_str();
    let valid = serde_json::to_vec(&patient_body("Grace")).unwrap();
    let before = app.event_count().await;

    let text = send_raw(
        &app,
        "/v1/patients",
        desk,
        Some("text/plain"),
        valid.clone(),
    )
    .await;
    assert!(text.problem(415)["type"]
        .as_str()
        .unwrap()
        .ends_with("/unsupported-media-type"));
    let untyped = send_raw(&app, "/v1/patients", desk, None, valid.clone()).await;
    untyped.problem(415);

    let padded = |size: usize| {
        let mut body = patient_body("Grace");
        body["padding"] = json!("x".repeat(size));
        serde_json::to_vec(&body).unwrap()
    };
    let huge = send_raw(
        &app,
        "/v1/patients",
        desk,
        Some("application/json"),
        padded(65 * 1024),
    )
    .await;
    assert!(huge.problem(413)["type"]
        .as_str()
        .unwrap()
        .ends_with("/payload-too-large"));
    // Just under the limit the body is read (and refused for its unknown field).
    let large = padded(60 * 1024);
    assert!(large.len() < 64 * 1024);
    send_raw(&app, "/v1/patients", desk, Some("application/json"), large)
        .await
        .names_field("padding");

    let malformed = send_raw(
        &app,
        "/v1/patients",
        desk,
        Some("application/json"),
        br#"{"name": "#.to_vec(),
    )
    .await;
    assert!(malformed.problem(400)["type"]
        .as_str()
        .unwrap()
        .ends_with("/bad-request"));
    let trailing = send_raw(
        &app,
        "/v1/patients",
        desk,
        Some("application/json"),
        [valid.as_slice(), b" }"].concat(),
    )
    .await;
    trailing.problem(400);
    assert_eq!(app.event_count().await, before, "nothing was written");

    // The same bytes as application/json are accepted.
    let accepted = send_raw(
        &app,
        "/v1/patients",
        desk,
        Some("application/json; charset=utf-8"),
        valid,
    )
    .await;
    assert_eq!(accepted.status, 201, "{accepted:?}");
}
