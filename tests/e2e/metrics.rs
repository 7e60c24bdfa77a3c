//! `GET /metrics`: who may read it, and that requests, commands, projections and the pool are
//! measured. The exposition text is parsed into samples; every check reads one sample by its
//! exact name and label set.

use std::collections::BTreeMap;

use crate::helpers::{
    patient_body, spawn_app, spawn_app_with, ClinicFixture, TestApp, TEST_METRICS_TOKEN,
};

/// One sample: metric name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped).
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_owned(), parse_labels(body))
            }
        };
        assert!(
            samples.insert((name, labels), value).is_none(),
            "duplicate sample {line}"
        );
    }
    samples
}

fn parse_labels(mut body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        body = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    (
        name.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// An app, its platform admin's token and a staffed clinic.
async fn app_with_clinic(code: &str) -> (TestApp, String, ClinicFixture) {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, code).await;
    // The fixture's patient must be in the read models before a test reads it.
    app.db.caught_up().await;
    (app, platform, clinic)
}

async fn scrape(app: &TestApp) -> BTreeMap<Series, f64> {
    let answer = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TEST_METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&answer.text().await.unwrap())
}

/// A sample's value, 0 when absent (a counter not yet incremented).
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples.get(&series(name, labels)).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_are_for_the_scrape_token_and_the_platform_admin_only() {
    let (app, platform, clinic) = app_with_clinic("metrics-auth").await;
    let get = |token: Option<String>| {
        let app = &app;
        async move {
            app.send(reqwest::Method::GET, "/metrics", token.as_deref(), None)
                .await
        }
    };
    get(None).await.problem(401);
    get(Some("not-the-token".into())).await.problem(401);
    for role in ["clinic_admin", "doctor", "nurse", "receptionist", "auditor"] {
        get(Some(clinic.token(role).to_owned())).await.problem(403);
    }
    assert_eq!(get(Some(platform)).await.status, 200);
    assert_eq!(get(Some(TEST_METRICS_TOKEN.into())).await.status, 200);
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let (app, _, clinic) = app_with_clinic("metrics-http").await;
    let route = [("method", "GET"), ("route", "/v1/patients/{id}")];
    let before = scrape(&app).await;
    let patient = format!("/v1/patients/{}", clinic.patient_id);
    for _ in 0..3 {
        let answer = app
            .send(reqwest::Method::GET, &patient, Some(&clinic.nurse), None)
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let missing = format!("/v1/patients/{}", uuid::Uuid::new_v4());
    app.send(reqwest::Method::GET, &missing, Some(&clinic.nurse), None)
        .await
        .problem(404);
    app.get("/no/such/thing").await;
    let after = scrape(&app).await;

    let delta = |labels: &[(&str, &str)], name: &str| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let ok = [route[0], route[1], ("status", "200")];
    let not_found = [route[0], route[1], ("status", "404")];
    assert_eq!(delta(&ok, "clinic_http_requests_total"), 3.0);
    assert_eq!(delta(&not_found, "clinic_http_requests_total"), 1.0);
    assert_eq!(
        delta(&ok, "clinic_http_request_duration_seconds_count"),
        3.0
    );
    let unmatched = [("method", "GET"), ("route", "unmatched"), ("status", "404")];
    assert_eq!(delta(&unmatched, "clinic_http_requests_total"), 1.0);
    // No label carries an id or a clinic.
    let ids = [clinic.patient_id.to_string(), clinic.id.to_string()];
    for (name, labels) in after.keys() {
        assert!(!labels.contains_key("clinic_id"), "{name} {labels:?}");
        for v in labels.values() {
            assert!(
                !ids.iter().any(|id| v.contains(id.as_str())),
                "{name} {labels:?}"
            );
        }
    }
}

#[tokio::test]
async fn commands_projections_and_the_pool_are_measured() {
    let (app, _, clinic) = app_with_clinic("metrics-cmd").await;
    let before = scrape(&app).await;
    let mut last = 0;
    for given in ["Ann", "Bob"] {
        let answer = app
            .post("/v1/patients", &clinic.receptionist, patient_body(given))
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        last = answer.body["position"].as_i64().unwrap();
    }
    let rejected = app
        .post(
            "/v1/patients",
            &clinic.receptionist,
            serde_json::json!({"name": 3}),
        )
        .await;
    assert_eq!(rejected.status, 422, "{rejected:?}");
    app.db.caught_up().await;
    let after = scrape(&app).await;

    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let accepted = [("command", "register_patient"), ("outcome", "accepted")];
    let refused = [("command", "register_patient"), ("outcome", "rejected")];
    assert_eq!(delta("clinic_commands_total", &accepted), 2.0);
    assert_eq!(delta("clinic_commands_total", &refused), 1.0);
    let timed = [("command", "register_patient")];
    assert_eq!(delta("clinic_command_duration_seconds_count", &timed), 3.0);
    // The fixture's commands are named too: nothing fell through to "unknown".
    for command in [
        "create_clinic",
        "hire_staff",
        "set_working_hours",
        "book_appointment",
    ] {
        let labels = [("command", command), ("outcome", "accepted")];
        assert!(
            value(&after, "clinic_commands_total", &labels) >= 1.0,
            "{command}"
        );
    }
    assert!(!after.keys().any(|(n, l)| n == "clinic_commands_total"
        && l.get("command").map(String::as_str) == Some("unknown")));

    let mut conn = app.db.owner_connection().await;
    let head: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(head >= last);
    for projection in projections::PROJECTIONS {
        let by = [("projection", projection.name)];
        assert_eq!(
            value(&after, "clinic_projection_position", &by),
            head as f64,
            "{by:?}"
        );
        assert_eq!(
            value(&after, "clinic_projection_checkpoint_position", &by),
            head as f64,
            "{by:?}"
        );
        assert_eq!(
            value(&after, "clinic_projection_lag_events", &by),
            0.0,
            "{by:?}"
        );
        assert_eq!(
            value(&after, "clinic_projection_failed", &by),
            0.0,
            "{by:?}"
        );
        assert!(value(&after, "clinic_projection_events_applied_total", &by) >= 1.0);
        assert!(value(&after, "clinic_projection_batch_events_count", &by) >= 1.0);
    }

    assert_eq!(value(&after, "clinic_db_pool_max_connections", &[]), 8.0);
    let idle = series("clinic_db_pool_connections", &[("state", "idle")]);
    let in_use = series("clinic_db_pool_connections", &[("state", "in_use")]);
    assert!(after.contains_key(&idle) && after.contains_key(&in_use));
    // The scrape itself holds a connection while it reads the checkpoints, not while it
    // renders: in use plus idle never exceeds the maximum.
    assert!(after[&idle] + after[&in_use] <= 8.0);
}

/// After a batch that caught up, the workers wait `settle` before reading again, and take
/// the events committed meanwhile together: a burst of registrations is applied in one or
/// two batches (the first one may go at once), not one batch per command. Without the wait
/// each registration below, answered before the next is sent, was a batch of its own.
#[tokio::test]
async fn the_workers_take_a_burst_of_commands_in_one_batch_after_settling() {
    let app = spawn_app_with(|settings| {
        if let Some(workers) = settings.workers.as_mut() {
            workers.settle = std::time::Duration::from_secs(3);
        }
    })
    .await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "metrics-settle").await;
    app.db.caught_up().await;
    let before = scrape(&app).await;
    let burst = ["Ann", "Bob", "Cem", "Dia", "Eva", "Fin"];
    for given in burst {
        let answer = app
            .post("/v1/patients", &clinic.receptionist, patient_body(given))
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    app.db.caught_up().await;
    let after = scrape(&app).await;
    for projection in ["patients", "audit_chain"] {
        let by = [("projection", projection)];
        let delta = |name: &str| value(&after, name, &by) - value(&before, name, &by);
        assert_eq!(
            delta("clinic_projection_events_applied_total"),
            burst.len() as f64,
            "{projection}"
        );
        let batches = delta("clinic_projection_batch_events_count");
        assert!(
            (1.0..=2.0).contains(&batches),
            "{projection}: {batches} batches for {} events",
            burst.len()
        );
    }
}
