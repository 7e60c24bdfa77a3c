//! The write path: one transaction per command, the MRN taken inside it, the rows exactly as
//! postgres-es writes them, and the concurrency guarantees under racing commands.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use commands::patients::{self, PatientsError};
use commands::{CommandError, EventStore, Expect};
use domain::clinic::Clinic;
use domain::ids::ClinicId;
use domain::patient::{Demographics, DemographicsChanges, Patient, PatientCommand, PatientName};
use domain::values::{PersonName, Sex};
use sqlx::Row;
use uuid::Uuid;

use crate::event_store::{admin_of, register_clinic};
use crate::helpers::{patient_body, rows_read, spawn_app_with, test_services, TestDb};

fn demographics(given: &str) -> Demographics {
    Demographics {
        name: PatientName {
            given: PersonName::parse(given).unwrap(),
            family: PersonName::parse("Example").unwrap(),
        },
        birth_date: chrono::NaiveDate::from_ymd_opt(1980, 5, 17).unwrap(),
        sex: Sex::Female,
        phone: None,
        email: None,
        address: None,
        emergency_contact: None,
        insurance: None,
        allergies: Vec::new(),
    }
}

/// A fresh database, a store whose pool is large enough for `n` commands at once, and a
/// clinic registered with `code`.
async fn clinic_with_pool(n: u32, code: &str) -> (TestDb, EventStore, ClinicId) {
    let db = TestDb::new().await;
    let store = EventStore::new(db.app_pool_of(n).await, test_services());
    let clinic = register_clinic(&store, code).await;
    (db, store, clinic)
}

/// How many patient events the clinic `$1` has.
const PATIENT_EVENTS: &str =
    "SELECT count(*) FROM events WHERE tenant_id = $1 AND aggregate_type = 'Patient'";

/// One `bigint` the owner reads with `sql`, whose `$1` is the clinic.
async fn owner_count(db: &TestDb, sql: &str, clinic: ClinicId) -> i64 {
    let query = sqlx::query_scalar(sql).bind(clinic.as_uuid());
    query
        .fetch_one(&mut db.owner_connection().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_mrn_is_taken_in_the_transaction_that_appends_the_registration() {
    let (db, store, clinic) = clinic_with_pool(2, "one-tx").await;
    let registered =
        patients::register(&store, &admin_of(clinic), Expect::Any, demographics("Ada"))
            .await
            .unwrap();
    let mut conn = db.owner_connection().await;
    let row = sqlx::query(
        "SELECT (SELECT xmin::text FROM mrn_counters WHERE clinic_id = $1) AS counter_xid, \
                (SELECT (transaction_id::text::bigint % 4294967296)::text FROM events \
                  WHERE position = $2) AS event_xid",
    )
    .bind(clinic.as_uuid())
    .bind(registered.committed.last_position().unwrap())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let counter: String = row.get("counter_xid");
    let event: String = row.get("event_xid");
    assert_eq!(
        counter, event,
        "the counter moved in the append's transaction"
    );
}

/// The write-side state that follows from events is kept by two row triggers on `events`,
/// neither with a `WHEN` clause: PostgreSQL rebuilds a `WHEN` clause from its stored node tree
/// for every inserting statement, and the six the triggers had cost every append about 20 µs
/// of CPU (migration `20261208000001`). The caller's trigger fires first and keeps the
/// appender's rights: a role that may append but not claim (the billing process manager's)
/// still cannot register a patient's MRN, while the service's role can.
#[tokio::test]
async fn an_append_fires_two_triggers_without_when_clauses_and_keeps_the_appenders_rights() {
    let (db, _store, clinic) = clinic_with_pool(2, "triggers").await;
    let mut conn = db.owner_connection().await;
    let triggers: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT t.tgname::text, t.tgqual IS NOT NULL, p.prosecdef \
         FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
         WHERE t.tgrelid = 'events'::regclass AND NOT t.tgisinternal ORDER BY t.tgname",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let expected = |name: &str, definer: bool| (name.to_string(), false, definer);
    assert_eq!(
        triggers,
        [
            expected("events_as_caller", false),
            expected("events_as_owner", true)
        ],
        "(name, has a WHEN clause, runs as the owner), in firing order"
    );

    let tenant = clinic.as_uuid();
    let append = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('Patient', '{tenant}:' || gen_random_uuid(), 1, 'PatientRegistered', '1.0', \
                 '{{\"PatientRegistered\": {{\"mrn\": \"MRN-777777\"}}}}', \
                 json_build_object('tenant_id', '{tenant}'))"
    );
    let claimed = "SELECT count(*) FROM patient_mrns WHERE mrn = 'MRN-777777'";
    for (role, allowed) in [("clinic_billing", false), (api::infra::db::APP_ROLE, true)] {
        // `SET LOCAL`: the role ends with the transaction, which is rolled back either way.
        let mut tx = sqlx::Connection::begin(&mut conn).await.unwrap();
        sqlx::query(&format!("SET LOCAL ROLE {role}"))
            .execute(&mut *tx)
            .await
            .unwrap();
        match sqlx::query(&append).execute(&mut *tx).await {
            Ok(_) => {
                assert!(allowed, "{role} claimed an MRN");
                sqlx::query("RESET ROLE").execute(&mut *tx).await.unwrap();
                let n: i64 = sqlx::query_scalar(claimed)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
                assert_eq!(n, 1, "{role}'s registration claimed its MRN");
            }
            Err(e) => {
                let code = e.as_database_error().and_then(|d| d.code());
                assert!(!allowed, "{role}: {e}");
                assert_eq!(code.as_deref(), Some("42501"), "{role}: {e}");
            }
        }
        tx.rollback().await.unwrap();
    }
    let n: i64 = sqlx::query_scalar(claimed)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0, "both appends were rolled back");
}

#[tokio::test]
async fn a_registration_over_http_commits_one_transaction() {
    // No workers: every transaction of the database is the API's (and this test's reads).
    let app = spawn_app_with(|s| s.workers = None).await;
    let platform = app.platform_admin().await;
    let desk = app.clinic(&platform, "tx-count").await.receptionist;
    let n = 20;
    // Autovacuum's ANALYZE of the fresh tables commits in this database too, and under a
    // parallel test run it can land inside the window: turn it off for every table.
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "DO $$ DECLARE t regclass; BEGIN \
           FOR t IN SELECT c.oid::regclass FROM pg_class c \
                    JOIN pg_namespace n ON n.oid = c.relnamespace \
                    WHERE c.relkind = 'r' AND n.nspname IN ('public', 'rm') LOOP \
             EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', t); \
           END LOOP; END $$",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    // One warm-up request, so the connections and prepared statements exist.
    assert_eq!(
        app.post("/v1/patients", &desk, patient_body("Warm"))
            .await
            .status,
        201
    );
    let mut stats = CommitCounter {
        conn: app.db.owner_connection().await,
        reads: 0,
    };
    let before = stats.settled().await;
    for i in 0..n {
        let answer = app
            .post("/v1/patients", &desk, patient_body(&format!("P{i}")))
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let after = stats.settled().await;
    // Per POST: the authentication's account read, the command's transaction, and the
    // `NOTIFY` that wakes the workers after it commits (not flushed; one for all the commands
    // that commit while it is on its way, so one per POST only when they come one at a time).
    // The old write path needed about three more per POST (the MRN, the load and the
    // read-back of positions each ran on their own).
    let per_post = (after - before) as f64 / n as f64;
    assert!(
        per_post < 3.5,
        "{per_post} transactions per POST ({before} -> {after})"
    );
}

/// Reads `xact_commit` of the database, less this reader's own reads (one transaction each).
struct CommitCounter {
    conn: sqlx::PgConnection,
    reads: i64,
}

impl CommitCounter {
    /// The count once every backend has published its own. A backend reports when it goes
    /// idle, but at most once a second: one that reported less than a second ago waits for
    /// PostgreSQL's idle interval (`PGSTAT_IDLE_INTERVAL`, 10 s) instead. So read every
    /// second until the count has not moved for longer than that.
    async fn settled(&mut self) -> i64 {
        const QUIET: Duration = Duration::from_secs(12);
        let deadline = Instant::now() + Duration::from_secs(90);
        let (mut last, mut quiet_since) = (i64::MIN, Instant::now());
        loop {
            let published: i64 = sqlx::query_scalar(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            )
            .fetch_one(&mut self.conn)
            .await
            .unwrap();
            // What this read saw includes at most the reads before it.
            let others = published - self.reads;
            self.reads += 1;
            if others != last {
                quiet_since = Instant::now();
            }
            if quiet_since.elapsed() >= QUIET {
                return others;
            }
            assert!(
                Instant::now() < deadline,
                "xact_commit never settled (last {last}, now {others})"
            );
            last = others;
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
}

/// `n` registrations in `clinic` at once (given names `{prefix}0`, `{prefix}1`, …), each
/// answer in the order they were sent.
async fn register_at_once(
    store: &EventStore,
    clinic: ClinicId,
    n: usize,
    prefix: &str,
) -> Vec<Result<patients::Registered, PatientsError>> {
    futures::future::join_all((0..n).map(|i| async move {
        patients::register(
            store,
            &admin_of(clinic),
            Expect::Any,
            demographics(&format!("{prefix}{i}")),
        )
        .await
    }))
    .await
}

#[tokio::test]
async fn thirty_two_concurrent_registrations_get_thirty_two_distinct_mrns() {
    let (db, store, clinic) = clinic_with_pool(32, "crowd").await;
    let mut positions = HashSet::new();
    for registered in register_at_once(&store, clinic, 32, "P").await {
        let registered = registered.expect("every registration commits");
        positions.insert(registered.committed.last_position().unwrap());
    }
    assert_eq!(positions.len(), 32);
    let mut conn = db.owner_connection().await;
    let (events, mrns, distinct): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'PatientRegistered'), \
                (SELECT count(*) FROM patient_mrns WHERE clinic_id = $1), \
                (SELECT count(DISTINCT payload -> 'PatientRegistered' ->> 'mrn') FROM events \
                  WHERE tenant_id = $1 AND event_type = 'PatientRegistered')",
    )
    .bind(clinic.as_uuid())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((events, mrns, distinct), (32, 32, 32));
    // Numbers taken by committed registrations only: no gaps when nothing failed.
    let last = owner_count(
        &db,
        "SELECT last_value FROM mrn_counters WHERE clinic_id = $1",
        clinic,
    );
    assert_eq!(last.await, 32);
}

#[tokio::test]
async fn racing_commands_with_the_same_if_match_have_exactly_one_winner() {
    let (db, store, clinic) = clinic_with_pool(16, "if-match").await;
    let patient = patients::register(&store, &admin_of(clinic), Expect::Any, demographics("Ada"))
        .await
        .unwrap()
        .patient_id;
    let runs = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let command = PatientCommand::UpdateDemographics {
                changes: DemographicsChanges {
                    name: Some(PatientName {
                        given: PersonName::parse(format!("Name{i}")).unwrap(),
                        family: PersonName::parse("Example").unwrap(),
                    }),
                    ..DemographicsChanges::default()
                },
            };
            store
                .execute::<Patient>(
                    &admin_of(clinic),
                    patient.as_uuid(),
                    command,
                    Expect::Version(1),
                )
                .await
        })
    });
    let results: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let losers = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(CommandError::Concurrency)
                    | Err(CommandError::VersionMismatch {
                        expected: 1,
                        actual: 2
                    })
            )
        })
        .count();
    assert_eq!((winners, losers), (1, 15), "{results:?}");
    assert_eq!(owner_count(&db, PATIENT_EVENTS, clinic).await, 2);
}

#[tokio::test]
async fn a_refused_registration_writes_nothing_and_gives_its_number_back() {
    let (db, store, clinic) = clinic_with_pool(2, "refused").await;
    // If-Match on a new record other than 0: refused before the append, after the counter.
    let err = patients::register(
        &store,
        &admin_of(clinic),
        Expect::Version(3),
        demographics("A"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            PatientsError::Command(CommandError::VersionMismatch {
                expected: 3,
                actual: 0
            })
        ),
        "{err:?}"
    );
    let ok = patients::register(&store, &admin_of(clinic), Expect::Any, demographics("B"))
        .await
        .unwrap();
    let mut conn = db.owner_connection().await;
    let mrn: String = sqlx::query_scalar(
        "SELECT payload -> 'PatientRegistered' ->> 'mrn' FROM events WHERE position = $1",
    )
    .bind(ok.committed.last_position().unwrap())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(mrn, domain::values::Mrn::from_number(1).to_string());
    assert_eq!(owner_count(&db, PATIENT_EVENTS, clinic).await, 1);
}

#[tokio::test]
async fn rows_are_byte_for_byte_what_postgres_es_writes() {
    use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};

    let (db, _store, clinic) = clinic_with_pool(2, "same-bytes").await;
    let mut conn = db.owner_connection().await;
    let row = sqlx::query(
        "SELECT aggregate_type, event_type, event_version, payload, metadata, \
                payload::text AS payload_text, metadata::text AS metadata_text \
         FROM events WHERE tenant_id = $1",
    )
    .bind(clinic.as_uuid())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // The same event through postgres-es, on another stream of the clinic, with an event
    // type no trigger claims anything for.
    let other = format!("{clinic}:{}", Uuid::new_v4());
    let event = SerializedEvent {
        aggregate_id: other.clone(),
        sequence: 1,
        aggregate_type: row.get("aggregate_type"),
        event_type: "ClinicRenamed".into(),
        event_version: row.get("event_version"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
    };
    let repo = postgres_es::PostgresEventRepository::new(db.app_pool_of(1).await);
    repo.persist::<Clinic>(&[event], None).await.unwrap();
    let theirs = sqlx::query(
        "SELECT event_version, payload::text AS payload_text, metadata::text AS metadata_text \
         FROM events WHERE aggregate_id = $1",
    )
    .bind(&other)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    for column in ["event_version", "payload_text", "metadata_text"] {
        assert_eq!(
            row.get::<String, _>(column),
            theirs.get::<String, _>(column),
            "{column}"
        );
    }
    assert_eq!(row.get::<String, _>("event_type"), "ClinicRegistered");
}

/// The workers' statements are planned once per connection: after a batch per registration,
/// PostgreSQL's own count of plans on the worker's connection (`pg_prepared_statements`)
/// shows no custom plan. Left to choose, it planned the checkpoint's update and the hash
/// chain's reads again at every batch.
#[tokio::test]
async fn a_workers_statements_are_planned_once_per_connection_not_at_every_batch() {
    use projections::worker::{self, group::run_group_batch, WorkerConfig};

    let (db, store, clinic) = clinic_with_pool(1, "worker-plans").await;
    let mut conn = worker::connect(&db.owner).await.unwrap();
    let config = WorkerConfig {
        batch_size: 100,
        ..Default::default()
    };
    let (models, chains): (Vec<_>, Vec<_>) = projections::PROJECTIONS
        .iter()
        .cloned()
        .partition(|p| p.rebuildable);
    for n in 0..8 {
        patients::register(
            &store,
            &admin_of(clinic),
            Expect::Any,
            demographics(&format!("Planned{n}")),
        )
        .await
        .unwrap();
        run_group_batch(&mut conn, &models, &config).await.unwrap();
        for projection in &chains {
            worker::run_batch(&mut conn, projection, &config)
                .await
                .unwrap();
        }
        projections::access_chain::chain_batch(&mut conn, 100)
            .await
            .unwrap();
    }
    let plans: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, custom_plans FROM pg_prepared_statements \
         WHERE statement NOT LIKE '%pg_prepared_statements%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(plans.len() >= 10, "prepared statements: {plans:?}");
    for (statement, custom) in &plans {
        assert_eq!(*custom, 0, "planned {custom} times: {statement}");
    }
}

/// The access chain's batch finds each clinic's last link with one step back along the
/// `(clinic_id, link)` index, whatever the length of the clinic's chain. It read and sorted
/// every link of the clinics in the batch (`DISTINCT ON`), at every batch: the dearest
/// statement of the benchmark, and dearer with every read of patient data.
#[tokio::test]
async fn the_access_chain_finds_a_clinics_last_link_without_reading_its_chain() {
    use projections::access_chain::CHAIN_HEADS;
    use projections::worker;

    let db = TestDb::new().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    // 10,000 links in each of two clinics (written as the worker writes them).
    let mut conn = worker::connect(&db.owner).await.unwrap();
    sqlx::query(
        "INSERT INTO access_chain (clinic_id, access_id, transaction_id, link, hash) \
         SELECT CASE WHEN i % 2 = 0 THEN $1 ELSE $2 END, i, (1000 + i)::text::xid8, \
                (i + 1) / 2, sha256(i::text::bytea) \
         FROM generate_series(1, 20000) i",
    )
    .bind(a)
    .bind(b)
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("ANALYZE access_chain")
        .execute(&mut db.owner_connection().await)
        .await
        .unwrap();

    let mut heads: Vec<(Uuid, i64)> = sqlx::query_as::<_, (Uuid, i64, Vec<u8>)>(CHAIN_HEADS)
        .bind(vec![a, b, Uuid::now_v7()])
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|(clinic, link, _)| (clinic, link))
        .collect();
    heads.sort();
    let mut expected = vec![(a, 10_000), (b, 10_000)];
    expected.sort();
    assert_eq!(heads, expected, "a clinic without links has no head");

    let (plan,): (serde_json::Value,) =
        sqlx::query_as(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {CHAIN_HEADS}"))
            .bind(vec![a, b])
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let rows = rows_read(&plan[0]["Plan"]);
    assert!(
        rows <= 10.0,
        "the heads of two clinics took {rows} rows: {plan:#}"
    );
}

/// The notifications on the workers' channel that arrive within `quiet` of each other.
async fn notifications(listener: &mut sqlx::postgres::PgListener, quiet: Duration) -> usize {
    let mut n = 0;
    while let Ok(got) = tokio::time::timeout(quiet, listener.recv()).await {
        got.unwrap();
        n += 1;
    }
    n
}

/// A command's transaction sends no `NOTIFY`: PostgreSQL serialises the commits of the
/// transactions that do on one database-wide lock, held until the commit is flushed (with a
/// `NOTIFY` from a trigger on `events`, every command's commit waited for the previous one's).
/// The store wakes the workers after the commit instead, with one `NOTIFY` for all the
/// commands that commit while one is on its way. An event written by hand wakes nobody; the
/// workers' polling finds it.
#[tokio::test]
async fn commands_wake_the_workers_after_they_commit_and_their_transactions_notify_nobody() {
    assert_eq!(commands::WAKE_CHANNEL, projections::worker::CHANNEL);
    let (db, store, clinic) = clinic_with_pool(16, "wakes").await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.app_pool().await)
        .await
        .unwrap();
    listener.listen(commands::WAKE_CHANNEL).await.unwrap();
    // The clinic's registration may still be waking them.
    notifications(&mut listener, Duration::from_millis(300)).await;

    // By hand: an event appended and committed, and no trigger says so.
    let mut owner = db.owner_connection().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Patient', $1, 1, 'WrittenByHand', '1.0', '{}', $2)",
    )
    .bind(format!("{}:{}", clinic.as_uuid(), Uuid::now_v7()))
    .bind(serde_json::json!({"tenant_id": clinic.as_uuid()}))
    .execute(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        notifications(&mut listener, Duration::from_millis(300)).await,
        0,
        "an append woke the workers from its own transaction"
    );

    // A command: woken after its commit.
    patients::register(
        &store,
        &admin_of(clinic),
        Expect::Any,
        demographics("Woken"),
    )
    .await
    .unwrap();
    assert!(notifications(&mut listener, Duration::from_millis(500)).await >= 1);

    // Sixteen at once: at least one wake-up after the last commit, never more than one each.
    for registered in register_at_once(&store, clinic, 16, "Many").await {
        registered.unwrap();
    }
    let woken = notifications(&mut listener, Duration::from_millis(500)).await;
    assert!(
        (1..=16).contains(&woken),
        "{woken} wake-ups for 16 commands"
    );
}
