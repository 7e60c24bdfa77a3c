//! The invoice HTTP API (issue 14): who may read and change invoices, another clinic's
//! invoices, payments (idempotent, never past the balance) and refunds (never past what was
//! paid), the access log, list filters and pages, a patient's balance, the dashboard's revenue
//! and amount outstanding, and the platform's per-clinic totals.
//!
//! Every invoice comes from [`billed_visit`]; every date from the app's clock.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    all_day_hours, patient_body, spawn_app, spawn_app_at, utc, Answer, ClinicFixture, TestApp,
    PASSWORD,
};
use crate::invoices::{billed_visit, BilledVisit};

/// North (with a second doctor and a second patient) and South.
struct World {
    platform: String,
    n: ClinicFixture,
    s: ClinicFixture,
    doctor2: Uuid,
    doctor2_email: String,
    patient2: Uuid,
}

async fn world(app: &TestApp) -> World {
    let platform = app.platform_admin().await;
    let n = app.clinic(&platform, "north").await;
    let s = app.clinic(&platform, "south").await;
    let doctor2_email = "doctor2@north.example".to_owned();
    let hired = app
        .post(
            "/v1/staff",
            &n.admin,
            json!({"name": "Second Doctor", "email": doctor2_email, "role": "doctor",
                   "password": PASSWORD, "licence_number": "LIC-2", "specialty": "cardiology"}),
        )
        .await;
    assert_eq!(hired.status, 201, "{hired:?}");
    let doctor2 = hired.id();
    let hours = app
        .put(
            &format!("/v1/staff/{doctor2}/working-hours"),
            &n.admin,
            all_day_hours(),
        )
        .await;
    assert_eq!(hours.status, 200, "{hours:?}");
    let registered = app
        .post("/v1/patients", &n.receptionist, patient_body("Grace"))
        .await;
    assert_eq!(registered.status, 201, "{registered:?}");
    World {
        platform,
        n,
        s,
        doctor2,
        doctor2_email,
        patient2: registered.id(),
    }
}

fn position(answer: &Answer) -> i64 {
    answer.body["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("no position in {answer:?}"))
}

/// The invoice ids of a page, in order.
fn ids(page: &Answer) -> Vec<Uuid> {
    page.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page:?}"))
        .iter()
        .map(|i| i["invoice_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[track_caller]
fn ok(answer: &Answer) -> &Value {
    assert_eq!(answer.status, 200, "{answer:?}");
    &answer.body
}

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Answer {
    app.post(path, token, body).await
}

async fn pay(app: &TestApp, token: &str, invoice: Uuid, amount: i64, key: &str) -> Answer {
    app.send_with(
        Method::POST,
        &format!("/v1/invoices/{invoice}/payments"),
        Some(token),
        Some(&json!({"amount": amount, "method": "card", "reference": "slip"})),
        &[("Idempotency-Key", key)],
    )
    .await
}

async fn finalise(app: &TestApp, token: &str, invoice: Uuid) -> Answer {
    let answer = post(
        app,
        &format!("/v1/invoices/{invoice}/finalise"),
        token,
        json!({}),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
}

/// The first instant of the next calendar month in Berlin after `now`.
fn next_month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&Berlin).date_naive();
    let (y, m) = if local.month() == 12 {
        (local.year() + 1, 1)
    } else {
        (local.year(), local.month() + 1)
    };
    let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
    Berlin
        .from_local_datetime(&first.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn invoice_reads_follow_the_roles_the_doctor_and_the_clinic() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let (n, s) = (&w.n, &w.s);
    let mine = billed_visit(&app, n, n.patient_id, n.doctor_id, app.future(4, 9)).await;
    let theirs = billed_visit(&app, n, w.patient2, w.doctor2, app.future(4, 10)).await;
    let south = billed_visit(&app, s, s.patient_id, s.doctor_id, app.future(4, 9)).await;
    let at = south.position.max(theirs.position);
    let both: BTreeSet<Uuid> = [mine.invoice_id, theirs.invoice_id].into();
    let invoice = |v: &BilledVisit| format!("/v1/invoices/{}", v.invoice_id);
    let balance = |patient: Uuid| format!("/v1/patients/{patient}/balance");

    // Clinic admins, receptionists and auditors read every invoice of their clinic.
    for role in ["clinic_admin", "receptionist", "auditor"] {
        let t = n.token(role);
        let list = app.read_at("/v1/invoices", t, at).await;
        ok(&list);
        assert_eq!(ids(&list).into_iter().collect::<BTreeSet<_>>(), both);
        let one = app.read_at(&invoice(&theirs), t, at).await;
        let body = ok(&one);
        assert_eq!(body["invoice_id"], json!(theirs.invoice_id), "{role}");
        assert_eq!(body["status"], "draft");
        assert_eq!(body["patient_id"], json!(w.patient2));
        assert_eq!(body["doctor_id"], json!(w.doctor2));
        assert_eq!(body["appointment_id"], json!(theirs.appointment_id));
        assert_eq!(body["currency"], theirs.currency);
        assert_eq!(body["total"], theirs.total);
        assert_eq!(body["balance"], 0, "a draft is not due yet");
        assert_eq!(body["number"], Value::Null);
        assert_eq!(body["lines"].as_array().unwrap().len(), 1);
        assert_eq!(body["payments"], json!([]));
        assert_eq!(one.header("etag"), Some("\"1\""));
        let due = app.read_at(&balance(w.patient2), t, at).await;
        assert_eq!(
            ok(&due)["balances"],
            json!([]),
            "{role}: nothing due on a draft"
        );
        // Another clinic's invoice and patient are not found; a filter on them finds nothing.
        app.read_at(&invoice(&south), t, at).await.problem(404);
        app.read_at(&balance(s.patient_id), t, at)
            .await
            .problem(404);
        app.read_at(&balance(Uuid::new_v4()), t, at)
            .await
            .problem(404);
        let filtered = app
            .read_at(&format!("/v1/invoices?patient_id={}", s.patient_id), t, at)
            .await;
        assert!(ids(&filtered).is_empty(), "{filtered:?}");
    }

    // A doctor reads the invoices of their own appointments only.
    let d = &n.doctor;
    let list = app.read_at("/v1/invoices", d, at).await;
    assert_eq!(ids(&list), [mine.invoice_id], "{list:?}");
    let own = format!("/v1/invoices?doctor_id={}", n.doctor_id);
    assert_eq!(ids(&app.read_at(&own, d, at).await), [mine.invoice_id]);
    let other = format!("/v1/invoices?doctor_id={}", w.doctor2);
    app.read_at(&other, d, at).await.problem(403);
    ok(&app.read_at(&invoice(&mine), d, at).await);
    app.read_at(&invoice(&theirs), d, at).await.problem(404);
    app.read_at(&invoice(&south), d, at).await.problem(404);
    ok(&app.read_at(&balance(n.patient_id), d, at).await);
    app.read_at(&balance(w.patient2), d, at).await.problem(404);
    // The second doctor, the other way round.
    let d2 = app.login(&w.doctor2_email).await;
    assert_eq!(
        ids(&app.read_at("/v1/invoices", &d2, at).await),
        [theirs.invoice_id]
    );
    app.read_at(&invoice(&mine), &d2, at).await.problem(404);

    // Nurses and the platform admin read no invoice.
    for token in [n.nurse.as_str(), w.platform.as_str()] {
        for path in [
            "/v1/invoices".to_owned(),
            invoice(&mine),
            balance(n.patient_id),
        ] {
            let answer = app.read_at(&path, token, at).await;
            assert_eq!(answer.problem(403)["status"], 403, "{path}");
        }
    }

    // The platform's per-clinic totals are the platform admin's only.
    ok(&app.read_at("/v1/platform/billing", &w.platform, at).await);
    for role in ["clinic_admin", "doctor", "nurse", "receptionist", "auditor"] {
        app.read_at("/v1/platform/billing", n.token(role), at)
            .await
            .problem(403);
    }
}

#[tokio::test]
async fn payments_are_idempotent_and_never_past_the_balance_nor_refunds_past_what_was_paid() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let n = &w.n;
    let v = billed_visit(&app, n, n.patient_id, n.doctor_id, app.future(2, 9)).await;
    let (desk, admin) = (&n.receptionist, &n.admin);
    let path = |what: &str| format!("/v1/invoices/{}/{what}", v.invoice_id);

    // A draft takes no payment (409); a line, then the number of this year.
    let key = Uuid::new_v4().to_string();
    pay(&app, desk, v.invoice_id, 100, &key).await.problem(409);
    let line = post(
        &app,
        &path("lines"),
        desk,
        json!({"description": "ECG", "amount": 2500}),
    )
    .await;
    assert_eq!(line.status, 200, "{line:?}");
    let total = v.total + 2500;
    let finalised = finalise(&app, desk, v.invoice_id).await;
    post(
        &app,
        &path("lines"),
        desk,
        json!({"description": "Late", "amount": 1}),
    )
    .await
    .problem(409);
    let year = app.now().with_timezone(&Berlin).year();
    let shown = app
        .read_at(
            &format!("/v1/invoices/{}", v.invoice_id),
            admin,
            position(&finalised),
        )
        .await;
    let body = ok(&shown);
    assert_eq!(body["status"], "issued");
    assert_eq!(body["number"], format!("INV-{year}-000001"));
    assert_eq!(body["total"], total);
    assert_eq!(body["balance"], total);

    // No Idempotency-Key: a 422 naming the header, nothing written.
    let before = app.event_count().await;
    let unkeyed = app
        .post(
            &path("payments"),
            desk,
            json!({"amount": 1000, "method": "cash"}),
        )
        .await;
    unkeyed.names_field("Idempotency-Key");
    // Twice the balance, or a cent over it: a 422 naming `amount`.
    pay(&app, desk, v.invoice_id, 2 * total, "too-much")
        .await
        .names_field("amount");
    pay(&app, desk, v.invoice_id, total + 1, "cent-over")
        .await
        .names_field("amount");
    // Nothing paid yet: a refund is a 422 naming `amount`.
    post(
        &app,
        &path("refunds"),
        admin,
        json!({"amount": 1, "reason": "x"}),
    )
    .await
    .names_field("amount");
    assert_eq!(app.event_count().await, before);

    // A payment with a key; the same request again replays the first answer and pays nothing.
    let first = pay(&app, desk, v.invoice_id, 2000, "pay-1").await;
    assert_eq!(first.status, 200, "{first:?}");
    let paid_at = app.now();
    let events = app.event_count().await;
    app.advance(Duration::minutes(1));
    let again = pay(&app, desk, v.invoice_id, 2000, "pay-1").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.event_count().await, events, "a replay pays nothing");
    // The same key for another payment is refused.
    pay(&app, desk, v.invoice_id, 3000, "pay-1")
        .await
        .problem(422);
    assert_eq!(app.event_count().await, events);

    // A refund beyond what was paid, by a clinic admin: a 422 naming `amount`. Receptionists
    // neither refund nor void.
    post(
        &app,
        &path("refunds"),
        admin,
        json!({"amount": 2001, "reason": "x"}),
    )
    .await
    .names_field("amount");
    for what in ["refunds", "void"] {
        let body = json!({"amount": 100, "reason": "x"});
        let body = if what == "void" {
            json!({"reason": "x"})
        } else {
            body
        };
        post(&app, &path(what), desk, body).await.problem(403);
    }
    // Paid in full; then no more payments; a refund brings it back to partially paid; a void
    // waits for the rest to be refunded.
    let rest = pay(&app, desk, v.invoice_id, total - 2000, "pay-2").await;
    assert_eq!(rest.status, 200, "{rest:?}");
    let rest_at = app.now();
    pay(&app, desk, v.invoice_id, 1, "pay-3").await.problem(409);
    app.advance(Duration::minutes(1));
    let refunded = post(
        &app,
        &path("refunds"),
        admin,
        json!({"amount": 500, "reason": "overcharged"}),
    )
    .await;
    assert_eq!(refunded.status, 200, "{refunded:?}");
    let refunded_at = app.now();
    post(
        &app,
        &path("void"),
        admin,
        json!({"reason": "billed in error"}),
    )
    .await
    .problem(409);

    let shown = app
        .read_at(
            &format!("/v1/invoices/{}", v.invoice_id),
            desk,
            position(&refunded),
        )
        .await;
    let body = ok(&shown);
    assert_eq!(body["status"], "partially-paid", "{body}");
    assert_eq!(body["paid"], total);
    assert_eq!(body["refunded"], 500);
    assert_eq!(body["balance"], 500);
    let payments: Vec<Value> = body["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            json!([
                p["kind"],
                p["amount"],
                p["method"],
                p["reason"],
                p["recorded_at"].as_str().map(utc)
            ])
        })
        .collect();
    assert_eq!(
        payments,
        [
            json!(["payment", 2000, "card", null, paid_at]),
            json!(["payment", total - 2000, "card", null, rest_at]),
            json!(["refund", 500, null, "overcharged", refunded_at]),
        ]
    );
    let lines = body["lines"].as_array().unwrap();
    assert_eq!(lines[1], json!({"description": "ECG", "amount": 2500}));

    // Refunded in full, it can be voided; then it takes nothing.
    let back = post(
        &app,
        &path("refunds"),
        admin,
        json!({"amount": total - 500, "reason": "cancelled"}),
    )
    .await;
    assert_eq!(back.status, 200, "{back:?}");
    let voided = post(
        &app,
        &path("void"),
        admin,
        json!({"reason": "billed in error"}),
    )
    .await;
    assert_eq!(voided.status, 200, "{voided:?}");
    pay(&app, desk, v.invoice_id, 1, "pay-4").await.problem(409);
    let shown = app
        .read_at(
            &format!("/v1/invoices/{}", v.invoice_id),
            desk,
            position(&voided),
        )
        .await;
    let body = ok(&shown);
    assert_eq!(
        (&body["status"], &body["balance"], &body["void_reason"]),
        (&json!("void"), &json!(0), &json!("billed in error"))
    );
}

#[tokio::test]
async fn every_answer_with_invoice_data_is_in_the_access_log() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let n = &w.n;
    let mine = billed_visit(&app, n, n.patient_id, n.doctor_id, app.future(2, 9)).await;
    let theirs = billed_visit(&app, n, w.patient2, w.doctor2, app.future(2, 10)).await;
    let at = theirs.position;
    app.db.caught_up().await;
    let (p, p2) = (n.patient_id.to_string(), w.patient2.to_string());
    let mut both = vec![p.clone(), p2.clone()];
    both.sort();
    let none: Vec<String> = Vec::new();
    // (role, path, endpoint, outcome, patient_id, patient_ids, filter)
    type Row<'a> = (
        &'a str,
        String,
        &'a str,
        &'a str,
        Option<String>,
        Vec<String>,
        Value,
    );
    let rows: Vec<Row> = vec![
        (
            "receptionist",
            "/v1/invoices?limit=10".into(),
            "GET /v1/invoices",
            "allowed",
            None,
            both.clone(),
            json!({"limit": "10"}),
        ),
        (
            "auditor",
            format!("/v1/invoices?patient_id={p2}"),
            "GET /v1/invoices",
            "allowed",
            Some(p2.clone()),
            vec![p2.clone()],
            json!({"patient_id": p2}),
        ),
        (
            "doctor",
            "/v1/invoices".into(),
            "GET /v1/invoices",
            "allowed",
            None,
            vec![p.clone()],
            json!({}),
        ),
        (
            "clinic_admin",
            format!("/v1/invoices/{}", theirs.invoice_id),
            "GET /v1/invoices/{id}",
            "allowed",
            Some(p2.clone()),
            none.clone(),
            Value::Null,
        ),
        (
            "doctor",
            format!("/v1/invoices/{}", theirs.invoice_id),
            "GET /v1/invoices/{id}",
            "not_found",
            None,
            none.clone(),
            Value::Null,
        ),
        (
            "nurse",
            format!("/v1/invoices/{}", mine.invoice_id),
            "GET /v1/invoices/{id}",
            "denied",
            None,
            none.clone(),
            Value::Null,
        ),
        (
            "receptionist",
            format!("/v1/patients/{p}/balance"),
            "GET /v1/patients/{id}/balance",
            "allowed",
            Some(p.clone()),
            none.clone(),
            Value::Null,
        ),
        (
            "nurse",
            format!("/v1/patients/{p}/balance"),
            "GET /v1/patients/{id}/balance",
            "denied",
            Some(p.clone()),
            none.clone(),
            Value::Null,
        ),
    ];
    let mut failures = Vec::new();
    for (role, path, endpoint, outcome, patient_id, patient_ids, filter) in &rows {
        let answer = app.read_at(path, n.token(role), at).await;
        let request_id = answer.header("x-request-id").unwrap().to_owned();
        let log = app
            .send(
                Method::GET,
                "/v1/audit/access-log?limit=1000",
                Some(&n.auditor),
                None,
            )
            .await;
        let found: Vec<&Value> = ok(&log)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["request_id"] == request_id.as_str())
            .collect();
        let expected = json!({
            "endpoint": endpoint, "outcome": outcome, "role": role,
            "patient_id": patient_id, "patient_ids": patient_ids, "filter": filter,
        });
        match found.as_slice() {
            [row] => {
                let got = json!({
                    "endpoint": row["endpoint"], "outcome": row["outcome"], "role": row["role"],
                    "patient_id": row["patient_id"], "patient_ids": row["patient_ids"],
                    "filter": row["filter"],
                });
                if got != expected {
                    failures.push(format!("{role} {path}: expected {expected}, got {got}"));
                }
            }
            other => failures.push(format!("{role} {path}: {} rows", other.len())),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn the_list_filters_by_status_patient_doctor_and_local_issue_date_and_pages_newest_first() {
    // 23:30 in Berlin on Wednesday 2027-01-13: an invoice issued an hour later is of the 14th
    // in Berlin, though still of the 13th in UTC.
    let app = spawn_app_at(utc("2027-01-13T22:30:00Z")).await;
    let w = world(&app).await;
    let n = &w.n;
    let local_day = |t: DateTime<Utc>| t.with_timezone(&Berlin).date_naive();
    let mut issued: Vec<(BilledVisit, NaiveDate)> = Vec::new();
    let plan = [
        (n.patient_id, n.doctor_id, 14),
        (w.patient2, w.doctor2, 15),
        (n.patient_id, w.doctor2, 16),
        (w.patient2, n.doctor_id, 17),
        (n.patient_id, n.doctor_id, 18),
    ];
    for (i, (patient, doctor, hour)) in plan.into_iter().enumerate() {
        let v = billed_visit(&app, n, patient, doctor, app.future(3, hour)).await;
        issued.push((v, local_day(app.now())));
        // The next one an hour later (the second crosses the local midnight), then a day.
        app.advance(if i == 0 {
            Duration::hours(1)
        } else {
            Duration::days(1)
        });
    }
    assert_eq!(issued[1].1, issued[0].1.succ_opt().unwrap());
    let admin = app.login(&n.emails["clinic_admin"]).await;
    // The third is finalised, the fourth finalised and paid in full.
    finalise(&app, &admin, issued[2].0.invoice_id).await;
    finalise(&app, &admin, issued[3].0.invoice_id).await;
    let paid = pay(&app, &admin, issued[3].0.invoice_id, 6_000, "k1").await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let at = position(&paid);

    let newest_first: Vec<Uuid> = issued.iter().rev().map(|(v, _)| v.invoice_id).collect();
    let list = |query: String| {
        let (app, admin) = (&app, &admin);
        async move {
            let answer = app
                .read_at(&format!("/v1/invoices{query}"), admin, at)
                .await;
            ok(&answer);
            ids(&answer)
        }
    };
    assert_eq!(list(String::new()).await, newest_first);
    let pick = |which: &[usize]| -> Vec<Uuid> {
        newest_first
            .iter()
            .copied()
            .filter(|id| which.iter().any(|i| issued[*i].0.invoice_id == *id))
            .collect()
    };
    assert_eq!(list("?status=draft".into()).await, pick(&[0, 1, 4]));
    assert_eq!(list("?status=issued".into()).await, pick(&[2]));
    assert_eq!(list("?status=paid".into()).await, pick(&[3]));
    assert!(list("?status=void".into()).await.is_empty());
    assert_eq!(
        list(format!("?patient_id={}", w.patient2)).await,
        pick(&[1, 3])
    );
    assert_eq!(
        list(format!("?doctor_id={}", w.doctor2)).await,
        pick(&[1, 2])
    );
    assert_eq!(
        list(format!(
            "?doctor_id={}&patient_id={}&status=draft",
            n.doctor_id, n.patient_id
        ))
        .await,
        pick(&[0, 4])
    );
    // Local issue dates, both ends included: the first alone, the second (after the local
    // midnight) to the fourth, the second onwards.
    let day = |i: usize| issued[i].1;
    assert_eq!(
        list(format!("?from={}&to={}", day(0), day(0))).await,
        pick(&[0])
    );
    assert_eq!(
        list(format!("?from={}&to={}", day(1), day(3))).await,
        pick(&[1, 2, 3])
    );
    assert_eq!(list(format!("?from={}", day(1))).await, pick(&[1, 2, 3, 4]));
    assert_eq!(list(format!("?to={}", day(0))).await, pick(&[0]));
    // A range that ends before it starts, a bad date or status: 422 naming the parameter.
    for (query, field) in [
        (format!("?from={}&to={}", day(1), day(0)), "to"),
        ("?from=2027-02-30".to_owned(), "from"),
        ("?to=13.01.2027".to_owned(), "to"),
        ("?status=unissued".to_owned(), "status"),
        ("?status=open".to_owned(), "status"),
        ("?page_token=bm9wZQ".to_owned(), "page_token"),
    ] {
        app.read_at(&format!("/v1/invoices{query}"), &admin, at)
            .await
            .names_field(field);
    }

    // Pages of two: every invoice once, newest first, the same with a filter.
    for filter in [String::new(), format!("&patient_id={}", n.patient_id)] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let query = match &token {
                Some(t) => format!("/v1/invoices?limit=2{filter}&page_token={t}"),
                None => format!("/v1/invoices?limit=2{filter}"),
            };
            let page = app.read_at(&query, &admin, at).await;
            let body = ok(&page).clone();
            let items = ids(&page);
            assert!(items.len() <= 2);
            seen.extend(items);
            match body["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        let expected = if filter.is_empty() {
            newest_first.clone()
        } else {
            pick(&[0, 2, 4])
        };
        assert_eq!(seen, expected, "pages with {filter:?}");
    }
}

#[tokio::test]
async fn balances_the_dashboard_and_the_platform_totals_add_up() {
    let app = spawn_app().await;
    let w = world(&app).await;
    let (n, s) = (&w.n, &w.s);
    let (desk, admin) = (&n.receptionist, &n.admin);
    let a = billed_visit(&app, n, n.patient_id, n.doctor_id, app.future(2, 9)).await;
    let b = billed_visit(&app, n, n.patient_id, w.doctor2, app.future(2, 10)).await;
    let c = billed_visit(&app, n, w.patient2, n.doctor_id, app.future(2, 11)).await;
    // A draft: counted as a draft, never due.
    billed_visit(&app, n, n.patient_id, n.doctor_id, app.future(2, 12)).await;
    let south = billed_visit(&app, s, s.patient_id, s.doctor_id, app.future(2, 9)).await;
    for v in [&a, &b, &c] {
        finalise(&app, desk, v.invoice_id).await;
    }
    finalise(&app, &s.receptionist, south.invoice_id).await;
    // This month: 1000 paid on `a`, `b` paid in full and 500 of it refunded; South is paid 700.
    assert_eq!(pay(&app, desk, a.invoice_id, 1000, "a1").await.status, 200);
    assert_eq!(
        pay(&app, desk, b.invoice_id, b.total, "b1").await.status,
        200
    );
    let refund = post(
        &app,
        &format!("/v1/invoices/{}/refunds", b.invoice_id),
        admin,
        json!({"amount": 500, "reason": "goodwill"}),
    )
    .await;
    assert_eq!(refund.status, 200, "{refund:?}");
    let south_paid = pay(&app, &s.receptionist, south.invoice_id, 700, "s1").await;
    assert_eq!(south_paid.status, 200, "{south_paid:?}");
    let at = position(&south_paid);
    let eur = |amount: i64| json!([{"currency": "EUR", "amount": amount}]);
    let owed_a = a.total - 1000;
    let (owed_b, owed_c) = (500, c.total);

    // The patient's balance: what is due on their issued and partially-paid invoices (not the
    // draft); a doctor's, over their own invoices.
    let due = app
        .read_at(&format!("/v1/patients/{}/balance", n.patient_id), desk, at)
        .await;
    assert_eq!(
        ok(&due)["balances"],
        json!([{"currency": "EUR", "due": owed_a + owed_b, "invoices": 2}])
    );
    let due = app
        .read_at(
            &format!("/v1/patients/{}/balance", n.patient_id),
            &n.doctor,
            at,
        )
        .await;
    assert_eq!(
        ok(&due)["balances"],
        json!([{"currency": "EUR", "due": owed_a, "invoices": 1}])
    );

    // The dashboard: revenue this month (payments less refunds) and the amount outstanding.
    let month = app
        .now()
        .with_timezone(&Berlin)
        .date_naive()
        .with_day(1)
        .unwrap();
    let revenue = 1000 + b.total - 500;
    let dash = app.read_at("/v1/dashboard", admin, at).await;
    let billing = &ok(&dash)["billing"];
    assert_eq!(billing["month_start"], json!(month));
    assert_eq!(billing["revenue_this_month"], eur(revenue), "{billing}");
    assert_eq!(billing["outstanding"], eur(owed_a + owed_b + owed_c));
    let dash = app.read_at("/v1/dashboard", &n.doctor, at).await;
    let billing = &ok(&dash)["billing"];
    assert_eq!(billing["revenue_this_month"], eur(1000));
    assert_eq!(billing["outstanding"], eur(owed_a + owed_c));
    let dash = app.read_at("/v1/dashboard", &n.nurse, at).await;
    assert!(ok(&dash).get("billing").is_none(), "nurses see no billing");

    // The platform: per clinic and currency, counts and sums only.
    let totals = app.read_at("/v1/platform/billing", &w.platform, at).await;
    let clinics = ok(&totals)["clinics"].as_array().unwrap().clone();
    let of = |id: Uuid| {
        clinics
            .iter()
            .find(|c| c["clinic_id"] == json!(id))
            .unwrap_or_else(|| panic!("no clinic {id} in {clinics:?}"))["currencies"]
            .clone()
    };
    assert_eq!(
        of(n.id),
        json!([{"currency": "EUR", "invoices_this_month": 4, "drafts": 1,
                "outstanding": owed_a + owed_b + owed_c, "revenue_this_month": revenue}])
    );
    assert_eq!(
        of(s.id),
        json!([{"currency": "EUR", "invoices_this_month": 1, "drafts": 0,
                "outstanding": south.total - 700, "revenue_this_month": 700}])
    );
    let text = totals.body.to_string();
    for secret in [n.patient_id.to_string(), a.invoice_id.to_string()] {
        assert!(
            !text.contains(&secret),
            "the platform sees no invoice nor patient"
        );
    }

    // A payment a minute before the local month ends counts in it; the next month starts at
    // nothing, with the same amount outstanding.
    let next = next_month_start(app.now());
    app.advance(next - Duration::minutes(1) - app.now());
    let desk = app.login(&n.emails["receptionist"]).await;
    let late = pay(&app, &desk, c.invoice_id, 100, "c1").await;
    assert_eq!(late.status, 200, "{late:?}");
    let admin = app.login(&n.emails["clinic_admin"]).await;
    let dash = app.read_at("/v1/dashboard", &admin, position(&late)).await;
    assert_eq!(
        ok(&dash)["billing"]["revenue_this_month"],
        eur(revenue + 100)
    );
    app.advance(Duration::minutes(1));
    let admin = app.login(&n.emails["clinic_admin"]).await;
    let dash = app.read_at("/v1/dashboard", &admin, position(&late)).await;
    let billing = &ok(&dash)["billing"];
    assert_eq!(billing["month_start"], json!(local_date(next)));
    assert_eq!(billing["revenue_this_month"], json!([]));
    assert_eq!(billing["outstanding"], eur(owed_a + owed_b + owed_c - 100));

    // With the billing module disabled, the invoice endpoints answer 403 module-disabled and
    // the dashboard has no billing figures.
    let off = app
        .put(
            "/v1/clinic/modules/billing",
            &admin,
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    let problem = app
        .read_at("/v1/invoices", &admin, position(&off))
        .await
        .problem(403)
        .clone();
    assert_eq!(
        problem["type"],
        "https://clinic.example/problems/module-disabled"
    );
    let dash = app.read_at("/v1/dashboard", &admin, position(&off)).await;
    assert!(ok(&dash).get("billing").is_none());
}

fn local_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Berlin).date_naive()
}
