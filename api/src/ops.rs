//! `GET /v1/ops/projections`: each projection's position and lag (platform admin).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiError, Problem};
use crate::roles;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(projections_status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionLag {
    pub name: String,
    /// Position of the last applied event.
    pub position: i64,
    /// Committed events not yet applied, counted up to 10,000: exact below that, 10,000 when
    /// more wait (`lag_events_capped` is then true).
    pub lag_events: i64,
    /// More than 10,000 events wait; `lag_ms` still gives the backlog's age.
    pub lag_events_capped: bool,
    /// Age of the next event to apply, the oldest unapplied one in commit order (0 when
    /// caught up).
    pub lag_ms: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Where the projection stopped, if it met an event it cannot apply.
    pub failed_position: Option<i64>,
    pub last_error: Option<String>,
}

/// Projection progress and lag.
#[utoipa::path(get, path = "/v1/ops/projections", tag = "ops", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every projection", body = Vec<ProjectionLag>),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the platform admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn projections_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<ProjectionLag>>, ApiError> {
    principal.require(roles::PLATFORM)?;
    let status = projections::checkpoint::status(&state.pool).await?;
    Ok(Json(
        status
            .into_iter()
            .map(|s| ProjectionLag {
                name: s.projection.name.to_owned(),
                position: s.position,
                lag_events: s.lag_events,
                lag_events_capped: s.lag_events_capped,
                lag_ms: s.lag_ms,
                updated_at: s.updated_at,
                failed_position: s.failed_position,
                last_error: s.last_error,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use projections::checkpoint::LAG_COUNT_LIMIT;

    /// The limit as the API guide, the operations guide and this module's schema write it.
    #[test]
    fn the_documented_lag_count_limit_is_the_one_counted() {
        let written = "10,000";
        assert_eq!(LAG_COUNT_LIMIT, 10_000, "{written}");
        for (doc, text) in [
            ("docs/api.md", include_str!("../../docs/api.md")),
            (
                "docs/operations.md",
                include_str!("../../docs/operations.md"),
            ),
            ("api/src/ops.rs", include_str!("ops.rs")),
        ] {
            assert!(
                text.contains(&format!("up to {written}")),
                "{doc} does not give the limit"
            );
        }
    }
}
