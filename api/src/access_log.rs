//! The access log (HIPAA-style): every request that reads a patient's data is recorded once,
//! allowed or not, in the append-only table `access_log` (who, role, which patient, which
//! endpoint, outcome, request id, client IP). It fails closed: patient data whose access
//! cannot be recorded is not served (500); a refusal is answered as it was either way.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use projections::audit::{AccessOutcome, NewAccess};
use uuid::Uuid;

use crate::auth::Principal;
use crate::problem::ApiError;
use crate::state::AppState;

/// The client's IP address, from the connection (`ConnectInfo`); `None` when the server was
/// not started with connect info. Never rejects.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip()),
        ))
    }
}

/// The outcome a handler's result stands for: 2xx `allowed`, 403 `denied`, 404 `not_found`;
/// `None` for other failures (invalid parameters, unavailable, internal), which read nothing
/// and refuse nothing.
pub fn outcome_of<T>(result: &Result<T, ApiError>) -> Option<AccessOutcome> {
    match result {
        Ok(_) => Some(AccessOutcome::Allowed),
        Err(ApiError::Forbidden(_)) | Err(ApiError::ClinicSuspended) => Some(AccessOutcome::Denied),
        Err(ApiError::NotFound(_)) => Some(AccessOutcome::NotFound),
        Err(_) => None,
    }
}

/// Records one access by `principal` to `patient_id`'s data through `endpoint`
/// (`"GET /v1/patients/{id}"`). The platform admin has no clinic, hence no clinic log: their
/// (always refused) attempts are only traced.
pub async fn record(
    state: &AppState,
    principal: &Principal,
    patient_id: Option<Uuid>,
    endpoint: &str,
    outcome: AccessOutcome,
    client_ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let Some(clinic) = principal.clinic_id else {
        tracing::info!(
            endpoint,
            outcome = outcome.as_str(),
            "patient data access attempt without a clinic (platform admin)"
        );
        return Ok(());
    };
    let access = NewAccess {
        clinic,
        actor_id: principal.account_id,
        role: principal.role.as_str(),
        patient_id,
        endpoint,
        outcome,
        request_id: &principal.request_id,
        client_ip,
        at: state.clock.now(),
    };
    projections::audit::append_access(&state.pool, &access)
        .await
        .map_err(ApiError::internal)
}

/// Records the access a handler's `result` stands for (see [`outcome_of`]) and passes the
/// result on. If an allowed read cannot be recorded, the answer is a 500 instead.
pub async fn logged<T>(
    state: &AppState,
    principal: &Principal,
    patient_id: Option<Uuid>,
    endpoint: &str,
    client_ip: ClientIp,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(outcome) = outcome_of(&result) else {
        return result;
    };
    match record(state, principal, patient_id, endpoint, outcome, client_ip.0).await {
        Ok(()) => result,
        Err(e) if result.is_ok() => Err(e),
        Err(e) => {
            tracing::error!(
                error = %crate::problem::error_chain(&e),
                endpoint,
                "could not write the access log"
            );
            result
        }
    }
}
