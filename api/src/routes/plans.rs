//! The plans and what each allows (`domain::plan`, the one place the numbers are written).

use axum::Json;
use domain::plan::PlanLimits;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{Problem, UNAUTHORIZED};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_plans))
}

/// A plan's limits; `null` is no limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct Limits {
    /// Doctors whose accounts are active.
    #[schema(example = 2)]
    pub active_doctors: Option<u32>,
    /// Staff of every role, doctors included, whose accounts are active.
    #[schema(example = 10)]
    pub active_staff: Option<u32>,
    /// Patient records, less those merged into another.
    #[schema(example = 500)]
    pub patients: Option<u32>,
    /// Appointments booked in a calendar month of the clinic's time zone (counted in the
    /// month of the booking; a cancelled one still counts).
    #[schema(example = 300)]
    pub monthly_bookings: Option<u32>,
}

/// One plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    #[schema(example = "trial")]
    pub plan: &'static str,
    /// Days a trial lasts from the clinic's registration; `null` for a paid plan. When it
    /// ends the clinic is read-only: log-ins and reads work, commands answer 402.
    #[schema(example = 30)]
    pub trial_days: Option<u32>,
    pub limits: Limits,
    /// The modules a clinic on the plan may enable.
    #[schema(example = json!(["appointments", "billing", "laboratory"]))]
    pub modules: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    pub items: Vec<PlanView>,
}

impl From<&PlanLimits> for PlanView {
    fn from(p: &PlanLimits) -> Self {
        PlanView {
            plan: p.plan.as_str(),
            trial_days: p.trial_days,
            limits: Limits {
                active_doctors: p.active_doctors,
                active_staff: p.active_staff,
                patients: p.patients,
                monthly_bookings: p.monthly_bookings,
            },
            modules: p.modules.iter().map(|m| m.as_str()).collect(),
        }
    }
}

/// The plans and their limits, for any signed-in caller. A command past a limit answers 402
/// (`…/plan-limit`).
#[utoipa::path(get, path = "/v1/plans", tag = "plans", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every plan, cheapest first", body = PlanList),
        (status = 401, description = UNAUTHORIZED, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_plans(_caller: Principal) -> Json<PlanList> {
    Json(PlanList {
        items: PlanLimits::all().iter().map(PlanView::from).collect(),
    })
}
