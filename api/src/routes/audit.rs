//! The auditor's endpoints (auditor and clinic admin only; always the caller's own clinic):
//!
//! - `GET /v1/audit/events`: the clinic's events in commit order, streamed as NDJSON;
//! - `GET /v1/audit/patients/{id}/history`, `GET /v1/audit/appointments/{id}/history`: one
//!   record's events;
//! - `GET /v1/audit/state`: one aggregate's state as it stood at an instant, rebuilt by
//!   replaying its events through the domain aggregate's `apply`;
//! - `GET /v1/audit/access-log`: who read which patient's data.
//!
//! Reading a patient's history (or a patient's state) is itself recorded in the access log.

use std::str::FromStr;

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use commands::ActorRole;
use domain::ids::ClinicId;
use domain::replay::{replay, StoredEvent};
use futures::StreamExt;
use projections::audit::{
    self, AccessFilter, AccessLogPage, AuditEvent, EventFilter, AGGREGATE_TYPES,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access_log::{self, ClientIp};
use crate::auth::Principal;
use crate::http::IdPath;
use crate::problem::{ApiError, FieldError, Problem};
use crate::startup::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_events))
        .routes(routes!(patient_history))
        .routes(routes!(appointment_history))
        .routes(routes!(state_as_of))
        .routes(routes!(access_log_list))
}

/// Who may use the audit endpoints.
pub const AUDIT_ROLES: &[ActorRole] = &[ActorRole::Auditor, ActorRole::ClinicAdmin];

/// NDJSON's media type.
pub const NDJSON: &str = "application/x-ndjson";

/// The most events one stream request may ask for with `limit`.
pub const MAX_STREAM_LIMIT: i64 = 1_000_000;
/// Access-log page sizes.
pub const DEFAULT_ACCESS_LIMIT: i64 = 100;
pub const MAX_ACCESS_LIMIT: i64 = 1000;
/// Events buffered between the database cursor and the HTTP body.
const STREAM_BUFFER: usize = 64;

/// The problems every audit endpoint may answer with (documentation only).
#[allow(dead_code)]
#[derive(IntoResponses)]
pub enum AuditProblems {
    #[response(
        status = 401,
        description = "No token, or an invalid or expired one",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Not an auditor or clinic admin (the platform admin included), or the clinic is suspended",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such record in the caller's clinic (another clinic's record included)",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 422,
        description = "An invalid query parameter (or a malformed `{id}`), named in `errors`",
        content_type = "application/problem+json"
    )]
    Unprocessable(Problem),
}

// ---------------------------------------------------------------------------------------
// Query parameters: each endpoint names the ones it knows; an unknown one, one given twice,
// or a value that does not parse is a 422 naming it. An empty value counts as absent.

#[derive(Debug, Clone, Default)]
pub struct AuditParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for AuditParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_none() {
            return Ok(AuditParams::default());
        }
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| AuditParams(pairs))
            .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))
    }
}

struct Reader<'a> {
    params: &'a AuditParams,
    errors: Vec<FieldError>,
}

impl AuditParams {
    fn reader(&self, known: &[&str]) -> Reader<'_> {
        let mut errors: Vec<FieldError> = Vec::new();
        for (i, (name, _)) in self.0.iter().enumerate() {
            if errors.iter().any(|e| &e.field == name) {
                continue;
            }
            if !known.contains(&name.as_str()) {
                errors.push(FieldError::new(
                    name.clone(),
                    format!("unknown query parameter (known: {})", known.join(", ")),
                ));
            } else if self.0[..i].iter().any(|(n, _)| n == name) {
                errors.push(FieldError::new(name.clone(), "given more than once"));
            }
        }
        Reader {
            params: self,
            errors,
        }
    }
}

impl Reader<'_> {
    fn parse<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let raw = self
            .params
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())?;
        match parse(raw) {
            Ok(v) => Some(v),
            Err(message) => {
                self.error(name, message);
                None
            }
        }
    }

    /// Like `parse`, but the parameter must be given.
    fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let given = self
            .params
            .0
            .iter()
            .any(|(n, v)| n == name && !v.trim().is_empty());
        if !given {
            self.error(name, "is required");
            return None;
        }
        self.parse(name, parse)
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

fn uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| "must be a UUID".into())
}

/// An RFC 3339 instant; an unencoded `+` (arriving as a space) is read as `+`.
fn instant(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 instant, e.g. 2026-03-01T09:00:00Z".into())
}

fn int_in(raw: &str, min: i64, max: i64) -> Result<i64, String> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be an integer from {min} to {max}"))
}

/// `Patient`, `patient`, `PATIENT` → `Patient`.
pub fn aggregate_type(raw: &str) -> Result<&'static str, String> {
    AGGREGATE_TYPES
        .iter()
        .copied()
        .find(|t| t.eq_ignore_ascii_case(raw))
        .ok_or_else(|| format!("must be one of {}", AGGREGATE_TYPES.join(", ")))
}

/// 403 unless an auditor or clinic admin; the caller's clinic.
fn auditor_clinic(principal: &Principal) -> Result<ClinicId, ApiError> {
    principal.require(AUDIT_ROLES)?;
    principal.clinic()
}

/// An audit event as the domain's replay reads it.
fn stored(e: &AuditEvent) -> StoredEvent<'_> {
    StoredEvent {
        position: e.position,
        event_type: &e.event_type,
        payload: &e.payload,
    }
}

// ---------------------------------------------------------------------------------------
// The event stream.

/// The clinic's events as NDJSON, in commit order.
///
/// One line per event: `{position, time, aggregate_type, aggregate_id, sequence, event_type,
/// event_version, payload, actor, role, request_id}` (see `AuditEvent`). Events are listed in
/// commit order (transaction, then position) and only once every transaction that could
/// precede them has ended, so a stream resumed with `after_position` = the last position
/// received never misses an event and never repeats one. The answer is streamed from a
/// database cursor; `limit` bounds one request.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(
        ("after_position" = Option<i64>, Query, description = "Resume after the event at this position (the last line received); it must be one of the clinic's events. 0 or absent: from the start", minimum = 0),
        ("since" = Option<DateTime<Utc>>, Query, description = "Events that occurred at or after this instant (RFC 3339)"),
        ("until" = Option<DateTime<Utc>>, Query, description = "Events that occurred at or before this instant (RFC 3339)"),
        ("aggregate_type" = Option<String>, Query, description = "`Clinic`, `Staff`, `Patient` or `Appointment`"),
        ("aggregate_id" = Option<Uuid>, Query, description = "One record's events (its id)"),
        ("limit" = Option<i64>, Query, description = "At most this many events (1 to 1000000); default all", minimum = 1, maximum = 1000000),
    ),
    responses(
        (status = 200, description = "One `AuditEvent` JSON object per line", body = AuditEvent, content_type = "application/x-ndjson"),
        AuditProblems,
    ))]
async fn stream_events(
    State(state): State<AppState>,
    principal: Principal,
    params: AuditParams,
) -> Result<Response, ApiError> {
    let clinic = auditor_clinic(&principal)?;
    let mut p = params.reader(&[
        "after_position",
        "since",
        "until",
        "aggregate_type",
        "aggregate_id",
        "limit",
    ]);
    let after_position = p.parse("after_position", |r| int_in(r, 0, i64::MAX));
    let since = p.parse("since", instant);
    let until = p.parse("until", instant);
    if let (Some(since), Some(until)) = (since, until) {
        if until < since {
            p.error("until", "must not be before `since`");
        }
    }
    let kind = p.parse("aggregate_type", aggregate_type);
    let aggregate_id = p.parse("aggregate_id", uuid);
    let limit = p.parse("limit", |r| int_in(r, 1, MAX_STREAM_LIMIT));
    if let Some(after) = after_position.filter(|a| *a > 0) {
        if !audit::is_clinic_event(&state.pool, clinic, after).await? {
            p.error(
                "after_position",
                "must be the position of one of this clinic's events (the last line received)",
            );
        }
    }
    p.finish()?;

    let filter = EventFilter {
        after_position,
        since,
        until,
        aggregate_type: kind.map(str::to_owned),
        aggregate_id,
        limit,
    };
    ndjson_response(audit::stream_events(
        state.pool.clone(),
        clinic,
        filter,
        STREAM_BUFFER,
    ))
    .await
}

/// Waits for the first event (so a failing query is still a proper 500), then streams the
/// rest as NDJSON. A database error later cuts the body short (the client sees an aborted
/// transfer, never a partial line presented as complete).
async fn ndjson_response(
    mut rx: tokio::sync::mpsc::Receiver<Result<AuditEvent, sqlx::Error>>,
) -> Result<Response, ApiError> {
    let first = match rx.recv().await {
        Some(Err(e)) => return Err(ApiError::internal(e)),
        other => other,
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let lines = futures::stream::iter(first)
        .chain(rest)
        .map(|item| match item {
            Ok(event) => Ok::<_, std::io::Error>(bytes::Bytes::from(event.to_ndjson_line())),
            Err(e) => {
                tracing::error!(error = %e, "audit event stream failed");
                Err(std::io::Error::other("the event stream failed"))
            }
        });
    let mut response = Body::from_stream(lines).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// Histories.

async fn history(
    state: &AppState,
    principal: &Principal,
    aggregate_type: &str,
    id: Uuid,
    params: &AuditParams,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let clinic = auditor_clinic(principal)?;
    params.reader(&[]).finish()?;
    let events = audit::record_events(&state.pool, clinic, aggregate_type, id, None).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound(format!(
            "no {} with this id in your clinic",
            aggregate_type.to_lowercase()
        )));
    }
    Ok(Json(events))
}

/// A patient's events, oldest first (same shape as the lines of `/v1/audit/events`). Recorded
/// in the access log, allowed or refused.
#[utoipa::path(get, path = "/v1/audit/patients/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Patient id")),
    responses((status = 200, description = "The patient's events", body = Vec<AuditEvent>), AuditProblems))]
async fn patient_history(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    IdPath(id): IdPath,
    params: AuditParams,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let result = history(&state, &principal, "Patient", id, &params).await;
    access_log::logged(
        &state,
        &principal,
        Some(id),
        "GET /v1/audit/patients/{id}/history",
        client_ip,
        result,
    )
    .await
}

/// An appointment's events, oldest first (same shape as the lines of `/v1/audit/events`).
#[utoipa::path(get, path = "/v1/audit/appointments/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "The appointment's events", body = Vec<AuditEvent>), AuditProblems))]
async fn appointment_history(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath,
    params: AuditParams,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    history(&state, &principal, "Appointment", id, &params).await
}

// ---------------------------------------------------------------------------------------
// State as of an instant.

/// An aggregate's state as it stood at `as_of`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StateAsOf {
    pub aggregate_type: String,
    pub aggregate_id: Uuid,
    pub as_of: DateTime<Utc>,
    /// The record's version then: the sequence of the last event at or before `as_of`.
    pub version: i64,
    /// The domain aggregate, serialised.
    #[schema(value_type = Object)]
    pub state: Value,
}

async fn state_inner(
    state: &AppState,
    principal: &Principal,
    params: &AuditParams,
) -> Result<(Json<StateAsOf>, Option<Uuid>), ApiError> {
    let clinic = auditor_clinic(principal)?;
    let mut p = params.reader(&["as_of", "aggregate_type", "aggregate_id"]);
    let as_of = p.required("as_of", instant);
    let kind = p.required("aggregate_type", aggregate_type);
    let id = p.required("aggregate_id", uuid);
    p.finish()?;
    let (Some(as_of), Some(kind), Some(id)) = (as_of, kind, id) else {
        return Err(ApiError::field("as_of", "is required"));
    };
    let events = audit::record_events(&state.pool, clinic, kind, id, Some(as_of)).await?;
    let Some(last) = events.last() else {
        return Err(ApiError::NotFound(format!(
            "no {} with this id existed in your clinic at that instant",
            kind.to_lowercase()
        )));
    };
    let version = last.sequence;
    let replayed = replay(kind, events.iter().map(stored))?
        .ok_or_else(|| ApiError::field("aggregate_type", "unknown aggregate type"))?;
    let patient = (kind == "Patient").then_some(id);
    Ok((
        Json(StateAsOf {
            aggregate_type: kind.to_owned(),
            aggregate_id: id,
            as_of,
            version,
            state: replayed.to_json(),
        }),
        patient,
    ))
}

/// One aggregate's state as it stood at `as_of`, rebuilt by replaying its events that
/// occurred at or before then through the domain aggregate. 404 if it did not exist yet (or
/// is not the caller's clinic's). A patient's state is recorded in the access log.
#[utoipa::path(get, path = "/v1/audit/state", tag = "audit", security(("bearer" = [])),
    params(
        ("as_of" = DateTime<Utc>, Query, description = "The instant (RFC 3339)"),
        ("aggregate_type" = String, Query, description = "`Clinic`, `Staff`, `Patient` or `Appointment`"),
        ("aggregate_id" = Uuid, Query, description = "The record's id (for `Clinic`, the clinic's id)"),
    ),
    responses((status = 200, description = "The state then", body = StateAsOf), AuditProblems))]
async fn state_as_of(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    params: AuditParams,
) -> Result<Json<StateAsOf>, ApiError> {
    let result = state_inner(&state, &principal, &params).await;
    let patient = match &result {
        Ok((_, patient)) => *patient,
        Err(_) => {
            let asked_patient = params
                .0
                .iter()
                .any(|(n, v)| n == "aggregate_type" && v.trim().eq_ignore_ascii_case("patient"));
            let id = params
                .0
                .iter()
                .find(|(n, _)| n == "aggregate_id")
                .and_then(|(_, v)| Uuid::from_str(v.trim()).ok());
            id.filter(|_| asked_patient)
        }
    };
    let result = result.map(|(json, _)| json);
    match patient {
        Some(patient) => {
            access_log::logged(
                &state,
                &principal,
                Some(patient),
                "GET /v1/audit/state",
                client_ip,
                result,
            )
            .await
        }
        None => result,
    }
}

// ---------------------------------------------------------------------------------------
// The access log.

/// Who read which patient's data: the clinic's access log, newest first.
///
/// Every read of a patient's data is recorded once per request, allowed or refused:
/// `GET /v1/patients/{id}`, `GET /v1/appointments?patient_id=…`, `GET /v1/appointments/{id}`,
/// `GET /v1/audit/patients/{id}/history` and a patient's `GET /v1/audit/state`.
#[utoipa::path(get, path = "/v1/audit/access-log", tag = "audit", security(("bearer" = [])),
    params(
        ("patient_id" = Option<Uuid>, Query, description = "Only accesses to this patient's data"),
        ("actor_id" = Option<Uuid>, Query, description = "Only this account's accesses"),
        ("since" = Option<DateTime<Utc>>, Query, description = "At or after this instant (RFC 3339)"),
        ("until" = Option<DateTime<Utc>>, Query, description = "At or before this instant (RFC 3339)"),
        ("limit" = Option<i64>, Query, description = "At most this many rows, 1 to 1000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses((status = 200, description = "The access log, newest first", body = AccessLogPage), AuditProblems))]
async fn access_log_list(
    State(state): State<AppState>,
    principal: Principal,
    params: AuditParams,
) -> Result<Json<AccessLogPage>, ApiError> {
    let clinic = auditor_clinic(&principal)?;
    let mut p = params.reader(&["patient_id", "actor_id", "since", "until", "limit"]);
    let patient_id = p.parse("patient_id", uuid);
    let actor_id = p.parse("actor_id", uuid);
    let since = p.parse("since", instant);
    let until = p.parse("until", instant);
    if let (Some(since), Some(until)) = (since, until) {
        if until < since {
            p.error("until", "must not be before `since`");
        }
    }
    let limit = p
        .parse("limit", |r| int_in(r, 1, MAX_ACCESS_LIMIT))
        .unwrap_or(DEFAULT_ACCESS_LIMIT);
    p.finish()?;
    let filter = AccessFilter {
        patient_id,
        actor_id,
        since,
        until,
        limit,
    };
    audit::access_log(&state.pool, clinic, &filter)
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_types_are_read_in_any_case() {
        assert_eq!(aggregate_type("patient"), Ok("Patient"));
        assert_eq!(aggregate_type("APPOINTMENT"), Ok("Appointment"));
        assert!(aggregate_type("Invoice").is_err());
    }
}
