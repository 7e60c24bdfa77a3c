//! `POST /v1/auth/login`, `/refresh`, `/logout` and `GET /v1/me`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use commands::accounts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{refresh, Principal};
use crate::http::JsonBody;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

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

const BAD_CREDENTIALS: &str = "the e-mail or password is wrong";

async fn issue_tokens(
    state: &AppState,
    account: &accounts::Account,
    family: Uuid,
) -> Result<TokenResponse, ApiError> {
    let role = account.actor_role()?;
    let (access_token, expires_in) =
        state
            .jwt
            .issue(account.id, account.clinic_id, role, state.clock.now())?;
    let refresh_token = refresh::issue(&state.pool, account.id, family, state.clock.now()).await?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        token_type: "Bearer".into(),
        expires_in,
    })
}

/// Log in with e-mail and password. A wrong password and an unknown e-mail get the same 401
/// in about the same time; after 5 failures in 15 minutes the e-mail is locked for 15 minutes
/// (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong e-mail or password", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account's clinic is suspended", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failures for this e-mail", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Json<TokenResponse>, ApiError> {
    let req: LoginRequest = body.parse()?;
    if req.email.len() > 254 || req.password.len() > commands::accounts::credentials::MAX_LENGTH * 4
    {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    if let Some(wait) = accounts::begin_attempt(&state.pool, &req.email, state.clock.now()).await? {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: wait,
            detail: "Too many failed log-ins for this e-mail; try again later.".into(),
        });
    }
    let account = accounts::find_by_email(&state.pool, &req.email).await?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    let verified = commands::accounts::credentials::verify(hash, req.password).await;
    let account = match account {
        Some(a) if verified && a.active => a,
        // The attempt was already counted by `begin_attempt`.
        _ => return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into())),
    };
    if account.clinic_suspended {
        return Err(ApiError::ClinicSuspended);
    }
    accounts::clear_failures(&state.pool, &req.email).await?;
    tracing::info!(account_id = %account.id, "logged in");
    Ok(Json(issue_tokens(&state, &account, Uuid::new_v4()).await?))
}

/// Exchange a refresh token for a new pair. Each refresh token works once; presenting a spent
/// one revokes every token of its login.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, spent, revoked or expired refresh token, or a deactivated account", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account's clinic is suspended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh_tokens(
    State(state): State<AppState>,
    body: JsonBody,
) -> Result<Json<TokenResponse>, ApiError> {
    let req: RefreshRequest = body.parse()?;
    let refused = || ApiError::Unauthorized("the refresh token is not valid".into());
    // A suspended clinic's token is refused without being spent, so it still works after the
    // clinic is reactivated.
    if let Some(owner) = refresh::owner(&state.pool, &req.refresh_token).await? {
        let account = accounts::find_by_id(&state.pool, owner).await?;
        if account.is_some_and(|a| a.clinic_suspended) {
            return Err(ApiError::ClinicSuspended);
        }
    }
    let (account_id, family) = refresh::consume(&state.pool, &req.refresh_token, state.clock.now())
        .await?
        .map_err(|why| {
            tracing::info!(reason = ?why, "refresh token refused");
            refused()
        })?;
    let account = accounts::find_by_id(&state.pool, account_id)
        .await?
        .filter(|a| a.active)
        .ok_or_else(refused)?;
    if account.clinic_suspended {
        return Err(ApiError::ClinicSuspended);
    }
    Ok(Json(issue_tokens(&state, &account, family).await?))
}

/// Log out: revokes the refresh token and every token of its login. Always 204.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Logged out")))]
async fn logout(State(state): State<AppState>, body: JsonBody) -> Result<StatusCode, ApiError> {
    let req: RefreshRequest = body.parse()?;
    refresh::revoke(&state.pool, &req.refresh_token).await?;
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
