use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_migrated() {
    let app = spawn_app().await;
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_problem_when_a_migration_is_missing() {
    let app = spawn_app().await;
    let mut owner = app.db.owner_connection().await;
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], 503);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("1 migration(s) not applied"),
        "{body}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_when_given() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn unknown_paths_are_404_problems() {
    let app = spawn_app().await;
    let res = app.get("/no/such/thing").await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn openapi_document_lists_the_operations_endpoints() {
    let app = spawn_app().await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: serde_json::Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    assert!(doc["paths"]["/readyz"]["get"]["responses"]["503"].is_object());
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
}

/// Every endpoint is in the OpenAPI document, and every command documents its problems.
#[tokio::test]
async fn openapi_document_covers_every_endpoint_and_its_errors() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    let commands = [
        ("post", "/v1/clinics"),
        ("post", "/v1/clinics/{id}/suspend"),
        ("post", "/v1/clinics/{id}/reactivate"),
        ("put", "/v1/clinics/{id}/plan"),
        ("patch", "/v1/clinic"),
        ("post", "/v1/clinic/departments"),
        ("patch", "/v1/clinic/departments/{id}"),
        ("post", "/v1/staff"),
        ("patch", "/v1/staff/{id}"),
        ("put", "/v1/staff/{id}/role"),
        ("put", "/v1/staff/{id}/working-hours"),
        ("post", "/v1/staff/{id}/time-off"),
        ("post", "/v1/staff/{id}/deactivate"),
        ("post", "/v1/staff/{id}/reactivate"),
        ("post", "/v1/patients"),
        ("patch", "/v1/patients/{id}"),
        ("post", "/v1/patients/{id}/merge"),
        ("post", "/v1/patients/{id}/deactivate"),
        ("post", "/v1/appointments"),
        ("post", "/v1/appointments/{id}/reschedule"),
        ("post", "/v1/appointments/{id}/cancel"),
        ("post", "/v1/appointments/{id}/check-in"),
        ("post", "/v1/appointments/{id}/start"),
        ("post", "/v1/appointments/{id}/complete"),
        ("post", "/v1/appointments/{id}/no-show"),
    ];
    for (method, path) in commands {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} is missing from the OpenAPI document"
        );
        for status in [
            "401", "402", "403", "404", "409", "412", "413", "415", "422",
        ] {
            let response = &op["responses"][status];
            assert!(
                response.is_object(),
                "{method} {path} does not document {status}"
            );
            assert!(
                response["content"]["application/problem+json"].is_object(),
                "{method} {path} {status} is not problem+json"
            );
        }
        assert!(
            op["security"].is_array(),
            "{method} {path} does not declare bearer auth"
        );
    }
    for (method, path) in [
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/logout"),
        ("get", "/v1/me"),
        ("get", "/v1/plans"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    for schema in [
        "Problem",
        "FieldError",
        "CommandAccepted",
        "CreateClinic",
        "HireStaff",
        "RegisterPatient",
        "BookAppointment",
        "PlanList",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
}

#[tokio::test]
async fn a_wrong_method_and_a_malformed_id_are_problems() {
    let app = spawn_app().await;
    let res = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let platform = app.platform_admin().await;
    let answer = app
        .post(
            "/v1/clinics/not-a-uuid/suspend",
            &platform,
            serde_json::json!({"reason": "x"}),
        )
        .await;
    answer.names_field("id");
}

/// Found by `scripts/fuzz-api`: the log-in, refresh and log-out operations answered 400 and
/// 422 without documenting them. Every operation that takes a body documents what a body is
/// refused for (400 malformed JSON, 413 too large, 415 not JSON, 422 invalid fields) and the
/// database being away (503), and every one with query parameters documents 422; a route
/// added later is held to it without editing this test.
#[tokio::test]
async fn every_operation_documents_the_problems_its_inputs_can_cause() {
    let doc = serde_json::to_value(api::startup::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let documented = |status: &str| {
                op["responses"][status]["content"]["application/problem+json"].is_object()
            };
            if op["requestBody"].is_object() {
                for status in ["400", "413", "415", "422", "503"] {
                    assert!(
                        documented(status),
                        "{method} {path} takes a body but does not document {status}"
                    );
                }
                checked += 1;
            }
            let has_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
            if has_query {
                assert!(
                    documented("422"),
                    "{method} {path} takes query parameters but does not document 422"
                );
            }
        }
    }
    assert!(checked > 20, "only {checked} operations with a body");
}

/// Found by `scripts/fuzz-api` once it reached real records: a `POST` action whose body has no
/// required field (`/deactivate` with an optional reason) takes no body at all, as `{}`
/// (`api::http::JsonBody`), but the document said its body was required. Every such body is
/// now documented as optional; a body with a required field stays required (and a request
/// without it is a 422 naming the field).
#[test]
fn a_post_body_without_a_required_field_is_documented_as_optional() {
    let doc = serde_json::to_value(api::startup::openapi()).unwrap();
    let resolve = |schema: &serde_json::Value| -> serde_json::Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap();
                doc["components"]["schemas"][name].clone()
            }
            None => schema.clone(),
        }
    };
    let (mut optional, mut required) = (Vec::new(), 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let body = &op["requestBody"];
            if method != "post" || !body.is_object() {
                continue;
            }
            let schema = resolve(&body["content"]["application/json"]["schema"]);
            let has_required = schema["required"]
                .as_array()
                .is_some_and(|fields| !fields.is_empty());
            let documented_required = body["required"] == serde_json::json!(true);
            assert_eq!(
                documented_required, has_required,
                "POST {path}: the body is documented as required = {documented_required}, \
                 but its schema has required fields = {has_required}: {schema}"
            );
            if has_required {
                required += 1;
            } else {
                optional.push(path.clone());
            }
        }
    }
    assert!(required > 10, "{required} bodies with a required field");
    assert!(
        optional.iter().any(|p| p == "/v1/patients/{id}/deactivate"),
        "{optional:?}"
    );
}

/// Found by `scripts/fuzz-api`: a body that is not JSON (here a lone NUL byte) to the log-in,
/// refresh and log-out operations is a 400 problem, as documented; a JSON body missing the
/// field is a 422 naming it.
#[tokio::test]
async fn auth_operations_refuse_malformed_bodies_as_documented() {
    let app = spawn_app().await;
    for path in ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"] {
        let answer = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body("\0")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{path}");
        assert_eq!(
            answer.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let answer = app
            .send(
                reqwest::Method::POST,
                path,
                None,
                Some(&serde_json::json!({})),
            )
            .await;
        let field = if path.ends_with("login") {
            "email"
        } else {
            "refresh_token"
        };
        answer.names_field(field);
    }
}

/// Found by `scripts/fuzz-api`: `PUT /v1/staff/{id}/working-hours` with no body was read as
/// `{}` and cleared every day's hours. A `PUT` or `PATCH` without a body is a 422 naming
/// `body`, and writes nothing; a `POST` action whose body is optional still takes none.
#[tokio::test]
async fn a_put_or_patch_without_a_body_is_refused_and_writes_nothing() {
    let app = crate::helpers::spawn_app().await;
    let platform = app.platform_admin().await;
    let north = app.clinic(&platform, "nobody").await;
    let before = app.event_count().await;
    for (method, path) in [
        (
            reqwest::Method::PUT,
            format!("/v1/staff/{}/working-hours", north.doctor_id),
        ),
        (
            reqwest::Method::PUT,
            format!("/v1/staff/{}/role", north.doctor_id),
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/patients/{}", north.patient_id),
        ),
        (reqwest::Method::PATCH, "/v1/clinic".to_owned()),
    ] {
        let answer = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(&north.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 422, "{method} {path}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(
            body["errors"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["field"] == "body")),
            "{method} {path}: {body}"
        );
    }
    assert_eq!(app.event_count().await, before, "nothing written");
    let checked_in = app
        .client
        .post(app.url(&format!(
            "/v1/appointments/{}/check-in",
            north.appointment_id
        )))
        .bearer_auth(&north.receptionist)
        .send()
        .await
        .unwrap();
    assert_eq!(checked_in.status(), 200);
}
