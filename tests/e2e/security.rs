//! Regression tests for the outside security review (issue 12), one or more per finding. Each
//! names the finding it covers; `docs/security.md` maps every threat to its test.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, Answer, TestApp, PASSWORD};

async fn refresh(app: &TestApp, token: &str) -> Answer {
    app.send(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(&json!({"refresh_token": token})),
    )
    .await
}

fn refresh_token_of(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["refresh_token"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// 1. A refresh token presented twice at once must leave its whole family dead.

#[tokio::test]
async fn f01_a_refresh_token_raced_against_itself_leaves_no_live_successor() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "racerefresh").await;
    let email = clinic.emails["receptionist"].clone();
    for attempt in 0..10 {
        let login = app.login_answer(&email, PASSWORD).await;
        let token = refresh_token_of(&login);
        let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
        let statuses = [a.status, b.status];
        assert!(
            statuses.contains(&401),
            "attempt {attempt}: one of two uses of one token is refused: {statuses:?}"
        );
        // Whatever successor the winner got, the reuse revoked it with the family.
        for answer in [&a, &b].into_iter().filter(|x| x.status == 200) {
            let successor = refresh_token_of(answer);
            let after = refresh(&app, &successor).await;
            assert_eq!(
                after.status, 401,
                "attempt {attempt}: the successor of a reused token lived on: {after:?}"
            );
        }
    }
}

#[tokio::test]
async fn f01_reusing_an_old_token_while_its_successor_rotates_kills_the_new_one_too() {
    let app = spawn_app().await;
    let platform = app.platform_admin().await;
    let clinic = app.clinic(&platform, "racefamily").await;
    let email = clinic.emails["nurse"].clone();
    for attempt in 0..10 {
        let r1 = refresh_token_of(&app.login_answer(&email, PASSWORD).await);
        let r2 = refresh_token_of(&refresh(&app, &r1).await);
        // r1 is spent: presenting it revokes the family, while r2 rotates at the same moment.
        let (reuse, rotate) = tokio::join!(refresh(&app, &r1), refresh(&app, &r2));
        assert_eq!(reuse.status, 401, "attempt {attempt}: {reuse:?}");
        if rotate.status == 200 {
            let r3 = refresh_token_of(&rotate);
            let after = refresh(&app, &r3).await;
            assert_eq!(
                after.status, 401,
                "attempt {attempt}: a token of a revoked family lived on: {after:?}"
            );
        }
    }
}
