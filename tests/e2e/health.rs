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
