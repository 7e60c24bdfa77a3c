//! The tenant-tagged event store against PostgreSQL: round trips, tenancy, concurrency and the
//! constraints that hold even when code is wrong.

use std::time::Duration;

use chrono::NaiveDate;
use commands::{Actor, ActorRole, CommandError, CommandMeta, EventStore, Expect};
use domain::clinic::{Clinic, ClinicCommand};
use domain::error::ErrorKind;
use domain::ids::{ClinicId, PatientId};
use domain::patient::{Demographics, DemographicsChanges, Patient, PatientCommand, PatientName};
use domain::values::{ClinicCode, Mrn, NonEmptyText, PersonName, Phone, Plan, Sex, TimeZone};
use sqlx::{Executor, Row};
use uuid::Uuid;

use crate::helpers::{store_with, test_services, TestDb};

pub(crate) fn admin_of(clinic: ClinicId) -> CommandMeta {
    CommandMeta::new(
        clinic,
        Actor {
            id: Uuid::new_v4(),
            role: ActorRole::ClinicAdmin,
        },
        format!("req-{}", Uuid::new_v4()),
    )
}

pub(crate) async fn register_clinic(store: &EventStore, code: &str) -> ClinicId {
    let clinic_id = ClinicId::new();
    let meta = CommandMeta::new(clinic_id, Actor::system(), "setup");
    store
        .execute::<Clinic>(
            &meta,
            clinic_id.as_uuid(),
            ClinicCommand::Register {
                clinic_id,
                name: NonEmptyText::parse(format!("Clinic {code}")).unwrap(),
                code: ClinicCode::parse(code).unwrap(),
                time_zone: TimeZone::parse("Europe/Berlin").unwrap(),
                plan: Plan::Professional,
                departments: vec![],
            },
            Expect::Any,
        )
        .await
        .expect("register clinic");
    clinic_id
}

/// Registers patient `id` in `clinic` at the store, with the clinic's next MRN, as its admin.
pub(crate) async fn register_in(store: &EventStore, clinic: ClinicId, id: PatientId, given: &str) {
    let mrn = commands::registry::next_mrn(store.pool(), clinic)
        .await
        .unwrap()
        .mrn;
    store
        .execute::<Patient>(
            &admin_of(clinic),
            id.as_uuid(),
            register_patient(clinic, id, mrn, given),
            Expect::Any,
        )
        .await
        .unwrap();
}

fn register_patient(
    clinic_id: ClinicId,
    patient_id: PatientId,
    mrn: Mrn,
    given: &str,
) -> PatientCommand {
    PatientCommand::Register {
        patient_id,
        clinic_id,
        mrn,
        demographics: Demographics {
            name: PatientName {
                given: PersonName::parse(given).unwrap(),
                family: PersonName::parse("Example").unwrap(),
            },
            birth_date: NaiveDate::from_ymd_opt(1980, 5, 17).unwrap(),
            sex: Sex::Female,
            phone: Some(Phone::parse("+49 30 1234567").unwrap()),
            email: None,
            address: None,
            emergency_contact: None,
            insurance: None,
            allergies: Vec::new(),
        },
    }
}

pub(crate) fn rename(given: &str) -> PatientCommand {
    PatientCommand::UpdateDemographics {
        changes: DemographicsChanges {
            name: Some(PatientName {
                given: PersonName::parse(given).unwrap(),
                family: PersonName::parse("Example").unwrap(),
            }),
            ..DemographicsChanges::default()
        },
    }
}

async fn count_events(db: &TestDb) -> i64 {
    let mut conn = db.owner_connection().await;
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_command_round_trips_through_postgres_with_its_metadata() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let clinic = register_clinic(&store, "north").await;
    let patient = PatientId::new();
    let mrn = commands::registry::next_mrn(store.pool(), clinic)
        .await
        .unwrap()
        .mrn;
    let meta = admin_of(clinic);
    let committed = store
        .execute::<Patient>(
            &meta,
            patient.as_uuid(),
            register_patient(clinic, patient, mrn.clone(), "Ada"),
            Expect::Any,
        )
        .await
        .unwrap();
    assert_eq!(committed.version, 1);
    assert_eq!(committed.events.len(), 1);
    assert_eq!(committed.events[0].event_type, "PatientRegistered");
    assert_eq!(committed.stream_id.as_str(), format!("{clinic}:{patient}"));

    let (state, version) = store
        .load::<Patient>(clinic, patient.as_uuid())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, 1);
    assert!(state.is_registered());
    assert_eq!(state.mrn(), Some(&mrn));
    assert_eq!(state.clinic_id(), Some(clinic));

    let mut conn = db.owner_connection().await;
    let row = sqlx::query(
        "SELECT tenant_id, position, aggregate_id, metadata::jsonb AS metadata FROM events \
         WHERE aggregate_type = 'Patient'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(row.get::<Uuid, _>("tenant_id"), clinic.as_uuid());
    assert_eq!(
        row.get::<i64, _>("position"),
        committed.last_position().unwrap()
    );
    let metadata: serde_json::Value = row.get("metadata");
    assert_eq!(metadata["tenant_id"], clinic.to_string());
    assert_eq!(metadata["actor_id"], meta.actor.id.to_string());
    assert_eq!(metadata["actor_role"], "clinic_admin");
    assert_eq!(metadata["request_id"], meta.request_id.as_str());
    let occurred_at = metadata["occurred_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(occurred_at).is_ok());
    assert!(occurred_at.ends_with('Z'), "{occurred_at}");

    // A second command appends at the next sequence and a later position.
    let second = store
        .execute::<Patient>(
            &meta,
            patient.as_uuid(),
            rename("Augusta"),
            Expect::Version(1),
        )
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(second.last_position() > committed.last_position());
}

#[tokio::test]
async fn events_of_two_clinics_carry_their_own_tenant_id() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let a = register_clinic(&store, "alpha").await;
    let b = register_clinic(&store, "beta").await;
    for (clinic, names) in [(a, ["Ann", "Alf"]), (b, ["Bea", "Bob"])] {
        for name in names {
            register_in(&store, clinic, PatientId::new(), name).await;
        }
    }
    let mut conn = db.owner_connection().await;
    let rows = sqlx::query(
        "SELECT tenant_id, aggregate_id, metadata ->> 'tenant_id' AS meta_tenant FROM events ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        let tenant: Uuid = row.get("tenant_id");
        assert!(tenant == a.as_uuid() || tenant == b.as_uuid());
        assert_eq!(row.get::<String, _>("meta_tenant"), tenant.to_string());
        assert!(row
            .get::<String, _>("aggregate_id")
            .starts_with(&format!("{tenant}:")));
    }
    for clinic in [a, b] {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1")
            .bind(clinic.as_uuid())
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 3, "one clinic event and two patients");
    }
    // The MRNs are numbered per clinic: both clinics start at 1.
    let mrns: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT clinic_id, mrn FROM patient_mrns ORDER BY clinic_id, mrn")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(mrns.len(), 4);
    assert_eq!(
        mrns.iter()
            .filter(|(_, m)| *m == Mrn::from_number(1).to_string())
            .count(),
        2
    );
}

#[tokio::test]
async fn another_clinics_stream_is_not_found_and_nothing_is_written() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let a = register_clinic(&store, "home").await;
    let b = register_clinic(&store, "other").await;
    let patient = PatientId::new();
    register_in(&store, a, patient, "Ada").await;
    let before = count_events(&db).await;

    // Clinic B addresses A's patient id: it finds an empty stream of its own.
    let err = store
        .execute::<Patient>(
            &admin_of(b),
            patient.as_uuid(),
            rename("Mallory"),
            Expect::Any,
        )
        .await
        .unwrap_err();
    match err {
        CommandError::Domain(e) => assert_eq!(e.kind(), ErrorKind::NotFound),
        other => panic!("expected not found, got {other:?}"),
    }
    assert!(store
        .load::<Patient>(b, patient.as_uuid())
        .await
        .unwrap()
        .is_none());
    assert_eq!(count_events(&db).await, before);
    let (state, _) = store
        .load::<Patient>(a, patient.as_uuid())
        .await
        .unwrap()
        .unwrap();
    assert!(state.is_registered());
}

#[tokio::test]
async fn two_concurrent_commands_on_one_stream_give_one_success_and_one_conflict() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let clinic = register_clinic(&store, "race").await;
    let patient = PatientId::new();
    register_in(&store, clinic, patient, "Ada").await;

    // Hold back every append (SHARE blocks INSERT, not SELECT) so that both commands load the
    // same version before either can commit.
    let mut gate = db.owner_connection().await;
    gate.execute("BEGIN").await.unwrap();
    gate.execute("LOCK TABLE events IN SHARE MODE")
        .await
        .unwrap();

    let run = |given: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .execute::<Patient>(
                    &admin_of(clinic),
                    patient.as_uuid(),
                    rename(given),
                    Expect::Any,
                )
                .await
        })
    };
    let first = run("Grace");
    let second = run("Hedy");

    // Wait until both are blocked on the lock, i.e. both have loaded version 1.
    let mut watcher = db.owner_connection().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO events%'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two commands never met at the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gate.execute("COMMIT").await.unwrap();

    let results = [first.await.unwrap(), second.await.unwrap()];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(CommandError::Concurrency)))
        .count();
    assert_eq!((ok, conflicts), (1, 1), "{results:?}");
    let (_, version) = store
        .load::<Patient>(clinic, patient.as_uuid())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(version, 2, "exactly one of the two was appended");
}

#[tokio::test]
async fn a_stale_expected_version_is_refused_before_anything_is_written() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let clinic = register_clinic(&store, "stale").await;
    let patient = PatientId::new();
    register_in(&store, clinic, patient, "Ada").await;
    let before = count_events(&db).await;
    let err = store
        .execute::<Patient>(
            &admin_of(clinic),
            patient.as_uuid(),
            rename("Grace"),
            Expect::Version(7),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::VersionMismatch {
                expected: 7,
                actual: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(count_events(&db).await, before);
}

#[tokio::test]
async fn an_event_without_a_tenant_is_refused_by_the_database() {
    let db = TestDb::new().await;
    let pool = db.app_pool().await;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('Patient', $1, 1, 'PatientRegistered', '1.0', '{}', $2::json)";
    let err = sqlx::query(insert)
        .bind(format!("{}:{}", Uuid::new_v4(), Uuid::new_v4()))
        .bind(r#"{"actor_id":"x","request_id":"y"}"#)
        .execute(&pool)
        .await
        .unwrap_err();
    let db_err = err.as_database_error().expect("a database error");
    assert_eq!(
        db_err.code().as_deref(),
        Some("23502"),
        "not-null violation: {db_err}"
    );
    assert!(db_err.message().contains("tenant_id"));

    // Through postgres-es itself, with metadata that lacks the tenant.
    use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
    let repo = postgres_es::PostgresEventRepository::new(pool.clone());
    let event = SerializedEvent {
        aggregate_id: format!("{}:{}", Uuid::new_v4(), Uuid::new_v4()),
        sequence: 1,
        aggregate_type: "Patient".into(),
        event_type: "PatientDeactivated".into(),
        event_version: "1.0".into(),
        payload: serde_json::json!({"PatientDeactivated": {"reason": null}}),
        metadata: serde_json::json!({"actor_id": "someone"}),
    };
    assert!(repo.persist::<Patient>(&[event], None).await.is_err());

    // A tenant that does not own the stream id is refused too.
    let other = Uuid::new_v4();
    let err = sqlx::query(insert)
        .bind(format!("{}:{}", Uuid::new_v4(), Uuid::new_v4()))
        .bind(format!(r#"{{"tenant_id":"{other}"}}"#))
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("23514")
    );
    assert_eq!(count_events(&db).await, 0);
}

#[tokio::test]
async fn the_service_role_cannot_rewrite_or_delete_history() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    register_clinic(&store, "ledger").await;
    let pool = store.pool();
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(pool).await.unwrap_err();
        assert_eq!(
            err.as_database_error().unwrap().code().as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(role, "clinic_app");
    assert_eq!(count_events(&db).await, 1);
}

#[tokio::test]
async fn clinic_codes_are_unique_on_the_platform() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let first = register_clinic(&store, "same-code").await;
    let second = ClinicId::new();
    let err = store
        .execute::<Clinic>(
            &CommandMeta::new(second, Actor::system(), "setup"),
            second.as_uuid(),
            ClinicCommand::Register {
                clinic_id: second,
                name: NonEmptyText::parse("Copycat").unwrap(),
                code: ClinicCode::parse("SAME-CODE").unwrap(),
                time_zone: TimeZone::parse("UTC").unwrap(),
                plan: Plan::Trial,
                departments: vec![],
            },
            Expect::Any,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::ClinicCodeTaken), "{err:?}");
    assert_eq!(count_events(&db).await, 1);
    let code = ClinicCode::parse("same-code").unwrap();
    assert_eq!(
        commands::registry::clinic_by_code(store.pool(), &code)
            .await
            .unwrap(),
        Some(first)
    );
}

#[tokio::test]
async fn an_mrn_is_unique_within_its_clinic_only() {
    let db = TestDb::new().await;
    let store = store_with(&db, test_services()).await;
    let a = register_clinic(&store, "mrn-a").await;
    let b = register_clinic(&store, "mrn-b").await;
    let mrn = Mrn::from_number(42);
    let p1 = PatientId::new();
    store
        .execute::<Patient>(
            &admin_of(a),
            p1.as_uuid(),
            register_patient(a, p1, mrn.clone(), "Ada"),
            Expect::Any,
        )
        .await
        .unwrap();
    let p2 = PatientId::new();
    let err = store
        .execute::<Patient>(
            &admin_of(a),
            p2.as_uuid(),
            register_patient(a, p2, mrn.clone(), "Eve"),
            Expect::Any,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::MrnTaken), "{err:?}");
    assert!(store
        .load::<Patient>(a, p2.as_uuid())
        .await
        .unwrap()
        .is_none());
    // The same MRN in another clinic is fine.
    let p3 = PatientId::new();
    store
        .execute::<Patient>(
            &admin_of(b),
            p3.as_uuid(),
            register_patient(b, p3, mrn, "Bea"),
            Expect::Any,
        )
        .await
        .unwrap();
}
