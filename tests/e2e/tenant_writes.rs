//! Every write-side `UPDATE` or `DELETE` that an event or a request causes, with a second
//! clinic present whose rows share the non-tenant part of the statement's key, so that a
//! missing tenant predicate fails a test (issue 15). The read models' batch updates are in
//! `projections.rs` (`an_entity_id_used_in_two_clinics_…`); the last-admin count is in
//! `auth.rs`; invoice numbers are in `invoices.rs`.

use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::auth::{me, refresh};
use crate::helpers::{patient_body, spawn_app, ClinicFixture, TestApp, PASSWORD};

/// What clinic `s` keeps in the write-side tables the event triggers change.
#[derive(Debug, PartialEq)]
struct Kept {
    /// The doctor's account: role, e-mail, active, tokens_valid_after (as text).
    account: (String, String, bool, Option<String>),
    unrevoked_refresh_tokens: i64,
    slot_claims: i64,
    granting_care_links: i64,
    counted_patients: i32,
    suspended: bool,
}

async fn kept(conn: &mut PgConnection, s: &ClinicFixture) -> Kept {
    let account = sqlx::query_as(
        "SELECT role, email, active, tokens_valid_after::text FROM accounts WHERE id = $1",
    )
    .bind(s.doctor_id)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    let (unrevoked_refresh_tokens, slot_claims, granting_care_links, counted_patients, suspended) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM refresh_tokens WHERE account_id = $2 AND revoked_at IS NULL),
                    (SELECT count(*) FROM slot_claims WHERE clinic_id = $1 AND appointment_id = $3),
                    (SELECT count(*) FROM care_links WHERE clinic_id = $1 AND appointment_id = $3 AND grants),
                    (SELECT patients FROM mrn_counters WHERE clinic_id = $1),
                    (SELECT suspended FROM clinic_codes WHERE clinic_id = $1)",
        )
        .bind(s.id)
        .bind(s.doctor_id)
        .bind(s.appointment_id)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    Kept {
        account,
        unrevoked_refresh_tokens,
        slot_claims,
        granting_care_links,
        counted_patients,
        suspended,
    }
}

/// Appends an event to clinic `tenant`'s stream of `entity`, as the store would (the
/// triggers see what they see for a real append).
async fn append(
    conn: &mut PgConnection,
    tenant: Uuid,
    aggregate_type: &str,
    entity: Uuid,
    event_type: &str,
    body: serde_json::Value,
) {
    let sequence: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) + 1 FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(format!("{tenant}:{entity}"))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, $4, '1.0', json_build_object($4::text, $5::json),
                 json_build_object('tenant_id', $6::uuid, 'occurred_at', now()))",
    )
    .bind(aggregate_type)
    .bind(format!("{tenant}:{entity}"))
    .bind(sequence)
    .bind(event_type)
    .bind(sqlx::types::Json(body))
    .bind(tenant)
    .execute(&mut *conn)
    .await
    .unwrap();
}

/// Clinics `north{name}` and `south{name}`, made by `platform`.
async fn two_clinics(app: &TestApp, platform: &str, name: &str) -> (ClinicFixture, ClinicFixture) {
    let n = app.clinic(platform, &format!("north{name}")).await;
    let s = app.clinic(platform, &format!("south{name}")).await;
    (n, s)
}

/// The staff, appointment, patient and clinic triggers, driven by events of clinic N whose
/// streams name clinic S's ids (`N:{S's doctor}`, `N:{S's appointment}`): S keeps its
/// account, its refresh tokens, its slot, its care link, its patient count and its status.
/// The commands never write such a stream (S's records are not found in N); this holds
/// even if one did. Each event runs in a transaction that is rolled back.
#[tokio::test]
async fn events_of_one_clinic_naming_another_clinics_ids_change_nothing_of_it() {
    let app = spawn_app().await;
    let (n, s) = two_clinics(&app, &app.platform_admin().await, "writes").await;
    // S's doctor holds a live refresh token.
    let login = app.login_answer(&s.emails["doctor"], PASSWORD).await;
    assert_eq!(login.status, 200, "{login:?}");
    let mut conn = app.db.owner_connection().await;
    let before = kept(&mut conn, &s).await;
    assert!(before.unrevoked_refresh_tokens >= 1, "{before:?}");
    assert_eq!((before.slot_claims, before.granting_care_links), (1, 1));
    assert!(before.account.2 && !before.suspended, "{before:?}");

    let cases: Vec<(&str, Uuid, &str, serde_json::Value)> = vec![
        (
            "Staff",
            s.doctor_id,
            "StaffRoleChanged",
            json!({"from": "doctor", "to": "auditor"}),
        ),
        (
            "Staff",
            s.doctor_id,
            "StaffProfileUpdated",
            json!({"email": "moved@northwrites.example"}),
        ),
        ("Staff", s.doctor_id, "StaffDeactivated", json!({})),
        ("Staff", s.doctor_id, "StaffReactivated", json!({})),
        (
            "Appointment",
            s.appointment_id,
            "AppointmentCancelled",
            json!({"reason": "x"}),
        ),
        (
            "Appointment",
            s.appointment_id,
            "AppointmentCompleted",
            json!({}),
        ),
        (
            "Appointment",
            s.appointment_id,
            "AppointmentMarkedNoShow",
            json!({}),
        ),
        (
            "Patient",
            s.patient_id,
            "PatientMerged",
            json!({"survivor": n.patient_id}),
        ),
        ("Clinic", n.id, "ClinicSuspended", json!({"reason": "x"})),
    ];
    for (aggregate, entity, event, body) in cases {
        let mut tx = conn.begin().await.unwrap();
        append(&mut tx, n.id, aggregate, entity, event, body).await;
        let after = kept(&mut tx, &s).await;
        assert_eq!(after, before, "{event} in {}:{entity}", n.id);
        tx.rollback().await.unwrap();
    }
    // The same events in S's own streams do change S: the check above can see a change.
    let mut tx = conn.begin().await.unwrap();
    append(
        &mut tx,
        s.id,
        "Staff",
        s.doctor_id,
        "StaffDeactivated",
        json!({}),
    )
    .await;
    append(
        &mut tx,
        s.id,
        "Appointment",
        s.appointment_id,
        "AppointmentCancelled",
        json!({}),
    )
    .await;
    append(
        &mut tx,
        s.id,
        "Patient",
        s.patient_id,
        "PatientMerged",
        json!({}),
    )
    .await;
    let changed = kept(&mut tx, &s).await;
    tx.rollback().await.unwrap();
    assert!(!changed.account.2, "{changed:?}");
    assert_eq!(changed.unrevoked_refresh_tokens, 0);
    assert_eq!((changed.slot_claims, changed.granting_care_links), (0, 0));
    assert_eq!(changed.counted_patients, before.counted_patients - 1);
    // And S's doctor still works.
    let refreshed = refresh(&app, login.body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
}

/// Idempotency keys are the client's: two clinics' clients may choose the same one. Each
/// gets its own command and its own replay (the key's rows are found by account and key).
#[tokio::test]
async fn the_same_idempotency_key_in_two_clinics_is_two_commands_with_their_own_replays() {
    let app = spawn_app().await;
    let (n, s) = two_clinics(&app, &app.platform_admin().await, "writes").await;
    let key = "import-batch-0001";
    let send = |token: String, given: &'static str| {
        let app = &app;
        async move {
            app.send_with(
                reqwest::Method::POST,
                "/v1/patients",
                Some(&token),
                Some(&patient_body(given)),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let north = send(n.receptionist.clone(), "Nora").await;
    let south = send(s.receptionist.clone(), "Sven").await;
    assert_eq!(
        (north.status, south.status),
        (201, 201),
        "{north:?} {south:?}"
    );
    assert_ne!(north.id(), south.id());
    // Each replay answers its own clinic's command; nothing new is written.
    let events = app.event_count().await;
    let north_again = send(n.receptionist.clone(), "Nora").await;
    let south_again = send(s.receptionist.clone(), "Sven").await;
    assert_eq!(
        (north_again.id(), south_again.id()),
        (north.id(), south.id())
    );
    assert_eq!(app.event_count().await, events);
    // A different body under the key is refused in that clinic only.
    let reused = send(s.receptionist.clone(), "Other").await;
    assert_eq!(reused.status, 422, "{reused:?}");
    for (clinic, id, given) in [(&n, north.id(), "Nora"), (&s, south.id(), "Sven")] {
        let read = app
            .read_at(
                &format!("/v1/patients/{id}"),
                &clinic.receptionist,
                app.head().await,
            )
            .await;
        assert_eq!(read.status, 200, "{read:?}");
        assert_eq!(read.body["name"]["given"], given);
    }
}

/// Logging out ends the family of that log-in only: another clinic's sessions (and the
/// account's own other log-ins) keep working.
#[tokio::test]
async fn logging_out_in_one_clinic_ends_no_session_of_another() {
    let app = spawn_app().await;
    let (n, s) = two_clinics(&app, &app.platform_admin().await, "writes").await;
    let north = app.login_answer(&n.emails["clinic_admin"], PASSWORD).await;
    let south = app.login_answer(&s.emails["clinic_admin"], PASSWORD).await;
    let out = app
        .post(
            "/v1/auth/logout",
            north.body["access_token"].as_str().unwrap(),
            json!({"refresh_token": north.body["refresh_token"]}),
        )
        .await;
    assert_eq!(out.status, 204, "{out:?}");
    let dead = refresh(&app, north.body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(dead.status, 401, "{dead:?}");
    let alive = refresh(&app, south.body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(alive.status, 200, "{alive:?}");
    let me = me(&app, south.body["access_token"].as_str()).await;
    assert_eq!(me.status, 200, "{me:?}");
}

/// The clinic read model's one-row updates (settings, departments, modules, plan, status)
/// name the clinic: a change to clinic N leaves clinic S's row exactly as it was.
#[tokio::test]
async fn changing_one_clinic_leaves_another_clinics_read_model_row_as_it_was() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let (n, s) = two_clinics(&app, &platform, "row").await;
    app.db.caught_up().await;
    let mut conn = app.db.owner_connection().await;
    let row = |id: Uuid| {
        sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT to_jsonb(c) FROM rm.clinics c WHERE clinic_id = $1",
        )
        .bind(id)
    };
    let south_before = row(s.id).fetch_one(&mut conn).await.unwrap();
    let north_before = row(n.id).fetch_one(&mut conn).await.unwrap();
    let answers = [
        app.patch(
            "/v1/clinic",
            &n.admin,
            json!({"name": "North renamed", "time_zone": "Europe/Lisbon", "slot_minutes": 20,
                   "logo_url": "https://north.example/logo.png"}),
        )
        .await,
        app.post(
            "/v1/clinic/departments",
            &n.admin,
            json!({"name": "Radiology"}),
        )
        .await,
        app.put(
            "/v1/clinic/modules/billing",
            &n.admin,
            json!({"enabled": false}),
        )
        .await,
        app.put(
            &format!("/v1/clinics/{}/plan", n.id),
            &platform,
            json!({"plan": "enterprise", "reason": "grew"}),
        )
        .await,
    ];
    for answer in &answers {
        assert!(answer.status < 300, "{answer:?}");
    }
    let department = answers[1].id();
    for change in [json!({"name": "Imaging"}), json!({"closed": true})] {
        let changed = app
            .patch(
                &format!("/v1/clinic/departments/{department}"),
                &n.admin,
                change,
            )
            .await;
        assert_eq!(changed.status, 200, "{changed:?}");
    }
    let suspended = app
        .post(
            &format!("/v1/clinics/{}/suspend", n.id),
            &platform,
            json!({"reason": "audit"}),
        )
        .await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    app.db.caught_up().await;
    let north_after = row(n.id).fetch_one(&mut conn).await.unwrap();
    assert_ne!(north_after, north_before, "the changes reached north's row");
    assert_eq!(north_after["name"], "North renamed", "{north_after}");
    assert_eq!(row(s.id).fetch_one(&mut conn).await.unwrap(), south_before);
}
