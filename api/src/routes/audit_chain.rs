//! Tamper evidence: `GET /v1/audit/verify` recomputes the caller's clinic's hash chain and
//! reports the first altered position (or "intact"); `GET /v1/audit/chain/head` exports the
//! chain head, for an auditor to keep outside the system and check later
//! (`?head_position=&head_hash=`). Auditors and clinic admins of the clinic only; the chain
//! is built by the `audit_chain` projection (`projections::audit_chain`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::Uri;
use axum::Json;
use projections::audit_chain::{self as chain, ChainHead, ExpectedHead, Verification};
use serde::{Deserialize, Deserializer};
use utoipa::openapi::{RefOr, Response as OpenApiResponse};
use utoipa::{IntoParams, IntoResponses};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{problem_responses, ApiError, FieldError, UNAUTHORIZED};
use crate::query::{self, NoParams, Query};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify_chain))
        .routes(routes!(chain_head))
}

/// The problems the chain endpoints may answer with (documentation only).
pub struct ChainProblems;

impl IntoResponses for ChainProblems {
    fn responses() -> BTreeMap<String, RefOr<OpenApiResponse>> {
        problem_responses(&[
            (400, "Malformed query string"),
            (401, UNAUTHORIZED),
            (403, "Not an auditor or clinic admin of a clinic (the platform admin included), or the clinic is suspended"),
            (422, "An invalid query parameter, named in `errors`"),
        ])
    }
}

/// An exported head to check, `head_position` and `head_hash` (both or neither).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyParams {
    /// Position of an exported chain head
    #[serde(default, deserialize_with = "head_position")]
    pub head_position: Option<i64>,
    /// Its hash, 64 hex digits
    #[serde(default, deserialize_with = "head_hash")]
    #[param(value_type = Option<String>)]
    pub head_hash: Option<[u8; 32]>,
}

const HEAD_POSITION_RULE: &str =
    "must be a positive integer (a position exported by /v1/audit/chain/head)";
const HEAD_HASH_RULE: &str = "must be 64 hex digits";

fn head_position<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    query::with(d, |raw| {
        raw.parse::<i64>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| HEAD_POSITION_RULE.into())
    })
}

fn head_hash<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
    query::with(d, |raw| {
        chain::parse_hash(raw).ok_or_else(|| HEAD_HASH_RULE.into())
    })
}

impl VerifyParams {
    /// An exported head given with an empty value is refused: an auditor who sends one
    /// must not get a report that silently checked no head. (Elsewhere an empty value counts
    /// as absent.)
    fn refuse_empty(uri: &Uri) -> Result<(), ApiError> {
        let pairs = query::pairs(uri)?;
        let errors: Vec<FieldError> = [
            ("head_position", HEAD_POSITION_RULE),
            ("head_hash", HEAD_HASH_RULE),
        ]
        .into_iter()
        .filter(|(name, _)| pairs.iter().any(|(n, v)| n == name && v.trim().is_empty()))
        .map(|(name, message)| FieldError::new(name, message))
        .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    fn expected_head(&self) -> Result<Option<ExpectedHead>, ApiError> {
        match (self.head_position, self.head_hash) {
            (Some(position), Some(hash)) => Ok(Some(ExpectedHead { position, hash })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ApiError::field("head_hash", "required with head_position")),
            (None, Some(_)) => Err(ApiError::field("head_position", "required with head_hash")),
        }
    }
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
    params(VerifyParams),
    responses((status = 200, description = "The verification report", body = Verification), ChainProblems))]
async fn verify_chain(
    State(state): State<AppState>,
    principal: Principal,
    uri: Uri,
    params: Result<Query<VerifyParams>, ApiError>,
) -> Result<Json<Verification>, ApiError> {
    principal.require(roles::AUDIT)?;
    let clinic = principal.clinic()?;
    VerifyParams::refuse_empty(&uri)?;
    let Query(params) = params?;
    let expected = params.expected_head()?;
    let verification = chain::verify(&state.pool, clinic, expected).await?;
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
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Json<ChainHead>, ApiError> {
    principal.require(roles::AUDIT)?;
    let clinic = principal.clinic()?;
    // It takes no parameter: an unknown one (a `clinic_id`) is a 422 naming it, as everywhere.
    params?;
    let head = chain::head(&state.pool, clinic).await?;
    Ok(Json(head))
}
