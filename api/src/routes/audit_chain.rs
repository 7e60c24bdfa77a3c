//! Tamper evidence: `GET /v1/audit/verify` recomputes the caller's clinic's hash chain and
//! reports the first altered position (or "intact"); `GET /v1/audit/chain/head` exports the
//! chain head, for an auditor to keep outside the system and check later
//! (`?head_position=&head_hash=`). Auditors and clinic admins of the clinic only; the chain
//! is built by the `audit_chain` projection (`projections::audit_chain`).

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::Json;
use commands::ActorRole;
use projections::audit_chain::{self as chain, ChainHead, ExpectedHead, Verification};
use utoipa::IntoResponses;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiError, FieldError, Problem};
use crate::startup::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_chain))
        .routes(routes!(chain_head))
}

/// Who may verify a clinic's history.
pub const CHAIN_ROLES: &[ActorRole] = &[ActorRole::Auditor, ActorRole::ClinicAdmin];

/// The problems the chain endpoints may answer with (documentation only).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum ChainProblems {
    #[response(
        status = 400,
        description = "Malformed query string",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "No token, or an invalid, expired, `alg: none` or wrong-audience token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Not an auditor or clinic admin of a clinic (the platform admin included), or the clinic is suspended",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 422,
        description = "An invalid query parameter, named in `errors`",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
}

/// Reads `head_position` and `head_hash` (both or neither); anything else is a 422.
fn expected_head(uri: &Uri) -> Result<Option<ExpectedHead>, ApiError> {
    let pairs: Vec<(String, String)> = match uri.query() {
        None => Vec::new(),
        Some(_) => Query::<Vec<(String, String)>>::try_from_uri(uri)
            .map(|Query(pairs)| pairs)
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?,
    };
    let mut errors = Vec::new();
    let mut position = None;
    let mut hash = None;
    for (name, value) in &pairs {
        let value = value.trim();
        match name.as_str() {
            "head_position" | "head_hash"
                if pairs.iter().filter(|(n, _)| n == name).count() > 1 =>
            {
                if !errors.iter().any(|e: &FieldError| &e.field == name) {
                    errors.push(FieldError::new(name.clone(), "given more than once"));
                }
            }
            "head_position" => match value.parse::<i64>() {
                Ok(p) if p > 0 => position = Some(p),
                _ => errors.push(FieldError::new(
                    "head_position",
                    "must be a positive integer (a position exported by /v1/audit/chain/head)",
                )),
            },
            "head_hash" => match chain::parse_hash(value) {
                Some(h) => hash = Some(h),
                None => errors.push(FieldError::new("head_hash", "must be 64 hex digits")),
            },
            other => errors.push(FieldError::new(
                other,
                "unknown query parameter (known: head_position, head_hash)",
            )),
        }
    }
    if errors.is_empty() {
        match (position, hash) {
            (Some(position), Some(hash)) => return Ok(Some(ExpectedHead { position, hash })),
            (None, None) => return Ok(None),
            (Some(_), None) => {
                errors.push(FieldError::new("head_hash", "required with head_position"))
            }
            (None, Some(_)) => {
                errors.push(FieldError::new("head_position", "required with head_hash"))
            }
        }
    }
    Err(ApiError::Validation(errors))
}

/// Verify the clinic's event history against its hash chain.
///
/// Recomputes `hash_n = SHA-256(hash_{n-1} || canonical bytes of event n)` over the clinic's
/// events in commit order and compares it with the stored chain. Reports the first position
/// where an event was `changed`, `removed` or `inserted`, or `intact`; events the chain does
/// not cover yet (worker lag) are `pending`, not tampering. With `head_position` and
/// `head_hash` (an exported head), it also checks the recomputed hash at that position: a
/// mismatch means history was rewritten together with the stored chain. Always 200: the
/// answer is a report.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    params(
        ("head_position" = Option<i64>, Query, description = "Position of an exported chain head"),
        ("head_hash" = Option<String>, Query, description = "Its hash, 64 hex digits"),
    ),
    responses((status = 200, description = "The verification report", body = Verification), ChainProblems))]
async fn verify_chain(
    State(state): State<AppState>,
    principal: Principal,
    uri: Uri,
) -> Result<Json<Verification>, ApiError> {
    principal.require(CHAIN_ROLES)?;
    let clinic = principal.clinic()?;
    let expected = expected_head(&uri)?;
    let verification = chain::verify(&state.pool, clinic, expected)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(verification))
}

/// The head of the clinic's hash chain, to keep outside the system.
///
/// `{position, hash, events}`: the newest chained event's position, its chain hash (hex) and
/// how many events the chain covers. Pass position and hash back to `GET /v1/audit/verify`
/// (or `clinic verify --expect-head POS:HEX`) later to check that history was not rewritten.
#[utoipa::path(get, path = "/v1/audit/chain/head", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "The chain head", body = ChainHead), ChainProblems))]
async fn chain_head(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<ChainHead>, ApiError> {
    principal.require(CHAIN_ROLES)?;
    let clinic = principal.clinic()?;
    let head = chain::head(&state.pool, clinic)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(head))
}
