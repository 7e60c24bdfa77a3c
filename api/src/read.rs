//! Read-your-writes for the query endpoints.
//!
//! A command answers with the global `position` of the last event it wrote. A client that
//! sends it back as `X-Min-Position: N` (or `?min_position=N`) with a query gets an answer
//! from read models that include that event: the handler waits (polling the projections'
//! checkpoints) for at most [`WAIT_LIMIT`], then answers 503 with `Retry-After`.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use projections::Projection;
use serde::Deserialize;
use tokio::time::Instant;
use utoipa::IntoParams;

use crate::problem::ApiError;
use crate::query;
use crate::state::AppState;

pub const MIN_POSITION_HEADER: &str = "x-min-position";
pub const MIN_POSITION_PARAM: &str = "min_position";

/// How long a query waits for the read models before answering 503.
pub const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// How often it looks at the checkpoints meanwhile.
const POLL_EVERY: Duration = Duration::from_millis(15);
/// The `Retry-After` of that 503, in seconds.
const RETRY_AFTER_SECS: u64 = 1;

/// The position the read models must have reached: the larger of `X-Min-Position` and
/// `?min_position=`, if either is given. Anything but a non-negative integer is a 400.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MinPosition(pub Option<i64>);

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
        let mut min: Option<i64> = None;
        for value in parts.headers.get_all(MIN_POSITION_HEADER) {
            let raw = value.to_str().map_err(|_| {
                ApiError::BadRequest("X-Min-Position must be a non-negative integer".into())
            })?;
            let position = parse_position("X-Min-Position", raw)?;
            min = min.max(Some(position));
        }
        for (name, raw) in query::pairs(&parts.uri)? {
            if name == MIN_POSITION_PARAM {
                let position = parse_position(MIN_POSITION_PARAM, &raw)?;
                min = min.max(Some(position));
            }
        }
        Ok(MinPosition(min))
    }
}

/// Waits until every one of `projections` has applied the event at `min` (no wait without
/// one, or for position 0). After [`WAIT_LIMIT`] the answer is a 503 with `Retry-After`.
pub async fn wait_for(
    state: &AppState,
    projections: &[Projection],
    min: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = min.filter(|p| *p > 0) else {
        return Ok(());
    };
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        if projections::checkpoint::covers(&state.pool, projections, position).await? {
            return Ok(());
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
        tokio::time::sleep(POLL_EVERY).await;
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

    #[tokio::test]
    async fn header_and_query_are_read() {
        assert_eq!(extract("/x", None).await.unwrap(), MinPosition(None));
        assert_eq!(
            extract("/x", Some(" 12 ")).await.unwrap(),
            MinPosition(Some(12))
        );
        assert_eq!(
            extract("/x?q=a&min_position=7", None).await.unwrap(),
            MinPosition(Some(7))
        );
        assert_eq!(
            extract("/x?min_position=7", Some("9")).await.unwrap(),
            MinPosition(Some(9))
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
