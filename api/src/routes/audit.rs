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

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use domain::ids::ClinicId;
use domain::replay::{replay, StoredEvent};
use futures::StreamExt;
use projections::audit::{
    self, AccessFilter, AccessLogPage, AuditEvent, EventFilter, AGGREGATE_TYPES,
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::openapi::{RefOr, Response as OpenApiResponse};
use utoipa::{IntoParams, IntoResponses, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::access_log::{self, ClientIp, Subjects};
use crate::auth::Principal;
use crate::http::IdPath;
use crate::problem::{problem_responses, ApiError, FieldError};
use crate::query::{self, NoParams, Query};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stream_events))
        .routes(routes!(patient_history))
        .routes(routes!(appointment_history))
        .routes(routes!(state_as_of))
        .routes(routes!(access_log_list))
}

/// NDJSON's media type.
pub const NDJSON: &str = "application/x-ndjson";

/// The most events one stream request may ask for with `limit`.
pub const MAX_STREAM_LIMIT: i64 = 1_000_000;
/// Access-log page sizes.
pub const DEFAULT_ACCESS_LIMIT: i64 = 100;
pub const MAX_ACCESS_LIMIT: i64 = 1000;

/// The problems every audit endpoint may answer with (documentation only).
pub struct AuditProblems;

impl IntoResponses for AuditProblems {
    fn responses() -> BTreeMap<String, RefOr<OpenApiResponse>> {
        problem_responses(&[
            (401, "No token, or an invalid or expired one"),
            (403, "Not an auditor or clinic admin (the platform admin included), or the clinic is suspended"),
            (404, "No such record in the caller's clinic (another clinic's record included)"),
            (422, "An invalid query parameter (or a malformed `{id}`), named in `errors`"),
            (429, "`/v1/audit/events` only: the clinic already runs as many exports as it may (`Retry-After`)"),
            (503, "The database cannot be reached (`Retry-After`)"),
        ])
    }
}

// ---------------------------------------------------------------------------------------
// Query parameters (read with [`crate::query::Query`]).

/// `Patient`, `patient`, `PATIENT` → `Patient` (as a query parameter).
fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    query::with(d, |raw| aggregate_type(raw).map(str::to_owned))
}

/// A 422 unless `until` is at or after `since`.
fn check_window(since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> Option<FieldError> {
    match (since, until) {
        (Some(since), Some(until)) if until < since => {
            Some(FieldError::new("until", "must not be before `since`"))
        }
        _ => None,
    }
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
    principal.require(roles::AUDIT)?;
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

/// The filters of the event stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Resume after the event at this position (the last line received); it must be one of the clinic's events. 0 or absent: from the start
    #[serde(default, deserialize_with = "query::int_in::<_, 0, { i64::MAX }>")]
    #[param(minimum = 0)]
    pub after_position: Option<i64>,
    /// Events that occurred at or after this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub since: Option<DateTime<Utc>>,
    /// Events that occurred at or before this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub until: Option<DateTime<Utc>>,
    /// `Clinic`, `Staff`, `Patient`, `Appointment`, `Invoice` or `FeeSchedule` (whose id is
    /// the clinic's)
    #[serde(default, deserialize_with = "kind")]
    #[param(value_type = Option<String>)]
    pub aggregate_type: Option<String>,
    /// One record's events (its id)
    #[serde(default, deserialize_with = "query::uuid")]
    pub aggregate_id: Option<Uuid>,
    /// At most this many events (1 to 1000000); default all
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_STREAM_LIMIT>")]
    #[param(minimum = 1, maximum = 1000000)]
    pub limit: Option<i64>,
}

/// The clinic's events as NDJSON, in commit order.
///
/// One line per event: `{position, time, aggregate_type, aggregate_id, sequence, event_type,
/// event_version, payload, actor, role, request_id}` (see `AuditEvent`); `payload` is the
/// store's JSON text, byte for byte. Events are listed in
/// commit order (transaction, then position) and only once every transaction that could
/// precede them has ended, so a stream resumed with `after_position` = the last position
/// received never misses an event and never repeats one. The answer is streamed from a
/// database cursor; `limit` bounds one request.
#[utoipa::path(get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])),
    params(EventParams),
    responses(
        (status = 200, description = "One `AuditEvent` JSON object per line", body = AuditEvent, content_type = "application/x-ndjson"),
        AuditProblems,
    ))]
async fn stream_events(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    uri: Uri,
    params: Result<Query<EventParams>, ApiError>,
) -> Result<Response, ApiError> {
    // Staff, clinic and fee-schedule events name no patient; any other stream carries patients' data and is
    // recorded (before its first byte leaves) with its filter, and the patient it is limited
    // to, if it is.
    let kind = query::raw(&uri, "aggregate_type").and_then(|k| aggregate_type(&k).ok());
    if matches!(kind, Some("Staff" | "Clinic" | "FeeSchedule")) {
        return events_stream(&state, &principal, params).await;
    }
    let mut subjects = Subjects::list(&uri, []);
    subjects.patient_id = (kind == Some("Patient"))
        .then(|| query::raw(&uri, "aggregate_id").and_then(|v| Uuid::from_str(&v).ok()))
        .flatten();
    let result = events_stream(&state, &principal, params).await;
    let endpoint = "GET /v1/audit/events";
    access_log::logged(&state, &principal, subjects, endpoint, client_ip, result).await
}

async fn events_stream(
    state: &AppState,
    principal: &Principal,
    params: Result<Query<EventParams>, ApiError>,
) -> Result<Response, ApiError> {
    let clinic = auditor_clinic(principal)?;
    let Query(params) = params?;
    let mut errors: Vec<FieldError> = check_window(params.since, params.until)
        .into_iter()
        .collect();
    if let Some(after) = params.after_position.filter(|a| *a > 0) {
        if !audit::is_clinic_event(&state.pool, clinic, after).await? {
            errors.push(FieldError::new(
                "after_position",
                "must be the position of one of this clinic's events (the last line received)",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let filter = EventFilter {
        after_position: params.after_position,
        since: params.since,
        until: params.until,
        aggregate_type: params.aggregate_type,
        aggregate_id: params.aggregate_id,
        limit: params.limit,
    };
    // Exports run on their own pool, a few per clinic at a time (the place is held by the
    // export's task), and are cut off when their reader stalls (`crate::audit_streams`).
    let streams = &state.streams;
    let Some(permit) = streams.enter(clinic) else {
        return Err(ApiError::TooManyRequests {
            retry_after_secs: EXPORT_RETRY_AFTER_SECS,
            detail: "This clinic is already running as many event exports as it may; retry \
                     when one has finished."
                .into(),
        });
    };
    let export = audit::stream_ndjson(
        streams.pool.clone(),
        clinic,
        filter,
        audit::CHUNKS_BUFFERED,
        streams.limits,
        permit,
    );
    ndjson_response(export).await
}

/// The `Retry-After` of a 429 for one export too many.
const EXPORT_RETRY_AFTER_SECS: u64 = 5;

/// Waits for the first chunk of lines (so a failing query is still a proper 500), then
/// streams the rest. A database error, or a cut-off (a stalled reader, an export over its
/// time), later cuts the body short: the client sees an aborted transfer, never a partial
/// export presented as whole.
async fn ndjson_response(mut export: audit::NdjsonStream) -> Result<Response, ApiError> {
    let first = match export.rx.recv().await {
        Some(Err(e)) => return Err(ApiError::internal(e)),
        other => other,
    };
    let rest = futures::stream::unfold(Some(export), |state| async move {
        let mut export = state?;
        match export.rx.recv().await {
            Some(item) => Some((item, Some(export))),
            None if export.was_cut_off() => {
                tracing::warn!("audit event export cut off: its reader stalled or it ran too long");
                let cut = sqlx::Error::Protocol("the export was cut off".into());
                Some((Err(cut), None))
            }
            None => None,
        }
    });
    let lines = futures::stream::iter(first)
        .chain(rest)
        .map(|item| match item {
            Ok(lines) => Ok::<_, std::io::Error>(bytes::Bytes::from(lines)),
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
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let clinic = auditor_clinic(principal)?;
    params?;
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
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let result = history(&state, &principal, "Patient", id, params).await;
    access_log::logged(
        &state,
        &principal,
        Subjects::patient(Some(id)),
        "GET /v1/audit/patients/{id}/history",
        client_ip,
        result,
    )
    .await
}

/// An appointment's events, oldest first (same shape as the lines of `/v1/audit/events`).
/// Recorded in the access log with the appointment's patient, allowed or refused.
#[utoipa::path(get, path = "/v1/audit/appointments/{id}/history", tag = "audit", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Appointment id")),
    responses((status = 200, description = "The appointment's events", body = Vec<AuditEvent>), AuditProblems))]
async fn appointment_history(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    uri: Uri,
    IdPath(id): IdPath,
    params: Result<Query<NoParams>, ApiError>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let result = history(&state, &principal, "Appointment", id, params).await;
    let mut booked = result.iter().flat_map(|Json(events)| events);
    let patient = booked.find_map(|e| patient_of_booking(&e.payload));
    let mut subjects = Subjects::list(&uri, []);
    subjects.patient_id = patient;
    let endpoint = "GET /v1/audit/appointments/{id}/history";
    access_log::logged(&state, &principal, subjects, endpoint, client_ip, result).await
}

/// The patient an `AppointmentBooked` payload names.
fn patient_of_booking(payload: &Value) -> Option<Uuid> {
    payload["AppointmentBooked"]["patient_id"]
        .as_str()
        .and_then(|id| Uuid::from_str(id).ok())
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

/// Which aggregate, and when: all three are required.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    #[param(required = true, value_type = DateTime<Utc>)]
    pub as_of: Option<DateTime<Utc>>,
    /// `Clinic`, `Staff`, `Patient` or `Appointment`
    #[serde(default, deserialize_with = "kind")]
    #[param(required = true, value_type = String)]
    pub aggregate_type: Option<String>,
    /// The record's id (for `Clinic`, the clinic's id)
    #[serde(default, deserialize_with = "query::uuid")]
    #[param(required = true, value_type = Uuid)]
    pub aggregate_id: Option<Uuid>,
}

async fn state_inner(
    state: &AppState,
    principal: &Principal,
    params: Result<Query<StateParams>, ApiError>,
) -> Result<(Json<StateAsOf>, Option<Uuid>), ApiError> {
    let clinic = auditor_clinic(principal)?;
    let Query(params) = params?;
    let (Some(as_of), Some(kind), Some(id)) = (
        params.as_of,
        params.aggregate_type.as_deref(),
        params.aggregate_id,
    ) else {
        let missing = [
            ("as_of", params.as_of.is_none()),
            ("aggregate_type", params.aggregate_type.is_none()),
            ("aggregate_id", params.aggregate_id.is_none()),
        ];
        return Err(ApiError::Validation(
            missing
                .into_iter()
                .filter(|(_, missing)| *missing)
                .map(|(name, _)| FieldError::new(name, "is required"))
                .collect(),
        ));
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
    let replayed = replayed.to_json();
    // A patient's state is theirs; an appointment's and an invoice's name their patient.
    let patient = match kind {
        "Patient" => Some(id),
        "Appointment" => replayed["patient_id"]
            .as_str()
            .and_then(|p| Uuid::from_str(p).ok()),
        // An invoice names its patient as issued.
        "Invoice" => replayed["new"]["patient_id"]
            .as_str()
            .and_then(|p| Uuid::from_str(p).ok()),
        _ => None,
    };
    Ok((
        Json(StateAsOf {
            aggregate_type: kind.to_owned(),
            aggregate_id: id,
            as_of,
            version,
            state: replayed,
        }),
        patient,
    ))
}

/// One aggregate's state as it stood at `as_of`, rebuilt by replaying its events that
/// occurred at or before then through the domain aggregate. 404 if it did not exist yet (or
/// is not the caller's clinic's). A patient's state is recorded in the access log.
#[utoipa::path(get, path = "/v1/audit/state", tag = "audit", security(("bearer" = [])),
    params(StateParams),
    responses((status = 200, description = "The state then", body = StateAsOf), AuditProblems))]
async fn state_as_of(
    State(state): State<AppState>,
    principal: Principal,
    client_ip: ClientIp,
    uri: Uri,
    params: Result<Query<StateParams>, ApiError>,
) -> Result<Json<StateAsOf>, ApiError> {
    let result = state_inner(&state, &principal, params).await;
    let patient = match &result {
        Ok((_, patient)) => *patient,
        // A refused read of a patient's state is logged too (an appointment's patient is not
        // known then).
        Err(_) => {
            let asked_patient = query::raw(&uri, "aggregate_type")
                .is_some_and(|kind| kind.eq_ignore_ascii_case("patient"));
            let id = query::raw(&uri, "aggregate_id").and_then(|v| Uuid::from_str(&v).ok());
            id.filter(|_| asked_patient)
        }
    };
    let result = result.map(|(json, _)| json);
    match patient {
        Some(patient) => {
            access_log::logged(
                &state,
                &principal,
                Subjects::patient(Some(patient)),
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

/// The filters of the access log.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccessParams {
    /// Only accesses to this patient's data
    #[serde(default, deserialize_with = "query::uuid")]
    pub patient_id: Option<Uuid>,
    /// Only this account's accesses
    #[serde(default, deserialize_with = "query::uuid")]
    pub actor_id: Option<Uuid>,
    /// At or after this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub since: Option<DateTime<Utc>>,
    /// At or before this instant (RFC 3339)
    #[serde(default, deserialize_with = "query::instant")]
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows, 1 to 1000 (default 100)
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_ACCESS_LIMIT>")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// Who read which patient's data: the clinic's access log, newest first.
///
/// Every read of a patient's data is recorded once per request, allowed or refused:
/// `GET /v1/patients/{id}`, `GET /v1/appointments?patient_id=…`, `GET /v1/appointments/{id}`,
/// `GET /v1/audit/patients/{id}/history` and a patient's `GET /v1/audit/state`.
#[utoipa::path(get, path = "/v1/audit/access-log", tag = "audit", security(("bearer" = [])),
    params(AccessParams),
    responses((status = 200, description = "The access log, newest first", body = AccessLogPage), AuditProblems))]
async fn access_log_list(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AccessParams>, ApiError>,
) -> Result<Json<AccessLogPage>, ApiError> {
    let clinic = auditor_clinic(&principal)?;
    let Query(params) = params?;
    if let Some(error) = check_window(params.since, params.until) {
        return Err(ApiError::Validation(vec![error]));
    }
    let filter = AccessFilter {
        patient_id: params.patient_id,
        actor_id: params.actor_id,
        since: params.since,
        until: params.until,
        limit: params.limit.unwrap_or(DEFAULT_ACCESS_LIMIT),
    };
    audit::access_log(&state.pool, clinic, &filter)
        .await
        .map(Json)
        .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_types_are_read_in_any_case() {
        assert_eq!(aggregate_type("patient"), Ok("Patient"));
        assert_eq!(aggregate_type("APPOINTMENT"), Ok("Appointment"));
        assert!(aggregate_type("LabOrder").is_err());
    }
}
