//! `POST /v1/auth/login`, `/refresh`, `/logout` and `GET /v1/me`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use commands::accounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::openapi::{RefOr, Response};
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{refresh, Principal};
use crate::access_log::ClientIp;
use crate::http::JsonBody;
use crate::problem::{problem_responses, ApiError, Problem};
use crate::state::AppState;

/// What the body of a log-in, refresh or log-out can be refused for, and the database being
/// away (documentation only; `scripts/fuzz-api` found them missing from the document).
struct BodyProblems;

impl IntoResponses for BodyProblems {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problem_responses(&[
            (400, "Malformed JSON"),
            (413, "Body over 64 KiB"),
            (415, "Body is not application/json"),
            (422, "Invalid body: a field missing, mistyped, unknown, or with U+0000 (named in `errors`)"),
            (503, "The database cannot be reached (`Retry-After`)"),
        ])
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh_tokens))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "admin@north.example")]
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// JWT (HS256), valid for `expires_in` seconds.
    pub access_token: String,
    /// Opaque; exchange it once at `/v1/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub email: String,
    /// `platform_admin`, `clinic_admin`, `doctor`, `nurse`, `receptionist` or `auditor`.
    pub role: String,
    /// Absent for the platform admin.
    pub clinic_id: Option<Uuid>,
}

/// What logging in and refreshing answer.
type Tokens = Result<Json<TokenResponse>, ApiError>;

fn token_answer(
    state: &AppState,
    account: &accounts::Account,
    refresh_token: String,
) -> Result<TokenResponse, ApiError> {
    let role = account.actor_role()?;
    // Never before the account's cut-off (a logout in this same second), or the new token
    // would be refused at once.
    let now = state.clock.now();
    let issued_at = account
        .tokens_valid_after
        .map_or(now, |after| now.max(after));
    let (access_token, expires_in) =
        state
            .jwt
            .issue(account.id, account.clinic_id, role, issued_at)?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        token_type: "Bearer".into(),
        expires_in,
    })
}

/// Log in with e-mail and password. A wrong password and an unknown e-mail get the same 401
/// in about the same time; after 5 failures in 15 minutes the e-mail is locked for 15 minutes,
/// after 100 the client's address (429 with `Retry-After`). While too many password checks
/// are running or waiting, a log-in is a 429 with `Retry-After: 1` at once.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account's clinic is suspended", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures for this e-mail or from this address, or too many log-ins being checked", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
    ))]
async fn login(State(state): State<AppState>, client: ClientIp, body: JsonBody) -> Tokens {
    let req: LoginRequest = body.parse()?;
    let now = state.clock.now();
    let gate = &state.password_checks;
    let account =
        accounts::log_in(&state.pool, gate, &req.email, req.password, client.0, now).await?;
    tracing::info!(account_id = %account.id, "logged in");
    let refresh_token =
        refresh::issue(&state.pool, account.id, Uuid::new_v4(), state.clock.now()).await?;
    Ok(Json(token_answer(&state, &account, refresh_token)?))
}

/// Exchange a refresh token for a new pair. Each refresh token works once; presenting a spent
/// one revokes every token of its login.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, spent, revoked or expired refresh token, or a deactivated account", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account's clinic is suspended", body = Problem, content_type = "application/problem+json"),
        BodyProblems,
    ))]
async fn refresh_tokens(State(state): State<AppState>, body: JsonBody) -> Tokens {
    let req: RefreshRequest = body.parse()?;
    let (account, refresh_token) =
        refresh::rotate(&state.pool, &req.refresh_token, state.clock.now()).await?;
    Ok(Json(token_answer(&state, &account, refresh_token)?))
}

/// Log out: revokes the refresh token and every token of its login, and ends every access
/// token of the account issued so far (other logins get new ones with their refresh tokens).
/// 204 for any well-formed body, a token that is unknown or already revoked included.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Logged out"), BodyProblems))]
async fn logout(State(state): State<AppState>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let req: RefreshRequest = body.parse()?;
    refresh::revoke(&state.pool, &req.refresh_token, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<Json<Me>, ApiError> {
    let account = accounts::find_by_id(&state.pool, principal.account_id)
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
    Ok(Json(Me {
        id: account.id,
        email: account.email,
        role: account.role,
        clinic_id: account.clinic_id,
    }))
}
