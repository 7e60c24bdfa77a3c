//! Read-your-writes for the query endpoints.
//!
//! A command answers with the global `position` of the last event it wrote. A client that
//! sends it back as `X-Min-Position: N` (or `?min_position=N`) with a query gets an answer
//! from read models that include that event: the handler waits (checking the projections'
//! checkpoints after each batch the workers of this process commit, and every
//! [`POLL_EVERY`] otherwise) for at most [`WAIT_LIMIT`], then answers 503 with
//! `Retry-After`. A position no committed event has is a 422 at once.
//!
//! A query endpoint takes a [`Read`]: the caller, the path, `X-Min-Position` and the query
//! string. It checks the caller's role, then their scope (the clinic, a doctor's own
//! records), then the query string, and waits for the read models it reads:
//!
//! - a doctor sees only their own appointments and the patients with an appointment with them
//!   that is not cancelled or a no-show; anything else is a 404 (a filter on another doctor
//!   is a 403);
//! - a receptionist sees no clinical notes (an appointment's `reason` is absent);
//! - the platform admin sees clinics and counts, never patient data.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::ETAG;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use commands::ActorRole;
use domain::ids::{ClinicId, StaffId};
use projections::checkpoint::Reached;
use projections::Projection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::openapi::{RefOr, Response as OpenApiResponse};
use utoipa::{IntoParams, IntoResponses};

use crate::auth::Principal;
use crate::problem::{problem_responses, ApiError, UNAUTHORIZED};
use crate::query::{self, NoParams, Query, ReadQuery};
use crate::state::AppState;

pub const MIN_POSITION_HEADER: &str = "x-min-position";
pub const MIN_POSITION_PARAM: &str = "min_position";

/// How long a query waits for the read models before answering 503.
pub const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// How often it looks at the checkpoints meanwhile, when no batch of this process's
/// workers wakes it sooner.
const POLL_EVERY: Duration = Duration::from_millis(15);
/// The `Retry-After` of that 503, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The position the read models must have reached: the larger of `X-Min-Position` and
/// `?min_position=`, if either is given, with the name of the one it came from. Anything but a
/// non-negative integer is a 400.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinPosition(pub Option<(i64, &'static str)>);

/// The names a [`MinPosition`] is given by, as a 422 names them.
const HEADER_NAME: &str = "X-Min-Position";

fn parse_position(name: &str, raw: &str) -> Result<i64, ApiError> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be a non-negative integer: the `position` of a command's answer"
            ))
        })
}

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut min: Option<(i64, &'static str)> = None;
        let mut keep = |position: i64, name: &'static str| {
            if min.is_none_or(|(p, _)| position > p) {
                min = Some((position, name));
            }
        };
        for value in parts.headers.get_all(MIN_POSITION_HEADER) {
            let raw = value.to_str().map_err(|_| {
                ApiError::BadRequest("X-Min-Position must be a non-negative integer".into())
            })?;
            keep(parse_position(HEADER_NAME, raw)?, HEADER_NAME);
        }
        for (name, raw) in query::pairs(&parts.uri)? {
            if name == MIN_POSITION_PARAM {
                keep(
                    parse_position(MIN_POSITION_PARAM, &raw)?,
                    MIN_POSITION_PARAM,
                );
            }
        }
        Ok(MinPosition(min))
    }
}

/// Waits until every one of `projections` has applied the event at `min` (no wait without
/// one, or for position 0). A position no committed event has (beyond the head of the store)
/// is a 422 naming where it came from, at once: no command answered it, so waiting cannot
/// help, and a client cannot use it to hold a request and its polls. After [`WAIT_LIMIT`] the
/// answer is a 503 with `Retry-After`.
pub async fn wait_for(
    state: &AppState,
    projections: &[Projection],
    min: MinPosition,
) -> Result<(), ApiError> {
    let Some((position, field)) = min.0.filter(|(p, _)| *p > 0) else {
        return Ok(());
    };
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut applied = state.applied.clone();
    loop {
        // Seen before the check: a batch committed after it wakes the wait below.
        applied.borrow_and_update();
        match projections::checkpoint::reached(&state.pool, projections, position).await? {
            Reached::Yes => return Ok(()),
            Reached::Unwritten => {
                return Err(ApiError::field(
                    field,
                    "no event has this position: send the `position` of a command's answer",
                ))
            }
            Reached::NotYet => {}
        }
        if Instant::now() >= deadline {
            tracing::info!(position, ?projections, "read models behind X-Min-Position");
            return Err(ApiError::RetryLater {
                retry_after_secs: RETRY_AFTER_SECS,
                detail: format!(
                    "The read models have not caught up with position {position} yet; retry shortly."
                ),
            });
        }
        next_check(&mut applied).await;
    }
}

/// Waits until the workers of this process commit a batch, or [`POLL_EVERY`] (the workers
/// may run in another process, or the batch be another projection's).
async fn next_check(applied: &mut tokio::sync::watch::Receiver<u64>) {
    // No workers in this process: their sender is gone, and `changed` fails at once.
    if let Ok(Err(_)) = tokio::time::timeout(POLL_EVERY, applied.changed()).await {
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// A query request: the caller, the path parameters `P` (`()` or [`crate::http::IdPath`]),
/// `X-Min-Position` and the query string `Q`. Extracted in that order, as separate extractors
/// would be; the query string is judged only by [`Read::authorise`], after the caller's role.
pub struct Read<Q = NoParams, P = ()> {
    pub state: AppState,
    pub principal: Principal,
    pub path: P,
    min: MinPosition,
    params: Option<Result<Q, ApiError>>,
}

impl<Q, P> FromRequestParts<AppState> for Read<Q, P>
where
    Q: DeserializeOwned + Send,
    P: FromRequestParts<AppState> + Send,
    ApiError: From<P::Rejection>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let path = P::from_request_parts(parts, state).await?;
        let min = MinPosition::from_request_parts(parts, state).await?;
        let params = ReadQuery::<Q>::from_request_parts(parts, state).await;
        Ok(Read {
            state: state.clone(),
            principal,
            path,
            min,
            params: Some(params.map(|Query(q)| q)),
        })
    }
}

impl<Q, P> Read<Q, P> {
    /// Checks, in this order, that the caller has one of `roles`, their `scope` (one of
    /// [`platform`], [`in_clinic`], [`clinic_and_doctor`]) and the query string. Returns the
    /// scope and the parameters.
    pub fn authorise<S>(
        &mut self,
        roles: &[ActorRole],
        scope: fn(&Principal) -> Result<S, ApiError>,
    ) -> Result<(S, Q), ApiError> {
        self.principal.require(roles)?;
        let scope = scope(&self.principal)?;
        let params = self.params.take().ok_or_else(|| {
            ApiError::Internal("the query string of a read was taken twice".into())
        })??;
        Ok((scope, params))
    }

    /// Waits until every one of `projections` has reached `X-Min-Position` (see [`wait_for`]).
    pub async fn wait(&self, projections: &[Projection]) -> Result<(), ApiError> {
        wait_for(&self.state, projections, self.min).await
    }

    /// [`Read::authorise`], then [`Read::wait`] for `projections`.
    pub async fn ready<S>(
        &mut self,
        roles: &[ActorRole],
        scope: fn(&Principal) -> Result<S, ApiError>,
        projections: &[Projection],
    ) -> Result<(S, Q), ApiError> {
        let authorised = self.authorise(roles, scope)?;
        self.wait(projections).await?;
        Ok(authorised)
    }
}

/// The scope of a platform read: none.
pub fn platform(_: &Principal) -> Result<(), ApiError> {
    Ok(())
}

/// The scope of a clinic read: the caller's clinic.
pub fn in_clinic(principal: &Principal) -> Result<ClinicId, ApiError> {
    principal.clinic()
}

/// The caller's clinic, and the caller as a doctor if they are one (see [`doctor_scope`]).
pub fn clinic_and_doctor(principal: &Principal) -> Result<(ClinicId, Option<StaffId>), ApiError> {
    Ok((principal.clinic()?, doctor_scope(principal)?))
}

/// The caller as a doctor, if they are one: their view is limited to their own records.
pub fn doctor_scope(principal: &Principal) -> Result<Option<StaffId>, ApiError> {
    if principal.role != ActorRole::Doctor {
        return Ok(None);
    }
    principal
        .staff_id()
        .map(Some)
        .ok_or_else(|| ApiError::Forbidden("a doctor must belong to a clinic".into()))
}

/// A record with its version in `ETag`, as command answers carry it.
pub fn with_etag<T: Serialize>(version: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, v);
    }
    response
}

/// The record found, or a 404 saying which kind was not.
pub fn found<T>(record: Option<T>, what: &str) -> Result<T, ApiError> {
    record.ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

/// The problems any query endpoint may answer with (documentation only).
pub struct ReadProblems;

impl IntoResponses for ReadProblems {
    fn responses() -> BTreeMap<String, RefOr<OpenApiResponse>> {
        problem_responses(&[
            (400, "Malformed `X-Min-Position` / `min_position`"),
            (401, UNAUTHORIZED),
            (403, "The caller's role may not read this (or, for a doctor, filters on another doctor), or the clinic is suspended"),
            (404, "No such record in the caller's clinic (for a doctor: not one of theirs)"),
            (422, "An invalid query parameter (or a malformed `{id}`), or an `X-Min-Position` / `min_position` that no event has, named in `errors`"),
            (503, "The read models have not reached `X-Min-Position` within 2 s, or the database cannot be reached; retry after `Retry-After`"),
        ])
    }
}

/// Documentation of `?min_position=` (the [`MinPosition`] extractor reads it).
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinPositionQuery {
    /// Answer only once the read models include the event at this position (the `position`
    /// of a command's answer); 503 with `Retry-After` if they do not within 2 s.
    #[param(minimum = 0)]
    pub min_position: Option<i64>,
}

/// Documentation of `X-Min-Position` (the [`MinPosition`] extractor reads it).
#[allow(dead_code)]
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct MinPositionHeader {
    /// Same as `?min_position=`.
    #[param(rename = "X-Min-Position", minimum = 0)]
    pub min_position: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn extract(uri: &str, header: Option<&str>) -> Result<MinPosition, ApiError> {
        let mut req = Request::builder().uri(uri);
        if let Some(h) = header {
            req = req.header(MIN_POSITION_HEADER, h);
        }
        let (mut parts, _) = req.body(()).unwrap().into_parts();
        MinPosition::from_request_parts(&mut parts, &()).await
    }

    /// A read waiting for a position checks again as soon as a worker of this process
    /// commits a batch, else after [`POLL_EVERY`]; with no workers in the process (their
    /// sender dropped) it waits [`POLL_EVERY`] too, and does not spin. Virtual time: the
    /// durations are exact.
    #[tokio::test(start_paused = true)]
    async fn a_wait_checks_again_when_a_batch_commits_or_after_the_poll() {
        use tokio::time::{sleep, Instant};
        let (applied, mut seen) = tokio::sync::watch::channel(0u64);
        seen.borrow_and_update();

        let started = Instant::now();
        next_check(&mut seen).await;
        assert_eq!(started.elapsed(), POLL_EVERY);

        let started = Instant::now();
        let worker = tokio::spawn(async move {
            sleep(Duration::from_millis(2)).await;
            applied.send_modify(|n| *n += 1);
            applied
        });
        seen.borrow_and_update();
        next_check(&mut seen).await;
        assert_eq!(started.elapsed(), Duration::from_millis(2));

        drop(worker.await.unwrap());
        let started = Instant::now();
        next_check(&mut seen).await;
        assert_eq!(started.elapsed(), POLL_EVERY);
    }

    #[tokio::test]
    async fn header_and_query_are_read() {
        assert_eq!(extract("/x", None).await.unwrap(), MinPosition(None));
        assert_eq!(
            extract("/x", Some(" 12 ")).await.unwrap(),
            MinPosition(Some((12, "X-Min-Position")))
        );
        assert_eq!(
            extract("/x?q=a&min_position=7", None).await.unwrap(),
            MinPosition(Some((7, "min_position")))
        );
        assert_eq!(
            extract("/x?min_position=7", Some("9")).await.unwrap(),
            MinPosition(Some((9, "X-Min-Position")))
        );
        assert_eq!(
            extract("/x?min_position=10", Some("9")).await.unwrap(),
            MinPosition(Some((10, "min_position")))
        );
    }

    #[tokio::test]
    async fn malformed_positions_are_400() {
        for (uri, header) in [
            ("/x", Some("-1")),
            ("/x", Some("abc")),
            ("/x", Some("")),
            ("/x?min_position=1.5", None),
            ("/x?min_position=", None),
            ("/x?min_position=99999999999999999999", None),
        ] {
            let err = extract(uri, header).await.unwrap_err();
            assert_eq!(err.status().as_u16(), 400, "{uri} {header:?}");
        }
    }
}
