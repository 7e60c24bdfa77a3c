//! Projection workers against PostgreSQL: commit order, crashes, concurrency, rebuilds, RLS.

use std::time::{Duration, Instant};

use domain::ids::{ClinicId, PatientId};
use domain::patient::{Demographics, PatientEvent};
use domain::values::{Mrn, PatientName, PersonName, Sex};
use projections::worker::{self, WorkerConfig};
use sqlx::{Executor, PgConnection, Row};
use uuid::Uuid;

use crate::helpers::{patient_body, spawn_app, spawn_app_with, Answer, TestApp, TestDb};

const TABLES: [(&str, &str); 7] = [
    ("clinics", "clinic_id"),
    ("staff", "clinic_id, staff_id"),
    ("patients", "clinic_id, patient_id"),
    ("patient_registrations", "clinic_id, bucket"),
    ("appointments", "clinic_id, appointment_id"),
    ("invoices", "clinic_id, invoice_id"),
    ("invoice_payments", "clinic_id, invoice_id, seq"),
];

/// Every read-model table's rows, as JSON, in key order.
async fn snapshot(conn: &mut PgConnection, schema: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (table, key) in TABLES {
        let rows: Option<serde_json::Value> = sqlx::query_scalar(&format!(
            "SELECT jsonb_agg(to_jsonb(t) ORDER BY {key}) FROM {schema}.{table} t"
        ))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        out.push(rows.unwrap_or(serde_json::Value::Null));
    }
    out
}

/// Plays the worker: runs batches of every projection until all events are applied.
async fn drain(conn: &mut PgConnection, db: &TestDb, config: &WorkerConfig) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for name in projections::PROJECTIONS {
            while worker::run_batch(conn, name, config)
                .await
                .unwrap()
                .is_some()
            {}
        }
        if db.projections_behind().await == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "could not drain the projections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drains every projection in batches of `batch_size` and takes a snapshot; then rebuilds
/// every read model from zero into fresh tables, drains again and takes another. (The commit
/// fence is cluster-wide: a transaction left open by a test running in parallel may stop the
/// rebuild short of the newest events, which a live worker then applies; drain plays that
/// worker.)
async fn drain_then_rebuild(
    db: &TestDb,
    owner: &mut PgConnection,
    batch_size: i64,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut conn = worker::connect(&db.owner).await.unwrap();
    let config = WorkerConfig {
        batch_size,
        ..Default::default()
    };
    drain(&mut conn, db, &config).await;
    let drained = snapshot(owner, "rm").await;
    let reports = projections::rebuild::rebuild(owner, None).await.unwrap();
    assert_eq!(reports.len(), 5);
    drain(&mut conn, db, &config).await;
    (drained, snapshot(owner, "rm").await)
}

async fn populated_app() -> (TestApp, String) {
    populate(spawn_app().await).await
}

async fn populate(app: TestApp) -> (TestApp, String) {
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    for (clinic, n) in [(&north, 6), (&south, 4)] {
        for i in 0..n {
            let p = app
                .post(
                    "/v1/patients",
                    &clinic.receptionist,
                    patient_body(&format!("P{i}")),
                )
                .await;
            assert_eq!(p.status, 201);
            let upd = app
                .patch(
                    &format!("/v1/patients/{}", p.id()),
                    &clinic.nurse,
                    serde_json::json!({"phone": "+1 555 0100"}),
                )
                .await;
            assert_eq!(upd.status, 200, "{upd:?}");
        }
        let dept = app
            .post(
                "/v1/clinic/departments",
                &clinic.admin,
                serde_json::json!({"name": "Dermatology"}),
            )
            .await;
        assert_eq!(dept.status, 201);
        let ren = app
            .patch(
                &format!("/v1/clinic/departments/{}", dept.id()),
                &clinic.admin,
                serde_json::json!({"name": "Heart"}),
            )
            .await;
        assert_eq!(ren.status, 200);
        let wh = app
            .put(
                &format!("/v1/staff/{}/working-hours", clinic.doctor_id),
                &clinic.admin,
                serde_json::json!({"mon": [{"start": "09:00", "end": "17:00"}]}),
            )
            .await;
        assert_eq!(wh.status, 200, "{wh:?}");
        let ci = app
            .post(
                &format!("/v1/appointments/{}/check-in", clinic.appointment_id),
                &clinic.nurse,
                serde_json::json!({}),
            )
            .await;
        assert_eq!(ci.status, 200);
    }
    (app, platform)
}

#[tokio::test]
async fn events_written_by_commands_appear_in_every_read_model() {
    let (app, platform) = populated_app().await;
    app.db.caught_up().await;
    let mut conn = app.db.owner_connection().await;
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rm.clinics), (SELECT count(*) FROM rm.staff), \
                (SELECT count(*) FROM rm.patients), (SELECT count(*) FROM rm.appointments)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(counts, (2, 10, 12, 2));
    let (patient_count, staff_count, appts, departments): (i32, i32, i32, serde_json::Value) = sqlx::query_as(
        "SELECT patient_count, staff_count, appointment_count, departments FROM rm.clinics WHERE code = 'north'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((patient_count, staff_count, appts), (7, 5, 1));
    // The five a new clinic starts with, then the one the test added (and renamed).
    assert_eq!(departments[5]["name"], "Heart");
    let phones: Vec<Option<String>> =
        sqlx::query_scalar("SELECT phone_digits FROM rm.patients WHERE given LIKE 'P%'")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert!(
        phones.iter().all(|p| p.as_deref() == Some("15550100")),
        "{phones:?}"
    );
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM rm.appointments")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(statuses, vec!["checked-in", "checked-in"]);

    // The lag endpoint says every projection is caught up.
    let ops = app
        .send(
            reqwest::Method::GET,
            "/v1/ops/projections",
            Some(&platform),
            None,
        )
        .await;
    assert_eq!(ops.status, 200, "{ops:?}");
    let max: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let list = ops.body.as_array().unwrap();
    assert_eq!(list.len(), projections::PROJECTIONS.len());
    for p in list {
        assert_eq!(p["lag_events"], 0, "{p}");
        assert_eq!(p["lag_events_capped"], false, "{p}");
        assert_eq!(p["lag_ms"], 0, "{p}");
        assert!(p["position"].as_i64().unwrap() <= max);
    }
}

/// The projections' status (`/v1/ops/projections`, every `/metrics` scrape) counts at most
/// a fixed number of unapplied events per projection: exact below it, capped above it, and
/// the statement reads no more index entries than that however long the backlog is. It
/// counted the whole backlog: after a rebuild of 1M events, 426–437 ms of PostgreSQL's time
/// per scrape while the workers caught up.
#[tokio::test]
async fn the_projection_status_counts_a_long_backlog_only_up_to_its_limit() {
    use projections::checkpoint::{self, LAG_COUNT_LIMIT, STATUS_BEGIN, STATUS_SQL};

    // No workers: the backlog stays.
    let db = TestDb::new().await;
    let mut owner = db.owner_connection().await;
    // About as many events, of about the size, as the benchmark's quick run: with a third of
    // them guessed to be behind, the planner chose a sequential scan there.
    let backlog = 30_000;
    let clinic = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'Patient', $1::text || ':' || gen_random_uuid(), 1, 'BacklogProbe', '1.0', \
                json_build_object('size', repeat('x', 700)), \
                json_build_object('tenant_id', $1::uuid, 'occurred_at', now() - interval '1 minute') \
         FROM generate_series(1, $2)",
    )
    .bind(clinic)
    .bind(backlog)
    .execute(&mut owner)
    .await
    .unwrap();
    sqlx::query("ANALYZE events")
        .execute(&mut owner)
        .await
        .unwrap();
    let pool = db.owner_pool().await;

    // Below the limit the count is exact; above it, the limit, flagged; the age is exact.
    let backlog = i64::from(backlog);
    assert!(backlog > LAG_COUNT_LIMIT);
    let expectations = [
        (LAG_COUNT_LIMIT, (LAG_COUNT_LIMIT, true)),
        (100, (100, true)),
        (backlog, (backlog, false)),
        (backlog + 1, (backlog, false)),
    ];
    let known: Vec<&str> = projections::PROJECTIONS.iter().map(|p| p.name).collect();
    for (limit, expected) in expectations {
        let statuses = if limit == LAG_COUNT_LIMIT {
            checkpoint::status(&pool).await.unwrap()
        } else {
            checkpoint::status_counting_up_to(&pool, limit)
                .await
                .unwrap()
        };
        let names: Vec<&str> = statuses.iter().map(|s| s.projection.name).collect();
        assert_eq!(names.len(), known.len(), "{names:?}");
        assert!(names.iter().all(|n| known.contains(n)), "{names:?}");
        for s in &statuses {
            assert_eq!(
                (s.lag_events, s.lag_events_capped),
                expected,
                "limit {limit}: {s:?}"
            );
            assert!(s.lag_ms >= 60_000, "the backlog's age is exact: {s:?}");
        }
    }

    // The statement, run as `status` runs it, reads the limit's worth of index entries per
    // projection, not the backlog; and caught up, next to nothing (not the table).
    let names = known;
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {STATUS_SQL}");
    let mut scanned = Vec::new();
    for caught_up in [false, true] {
        if caught_up {
            sqlx::query(
                "UPDATE projection_checkpoints \
                 SET (transaction_id, position) = (SELECT transaction_id, position FROM events \
                     ORDER BY transaction_id DESC, position DESC LIMIT 1)",
            )
            .execute(&mut owner)
            .await
            .unwrap();
        }
        let mut tx = pool.begin_with(STATUS_BEGIN).await.unwrap();
        let (plan,): (serde_json::Value,) = sqlx::query_as(&explain)
            .bind(LAG_COUNT_LIMIT + 1)
            .bind(&names)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        scanned.push((crate::helpers::rows_scanned(&plan[0]["Plan"]), plan));
    }
    let per_projection = |rows: f64| rows / names.len() as f64;
    let (behind, plan) = &scanned[0];
    assert!(
        per_projection(*behind) <= (LAG_COUNT_LIMIT + 20) as f64,
        "{behind} rows scanned for {} projections {backlog} events behind: {plan:#}",
        names.len()
    );
    let (caught_up, plan) = &scanned[1];
    assert!(
        per_projection(*caught_up) <= 10.0,
        "{caught_up} rows scanned for {} projections caught up: {plan:#}",
        names.len()
    );
    let statuses = checkpoint::status(&pool).await.unwrap();
    assert!(
        statuses
            .iter()
            .all(|s| (s.lag_events, s.lag_events_capped, s.lag_ms) == (0, false, 0)),
        "{statuses:?}"
    );
}

/// A worker killed in the middle of a batch, then restarted, leaves the read models identical
/// to a rebuild from zero.
#[tokio::test]
async fn a_crash_mid_batch_then_a_restart_equals_a_rebuild_from_zero() {
    // No in-process workers here: this test plays the worker itself.
    let mut settings = None;
    let (app, _) = populate(spawn_app_with(|s| settings = s.workers.take()).await).await;
    assert!(settings.is_some());
    let mut owner = app.db.owner_connection().await;
    // Let a worker crash half way through its first batch.
    let mut conn = worker::connect(&app.db.owner).await.unwrap();
    for name in projections::PROJECTIONS {
        let config = WorkerConfig {
            batch_size: 10_000,
            crash_after: Some(7),
            ..Default::default()
        };
        let err = worker::run_batch(&mut conn, name, &config)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{err}");
    }
    // The crashed worker's connection goes away (its open batch is rolled back).
    sqlx::Connection::close(conn).await.unwrap();
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(untouched, 0, "a crashed batch leaves nothing behind");
    let at_zero: i64 = sqlx::query_scalar("SELECT max(position) FROM projection_checkpoints")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(at_zero, 0);

    // Restart: small batches, to also cross many checkpoints; then a rebuild from zero.
    let (resumed, rebuilt) = drain_then_rebuild(&app.db, &mut owner, 7).await;
    assert_eq!(resumed, rebuilt);
    assert_eq!(
        resumed[2].as_array().map(Vec::len),
        Some(12),
        "{:?}",
        resumed[2]
    );
}

/// The read models, as the workers run them together.
fn read_models() -> Vec<projections::Projection> {
    projections::PROJECTIONS
        .iter()
        .copied()
        .filter(|p| p.rebuildable)
        .collect()
}

/// The read models' checkpoints: (name, position, the transaction that last moved it).
async fn checkpoints(owner: &mut PgConnection) -> Vec<(String, i64, String)> {
    sqlx::query_as(
        "SELECT name, position, xmin::text FROM projection_checkpoints \
         WHERE name NOT IN ('audit_chain', 'billing') ORDER BY name",
    )
    .fetch_all(owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_read_models_advance_together_one_transaction_per_batch() {
    let mut settings = None;
    let (app, _) = populate(spawn_app_with(|s| settings = s.workers.take()).await).await;
    assert!(settings.is_some());
    let mut owner = app.db.owner_connection().await;
    let models = read_models();
    assert_eq!(models.len(), 5);
    let mut conn = worker::connect(&app.db.owner).await.unwrap();

    // A crash in the middle of a group batch leaves every read model untouched.
    let crashing = WorkerConfig {
        batch_size: 10_000,
        crash_after: Some(7),
        ..Default::default()
    };
    let err = worker::group::run_group_batch(&mut conn, &models, &crashing)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    sqlx::Connection::close(conn).await.unwrap();
    let mut conn = worker::connect(&app.db.owner).await.unwrap();
    assert!(checkpoints(&mut owner).await.iter().all(|c| c.1 == 0));
    let untouched: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(untouched, 0);

    // Batches of 5: every batch moves the four checkpoints to one position, in one transaction.
    let fives = WorkerConfig {
        batch_size: 5,
        ..Default::default()
    };
    let mut batches = 0;
    loop {
        match worker::group::run_group_batch(&mut conn, &models, &fives)
            .await
            .unwrap()
        {
            worker::group::GroupBatch::Applied(batch) => {
                batches += 1;
                assert!(batch.applied <= 5);
                let now = checkpoints(&mut owner).await;
                assert!(
                    now.iter()
                        .all(|(_, pos, xid)| *pos == batch.position && *xid == now[0].2),
                    "{now:?}"
                );
            }
            // Idle also while a transaction anywhere on the server (another test's) could
            // still commit before the next event: wait until the whole log is applied.
            worker::group::GroupBatch::Idle => {
                let head: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
                    .fetch_one(&mut owner)
                    .await
                    .unwrap();
                if checkpoints(&mut owner).await.iter().all(|c| c.1 == head) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            worker::group::GroupBatch::Diverged => panic!("the checkpoints started together"),
        }
    }
    assert!(batches > 5, "{batches} batches");
    let together = snapshot(&mut owner, "rm").await;
    // The same rows as a rebuild from zero.
    projections::rebuild::rebuild(&mut owner, None)
        .await
        .unwrap();
    assert_eq!(together, snapshot(&mut owner, "rm").await);

    // One read model set back: the group does nothing and says so; the workers then run the
    // read models one by one until they meet, and end with the same rows.
    owner
        .execute("TRUNCATE rm.patients, rm.patient_registrations")
        .await
        .unwrap();
    owner
        .execute("UPDATE projection_checkpoints SET transaction_id = '0', position = 0 WHERE name = 'patients'")
        .await
        .unwrap();
    let before = checkpoints(&mut owner).await;
    assert_eq!(
        worker::group::run_group_batch(&mut conn, &models, &fives)
            .await
            .unwrap(),
        worker::group::GroupBatch::Diverged
    );
    assert_eq!(checkpoints(&mut owner).await, before);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = worker::spawn(
        api::infra::db::worker_pool(&app.db.login_as(api::infra::db::WORKER_ROLE))
            .await
            .unwrap(),
        app.db.owner.clone(),
        WorkerConfig {
            batch_size: 3,
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
        stopped,
    );
    app.db.projections_caught_up().await;
    let _ = stop.send(true);
    workers.await.unwrap();
    assert_eq!(together, snapshot(&mut owner, "rm").await);
}

#[tokio::test]
async fn the_log_is_read_in_commit_order_where_transaction_ids_gain_a_digit() {
    let mut settings = None;
    let (app, _) = populate(spawn_app_with(|s| settings = s.workers.take()).await).await;
    assert!(settings.is_some());
    let mut owner = app.db.owner_connection().await;
    // Give the events transaction ids 8, 11, 14, …: they cross 9 -> 10 and 99 -> 100, where
    // the order of their text differs from theirs ("11" < "8").
    owner
        .execute("UPDATE events SET transaction_id = (position * 3 + 5)::text::xid8")
        .await
        .unwrap();
    let all: Vec<i64> = sqlx::query_scalar("SELECT position FROM events ORDER BY position")
        .fetch_all(&mut owner)
        .await
        .unwrap();
    assert!(all.len() * 3 + 5 > 100, "{} events", all.len());
    let whole = projections::event::read_after(&mut owner, "0", 0, 10_000)
        .await
        .unwrap();
    assert_eq!(whole.iter().map(|e| e.position).collect::<Vec<_>>(), all);
    // Walked in batches of 7 from each batch's last event, as the workers and the rebuild do.
    let mut walked = Vec::new();
    let mut from = ("0".to_owned(), 0);
    loop {
        let batch = projections::event::read_after(&mut owner, &from.0, from.1, 7)
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        from = (last.transaction_id.clone(), last.position);
        walked.extend(batch.iter().map(|e| e.position));
    }
    assert_eq!(walked, all);
    // And the read models built from that walk are those of a rebuild.
    let (drained, rebuilt) = drain_then_rebuild(&app.db, &mut owner, 7).await;
    assert_eq!(drained, rebuilt);
}

#[tokio::test]
async fn two_workers_at_once_never_apply_an_event_twice() {
    let app = spawn_app().await;
    let db = &app.db;
    // A second, independent set of workers on the same database (the app runs the first).
    let second_pool = api::infra::db::worker_pool(&db.login_as(api::infra::db::WORKER_ROLE))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let second = worker::spawn(
        second_pool,
        db.owner.clone(),
        WorkerConfig {
            batch_size: 3,
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
        stopped,
    );
    // And a third that fights for batches directly, without a lease.
    let racer = {
        let options = db.owner.clone();
        tokio::spawn(async move {
            let mut conn = worker::connect(&options).await.unwrap();
            let config = WorkerConfig {
                batch_size: 2,
                ..Default::default()
            };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                for name in projections::PROJECTIONS {
                    let _ = worker::run_batch(&mut conn, name, &config).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "busy").await;
    let mut posts = Vec::new();
    for i in 0..30 {
        posts.push(app.post(
            "/v1/patients",
            &clinic.receptionist,
            patient_body(&format!("N{i}")),
        ));
    }
    for answer in futures::future::join_all(posts).await {
        assert_eq!(answer.status, 201);
    }
    racer.await.unwrap();
    db.caught_up().await;
    let _ = stop.send(true);
    second.await.unwrap();

    let mut conn = db.owner_connection().await;
    // A counter projection would count an event twice if it were applied twice.
    let (patients, counted): (i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rm.patients), (SELECT patient_count FROM rm.clinics)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((patients, counted), (31, 31));
    let failed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM projection_checkpoints WHERE failed_position IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(failed, 0);
}

fn registered(clinic: ClinicId, patient: PatientId, mrn: u64, given: &str) -> PatientEvent {
    PatientEvent::PatientRegistered {
        patient_id: patient,
        clinic_id: clinic,
        mrn: Mrn::from_number(mrn),
        demographics: Demographics {
            name: PatientName::new(
                PersonName::parse(given).unwrap(),
                PersonName::parse("Late").unwrap(),
            ),
            birth_date: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            sex: Sex::Other,
            phone: None,
            email: None,
            address: None,
            emergency_contact: None,
            insurance: None,
            allergies: vec![],
        },
    }
}

/// A transaction that takes a lower position but commits after a higher one is not skipped.
#[tokio::test]
async fn a_late_commit_with_a_lower_position_is_not_skipped() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "late").await;
    // B registers in another clinic: a registration by hand in A's clinic holds that clinic's
    // MRN counter row (it counts the clinic's patients) until A ends.
    let other = app.clinic(&platform, "late-other").await;
    app.db.caught_up().await;
    let clinic_id = ClinicId::from_uuid(clinic.id);

    // Transaction A appends an event (taking a position) and stays open.
    let early = PatientId::new();
    let mut held = app.db.owner_connection().await;
    held.execute("BEGIN").await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Patient', $1, 1, 'PatientRegistered', '1.0', $2, $3)",
    )
    .bind(format!("{clinic_id}:{early}"))
    .bind(serde_json::to_value(registered(clinic_id, early, 900, "Early")).unwrap())
    .bind(serde_json::json!({"tenant_id": clinic_id, "actor_id": Uuid::nil(), "actor_role": "system",
                             "request_id": "late-test", "occurred_at": app.now()}))
    .execute(&mut held)
    .await
    .unwrap();
    let early_position: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&mut held)
        .await
        .unwrap();

    // Transaction B commits a later position meanwhile.
    let later = app
        .post("/v1/patients", &other.receptionist, patient_body("Later"))
        .await;
    assert_eq!(later.status, 201);
    let later_position = later.body["position"].as_i64().unwrap();
    assert!(later_position > early_position);

    // The workers are woken by B's NOTIFY but must not move past A's open transaction.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut look = app.db.owner_connection().await;
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'patients'")
            .fetch_one(&mut look)
            .await
            .unwrap();
    assert!(
        checkpoint < early_position,
        "the checkpoint passed an open transaction"
    );

    held.execute("COMMIT").await.unwrap();
    app.db.caught_up().await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT given FROM rm.patients WHERE given IN ('Early', 'Later') ORDER BY given",
    )
    .fetch_all(&mut look)
    .await
    .unwrap();
    assert_eq!(names, vec!["Early", "Later"]);
}

#[tokio::test]
async fn row_level_security_blocks_a_deliberately_unscoped_query() {
    let (app, _) = populated_app().await;
    app.db.caught_up().await;
    let pool = app.db.app_pool().await;
    let north: Uuid = sqlx::query_scalar("SELECT clinic_id FROM clinic_codes WHERE code = 'north'")
        .fetch_one(&pool)
        .await
        .unwrap();
    // No clinic set: the service role sees nothing at all.
    for (table, _) in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM rm.{table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "rm.{table} leaked rows without a clinic");
    }
    // Scoped to North, a query that "forgets" WHERE clinic_id still sees only North.
    let mut tx = projections::scope::clinic_tx(&pool, ClinicId::from_uuid(north))
        .await
        .unwrap();
    let clinics: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT clinic_id FROM rm.patients")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(clinics, vec![north]);
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.appointments")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(all, 1);
    tx.commit().await.unwrap();
    // The scope ends with the transaction.
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(after, 0);
    // And the service role cannot write read models.
    let err = sqlx::query("DELETE FROM rm.patients")
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().unwrap().code().as_deref(),
        Some("42501")
    );
}

#[tokio::test]
async fn a_projection_stops_at_an_event_it_cannot_apply_and_reports_it() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "poison").await;
    app.db.caught_up().await;
    let clinic_id = ClinicId::from_uuid(clinic.id);
    let mut owner = app.db.owner_connection().await;
    // An event whose payload no version of the code can read.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Patient', $1, 2, 'PatientDemographicsUpdated', '1.0', \
                 '{\"PatientDemographicsUpdated\": {\"birth_date\": \"not a date\"}}', $2)",
    )
    .bind(format!("{clinic_id}:{}", Uuid::new_v4()))
    .bind(serde_json::json!({"tenant_id": clinic_id, "occurred_at": app.now()}))
    .execute(&mut owner)
    .await
    .unwrap();
    let poison: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    // A later, valid command.
    let after = app
        .post("/v1/patients", &clinic.receptionist, patient_body("After"))
        .await;
    assert_eq!(after.status, 201);

    let deadline = Instant::now() + Duration::from_secs(10);
    let ops = loop {
        let ops = app
            .send(
                reqwest::Method::GET,
                "/v1/ops/projections",
                Some(&platform),
                None,
            )
            .await;
        let list = ops.body.as_array().cloned().unwrap_or_default();
        let patients = list
            .iter()
            .find(|p| p["name"] == "patients")
            .cloned()
            .unwrap();
        if patients["failed_position"].as_i64() == Some(poison) {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "the failure was not reported: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let patients = ops.iter().find(|p| p["name"] == "patients").unwrap();
    assert!(
        patients["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot apply event"),
        "{patients}"
    );
    assert!(
        patients["position"].as_i64().unwrap() < poison,
        "it did not skip the event"
    );
    assert!(patients["lag_events"].as_i64().unwrap() >= 2);
    let skipped: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients WHERE given = 'After'")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(skipped, 0, "nothing past the poison event was applied");
    // Other projections go on.
    let appointments = ops.iter().find(|p| p["name"] == "appointments").unwrap();
    assert_eq!(appointments["failed_position"], serde_json::Value::Null);
}

/// `clinic rebuild` swaps fresh tables in while the live ones keep answering; the result is
/// identical to what the workers built.
#[tokio::test]
async fn clinic_rebuild_swaps_in_identical_tables() {
    let (app, _) = populated_app().await;
    app.db.caught_up().await;
    let mut owner = app.db.owner_connection().await;
    let before = snapshot(&mut owner, "rm").await;
    let indexes_before = index_definitions(&mut owner).await;
    let url = crate::cli::database_url(&app.db);
    let rebuild = move |args: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_clinic"))
                .arg("rebuild")
                .args(args)
                .env("DATABASE_URL", url)
                .env_remove("CLINIC_EMBEDDED_PG")
                .output()
                .unwrap()
        })
    };
    // No writer at all, or empty batches, are refused before anything is touched.
    for (args, flag) in [
        (&["--writers", "0"][..], "--writers"),
        (&["--batch-size", "0"][..], "--batch-size"),
        (&["--batch-size", "100001"][..], "--batch-size"),
    ] {
        let refused = rebuild(args).await.unwrap();
        assert_eq!(refused.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(flag),
            "{args:?}"
        );
    }
    // Three writers, each a share of the streams, in batches of 4 events: every read model
    // crosses many batch boundaries.
    let out = rebuild(&["--writers", "3", "--batch-size", "4"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("rebuilt ")).count(),
        5,
        "{stdout}"
    );
    assert!(stdout.contains("events/s"));
    let after = snapshot(&mut owner, "rm").await;
    assert_eq!(before, after);
    // The indexes the rebuild dropped for the load are back, the same ones, valid.
    assert_eq!(index_definitions(&mut owner).await, indexes_before);
    let invalid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'rm' AND NOT (i.indisvalid AND i.indisready)",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(invalid, 0);
    // Every swapped-in table was analysed: the planner has statistics from the first query.
    let unanalysed: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'rm' AND c.relkind = 'r' AND c.reltuples < 0 ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(unanalysed.is_empty(), "never analysed: {unanalysed:?}");
    // And vacuumed, so that the visibility map of the fresh pages is set (an `ANALYZE` alone
    // leaves it empty, and index-only scans then visit the heap). PostgreSQL's own count of
    // vacuums says so; how many pages it could mark depends on the snapshots the live app's
    // connections held meanwhile, so `relallvisible` is not compared (it once fell short on
    // a busy machine: 4 of 23 pages).
    let unvacuumed: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE n.nspname = 'rm' AND c.relkind = 'r' AND coalesce(s.vacuum_count, 0) = 0 \
         ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(unvacuumed.is_empty(), "never vacuumed: {unvacuumed:?}");
    // The tables keep the options they were created with (none): the load sets none (it
    // once set a fill factor of 50 and reset it here).
    let options: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'rm' AND c.relkind = 'r' AND c.reloptions IS NOT NULL ORDER BY 1",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(options.is_empty(), "options left: {options:?}");
    // The live app still reads and the workers still write after the swap.
    let p = app
        .post("/v1/patients", &app_token(&app).await, patient_body("Post"))
        .await;
    assert_eq!(p.status, 201);
    app.db.caught_up().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.patients WHERE given = 'Post'")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'rm_rebuild%'")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(leftovers, 0);
}

/// Every index of the read models: table, name and definition, in name order.
async fn index_definitions(conn: &mut PgConnection) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT tablename::text, indexname::text, indexdef FROM pg_indexes \
         WHERE schemaname = 'rm' ORDER BY 1, 2",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn app_token(app: &TestApp) -> String {
    app.login("receptionist@north.example").await
}

/// Sends `body` to `path`, expects `status`, moves the clock one second; the answer.
async fn step(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> Answer {
    let status = if method == "POST!" { 201 } else { 200 };
    let method = reqwest::Method::from_bytes(method.trim_end_matches('!').as_bytes()).unwrap();
    let answer = app.send(method, path, Some(token), Some(&body)).await;
    assert_eq!(answer.status, status, "{path}: {answer:?}");
    app.advance(chrono::Duration::seconds(1));
    answer
}

/// A rebuild reads its bulk stream by stream: a patient's registration and the update that
/// follows it batches later in commit order reach the rebuild together, so its row is written
/// once (no `UPDATE` of `rm.patients` in the whole rebuild, even in batches of 2), and the
/// tables equal the ones the workers built in commit order.
#[tokio::test]
async fn a_rebuild_writes_each_row_once_when_its_events_are_batches_apart_in_commit_order() {
    use serde_json::json;
    let mut workers = None;
    let app = spawn_app_with(|s| workers = s.workers.take()).await;
    let platform = app.platform_admin().await;
    let c = app.clinic(&platform, "oncewritten").await;
    let mut ids = Vec::new();
    for given in ["Ana", "Bea", "Cleo", "Dora"] {
        let path = "/v1/patients";
        ids.push(
            step(&app, "POST!", path, &c.receptionist, patient_body(given))
                .await
                .id(),
        );
    }
    for id in &ids {
        let path = format!("/v1/patients/{id}");
        step(
            &app,
            "PATCH",
            &path,
            &c.nurse,
            json!({"phone": "+1 555 0199"}),
        )
        .await;
    }
    let mut owner = app.db.owner_connection().await;
    let mut conn = worker::connect(&app.db.owner).await.unwrap();
    let ones = WorkerConfig {
        batch_size: 1,
        ..Default::default()
    };
    drain(&mut conn, &app.db, &ones).await;
    let incremental = snapshot(&mut owner, "rm").await;
    fence_past_the_log(&mut owner).await;
    projections::rebuild::rebuild_with(&mut owner, Default::default(), None, 2)
        .await
        .unwrap();
    assert_eq!(snapshot(&mut owner, "rm").await, incremental);
    // The rebuild's own writes, from the statistics of the table it built (now rm.patients).
    owner
        .execute("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    owner.execute("SELECT 1").await.unwrap();
    let (inserted, updated, rows): (i64, i64, i64) = sqlx::query_as(
        "SELECT n_tup_ins, n_tup_upd, (SELECT count(*) FROM rm.patients) \
         FROM pg_stat_user_tables WHERE relid = 'rm.patients'::regclass",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!((inserted, updated), (rows, 0), "{rows} rows");
}

/// Waits until a rebuild's fence (the oldest open transaction, cluster-wide) is above every
/// event, so that a rebuild's bulk holds them all rather than leaving some to the swap's
/// catch-up in commit order: transactions other tests hold open are waited out.
async fn fence_past_the_log(owner: &mut PgConnection) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let above: bool = sqlx::query_scalar(
            "SELECT pg_snapshot_xmin(pg_current_snapshot()) > (SELECT max(transaction_id) FROM events)",
        )
        .fetch_one(&mut *owner)
        .await
        .unwrap();
        if above {
            return;
        }
        assert!(Instant::now() < deadline, "a transaction stayed open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A rebuild of one read model of one aggregate type (`clinic rebuild --projection patients`)
/// reads only that type's streams, and builds the same tables.
#[tokio::test]
async fn a_rebuild_of_one_read_model_reads_only_its_own_streams() {
    let (app, _) = populated_app().await;
    app.db.caught_up().await;
    let mut owner = app.db.owner_connection().await;
    let before = snapshot(&mut owner, "rm").await;
    fence_past_the_log(&mut owner).await;
    let reports = projections::rebuild::rebuild(&mut owner, Some("patients"))
        .await
        .unwrap();
    let (patient_events, all): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE aggregate_type = 'Patient'), count(*) FROM events",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(
        patient_events > 0 && patient_events < all,
        "{patient_events} of {all}"
    );
    // Events a live worker appends after the fence are read in commit order, whatever their type.
    let read = reports[0].events as i64;
    assert!(
        read >= patient_events && read < all,
        "read {read}: {patient_events} of {all}"
    );
    assert_eq!(reports[0].applied as i64, patient_events);
    app.db.caught_up().await;
    assert_eq!(snapshot(&mut owner, "rm").await, before);
}

/// The read models the workers build one event at a time (each event its own batch, so every
/// change after the first goes through the row-patching `UPDATE`) equal those a rebuild
/// builds from the same events in one pass (where each row's events are merged in memory
/// before one `INSERT`), and those of batches of 4: for every kind of event.
#[tokio::test]
async fn incremental_and_rebuilt_read_models_are_identical() {
    use serde_json::json;
    // No in-process workers: this test plays the worker itself.
    let mut workers = None;
    let app = spawn_app_with(|s| workers = s.workers.take()).await;
    assert!(workers.is_some());
    let platform = app.platform_admin().await;
    let c = app.clinic(&platform, "edges").await;
    let other = app.clinic(&platform, "others").await;
    let (desk, admin, nurse_token) = (&c.receptionist, &c.admin, &c.nurse);

    // Patients: updated twice, merged, deactivated after an update.
    let mut patients = Vec::new();
    for given in ["Una", "Dos", "Tres"] {
        patients.push(
            step(&app, "POST!", "/v1/patients", desk, patient_body(given))
                .await
                .id(),
        );
    }
    let (una, dos, tres) = (patients[0], patients[1], patients[2]);
    let named = json!({"name": {"given": "Uma", "family": "Zed"}, "email": "uma@example.com"});
    for body in [json!({"phone": "+1 555 0101"}), named] {
        step(
            &app,
            "PATCH",
            &format!("/v1/patients/{una}"),
            nurse_token,
            body,
        )
        .await;
    }
    step(
        &app,
        "POST",
        &format!("/v1/patients/{dos}/merge"),
        admin,
        json!({"into": una}),
    )
    .await;
    let moved = json!({"birth_date": "1970-01-01", "sex": "male"});
    step(
        &app,
        "PATCH",
        &format!("/v1/patients/{tres}"),
        nurse_token,
        moved,
    )
    .await;
    step(
        &app,
        "POST",
        &format!("/v1/patients/{tres}/deactivate"),
        admin,
        json!({}),
    )
    .await;

    // Appointments: rescheduled twice then cancelled; checked in, started and completed.
    let a = c.appointment_id;
    for days in [4, 5] {
        let start = app.future(days, 10);
        let body = json!({"start": start, "end": start + chrono::Duration::minutes(30)});
        step(
            &app,
            "POST",
            &format!("/v1/appointments/{a}/reschedule"),
            desk,
            body,
        )
        .await;
    }
    let cancel = json!({"reason": "patient called in sick"});
    step(
        &app,
        "POST",
        &format!("/v1/appointments/{a}/cancel"),
        desk,
        cancel,
    )
    .await;
    let b = other.appointment_id;
    for what in ["check-in", "start", "complete"] {
        step(
            &app,
            "POST",
            &format!("/v1/appointments/{b}/{what}"),
            &other.doctor,
            json!({}),
        )
        .await;
    }

    // Invoices: a draft given a line, finalised, paid in two parts and refunded in part (its
    // status and balance follow); another voided as a draft.
    let invoice = |hour: u32| {
        let (app, c) = (&app, &c);
        async move {
            crate::invoices::billed_visit(app, c, c.patient_id, c.doctor_id, app.future(6, hour))
                .await
                .invoice_id
        }
    };
    let (billed, voided) = (invoice(14).await, invoice(15).await);
    let ecg = json!({"description": "ECG", "amount": 2500});
    let bill = |what: &str| format!("/v1/invoices/{billed}/{what}");
    step(&app, "POST", &bill("lines"), desk, ecg).await;
    step(&app, "POST", &bill("finalise"), desk, json!({})).await;
    for (key, amount) in [("pay-1", 3000), ("pay-2", 5500)] {
        let body = json!({"amount": amount, "method": "cash"});
        let paid = app
            .send_with(
                reqwest::Method::POST,
                &bill("payments"),
                Some(desk),
                Some(&body),
                &[("Idempotency-Key", key)],
            )
            .await;
        assert_eq!(paid.status, 200, "{paid:?}");
        app.advance(chrono::Duration::seconds(1));
    }
    let refund = json!({"amount": 1000, "reason": "goodwill"});
    step(&app, "POST", &bill("refunds"), admin, refund).await;
    let void = json!({"reason": "billed in error"});
    let path = format!("/v1/invoices/{voided}/void");
    step(&app, "POST", &path, admin, void).await;

    // Staff: profile twice, working hours, time off twice, role, deactivated and back.
    let dept = step(
        &app,
        "POST!",
        "/v1/clinic/departments",
        admin,
        json!({"name": "Dermatology"}),
    )
    .await;
    let d = c.doctor_id;
    let staff = format!("/v1/staff/{d}");
    let profile = json!({"specialty": "cardiology", "department_id": dept.id()});
    step(&app, "PATCH", &staff, admin, profile).await;
    step(&app, "PATCH", &staff, admin, json!({"name": "Doc Renamed"})).await;
    let hours = json!({"mon": [{"start": "08:00", "end": "12:00"}]});
    step(&app, "PUT", &format!("{staff}/working-hours"), admin, hours).await;
    for (days, reason) in [(10, "congress"), (20, "leave")] {
        let start = app.future(days, 8);
        let body =
            json!({"start": start, "end": start + chrono::Duration::hours(4), "reason": reason});
        step(&app, "POST", &format!("{staff}/time-off"), admin, body).await;
    }
    let nurse: Uuid =
        sqlx::query_scalar("SELECT id FROM accounts WHERE email = 'nurse@edges.example'")
            .fetch_one(&mut app.db.owner_connection().await)
            .await
            .unwrap();
    let role = json!({"role": "receptionist"});
    step(&app, "PUT", &format!("/v1/staff/{nurse}/role"), admin, role).await;
    for what in ["deactivate", "reactivate"] {
        step(
            &app,
            "POST",
            &format!("/v1/staff/{nurse}/{what}"),
            admin,
            json!({}),
        )
        .await;
    }

    // The clinic: settings, a department renamed then closed, the plan.
    let settings = json!({"name": "Edges Renamed", "slot_minutes": 20});
    step(&app, "PATCH", "/v1/clinic", admin, settings).await;
    let path = format!("/v1/clinic/departments/{}", dept.id());
    step(&app, "PATCH", &path, admin, json!({"name": "Heart"})).await;
    step(&app, "PATCH", &path, admin, json!({"closed": true})).await;
    let plan = json!({"plan": "enterprise", "reason": "contract"});
    step(
        &app,
        "PUT",
        &format!("/v1/clinics/{}/plan", c.id),
        &platform,
        plan,
    )
    .await;

    let mut owner = app.db.owner_connection().await;
    let (incremental, rebuilt) = drain_then_rebuild(&app.db, &mut owner, 1).await;
    assert_eq!(incremental, rebuilt);

    // Batches of 4, from zero, into the live tables.
    for (table, _) in TABLES {
        owner
            .execute(format!("TRUNCATE rm.{table}").as_str())
            .await
            .unwrap();
    }
    owner
        .execute("UPDATE projection_checkpoints SET transaction_id = '0', position = 0 WHERE name <> 'audit_chain'")
        .await
        .unwrap();
    let fours = WorkerConfig {
        batch_size: 4,
        ..Default::default()
    };
    let mut conn = worker::connect(&app.db.owner).await.unwrap();
    drain(&mut conn, &app.db, &fours).await;
    assert_eq!(incremental, snapshot(&mut owner, "rm").await);

    // A rebuild that reads the log ahead on a second connection and writes with two more
    // beside the first (as `clinic rebuild` does with one), in batches of 3: every batch
    // reaches the writers, each stream in order on one of them.
    let helpers = projections::rebuild::Helpers {
        reader: Some(worker::connect(&app.db.owner).await.unwrap()),
        writers: vec![
            worker::connect(&app.db.owner).await.unwrap(),
            worker::connect(&app.db.owner).await.unwrap(),
        ],
    };
    let reports = projections::rebuild::rebuild_with(&mut owner, helpers, None, 3)
        .await
        .unwrap();
    assert!(reports[0].events > 9, "{} events", reports[0].events);
    drain(&mut conn, &app.db, &fours).await;
    assert_eq!(incremental, snapshot(&mut owner, "rm").await);

    // The edge cases did reach the read models.
    let rows: Vec<(String, String, Option<Uuid>, Option<String>)> = sqlx::query_as(
        "SELECT given, status, merged_into, email FROM rm.patients WHERE patient_id = ANY($1) ORDER BY given",
    )
    .bind(&patients)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("Dos".into(), "merged".into(), Some(una), None),
            ("Tres".into(), "inactive".into(), None, None),
            (
                "Uma".into(),
                "active".into(),
                None,
                Some("uma@example.com".into())
            ),
        ]
    );
    let (time_off, active): (serde_json::Value, bool) =
        sqlx::query_as("SELECT time_off, (SELECT active FROM rm.staff WHERE staff_id = $2) FROM rm.staff WHERE staff_id = $1")
            .bind(d)
            .bind(nurse)
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(time_off.as_array().map(Vec::len), Some(2));
    assert!(active);
    let statuses: Vec<String> =
        sqlx::query_scalar("SELECT status FROM rm.appointments ORDER BY status")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        vec!["cancelled", "fulfilled", "fulfilled", "fulfilled"]
    );
    let invoices: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT status, total, paid, refunded, balance, jsonb_array_length(lines)::int8 \
         FROM rm.invoices ORDER BY status",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        invoices,
        vec![
            ("partially-paid".into(), 8500, 8500, 1000, 1000, 2),
            ("void".into(), 6000, 0, 0, 0, 1),
        ]
    );
    let kinds: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, amount FROM rm.invoice_payments ORDER BY seq")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    assert_eq!(
        kinds,
        vec![
            ("payment".into(), 3000),
            ("payment".into(), 5500),
            ("refund".into(), 1000)
        ]
    );
}

/// The read models' batch updates find a row by clinic and id (issue 15): the store allows
/// one entity id in two clinics (streams are `{clinic}:{id}`), so a patient renamed, then
/// merged away in clinic A leaves clinic B's patient of the same id as it was.
#[tokio::test]
async fn an_entity_id_used_in_two_clinics_is_updated_in_its_own_clinic_only() {
    use commands::Expect;
    use domain::patient::{Patient, PatientCommand};

    use crate::event_store::{admin_of, register_clinic, register_in, rename};

    let db = TestDb::new().await;
    let store = crate::helpers::store_with(&db, crate::helpers::test_services()).await;
    let a = register_clinic(&store, "sameida").await;
    let b = register_clinic(&store, "sameidb").await;
    let shared = PatientId::new();
    let survivor = PatientId::new();
    for (clinic, id, given) in [
        (a, shared, "Anna"),
        (b, shared, "Berta"),
        (a, survivor, "Ada"),
    ] {
        register_in(&store, clinic, id, given).await;
    }
    let mut owner = db.owner_connection().await;
    let config = WorkerConfig::default();
    let mut conn = db.owner_connection().await;
    drain(&mut conn, &db, &config).await;
    let b_before = patient_row(&mut owner, b, shared).await;
    // Each in its own batch, and then both in one batch.
    store
        .execute::<Patient>(&admin_of(a), shared.as_uuid(), rename("Anja"), Expect::Any)
        .await
        .unwrap();
    drain(&mut conn, &db, &config).await;
    store
        .execute::<Patient>(
            &admin_of(a),
            shared.as_uuid(),
            PatientCommand::MergeInto { survivor },
            Expect::Any,
        )
        .await
        .unwrap();
    drain(&mut conn, &db, &config).await;
    let a_after = patient_row(&mut owner, a, shared).await;
    assert_eq!(a_after["given"], "Anja", "{a_after}");
    assert_ne!(a_after["merged_into"], serde_json::Value::Null, "{a_after}");
    assert_eq!(patient_row(&mut owner, b, shared).await, b_before);
    assert_eq!(b_before["given"], "Berta", "{b_before}");
}

async fn patient_row(
    conn: &mut PgConnection,
    clinic: ClinicId,
    id: PatientId,
) -> serde_json::Value {
    sqlx::query_scalar(
        "SELECT to_jsonb(p) FROM rm.patients p WHERE clinic_id = $1 AND patient_id = $2",
    )
    .bind(clinic.as_uuid())
    .bind(id.as_uuid())
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A read transaction ends with a `ROLLBACK` sent with the pool's check of the returned
/// connection (`projections::scope::end_read`), not with a `COMMIT` of its own. The next user
/// of that connection must still find no transaction open and no clinic set: on a pool of one
/// connection, reads of two clinics and the dashboard's one statement alternate with probes.
#[tokio::test]
async fn a_finished_read_leaves_its_connection_outside_any_transaction_and_clinic() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "rbnorth").await;
    let south = app.clinic(&platform, "rbsouth").await;
    app.db.caught_up().await;
    let pool = app.db.app_pool_of(1).await;
    for clinic in [north.id, south.id, north.id, south.id] {
        let id = ClinicId::from_uuid(clinic);
        let view = projections::clinics::clinic(&pool, id).await.unwrap();
        assert_eq!(view.map(|v| v.clinic_id), Some(clinic));
        let dashboard = projections::dashboard::dashboard(&pool, id, None, app.now(), true)
            .await
            .unwrap();
        assert_eq!(
            dashboard.days.len(),
            projections::dashboard::DASHBOARD_DAYS as usize
        );
        // A simple query: outside a transaction block, its implicit transaction starts with
        // it, so `now()` is the statement's start; inside a block left open, it is earlier.
        let probe = sqlx::raw_sql(
            "SELECT now() = statement_timestamp(), \
                    nullif(current_setting('app.clinic_id', true), '')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let outside: bool = probe.get(0);
        let setting: Option<String> = probe.get(1);
        assert!(
            outside,
            "the read's transaction is still open after reading {clinic}"
        );
        assert_eq!(
            setting, None,
            "the clinic leaked out of the read of {clinic}"
        );
    }
}

/// The page reads (a list of patients, a name search, a page of appointments) and
/// the dashboard are planned once per connection: PostgreSQL's own count of plans on the
/// connection (`pg_prepared_statements`) shows no custom plan after many executions. Left
/// to choose, it planned each of them anew every time (their generic estimates looked dearer,
/// because of the `LIMIT` parameter), and planning cost more than running them.
#[tokio::test]
async fn page_reads_are_planned_once_per_connection_not_at_every_execution() {
    use projections::appointments::{appointments, AppointmentFilter};
    use projections::patients::{search_patients, PatientQuery, PatientSearch};

    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "plans").await;
    for n in 0..3 {
        let answer = app
            .post(
                "/v1/patients",
                &clinic.admin,
                patient_body(&format!("Ann{n}")),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }
    app.db.caught_up().await;
    let id = ClinicId::from_uuid(clinic.id);
    let pool = app.db.app_pool_of(1).await;
    let searches = [PatientSearch::All, PatientSearch::Name("ann".into())];
    for _ in 0..8 {
        for search in &searches {
            let query = PatientQuery {
                search: search.clone(),
                doctor: None,
                after: None,
                limit: 20,
            };
            search_patients(&pool, id, &query).await.unwrap();
        }
        let filter = AppointmentFilter {
            doctor: None,
            patient: None,
            status: None,
            appointment_type: None,
            from: Some(app.now() - chrono::Duration::days(7)),
            to: None,
            after: None,
            limit: 20,
        };
        appointments(&pool, id, &filter).await.unwrap();
        projections::dashboard::dashboard(&pool, id, None, app.now(), true)
            .await
            .unwrap();
    }
    let plans: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE (statement LIKE '%FROM rm.patients p%' OR statement LIKE '%FROM rm.appointments a%') \
           AND statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The list, the name search, the appointment list and the dashboard.
    assert!(plans.len() >= 4, "prepared statements: {plans:?}");
    for (statement, generic, custom) in &plans {
        assert_eq!(
            (*generic, *custom),
            (8, 0),
            "planned {custom} times in 8 executions: {statement}"
        );
    }
}

/// The service's connections (`clinic_app`) never plan a parallel read. At 50,000
/// appointments in one clinic of three (the benchmark's database), the generic plan of a page
/// of appointments (which assumes its `LIMIT` keeps a tenth of them) was a Gather Merge over
/// a parallel index scan, and starting the worker took 6-7 ms of a 9.7 ms read (0.3 ms
/// serial). The setting is the role's, so it holds for every pool that logs in as the
/// service, whatever its options.
#[tokio::test]
async fn the_services_connections_never_start_parallel_workers() {
    let db = TestDb::new().await;
    let pool = db.app_pool_of(1).await;
    let setting: String = sqlx::query_scalar("SHOW max_parallel_workers_per_gather")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(setting, "0");
    // The projection workers' role keeps the server's default.
    let worker_login = db.login_as(projections::worker::WORKER_ROLE);
    let mut worker = sqlx::ConnectOptions::connect(&worker_login).await.unwrap();
    let setting: String = sqlx::query_scalar("SHOW max_parallel_workers_per_gather")
        .fetch_one(&mut worker)
        .await
        .unwrap();
    assert_ne!(setting, "0");
}
