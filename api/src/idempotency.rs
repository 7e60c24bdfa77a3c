//! `Idempotency-Key`: a command runs once per key and account. A retry with the same key and
//! request (method, path, body and `If-Match`) gets the first answer again (with
//! `Idempotent-Replayed: true`) and runs nothing; the same key with another request is a 422.
//!
//! A claim is a lease ([`Claimant::lease`], longer than any request may run). While it runs, a
//! retry is a 409 with `Retry-After`. A request that times out, is dropped by its client or
//! dies after its claim blocks the key only until the lease ends: then a retry learns from the
//! event store whether the first attempt committed (its events carry its request id and come
//! after the head of the store at the claim) and gets that answer, or runs the command again.
//! Only successful answers are kept (24 hours); after a failure the key may be used again.

use std::future::Future;
use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::Expect;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::http::{respond, CommandAccepted, CommandRequest, CommandResponse, JsonBody};
use crate::problem::ApiError;

/// How much longer than the request timeout a claim lasts.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Who claims a key: the account, the request (its id goes into the events it writes) and the
/// lease.
#[derive(Debug, Clone)]
pub struct Claimant {
    pub account_id: Uuid,
    pub request_id: String,
    pub lease: Duration,
}

#[derive(sqlx::FromRow)]
struct StoredAnswer {
    request_hash: Vec<u8>,
    status_code: Option<i32>,
    response_body: Option<Vec<u8>>,
    location: Option<String>,
    /// Milliseconds left on the lease (negative once it has run out; NULL for no lease).
    lease_left_ms: Option<f64>,
    request_id: Option<String>,
    head_position: Option<i64>,
}

/// What identifies a request under one key: method, path, `If-Match` and body.
fn request_hash(request: &CommandRequest, body: &JsonBody) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(request.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(request.path.as_bytes());
    hasher.update(b"\n");
    match request.expect {
        Expect::Any => hasher.update(b"if-match: *"),
        Expect::Version(v) => hasher.update(format!("if-match: {v}").as_bytes()),
    }
    hasher.update(b"\n");
    hasher.update(&body.0);
    hasher.finalize().to_vec()
}

/// Runs `command` once per `request`'s `Idempotency-Key` for the claimant's account (every
/// time when the request has no key).
pub async fn run_once<F>(
    pool: &PgPool,
    claimant: &Claimant,
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
    if let Some(answer) = claim(pool, claimant, key, &request_hash, request).await? {
        return Ok(answer);
    }
    let account_id = claimant.account_id;
    match command.await {
        Ok(answer) => {
            store_answer(pool, account_id, key, &answer).await?;
            Ok(answer.into_response())
        }
        Err(err) => {
            // Nothing was committed: the key is free again (if the claim is still ours).
            let _ = sqlx::query(
                "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 \
                 AND status_code IS NULL AND request_id = $3",
            )
            .bind(account_id)
            .bind(key)
            .bind(&claimant.request_id)
            .execute(pool)
            .await;
            Err(err)
        }
    }
}

async fn store_answer(
    db: impl sqlx::PgExecutor<'_>,
    account_id: Uuid,
    key: &str,
    answer: &CommandResponse,
) -> Result<(), ApiError> {
    let body = serde_json::to_vec(&answer.body)?;
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, response_body = $4, location = $5, \
                lease_until = NULL \
         WHERE account_id = $1 AND key = $2",
    )
    .bind(account_id)
    .bind(key)
    .bind(answer.status.as_u16() as i32)
    .bind(&body)
    .bind(answer.location.as_deref())
    .execute(db)
    .await?;
    Ok(())
}

/// Claims `key` for this request, in one transaction that holds the key's row: `None` when the
/// command is to run now, or the answer to give instead (a replay, or why not).
async fn claim(
    pool: &PgPool,
    claimant: &Claimant,
    key: &str,
    request_hash: &[u8],
    request: &CommandRequest,
) -> Result<Option<Response>, ApiError> {
    let account_id = claimant.account_id;
    let lease_ms = claimant.lease.as_millis() as f64;
    let mut tx = pool.begin().await?;
    // Forget answers older than a day.
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 \
         AND created_at < now() - interval '24 hours'",
    )
    .bind(account_id)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys \
             (account_id, key, request_hash, lease_until, request_id, head_position) \
         VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond', $5, \
                 (SELECT coalesce(max(position), 0) FROM events)) \
         ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(key)
    .bind(request_hash)
    .bind(lease_ms)
    .bind(&claimant.request_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        tx.commit().await?;
        return Ok(None);
    }
    let stored: Option<StoredAnswer> = sqlx::query_as(
        "SELECT request_hash, status_code, response_body, location, request_id, head_position, \
                extract(epoch FROM lease_until - now())::float8 * 1000 AS lease_left_ms \
         FROM idempotency_keys WHERE account_id = $1 AND key = $2 FOR UPDATE",
    )
    .bind(account_id)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(stored) = stored else {
        // Released between the insert and the read: claim it on the next try.
        return Ok(Some(in_progress(1)));
    };
    if stored.request_hash != request_hash {
        return Err(ApiError::Unprocessable {
            slug: "idempotency-key-reused",
            detail: "This Idempotency-Key was used with another request; use a new key.".into(),
        });
    }
    if let (Some(status), Some(body)) = (stored.status_code, stored.response_body.clone()) {
        return Ok(Some(replayed(status, stored.location.as_deref(), body)));
    }
    let left_ms = stored.lease_left_ms.unwrap_or(0.0);
    if left_ms > 0.0 {
        return Ok(Some(in_progress((left_ms / 1000.0).ceil() as u64)));
    }
    // The lease has run out without an answer: did that attempt commit?
    let earlier = (stored.request_id.as_deref(), stored.head_position);
    if let (Some(request_id), Some(head)) = earlier {
        if let Some(answer) = outcome(&mut tx, account_id, request_id, head, request).await? {
            store_answer(&mut *tx, account_id, key, &answer).await?;
            tx.commit().await?;
            tracing::info!(
                key,
                "idempotency: a lapsed claim had committed; its answer is replayed"
            );
            let body = serde_json::to_vec(&answer.body)?;
            return Ok(Some(replayed(
                i32::from(answer.status.as_u16()),
                answer.location.as_deref(),
                body,
            )));
        }
    }
    // It did not: this request takes the key over and runs the command.
    sqlx::query(
        "UPDATE idempotency_keys SET lease_until = now() + $3 * interval '1 millisecond', \
                request_id = $4, head_position = (SELECT coalesce(max(position), 0) FROM events) \
         WHERE account_id = $1 AND key = $2",
    )
    .bind(account_id)
    .bind(key)
    .bind(lease_ms)
    .bind(&claimant.request_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(None)
}

/// The 409 while another request holds the key, with `Retry-After`: when its lease ends.
fn in_progress(retry_after_secs: u64) -> Response {
    let mut response = ApiError::Conflict {
        slug: "idempotency-in-progress",
        detail: "A request with this Idempotency-Key is still being processed; retry after \
                 `Retry-After` seconds."
            .into(),
        field: None,
    }
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

fn replayed(status: i32, location: Option<&str>, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let version = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["version"].as_u64());
    respond(status, location, body, version, true)
}

/// The answer of an attempt whose claim lapsed, from the events it committed: those after
/// `head` that carry its request id and account. `None` if it committed nothing. The answer is
/// the one the endpoint gives: a create (a `POST` whose route has no `{id}`) is a 201 for the
/// record it created, anything else a 200 for the record of the path (or of the events).
async fn outcome(
    conn: &mut PgConnection,
    account_id: Uuid,
    request_id: &str,
    head: i64,
    request: &CommandRequest,
) -> Result<Option<CommandResponse>, ApiError> {
    let rows: Vec<(String, String, i64, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, position, payload::jsonb FROM events \
         WHERE position > $1 AND metadata ->> 'request_id' = $2 AND metadata ->> 'actor_id' = $3 \
         ORDER BY position",
    )
    .bind(head)
    .bind(request_id)
    .bind(account_id.to_string())
    .fetch_all(conn)
    .await?;
    let Some((kind, stream, _, _, payload)) = rows.first() else {
        return Ok(None);
    };
    let version = rows
        .iter()
        .filter(|r| &r.1 == stream)
        .map(|r| r.2)
        .max()
        .unwrap_or(0) as u64;
    let position = rows.iter().map(|r| r.3).max();
    let entity = stream
        .split_once(':')
        .and_then(|(_, id)| Uuid::parse_str(id).ok());
    let route = request.route.as_deref().unwrap_or(&request.path);
    let created = request.method == Method::POST && !route.contains('{');
    let id = if let Some(i) = route.split('/').position(|s| s == "{id}") {
        request
            .path
            .split('/')
            .nth(i)
            .and_then(|s| Uuid::parse_str(s).ok())
    } else {
        // A create of a record kept in another aggregate's stream (a department in the
        // clinic's) names it in the payload: `department_id` for `/v1/clinic/departments`.
        let resource = route.rsplit('/').next().unwrap_or_default();
        let singular = resource.strip_suffix('s').unwrap_or(resource);
        if created && !kind.eq_ignore_ascii_case(singular) {
            payload
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|body| body[format!("{singular}_id")].as_str())
                .and_then(|s| Uuid::parse_str(s).ok())
        } else {
            entity
        }
    };
    let Some(id) = id else {
        return Ok(None);
    };
    Ok(Some(CommandResponse {
        status: if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        location: created.then(|| format!("{}/{id}", request.path.trim_end_matches('/'))),
        body: CommandAccepted {
            id,
            version,
            position,
        },
    }))
}
