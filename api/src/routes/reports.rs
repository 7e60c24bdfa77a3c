//! Reports (clinic admin): a clinic's month, from the read models, as JSON or CSV.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use projections::reports::{Month, MonthlyReport};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::roles;
use crate::problem::ApiError;
use crate::query;
use crate::read::{found, in_clinic, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(monthly_report))
}

/// The projections the report reads, for `X-Min-Position`.
const READS: &[Projection] = &[
    projections::clinics::PROJECTION,
    projections::staff::PROJECTION,
    projections::patients::PROJECTION,
    projections::appointments::PROJECTION,
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MonthParams {
    /// The month, `YYYY-MM`, in the clinic's time zone
    #[serde(deserialize_with = "month")]
    #[param(value_type = String, example = "2027-03")]
    pub month: Month,
}

fn month<'de, D: Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
    query::with(d, |text| {
        Month::parse(text).ok_or_else(|| "expected a month as YYYY-MM, e.g. 2027-03".to_owned())
    })?
    .ok_or_else(|| serde::de::Error::custom("expected a month as YYYY-MM, e.g. 2027-03"))
}

/// A clinic's month, in its time zone: appointments by status and the no-show rate (visits in
/// the month), new patients, bookings per doctor (booked in the month), the busiest hours and
/// the mean lead time from booking to visit. `Accept: text/csv` gives the same figures as CSV
/// (`metric,key,label,value`). Counts and doctors' names only: no patient data.
#[utoipa::path(get, path = "/v1/reports/monthly", tag = "reports", security(("bearer" = [])),
    params(MonthParams, MinPositionQuery, MinPositionHeader,
        ("Accept" = Option<String>, Header, description = "`text/csv` for CSV; JSON otherwise")),
    responses(
        (status = 200, description = "The report",
            content((MonthlyReport = "application/json"), (String = "text/csv"))),
        ReadProblems))]
async fn monthly_report(
    headers: HeaderMap,
    mut read: Read<MonthParams>,
) -> Result<Response, ApiError> {
    let (clinic, params) = read.ready(roles::read::REPORTS, in_clinic, READS).await?;
    let report = projections::reports::monthly(&read.state.pool, clinic, params.month).await?;
    let report = found(report, "clinic")?;
    if wants_csv(&headers) {
        let mut response = report.to_csv().into_response();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        return Ok(response);
    }
    Ok(Json(report).into_response())
}

/// Whether `Accept` asks for CSV before JSON.
fn wants_csv(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let first = |needle: &str| accept.find(needle);
    match (first("text/csv"), first("application/json")) {
        (Some(csv), Some(json)) => csv < json,
        (Some(_), None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_only_when_asked_for_first() {
        let with = |accept: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(accept).unwrap());
            wants_csv(&h)
        };
        assert!(with("text/csv"));
        assert!(with("text/csv, application/json;q=0.5"));
        assert!(!with("application/json, text/csv"));
        assert!(!with("*/*"));
        assert!(!wants_csv(&HeaderMap::new()));
    }
}
