//! Tamper evidence: the per-clinic hash chain (`audit_chain` projection), `GET /v1/audit/verify`,
//! `GET /v1/audit/chain/head` and `clinic verify`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use projections::audit_chain::{self as chain, CanonicalEvent};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::helpers::{patient_body, spawn_app, TestApp, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_clinic");

/// The clinic's event positions in commit order.
async fn positions(conn: &mut PgConnection, clinic: Uuid) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT position FROM events WHERE tenant_id = $1 ORDER BY transaction_id, position",
    )
    .bind(clinic)
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn verify(app: &TestApp, token: &str, query: &str) -> Value {
    let answer = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/audit/verify{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

async fn head(app: &TestApp, token: &str) -> Value {
    let answer = app
        .send(
            reqwest::Method::GET,
            "/v1/audit/chain/head",
            Some(token),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

fn database_url(db: &TestDb) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        db.owner.get_username(),
        db.owner.get_host(),
        db.owner.get_port(),
        db.name
    )
}

/// Runs `clinic verify --clinic CODE [extra…]` against the test database.
pub(crate) async fn verify_cli(db: &TestDb, code: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["verify", "--clinic", code])
        .args(extra)
        .env("DATABASE_URL", database_url(db))
        .env_remove("CLINIC_EMBEDDED_PG")
        .env_remove("CLINIC_PG_DIR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("run clinic"))
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains("panicked"),
        "{output:?}"
    );
    output
}

/// The events' line of `clinic verify` (the first; the second is the access log's, checked in
/// `security::f13_…`).
fn stdout_line(output: &Output) -> String {
    let out = String::from_utf8_lossy(&output.stdout);
    let mut lines = out.lines();
    let events = lines.next().unwrap_or_default().trim().to_owned();
    let access = lines.next().unwrap_or_default();
    assert!(access.starts_with("access log "), "{out}");
    events
}

fn discrepancy(report: &Value) -> (String, i64) {
    assert_eq!(report["status"], "tampered", "{report}");
    let d = &report["first_discrepancy"];
    (
        d["kind"].as_str().unwrap().to_owned(),
        d["position"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_scripted_history_is_intact_and_an_exported_head_still_matches_later() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    app.db.caught_up().await;
    let mut owner = app.db.owner_connection().await;
    let history = positions(&mut owner, north.id).await;
    assert!(history.len() > 8, "{history:?}");

    let exported = head(&app, &north.auditor).await;
    assert_eq!(exported["events"], history.len() as i64);
    assert_eq!(exported["position"], *history.last().unwrap());
    assert_eq!(exported["hash"].as_str().unwrap().len(), 64);

    for token in [&north.auditor, &north.admin] {
        let report = verify(&app, token, "").await;
        assert_eq!(report["status"], "intact", "{report}");
        assert_eq!(report["events"], history.len() as i64);
        assert_eq!(report["pending"], 0);
        assert_eq!(report["head_position"], exported["position"]);
        assert_eq!(report["head_hash"], exported["hash"]);
        assert!(report["first_discrepancy"].is_null());
    }

    // The first link is SHA-256(32 zero bytes || canonical bytes of the first event).
    let first: CanonicalEvent = sqlx::query_as(
        "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload::jsonb::text AS payload, metadata::jsonb::text AS metadata \
         FROM events WHERE position = $1",
    )
    .bind(history[0])
    .fetch_one(&mut owner)
    .await
    .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_chain WHERE position = $1")
        .bind(history[0])
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(
        stored,
        chain::link_hash(&chain::GENESIS, &chain::canonical_bytes(&first))
    );

    // More history; the head exported earlier still matches the recomputed chain.
    for i in 0..3 {
        let p = app
            .post(
                "/v1/patients",
                &north.receptionist,
                patient_body(&format!("Later{i}")),
            )
            .await;
        assert_eq!(p.status, 201);
    }
    app.db.caught_up().await;
    let query = format!(
        "?head_position={}&head_hash={}",
        exported["position"],
        exported["hash"].as_str().unwrap()
    );
    let report = verify(&app, &north.auditor, &query).await;
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["events"], history.len() as i64 + 3);
    assert_eq!(report["expected_head"]["matches"], true, "{report}");
    assert_eq!(report["expected_head"]["recomputed_hash"], exported["hash"]);
    assert_ne!(report["head_hash"], exported["hash"]);

    // The CLI agrees, with and without the exported head.
    let expect = format!(
        "{}:{}",
        exported["position"],
        exported["hash"].as_str().unwrap()
    );
    for extra in [vec![], vec!["--expect-head", expect.as_str()]] {
        let out = verify_cli(&app.db, "north", &extra).await;
        assert!(out.status.success(), "{out:?}");
        assert!(
            stdout_line(&out).starts_with(&format!(
                "intact: {} events, head {} {}",
                history.len() + 3,
                report["head_position"],
                report["head_hash"].as_str().unwrap()
            )),
            "{out:?}"
        );
    }
    // A wrong exported hash is tampering.
    let wrong = format!("{}:{}", exported["position"], "ab".repeat(32));
    let out = verify_cli(&app.db, "north", &["--expect-head", &wrong]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout_line(&out).starts_with("tampered:"), "{out:?}");
    // Unknown clinic and malformed head are one error line naming the flag.
    let out = verify_cli(&app.db, "nowhere", &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--clinic"),
        "{out:?}"
    );
    let out = verify_cli(&app.db, "north", &["--expect-head", "12"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--expect-head"),
        "{out:?}"
    );
}

#[tokio::test]
async fn an_edited_payload_and_a_deleted_event_are_found_by_the_endpoint_and_the_cli() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    app.db.caught_up().await;

    // The service's role cannot rewrite history, nor the chain.
    let pool = app.db.app_pool().await;
    for sql in [
        "UPDATE events SET payload = '{}'::json",
        "DELETE FROM events",
        "UPDATE audit_chain SET hash = hash",
        "DELETE FROM audit_chain",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }

    let mut owner = app.db.owner_connection().await;
    let history = positions(&mut owner, north.id).await;
    let (edited, deleted) = (history[history.len() - 2], history[3]);

    // The table owner edits one payload …
    sqlx::query(
        "UPDATE events SET payload = (payload::jsonb || '{\"forged\": true}')::json WHERE position = $1",
    )
    .bind(edited)
    .execute(&mut owner)
    .await
    .unwrap();
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(discrepancy(&report), ("changed".into(), edited));
    assert_eq!(report["events"], history.len() as i64 - 2, "{report}");
    let out = verify_cli(&app.db, "north", &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout_line(&out),
        format!("tampered: changed at position {edited}")
    );

    // … and deletes an earlier event: that is now the first discrepancy.
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(deleted)
        .execute(&mut owner)
        .await
        .unwrap();
    let report = verify(&app, &north.admin, "").await;
    assert_eq!(discrepancy(&report), ("removed".into(), deleted));
    assert_eq!(report["events"], 3, "{report}");
    let out = verify_cli(&app.db, "north", &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        stdout_line(&out),
        format!("tampered: removed at position {deleted}")
    );
}

#[tokio::test]
async fn an_event_without_a_link_is_found_as_inserted() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    app.db.caught_up().await;
    let mut owner = app.db.owner_connection().await;
    let history = positions(&mut owner, north.id).await;

    // A link removed (as if its event had been slipped in after the fact) …
    let unlinked = history[4];
    let hash: Vec<u8> = sqlx::query_scalar(
        "DELETE FROM audit_chain WHERE clinic_id = $1 AND position = $2 RETURNING hash",
    )
    .bind(north.id)
    .bind(unlinked)
    .fetch_one(&mut owner)
    .await
    .unwrap();
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(discrepancy(&report), ("inserted".into(), unlinked));
    sqlx::query("INSERT INTO audit_chain (clinic_id, position, link, hash) VALUES ($1, $2, 5, $3)")
        .bind(north.id)
        .bind(unlinked)
        .bind(&hash)
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(verify(&app, &north.auditor, "").await["status"], "intact");

    // … and an event inserted into the past by the owner: the transaction id of an early
    // event puts it before events that are already chained.
    let inserted: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, position, transaction_id) \
         OVERRIDING SYSTEM VALUE \
         SELECT 'Patient', tenant_id || ':' || gen_random_uuid(), 1, 'PatientNoted', '1.0', \
                '{}'::json, metadata, (SELECT max(position) + 1000 FROM events), transaction_id \
         FROM events WHERE position = $1 RETURNING position",
    )
    .bind(history[2])
    .fetch_one(&mut owner)
    .await
    .unwrap();
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(discrepancy(&report), ("inserted".into(), inserted));
    let out = verify_cli(&app.db, "north", &[]).await;
    assert_eq!(
        stdout_line(&out),
        format!("tampered: inserted at position {inserted}")
    );
}

#[tokio::test]
async fn an_exported_head_catches_a_rewrite_of_history_and_chain_together() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    app.db.caught_up().await;
    let exported = head(&app, &north.auditor).await;
    let mut owner = app.db.owner_connection().await;
    let history = positions(&mut owner, north.id).await;

    // A forger with the owner's rights edits an event and recomputes the whole chain.
    sqlx::query(
        "UPDATE events SET payload = (payload::jsonb || '{\"forged\": true}')::json WHERE position = $1",
    )
    .bind(history[5])
    .execute(&mut owner)
    .await
    .unwrap();
    let events: Vec<CanonicalEvent> = sqlx::query_as(
        "SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                payload::jsonb::text AS payload, metadata::jsonb::text AS metadata \
         FROM events WHERE tenant_id = $1 ORDER BY transaction_id, position",
    )
    .bind(north.id)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let mut prev = chain::GENESIS;
    for e in &events {
        prev = chain::link_hash(&prev, &chain::canonical_bytes(e));
        sqlx::query("UPDATE audit_chain SET hash = $3 WHERE clinic_id = $1 AND position = $2")
            .bind(north.id)
            .bind(e.position)
            .bind(prev.as_slice())
            .execute(&mut owner)
            .await
            .unwrap();
    }
    // The stored chain alone cannot tell …
    assert_eq!(verify(&app, &north.auditor, "").await["status"], "intact");
    // … the head kept outside can.
    let query = format!(
        "?head_position={}&head_hash={}",
        exported["position"],
        exported["hash"].as_str().unwrap()
    );
    let report = verify(&app, &north.auditor, &query).await;
    assert_eq!(report["status"], "tampered", "{report}");
    assert_eq!(report["expected_head"]["matches"], false);
    assert_eq!(
        report["expected_head"]["recomputed_hash"],
        chain::to_hex(&prev)
    );
}

#[tokio::test]
async fn verification_is_per_clinic_and_only_for_auditors_and_clinic_admins() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    let south = app.clinic(&platform, "south").await;
    app.db.caught_up().await;
    let mut owner = app.db.owner_connection().await;
    let north_history = positions(&mut owner, north.id).await;
    let south_history = positions(&mut owner, south.id).await;

    // North's history is altered; south's auditor sees only south, intact.
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(north_history[2])
        .execute(&mut owner)
        .await
        .unwrap();
    let report = verify(&app, &south.auditor, "").await;
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["events"], south_history.len() as i64);
    assert_eq!(report["head_position"], *south_history.last().unwrap());
    let south_head = head(&app, &south.auditor).await;
    assert_eq!(south_head["events"], south_history.len() as i64);
    assert_eq!(south_head["position"], *south_history.last().unwrap());
    // North's head position is no position of south's chain.
    let query = format!(
        "?head_position={}&head_hash={}",
        north_history.last().unwrap(),
        "00".repeat(32)
    );
    let report = verify(&app, &south.auditor, &query).await;
    assert_eq!(report["expected_head"]["recomputed_hash"], Value::Null);
    assert_eq!(report["status"], "tampered");
    // North's auditor sees north's tampering.
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(discrepancy(&report), ("removed".into(), north_history[2]));

    // Every other role, and the platform admin, gets 403; no token, 401.
    for path in ["/v1/audit/verify", "/v1/audit/chain/head"] {
        for token in [
            north.token("receptionist"),
            north.token("doctor"),
            north.token("nurse"),
            platform.as_str(),
        ] {
            let answer = app
                .send(reqwest::Method::GET, path, Some(token), None)
                .await;
            assert_eq!(answer.status, 403, "{path}: {answer:?}");
            assert_eq!(
                answer.header("content-type"),
                Some("application/problem+json")
            );
        }
        let answer = app.send(reqwest::Method::GET, path, None, None).await;
        assert_eq!(answer.status, 401, "{path}: {answer:?}");
    }

    // Bad query parameters are 422s naming the parameter.
    for (query, field) in [
        ("?head_position=5", "head_hash"),
        (
            &format!("?head_hash={}", "00".repeat(32)) as &str,
            "head_position",
        ),
        ("?head_position=x&head_hash=00", "head_position"),
        ("?head_position=1&head_hash=zz", "head_hash"),
        // An empty head is refused, never taken as "no head to check".
        ("?head_position=&head_hash=", "head_position"),
        ("?head_position=&head_hash=", "head_hash"),
        ("?head_position=1&head_hash=%20", "head_hash"),
        ("?verbose=1", "verbose"),
    ] {
        let answer = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/audit/verify{query}"),
                Some(&north.auditor),
                None,
            )
            .await;
        assert_eq!(answer.status, 422, "{query}: {answer:?}");
        answer.names_field(field);
    }
}

#[tokio::test]
async fn a_late_commit_is_chained_in_commit_order_and_lag_is_pending_not_tampering() {
    use sqlx::Executor;
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "north").await;
    app.db.caught_up().await;

    // Transaction A appends an event (an aggregate no read model reads) and stays open …
    let mut held = app.db.owner_connection().await;
    held.execute("BEGIN").await.unwrap();
    let early: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Memo', $1, 1, 'MemoWritten', '1.0', '{}', $2) RETURNING position",
    )
    .bind(format!("{}:{}", north.id, Uuid::new_v4()))
    .bind(serde_json::json!({"tenant_id": north.id, "actor_id": Uuid::nil(), "actor_role": "system",
                             "request_id": "chain-test", "occurred_at": app.now()}))
    .fetch_one(&mut held)
    .await
    .unwrap();
    // … while B commits a later position.
    let later = app
        .post("/v1/patients", &north.receptionist, patient_body("Later"))
        .await;
    assert_eq!(later.status, 201);
    let later = later.body["position"].as_i64().unwrap();
    assert!(later > early);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // B is not chained yet (the chain cannot pass A's open transaction): pending, not tampering.
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["pending"], 1, "{report}");

    held.execute("COMMIT").await.unwrap();
    app.db.caught_up().await;
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["pending"], 0, "{report}");
    assert_eq!(report["head_position"], later, "{report}");
    let mut owner = app.db.owner_connection().await;
    let links: Vec<i64> = sqlx::query_scalar(
        "SELECT link FROM audit_chain WHERE clinic_id = $1 AND position IN ($2, $3) ORDER BY position",
    )
    .bind(north.id)
    .bind(early)
    .bind(later)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(links.len(), 2);
    assert!(links[0] < links[1], "chained in commit order: {links:?}");

    // Commit order is (transaction_id, position), not position: B takes its transaction id
    // first, A then appends (lower position, higher transaction id), then B appends.
    let memo = |clinic: Uuid| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('Memo', $1, 1, 'MemoWritten', '1.0', '{}', $2) RETURNING position",
        )
        .bind(format!("{clinic}:{}", Uuid::new_v4()))
        .bind(serde_json::json!({"tenant_id": clinic, "actor_id": Uuid::nil(), "actor_role": "system",
                                 "request_id": "chain-test", "occurred_at": app.now()}))
    };
    let mut b = app.db.owner_connection().await;
    b.execute("BEGIN").await.unwrap();
    b.execute("SELECT pg_current_xact_id()").await.unwrap();
    let mut a = app.db.owner_connection().await;
    a.execute("BEGIN").await.unwrap();
    let a_position = memo(north.id).fetch_one(&mut a).await.unwrap();
    a.execute("COMMIT").await.unwrap();
    let b_position = memo(north.id).fetch_one(&mut b).await.unwrap();
    b.execute("COMMIT").await.unwrap();
    assert!(a_position < b_position);
    app.db.caught_up().await;
    let report = verify(&app, &north.auditor, "").await;
    assert_eq!(report["status"], "intact", "{report}");
    assert_eq!(report["head_position"], a_position, "{report}");
    let links: Vec<i64> = sqlx::query_scalar(
        "SELECT link FROM audit_chain WHERE clinic_id = $1 AND position IN ($2, $3) ORDER BY position",
    )
    .bind(north.id)
    .bind(a_position)
    .bind(b_position)
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(links[0] > links[1], "B is chained before A: {links:?}");
}
