//! Invoices (issue 14): finalising takes the clinic's next number of the year in the
//! finalising transaction, and numbers have no gaps under concurrent finalisations, refusals
//! and a second finalisation of the same draft. [`billed_visit`] is how every test gets an
//! invoice (the HTTP tests are in `invoice_api.rs`).

use chrono::{DateTime, Utc};
use domain::ids::{AppointmentId, InvoiceId, PatientId, StaffId};
use domain::invoice::{Basis, Invoice, InvoiceError, InvoiceLine, NewInvoice};
use domain::values::{Amount, Currency, NonEmptyText};
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

use crate::event_store::{admin_of, register_clinic};
use crate::helpers::{store_with, test_services, ClinicFixture, TestApp, TestDb};
use commands::{CommandError, Expect};

/// An invoice of a visit, as [`billed_visit`] leaves it: a draft.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BilledVisit {
    pub invoice_id: Uuid,
    pub appointment_id: Uuid,
    /// The draft's total, in minor units of `currency`.
    pub total: i64,
    pub currency: &'static str,
    /// The position of the draft's event, for `X-Min-Position`.
    pub position: i64,
}

/// A visit of `patient` with `doctor` (of `clinic`) at `start`, booked, checked in, started and
/// completed over HTTP by the clinic's admin (logged in afresh: tests move the clock past a
/// token's life), and the draft invoice the billing process manager issues for it: the
/// clinic's fee schedule (set here if it has none: 60.00 EUR a visit) prices it.
///
/// The one place tests get an invoice.
pub(crate) async fn billed_visit(
    app: &TestApp,
    clinic: &ClinicFixture,
    patient: Uuid,
    doctor: Uuid,
    start: DateTime<Utc>,
) -> BilledVisit {
    let admin = app.login(&clinic.emails["clinic_admin"]).await;
    let fees = app
        .send(reqwest::Method::GET, "/v1/clinic/fees", Some(&admin), None)
        .await;
    if fees.status == 404 {
        let set = app
            .put(
                "/v1/clinic/fees",
                &admin,
                json!({"currency": "EUR", "default_fee": 6_000, "rules": []}),
            )
            .await;
        assert_eq!(set.status, 200, "{set:?}");
    }
    let booked = app
        .post(
            "/v1/appointments",
            &admin,
            json!({"patient_id": patient, "doctor_id": doctor, "start": start,
                   "end": start + chrono::Duration::minutes(30)}),
        )
        .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let appointment = booked.id();
    for step in ["check-in", "start", "complete"] {
        let done = app
            .post(
                &format!("/v1/appointments/{appointment}/{step}"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(done.status, 200, "{step}: {done:?}");
    }
    // The process manager's draft. The test runs a process manager of its own as well (they
    // take turns on the checkpoint and never issue twice), so this also works in an app
    // without in-process workers.
    let invoice_id = InvoiceId::of_appointment(AppointmentId::from_uuid(appointment)).as_uuid();
    let stream = format!("{}:{invoice_id}", clinic.id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut owner = app.db.owner_connection().await;
    let mut manager = projections::billing::connect(&app.db.login_as("clinic_worker"))
        .await
        .unwrap();
    let config = api::billing::config(domain::clock::Services::manual(app.clock.clone()));
    let (position, payload): (i64, serde_json::Value) = loop {
        projections::billing::run_batch(&mut manager, &config)
            .await
            .unwrap();
        let issued = sqlx::query_as(
            "SELECT position, payload::jsonb FROM events \
             WHERE aggregate_type = 'Invoice' AND aggregate_id = $1 AND sequence = 1",
        )
        .bind(&stream)
        .fetch_optional(&mut owner)
        .await
        .unwrap();
        if let Some(issued) = issued {
            break issued;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no invoice for appointment {appointment}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let lines = payload["InvoiceIssued"]["lines"].as_array().unwrap();
    let currency = payload["InvoiceIssued"]["currency"].as_str().unwrap();
    assert_eq!(currency, "EUR", "the fixtures bill in EUR");
    BilledVisit {
        invoice_id,
        appointment_id: appointment,
        total: lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum(),
        currency: "EUR",
        position,
    }
}

fn draft(clinic: domain::ids::ClinicId, lines: usize) -> NewInvoice {
    let appointment = AppointmentId::new();
    NewInvoice {
        invoice_id: InvoiceId::of_appointment(appointment),
        clinic_id: clinic,
        appointment_id: appointment,
        patient_id: PatientId::new(),
        doctor_id: StaffId::new(),
        basis: Basis::Visit,
        currency: Currency::parse("EUR").unwrap(),
        lines: (0..lines)
            .map(|i| InvoiceLine {
                description: NonEmptyText::parse(format!("Line {i}")).unwrap(),
                amount: Amount::new(5_000).unwrap(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn invoice_numbers_have_no_gaps_under_twenty_concurrent_finalisations() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let clinic = register_clinic(&store, "billing").await;
    let other = register_clinic(&store, "billing-other").await;
    let meta = admin_of(clinic);
    let mut drafts = Vec::new();
    for _ in 0..20 {
        let new = draft(clinic, 1);
        drafts.push(new.invoice_id);
        commands::invoices::issue(&store, &meta, new).await.unwrap();
    }
    // Issuing an appointment's invoice again is the same stream: refused, not a second one.
    let again = commands::invoices::issue(&store, &meta, {
        let mut d = draft(clinic, 1);
        d.invoice_id = drafts[0];
        d
    })
    .await;
    assert!(
        matches!(
            again,
            Err(CommandError::Domain(InvoiceError::AlreadyIssued))
        ),
        "{again:?}"
    );

    // 20 finalisations at once, and the first draft finalised a second time among them.
    let results = join_all(
        drafts
            .iter()
            .chain(std::iter::once(&drafts[0]))
            .map(|id| commands::invoices::finalise(&store, &meta, Expect::Any, *id)),
    )
    .await;
    let refused = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(refused, 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        assert!(
            matches!(
                r,
                Err(CommandError::Domain(InvoiceError::NotDraft(_)))
                    | Err(CommandError::Concurrency)
            ),
            "{r:?}"
        );
    }
    // A draft without lines is refused and takes no number.
    let empty = draft(clinic, 0);
    let empty_id = empty.invoice_id;
    commands::invoices::issue(&store, &meta, empty)
        .await
        .unwrap();
    let no_lines = commands::invoices::finalise(&store, &meta, Expect::Any, empty_id).await;
    assert!(
        matches!(no_lines, Err(CommandError::Domain(InvoiceError::NoLines))),
        "{no_lines:?}"
    );
    // Another clinic counts from 1 on its own.
    let theirs = draft(other, 1);
    let their_id = theirs.invoice_id;
    commands::invoices::issue(&store, &admin_of(other), theirs)
        .await
        .unwrap();
    commands::invoices::finalise(&store, &admin_of(other), Expect::Any, their_id)
        .await
        .unwrap();

    let number = |clinic, id: InvoiceId| {
        let store = store.clone();
        async move {
            let (invoice, _) = store
                .load::<Invoice>(clinic, id.as_uuid())
                .await
                .unwrap()
                .unwrap();
            invoice.number().map(|n| n.to_string())
        }
    };
    let mut numbers = Vec::new();
    for id in &drafts {
        numbers.push(number(clinic, *id).await.expect("finalised"));
    }
    numbers.sort();
    let expected: Vec<String> = (1..=20).map(|n| format!("INV-2027-{n:06}")).collect();
    assert_eq!(numbers, expected, "1 to 20, each once");
    assert_eq!(number(clinic, empty_id).await, None);
    assert_eq!(
        number(other, their_id).await.as_deref(),
        Some("INV-2027-000001")
    );
    // The next one is 21: the refusals took nothing.
    let next = draft(clinic, 2);
    let next_id = next.invoice_id;
    commands::invoices::issue(&store, &meta, next)
        .await
        .unwrap();
    commands::invoices::finalise(&store, &meta, Expect::Any, next_id)
        .await
        .unwrap();
    assert_eq!(
        number(clinic, next_id).await.as_deref(),
        Some("INV-2027-000021")
    );
}
