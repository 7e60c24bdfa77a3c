//! The billing process manager (issue 14): a completed visit (or a charged no-show) gets
//! exactly one draft invoice, priced with the fee schedule of the moment it was completed,
//! whatever happens to the process manager in between: a failure after the read, a kill after
//! the write, two or three of them at once, a replay from position zero. Billing off issues
//! nothing, and nothing backwards, until an admin backfills.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use commands::billing::{issue_for, Charge, Mode, Outcome};
use commands::EventStore;
use domain::fees::{FeeRule, FeeSchedule, Schedule};
use domain::ids::{AppointmentId, ClinicId, InvoiceId, StaffId};
use domain::invoice::Basis;
use domain::values::{Amount, AppointmentType, Currency};
use futures::FutureExt;
use projections::billing::{self, BillingConfig, Stage};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, store_with, ClinicFixture, TestApp};

fn amount(minor: i64) -> Amount {
    Amount::new(minor).unwrap()
}

fn kind(code: &str) -> Option<AppointmentType> {
    Some(AppointmentType::parse(code).unwrap())
}

/// A schedule in EUR: checkups 40.00, the clinic's doctor 80.00 for anything else, 50.00
/// otherwise, and the given no-show fee.
fn schedule(doctor: Uuid, checkup: i64, no_show: Option<i64>) -> Schedule {
    Schedule {
        currency: Currency::parse("EUR").unwrap(),
        default_fee: Some(amount(5_000)),
        no_show_fee: no_show.map(amount),
        rules: vec![
            FeeRule {
                appointment_type: kind("checkup"),
                doctor_id: None,
                amount: amount(checkup),
            },
            FeeRule {
                appointment_type: None,
                doctor_id: Some(StaffId::from_uuid(doctor)),
                amount: amount(8_000),
            },
        ],
    }
}

async fn store(app: &TestApp) -> EventStore {
    store_with(&app.db, domain::clock::Services::manual(app.clock.clone())).await
}

/// Sets the clinic's fee schedule as its admin does (`PUT /v1/clinic/fees`).
async fn set_fees(app: &TestApp, clinic: &ClinicFixture, schedule: Schedule) {
    let body = serde_json::to_value(&schedule).unwrap();
    let answer = app.put("/v1/clinic/fees", &clinic.admin, body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    app.advance(chrono::Duration::seconds(1));
}

async fn set_billing(app: &TestApp, clinic: &ClinicFixture, enabled: bool) {
    let answer = app
        .put(
            "/v1/clinic/modules/billing",
            &clinic.admin,
            json!({ "enabled": enabled }),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Books a visit of `kind` on day `day` at 10:00 and runs it to `end` (`complete` or
/// `no-show`); returns the appointment's id.
async fn visit(app: &TestApp, c: &ClinicFixture, kind: Option<&str>, day: i64, end: &str) -> Uuid {
    let start = app.future(day, 10);
    let mut body = json!({"patient_id": c.patient_id, "doctor_id": c.doctor_id,
                          "start": start, "end": start + chrono::Duration::minutes(30)});
    if let Some(kind) = kind {
        body["appointment_type"] = json!(kind);
    }
    let booked = app.post("/v1/appointments", &c.receptionist, body).await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let id = booked.id();
    let steps: &[&str] = if end == "complete" {
        &["check-in", "start", "complete"]
    } else {
        &["no-show"]
    };
    for step in steps {
        let done = app
            .post(
                &format!("/v1/appointments/{id}/{step}"),
                &c.receptionist_or_doctor(step),
                json!({}),
            )
            .await;
        assert_eq!(done.status, 200, "{step}: {done:?}");
    }
    app.advance(chrono::Duration::seconds(1));
    id
}

trait Actors {
    fn receptionist_or_doctor(&self, step: &str) -> String;
}

impl Actors for ClinicFixture {
    /// The desk checks in and records no-shows; the doctor starts and completes.
    fn receptionist_or_doctor(&self, step: &str) -> String {
        match step {
            "check-in" | "no-show" => self.receptionist.clone(),
            _ => self.doctor.clone(),
        }
    }
}

/// The events of the appointment's invoice stream: (event type, payload, actor role).
async fn invoice_events(app: &TestApp, clinic: Uuid, appointment: Uuid) -> Vec<(String, Value)> {
    let invoice = InvoiceId::of_appointment(AppointmentId::from_uuid(appointment));
    let mut owner = app.db.owner_connection().await;
    sqlx::query_as(
        "SELECT event_type, payload::jsonb FROM events WHERE aggregate_type = 'Invoice' \
         AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(format!("{clinic}:{}", invoice.as_uuid()))
    .fetch_all(&mut owner)
    .await
    .unwrap()
}

/// How many invoices the store holds (issued events).
async fn invoices_issued(app: &TestApp) -> i64 {
    let mut owner = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'InvoiceIssued'")
        .fetch_one(&mut owner)
        .await
        .unwrap()
}

/// The single line of the appointment's draft invoice: (description, amount, currency).
async fn drafted(app: &TestApp, clinic: Uuid, appointment: Uuid) -> (String, i64, String) {
    let events = invoice_events(app, clinic, appointment).await;
    assert_eq!(events.len(), 1, "one InvoiceIssued: {events:?}");
    let (event_type, payload) = &events[0];
    assert_eq!(event_type, "InvoiceIssued");
    let issued = &payload["InvoiceIssued"];
    assert_eq!(issued["appointment_id"], appointment.to_string());
    let lines = issued["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{issued}");
    (
        lines[0]["description"].as_str().unwrap().to_owned(),
        lines[0]["amount"].as_i64().unwrap(),
        issued["currency"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_completed_visit_gets_one_draft_priced_with_the_fee_of_the_moment_it_was_completed() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-north").await;
    let south = app.clinic(&platform, "bill-south").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;

    let checkup = visit(&app, &north, Some("checkup"), 2, "complete").await;
    let other = visit(&app, &north, Some("ecg"), 3, "complete").await;
    // South has billing on but no fee schedule: nothing to price with, nothing issued.
    let unpriced = visit(&app, &south, None, 2, "complete").await;
    app.db.caught_up().await;
    assert_eq!(
        drafted(&app, north.id, checkup).await,
        ("Visit (checkup)".to_owned(), 4_000, "EUR".to_owned())
    );
    // Not a checkup: the doctor's own price.
    assert_eq!(drafted(&app, north.id, other).await.1, 8_000);
    assert!(invoice_events(&app, south.id, unpriced).await.is_empty());

    // A new price applies to visits completed from now on, never to an invoice issued.
    set_fees(&app, &north, schedule(north.doctor_id, 4_500, None)).await;
    let later = visit(&app, &north, Some("checkup"), 4, "complete").await;
    app.db.caught_up().await;
    assert_eq!(drafted(&app, north.id, later).await.1, 4_500);
    assert_eq!(drafted(&app, north.id, checkup).await.1, 4_000);

    // The invoice is the system's (the process manager), in the appointment's clinic, for the
    // appointment's patient and doctor.
    let mut owner = app.db.owner_connection().await;
    let (tenant, role, patient, doctor): (Uuid, String, String, String) = sqlx::query_as(
        "SELECT tenant_id, metadata ->> 'actor_role', payload -> 'InvoiceIssued' ->> 'patient_id', \
                payload -> 'InvoiceIssued' ->> 'doctor_id' \
         FROM events WHERE aggregate_type = 'Invoice' AND payload::jsonb -> 'InvoiceIssued' ->> 'appointment_id' = $1",
    )
    .bind(checkup.to_string())
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        (tenant, role.as_str(), patient, doctor),
        (
            north.id,
            "system",
            north.patient_id.to_string(),
            north.doctor_id.to_string()
        )
    );
    assert_eq!(invoices_issued(&app).await, 3);
}

#[tokio::test]
async fn a_no_show_is_charged_only_while_the_schedule_has_a_no_show_fee() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-noshow").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    let free = visit(&app, &north, None, 2, "no-show").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, Some(2_500))).await;
    let charged = visit(&app, &north, None, 3, "no-show").await;
    app.db.caught_up().await;
    assert!(invoice_events(&app, north.id, free).await.is_empty());
    assert_eq!(
        drafted(&app, north.id, charged).await,
        ("No-show fee".to_owned(), 2_500, "EUR".to_owned())
    );
    let events = invoice_events(&app, north.id, charged).await;
    assert_eq!(events[0].1["InvoiceIssued"]["basis"], "no_show");
}

#[tokio::test]
async fn with_billing_off_nothing_is_issued_nor_backwards_when_it_is_back_until_an_admin_backfills()
{
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-off").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, Some(1_000))).await;
    set_billing(&app, &north, false).await;
    let off_visit = visit(&app, &north, Some("checkup"), 2, "complete").await;
    let off_no_show = visit(&app, &north, None, 3, "no-show").await;
    // The price changes while billing is off: the backfill prices with the old one.
    set_fees(&app, &north, schedule(north.doctor_id, 4_400, Some(1_000))).await;
    set_billing(&app, &north, true).await;
    let on_visit = visit(&app, &north, Some("checkup"), 4, "complete").await;
    app.db.caught_up().await;
    assert!(invoice_events(&app, north.id, off_visit).await.is_empty());
    assert!(invoice_events(&app, north.id, off_no_show).await.is_empty());
    assert_eq!(drafted(&app, north.id, on_visit).await.1, 4_400);

    let store = store(&app).await;
    let clinic = ClinicId::from_uuid(north.id);
    let done = commands::billing::backfill(&store, clinic).await.unwrap();
    assert_eq!(
        (done.considered, done.issued, done.already_issued),
        (3, 2, 1)
    );
    assert!(done.skipped.is_empty(), "{:?}", done.skipped);
    assert_eq!(drafted(&app, north.id, off_visit).await.1, 4_000);
    assert_eq!(drafted(&app, north.id, off_no_show).await.1, 1_000);
    // Twice is once.
    let again = commands::billing::backfill(&store, clinic).await.unwrap();
    assert_eq!((again.issued, again.already_issued), (0, 3));
    // And never while billing is off.
    set_billing(&app, &north, false).await;
    assert!(matches!(
        commands::billing::backfill(&store, clinic).await,
        Err(commands::billing::BackfillError::BillingDisabled)
    ));
    assert_eq!(invoices_issued(&app).await, 3);
}

/// A process manager whose batches fail at `stage` while `failing` is set (counting them).
fn failing_at(
    app_services: domain::clock::Services,
    stage: Stage,
    failing: Arc<AtomicBool>,
    failures: Arc<AtomicUsize>,
) -> BillingConfig {
    let mut config = api::billing::config(app_services);
    config.poll_interval = std::time::Duration::from_millis(50);
    config.hook = Some(Arc::new(move |at, _pid| {
        let fail = at == stage && failing.load(Ordering::SeqCst);
        if fail {
            failures.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if fail {
                Err(format!("injected failure at {at:?}"))
            } else {
                Ok(())
            }
        }
        .boxed()
    }));
    config
}

/// Every event in the store, the process manager's too (as the owner).
async fn all_events(app: &TestApp) -> i64 {
    let mut owner = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut owner)
        .await
        .unwrap()
}

/// The billing checkpoint's position (as the owner).
async fn billing_position(app: &TestApp) -> i64 {
    let mut owner = app.db.owner_connection().await;
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'billing'")
        .fetch_one(&mut owner)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_that_fails_after_the_read_writes_nothing_and_its_retry_issues_once() {
    let failing = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let (f, n) = (failing.clone(), failures.clone());
    let app = spawn_app_with(move |s| {
        let services = s.clock.clone();
        let workers = s.workers.as_mut().unwrap();
        workers.billing = Some(failing_at(services, Stage::AfterRead, f, n));
    })
    .await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-crash").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    app.db.caught_up().await;
    let before = billing_position(&app).await;

    failing.store(true, Ordering::SeqCst);
    let appointment = visit(&app, &north, Some("checkup"), 2, "complete").await;
    // The process manager reads the completion and fails before writing, again and again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while failures.load(Ordering::SeqCst) < 3 {
        assert!(std::time::Instant::now() < deadline, "no batch failed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(invoice_events(&app, north.id, appointment).await.is_empty());
    assert_eq!(billing_position(&app).await, before, "the checkpoint stays");

    failing.store(false, Ordering::SeqCst);
    app.db.caught_up().await;
    assert_eq!(drafted(&app, north.id, appointment).await.1, 4_000);
    assert_eq!(invoices_issued(&app).await, 1);
}

#[tokio::test]
async fn a_batch_killed_after_writing_the_invoice_leaves_nothing_and_its_retry_issues_once() {
    let kill = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let owner: Arc<std::sync::Mutex<Option<sqlx::postgres::PgConnectOptions>>> =
        Arc::new(std::sync::Mutex::new(None));
    let (k, n, o) = (kill.clone(), kills.clone(), owner.clone());
    let app = spawn_app_with(move |s| {
        let mut config = api::billing::config(s.clock.clone());
        config.poll_interval = std::time::Duration::from_millis(50);
        // After the invoice is written and before the checkpoint moves, the batch's backend
        // is terminated by the server, as an operator's kill or a crash would.
        config.hook = Some(Arc::new(move |stage, pid| {
            let go = stage == Stage::AfterIssue && k.swap(false, Ordering::SeqCst);
            let options = o.lock().unwrap().clone();
            let n = n.clone();
            async move {
                if go {
                    let mut conn = sqlx::PgConnection::connect_with(&options.unwrap())
                        .await
                        .map_err(|e| e.to_string())?;
                    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .fetch_one(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    assert!(killed);
                    n.fetch_add(1, Ordering::SeqCst);
                }
                Ok(())
            }
            .boxed()
        }));
        s.workers.as_mut().unwrap().billing = Some(config);
    })
    .await;
    *owner.lock().unwrap() = Some(app.db.owner.clone());
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-kill").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    app.db.caught_up().await;

    kill.store(true, Ordering::SeqCst);
    let appointment = visit(&app, &north, Some("checkup"), 2, "complete").await;
    app.db.caught_up().await;
    assert_eq!(kills.load(Ordering::SeqCst), 1, "the batch was killed once");
    assert_eq!(drafted(&app, north.id, appointment).await.1, 4_000);
    assert_eq!(invoices_issued(&app).await, 1);
}

#[tokio::test]
async fn three_process_managers_at_once_and_a_replay_from_zero_issue_each_invoice_once() {
    let held = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicUsize::new(0));
    let (h, n) = (held.clone(), failures.clone());
    let app = spawn_app_with(move |s| {
        let services = s.clock.clone();
        s.workers.as_mut().unwrap().billing = Some(failing_at(services, Stage::AfterRead, h, n));
    })
    .await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-race").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    // Ten visits while the service's process manager is held back.
    let mut visits = Vec::new();
    for day in 2..12 {
        visits.push(visit(&app, &north, Some("checkup"), day, "complete").await);
    }
    // Two more process managers, on their own connections, in small batches, and the
    // service's own, released: all three at once.
    let worker_login = app.db.login_as("clinic_worker");
    let mut config = api::billing::config(domain::clock::Services::manual(app.clock.clone()));
    config.batch_size = 3;
    let drain = |config: BillingConfig, login: sqlx::postgres::PgConnectOptions| async move {
        let mut conn = billing::connect(&login).await.unwrap();
        let mut issued = 0;
        loop {
            match billing::run_batch(&mut conn, &config).await {
                Ok(Some(batch)) => issued += batch.issued,
                Ok(None) => return issued,
                // The other one moved the checkpoint first: this batch rolled back; go on.
                Err(projections::ProjectionError::Db(_)) => continue,
                Err(other) => panic!("{other}"),
            }
        }
    };
    held.store(false, Ordering::SeqCst);
    let (a, b) = tokio::join!(
        drain(config.clone(), worker_login.clone()),
        drain(config.clone(), worker_login.clone())
    );
    app.db.caught_up().await;
    assert!(a + b <= 10, "{a} + {b}");
    for appointment in &visits {
        assert_eq!(drafted(&app, north.id, *appointment).await.1, 4_000);
    }
    assert_eq!(invoices_issued(&app).await, 10);

    // A replay from position zero reads every completion again and issues nothing.
    let events_before = all_events(&app).await;
    let mut owner = app.db.owner_connection().await;
    owner
        .execute("UPDATE projection_checkpoints SET transaction_id = '0', position = 0 WHERE name = 'billing'")
        .await
        .unwrap();
    app.db.caught_up().await;
    assert_eq!(all_events(&app).await, events_before);
    assert_eq!(invoices_issued(&app).await, 10);

    // The use case itself, raced on one charge from two transactions: one issues, one finds
    // it issued (the loser's savepoint rolls back its failed append; its transaction goes on).
    held.store(true, Ordering::SeqCst);
    let appointment = visit(&app, &north, Some("checkup"), 13, "complete").await;
    let (transaction_id, position): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, position FROM events WHERE aggregate_id = $1 \
         AND event_type = 'AppointmentCompleted'",
    )
    .bind(format!("{}:{appointment}", north.id))
    .fetch_one(&mut owner)
    .await
    .unwrap();
    let charge = Charge {
        clinic_id: ClinicId::from_uuid(north.id),
        appointment_id: AppointmentId::from_uuid(appointment),
        basis: Basis::Visit,
        transaction_id,
        position,
    };
    let services = domain::clock::Services::manual(app.clock.clone());
    let race = |login: sqlx::postgres::PgConnectOptions| {
        let (charge, services) = (charge.clone(), services.clone());
        async move {
            let mut conn = billing::connect(&login).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            let outcome = issue_for(&mut tx, services, &charge, Mode::Live)
                .await
                .unwrap();
            // Still usable after a lost race.
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert_eq!(one, 1);
            tx.commit().await.unwrap();
            outcome
        }
    };
    let (x, y) = tokio::join!(race(worker_login.clone()), race(worker_login.clone()));
    let issued = [&x, &y]
        .iter()
        .filter(|o| matches!(o, Outcome::Issued { .. }))
        .count();
    let existing = [&x, &y]
        .iter()
        .filter(|o| matches!(o, Outcome::AlreadyIssued(_)))
        .count();
    assert_eq!((issued, existing), (1, 1), "{x:?} {y:?}");
    assert_eq!(invoices_issued(&app).await, 11);
    held.store(false, Ordering::SeqCst);
    app.db.caught_up().await;
    assert_eq!(invoices_issued(&app).await, 11);
}

/// Appends one event as it was stored before billing existed (as the owner, like a restored
/// backup of an older release).
async fn append_old(
    owner: &mut sqlx::PgConnection,
    clinic: Uuid,
    (aggregate_type, entity): (&str, Uuid),
    sequence: i64,
    payload: Value,
) {
    let event_type = payload.as_object().unwrap().keys().next().unwrap().clone();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, $3, $4, '1.0', $5, $6)",
    )
    .bind(aggregate_type)
    .bind(format!("{clinic}:{entity}"))
    .bind(sequence)
    .bind(event_type)
    .bind(&payload)
    .bind(json!({"tenant_id": clinic, "actor_id": Uuid::nil(), "actor_role": "system",
                 "request_id": "old-release", "occurred_at": "2026-11-20T09:00:00Z"}))
    .execute(owner)
    .await
    .unwrap();
}

/// No upcaster is needed for billing: its events are new, and the one field it added to an
/// older event (`appointment_type` on `AppointmentBooked`) is optional. This proves it: a
/// store written before billing (a clinic registered on the old `standard` plan with no
/// `modules`, a booking without a type, a completed visit) loads, replays, projects and goes
/// through the process manager, which bills nothing (billing was not a module then).
#[tokio::test]
async fn a_store_written_before_billing_loads_replays_and_bills_nothing() {
    let app = spawn_app_with(|s| s.workers = None).await;
    let (clinic, patient, doctor, appointment) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut owner = app.db.owner_connection().await;
    let slot = json!({"start": "2026-11-21T09:00:00Z", "end": "2026-11-21T09:30:00Z"});
    append_old(
        &mut owner,
        clinic,
        ("Clinic", clinic),
        1,
        json!({"ClinicRegistered": {"clinic_id": clinic, "name": "Old", "code": "old-release",
               "time_zone": "Europe/Berlin", "plan": "standard", "slot_minutes": 15}}),
    )
    .await;
    let stream = ("Appointment", appointment);
    let at = "2026-11-20T09:00:00Z";
    for (sequence, payload) in [
        json!({"AppointmentBooked": {"appointment_id": appointment, "clinic_id": clinic,
               "patient_id": patient, "doctor_id": doctor, "slot": slot, "reason": null,
               "override_hours": false, "at": at}}),
        json!({"PatientCheckedIn": {"at": at}}),
        json!({"AppointmentStarted": {"at": at}}),
        json!({"AppointmentCompleted": {"at": at}}),
    ]
    .into_iter()
    .enumerate()
    {
        append_old(&mut owner, clinic, stream, sequence as i64 + 1, payload).await;
    }

    // The aggregates load through the store, as every command loads them.
    let store = store(&app).await;
    let id = ClinicId::from_uuid(clinic);
    let (old, _) = store
        .load::<domain::appointment::Appointment>(id, appointment)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.appointment_type(), None);
    assert_eq!(
        old.status(),
        Some(domain::appointment::AppointmentStatus::Fulfilled)
    );
    let (registered, _) = store
        .load::<domain::clinic::Clinic>(id, clinic)
        .await
        .unwrap()
        .unwrap();
    assert!(!registered.has_module(domain::values::Module::Billing));
    assert!(store
        .load::<FeeSchedule>(id, clinic)
        .await
        .unwrap()
        .is_none());

    // The auditor's replay reads every stored payload through the domain.
    let rows: Vec<(String, i64, String, Value)> = sqlx::query_as(
        "SELECT aggregate_type, position, event_type, payload::jsonb FROM events ORDER BY position",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    for (aggregate_type, position, event_type, payload) in &rows {
        let replayed = domain::replay::replay(
            aggregate_type,
            [domain::replay::StoredEvent {
                position: *position,
                event_type,
                payload,
            }],
        )
        .unwrap();
        assert!(replayed.is_some(), "{aggregate_type}");
    }

    // The read models apply them, and the process manager reads them all and bills nothing.
    // (Both wait for any transaction open on the server, another test's too: the fence.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut conn = projections::worker::connect(&app.db.login_as("clinic_worker"))
        .await
        .unwrap();
    let models = projections::worker::WorkerConfig::default();
    while app.db.projections_behind().await > 0 {
        for projection in projections::PROJECTIONS {
            projections::worker::run_batch(&mut conn, projection, &models)
                .await
                .unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "projections behind");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut pm = billing::connect(&app.db.login_as("clinic_worker"))
        .await
        .unwrap();
    let config = api::billing::config(domain::clock::Services::manual(app.clock.clone()));
    let mut total = billing::BillingBatch::default();
    while total.read < rows.len() {
        if let Some(batch) = billing::run_batch(&mut pm, &config).await.unwrap() {
            total.read += batch.read;
            total.issued += batch.issued;
            total.skipped += batch.skipped;
        }
        assert!(std::time::Instant::now() < deadline, "billing behind");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (total.read, total.issued, total.skipped),
        (rows.len(), 0, 1),
        "{total:?}"
    );
    assert!(billing::run_batch(&mut pm, &config)
        .await
        .unwrap()
        .is_none());
    let status: String =
        sqlx::query_scalar("SELECT status FROM rm.appointments WHERE appointment_id = $1")
            .bind(appointment)
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(status, "fulfilled");
    assert_eq!(invoices_issued(&app).await, 0);
}

#[tokio::test]
async fn clinic_billing_backfill_issues_the_missing_invoices_once_and_only_with_billing_on() {
    use crate::cli::{clinic, database_url, last_error_line, last_stdout_line, run_async};
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-cli").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    set_billing(&app, &north, false).await;
    let off_visit = visit(&app, &north, Some("checkup"), 2, "complete").await;
    app.db.caught_up().await;
    let url = database_url(&app.db);
    let backfill = |code: &str| {
        let mut cmd = clinic(&["billing", "backfill", "--clinic", code]);
        cmd.env("DATABASE_URL", &url);
        cmd
    };
    let refused = run_async(backfill("bill-cli")).await;
    assert!(!refused.status.success());
    assert!(
        last_error_line(&refused).contains("enable the billing module first"),
        "{}",
        last_error_line(&refused)
    );
    let unknown = run_async(backfill("nowhere")).await;
    assert!(!unknown.status.success());
    assert!(last_error_line(&unknown).contains("--clinic"));
    assert_eq!(invoices_issued(&app).await, 0);

    set_billing(&app, &north, true).await;
    app.db.caught_up().await;
    assert!(invoice_events(&app, north.id, off_visit).await.is_empty());
    let done = run_async(backfill("bill-cli")).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(
        last_stdout_line(&done),
        "clinic bill-cli: 1 visits and no-shows read, 1 invoices issued, 0 already invoiced, 0 not billed"
    );
    assert_eq!(drafted(&app, north.id, off_visit).await.1, 4_000);
    let again = run_async(backfill("bill-cli")).await;
    assert_eq!(
        last_stdout_line(&again),
        "clinic bill-cli: 1 visits and no-shows read, 0 invoices issued, 1 already invoiced, 0 not billed"
    );
    assert_eq!(invoices_issued(&app).await, 1);
}

/// Invoices are audited like every other aggregate: `clinic replay --check` replays them and
/// compares them with `rm.invoices` field by field, and the hash chain covers their events
/// (an edited payment is found by `clinic verify`).
#[tokio::test]
async fn invoices_are_in_the_replay_check_and_the_hash_chain() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-audit").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    let appointment = visit(&app, &north, Some("checkup"), 2, "complete").await;
    app.db.caught_up().await;
    let invoice = InvoiceId::of_appointment(AppointmentId::from_uuid(appointment)).as_uuid();
    let finalised = app
        .post(
            &format!("/v1/invoices/{invoice}/finalise"),
            &north.receptionist,
            json!({}),
        )
        .await;
    assert_eq!(finalised.status, 200, "{finalised:?}");
    let paid = app
        .send_with(
            reqwest::Method::POST,
            &format!("/v1/invoices/{invoice}/payments"),
            Some(&north.receptionist),
            Some(&json!({"amount": 4_000, "method": "cash"})),
            &[("Idempotency-Key", "audit-1")],
        )
        .await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let refunded = app
        .post(
            &format!("/v1/invoices/{invoice}/refunds"),
            &north.admin,
            json!({"amount": 1_500, "reason": "goodwill"}),
        )
        .await;
    assert_eq!(refunded.status, 200, "{refunded:?}");
    app.db.caught_up().await;

    // The auditor reads the invoice's events and its state as of now, which names its patient
    // in the access log.
    let events = app
        .send(
            reqwest::Method::GET,
            "/v1/audit/events?aggregate_type=invoice",
            Some(&north.auditor),
            None,
        )
        .await;
    assert_eq!(events.status, 200, "{events:?}");
    let state = app
        .send(
            reqwest::Method::GET,
            &format!(
                "/v1/audit/state?aggregate_type=Invoice&aggregate_id={invoice}&as_of={}",
                (app.now() + chrono::Duration::seconds(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Some(&north.auditor),
            None,
        )
        .await;
    assert_eq!(state.status, 200, "{state:?}");
    assert_eq!(
        (
            state.body["state"]["status"].as_str(),
            state.body["state"]["paid"].as_i64(),
            state.body["state"]["refunded"].as_i64(),
            state.body["version"].as_i64()
        ),
        (Some("partially-paid"), Some(4_000), Some(1_500), Some(4))
    );
    let logged = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/audit/access-log?patient_id={}", north.patient_id),
            Some(&north.auditor),
            None,
        )
        .await;
    assert_eq!(logged.status, 200, "{logged:?}");
    let row = logged.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["endpoint"] == "GET /v1/audit/state")
        .unwrap_or_else(|| panic!("no access-log row: {}", logged.body));
    assert_eq!(row["patient_id"], north.patient_id.to_string());
    assert_eq!(row["outcome"], "allowed");

    let check = || crate::audit::replay(&app.db, &["--clinic", "bill-audit", "--check"]);
    let out = check().await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("no differences"), "{stdout}");

    // The read model says more was paid than the events do.
    let mut owner = app.db.owner_connection().await;
    sqlx::query("UPDATE rm.invoices SET paid = 9000 WHERE invoice_id = $1")
        .bind(invoice)
        .execute(&mut owner)
        .await
        .unwrap();
    let out = check().await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with(&format!("Invoice {invoice}: ")))
        .collect();
    assert_eq!(
        lines,
        [format!(
            "Invoice {invoice}: paid: events say 4000, read model says 9000"
        )],
        "{stdout}"
    );

    // The events of the invoice are chained: editing the payment's amount is found.
    let intact = crate::chain::verify_cli(&app.db, "bill-audit", &[]).await;
    assert_eq!(intact.status.code(), Some(0), "{intact:?}");
    let payment: i64 = sqlx::query_scalar(
        "SELECT position FROM events WHERE event_type = 'PaymentRecorded' AND aggregate_id = $1",
    )
    .bind(format!("{}:{invoice}", north.id))
    .fetch_one(&mut owner)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload::jsonb, '{PaymentRecorded,amount}', '400')::json \
         WHERE position = $1",
    )
    .bind(payment)
    .execute(&mut owner)
    .await
    .unwrap();
    let out = crate::chain::verify_cli(&app.db, "bill-audit", &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let first = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(first, format!("tampered: changed at position {payment}"));
}

/// Under a stream of commands the process manager does not run a batch (a transaction that
/// locks and moves its checkpoint) per command: after a batch that caught up it waits
/// `settle`, and the commands of that time are read together. Invoices still follow.
#[tokio::test]
async fn the_process_manager_reads_a_stream_of_commands_in_a_batch_per_settle() {
    let settle = std::time::Duration::from_millis(400);
    let batches = Arc::new(AtomicUsize::new(0));
    let counted = batches.clone();
    let app = spawn_app_with(move |s| {
        let mut config = api::billing::config(s.clock.clone());
        config.settle = settle;
        config.hook = Some(Arc::new(move |at, _pid| {
            if at == Stage::AfterRead {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok(()) }.boxed()
        }));
        s.workers.as_mut().unwrap().billing = Some(config);
    })
    .await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "bill-settle").await;
    set_fees(&app, &north, schedule(north.doctor_id, 4_000, None)).await;
    app.db.caught_up().await;
    let before = batches.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    let commands = 40;
    for i in 0..commands {
        let created = app
            .post(
                "/v1/patients",
                &north.receptionist,
                crate::helpers::patient_body(&format!("Settle{i}")),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
    }
    let elapsed = started.elapsed();
    app.db.caught_up().await;
    let read = batches.load(Ordering::SeqCst) - before;
    // One batch per settle while the commands came, and one or two to catch up after.
    // (Without the settle: 38 batches for 40 commands in 0.2 s.)
    let most = (elapsed.as_secs_f64() / settle.as_secs_f64()).ceil() as usize + 2;
    assert!(
        read <= most && most < commands,
        "{read} batches for {commands} commands in {elapsed:?} (at most {most})"
    );
    // A billable event still gets its invoice.
    let appointment = visit(&app, &north, Some("checkup"), 2, "complete").await;
    app.db.caught_up().await;
    assert_eq!(drafted(&app, north.id, appointment).await.1, 4_000);
}
