//! The access log (HIPAA-style): every request whose answer carries a patient's data is
//! recorded once, allowed or not, in the append-only table `access_log` (who, role, which
//! patient or patients, the filter of a list or export, which endpoint, outcome, request id,
//! client IP). It fails closed: patient data whose access cannot be recorded is not served
//! (500); a refusal is answered as it was either way.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::Uri;
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
        Err(ApiError::Forbidden(_))
        | Err(ApiError::ClinicSuspended)
        | Err(ApiError::ModuleDisabled(_)) => Some(AccessOutcome::Denied),
        Err(ApiError::NotFound(_)) => Some(AccessOutcome::NotFound),
        Err(_) => None,
    }
}

/// Whose data a recorded request is about.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    /// The one patient whose record was read (or asked for).
    pub patient_id: Option<Uuid>,
    /// The patients a list, search or page returned.
    pub patient_ids: Vec<Uuid>,
    /// The query parameters of a list, search or export.
    pub filter: Option<serde_json::Value>,
}

impl Subjects {
    /// One patient's record.
    pub fn patient(patient_id: Option<Uuid>) -> Self {
        Subjects {
            patient_id,
            ..Subjects::default()
        }
    }

    /// A list's answer: the patients it returned, and the query string it was asked with.
    pub fn list(uri: &Uri, patient_ids: impl IntoIterator<Item = Uuid>) -> Self {
        let mut ids: Vec<Uuid> = patient_ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Subjects {
            patient_id: None,
            patient_ids: ids,
            filter: Some(filter_of(uri)),
        }
    }
}

/// `uri`'s query parameters as a JSON object (a parameter given twice keeps its last value; a
/// malformed query string is an empty object: such a request was refused anyway).
pub fn filter_of(uri: &Uri) -> serde_json::Value {
    let pairs = crate::query::pairs(uri).unwrap_or_default();
    serde_json::Value::Object(
        pairs
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect(),
    )
}

/// Records one access by `principal` to the data of `subjects` through `endpoint`
/// (`"GET /v1/patients/{id}"`). The platform admin has no clinic, hence no clinic log: their
/// (always refused) attempts are only traced.
pub async fn record(
    state: &AppState,
    principal: &Principal,
    subjects: &Subjects,
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
        patient_id: subjects.patient_id,
        patient_ids: &subjects.patient_ids,
        filter: subjects.filter.as_ref(),
        endpoint,
        outcome,
        request_id: &principal.request_id,
        client_ip,
        at: state.clock.now(),
    };
    state
        .access
        .append(&access)
        .await
        .map_err(ApiError::internal)
}

/// Records the access a handler's `result` stands for (see [`outcome_of`]) and passes the
/// result on. If an allowed read cannot be recorded, the answer is a 500 instead.
pub async fn logged<T>(
    state: &AppState,
    principal: &Principal,
    subjects: Subjects,
    endpoint: &str,
    client_ip: ClientIp,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Some(outcome) = outcome_of(&result) else {
        return result;
    };
    match record(state, principal, &subjects, endpoint, outcome, client_ip.0).await {
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
