//! `Idempotency-Key`: a command runs once per key and account. A retry with the same key and
//! body gets the first answer again (with `Idempotent-Replayed: true`) and runs nothing; the
//! same key with another body is a 422; a retry while the first is still running is a 409.
//! Only successful answers are kept (24 hours); after a failure the key may be used again.

use std::future::Future;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::http::{respond, CommandRequest, CommandResponse, JsonBody};
use crate::problem::ApiError;

#[derive(sqlx::FromRow)]
struct StoredAnswer {
    request_hash: Vec<u8>,
    status_code: Option<i32>,
    response_body: Option<Vec<u8>>,
    location: Option<String>,
}

/// What identifies a request under one key: method, path and body.
fn request_hash(request: &CommandRequest, body: &JsonBody) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(request.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(request.path.as_bytes());
    hasher.update(b"\n");
    hasher.update(&body.0);
    hasher.finalize().to_vec()
}

/// Runs `command` once per `request`'s `Idempotency-Key` for `account_id` (every time when the
/// request has no key).
pub async fn run_once<F>(
    pool: &PgPool,
    account_id: Uuid,
    request: &CommandRequest,
    body: &JsonBody,
    command: F,
) -> Result<Response, ApiError>
where
    F: Future<Output = Result<CommandResponse, ApiError>>,
{
    let Some(key) = &request.idempotency_key else {
        return command.await.map(IntoResponse::into_response);
    };
    let request_hash = request_hash(request, body);

    // Forget answers older than a day, then claim the key.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 \
         AND created_at < now() - interval '24 hours'",
    )
    .bind(account_id)
    .bind(key)
    .execute(pool)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, request_hash) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(key)
    .bind(&request_hash)
    .execute(pool)
    .await?
    .rows_affected()
        == 1;

    if !claimed {
        return replay(pool, account_id, key, &request_hash).await;
    }

    match command.await {
        Ok(answer) => {
            let body = serde_json::to_vec(&answer.body)?;
            sqlx::query(
                "UPDATE idempotency_keys SET status_code = $3, response_body = $4, location = $5 \
                 WHERE account_id = $1 AND key = $2",
            )
            .bind(account_id)
            .bind(key)
            .bind(answer.status.as_u16() as i32)
            .bind(&body)
            .bind(answer.location.as_deref())
            .execute(pool)
            .await?;
            Ok(answer.into_response())
        }
        Err(err) => {
            let _ = sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2")
                .bind(account_id)
                .bind(key)
                .execute(pool)
                .await;
            Err(err)
        }
    }
}

/// The answer to a key that is already claimed: the stored answer, or why there is none.
async fn replay(
    pool: &PgPool,
    account_id: Uuid,
    key: &str,
    request_hash: &[u8],
) -> Result<Response, ApiError> {
    let row: Option<StoredAnswer> = sqlx::query_as(
        "SELECT request_hash, status_code, response_body, location FROM idempotency_keys \
         WHERE account_id = $1 AND key = $2",
    )
    .bind(account_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(stored) if stored.request_hash != request_hash => Err(ApiError::Unprocessable {
            slug: "idempotency-key-reused",
            detail: "This Idempotency-Key was used with another request; use a new key.".into(),
        }),
        Some(StoredAnswer {
            status_code: Some(status),
            response_body: Some(body),
            location,
            ..
        }) => {
            let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["version"].as_u64());
            Ok(respond(status, location.as_deref(), body, version, true))
        }
        _ => Err(ApiError::Conflict {
            slug: "idempotency-in-progress",
            detail: "A request with this Idempotency-Key is still being processed; retry shortly."
                .into(),
            field: None,
        }),
    }
}
