//! The caller's clinic's fee schedule (issue 14): what a visit costs and whether a no-show is
//! charged. Clinic admins set it; every clinic role reads it (front-line staff quote prices).
//! It is configuration read from its own stream, so a read is always current (no read model,
//! no `X-Min-Position`). Not part of the billing module: billing cannot be enabled without it.

use axum::response::Response;
use commands::fees;
use domain::fees::{FeeRule, Schedule};
use domain::ids::StaffId;
use domain::values::{Amount, AppointmentType, Currency};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::http::{CommandAccepted, CommandResponse};
use crate::pipeline::Command;
use crate::problem::ApiError;
use crate::read::{found, in_clinic, with_etag, Read, ReadProblems};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_fees, set_fees))
}

/// A whole fee schedule; amounts are integers in the currency's minor units (cents).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFees {
    /// ISO 4217 code; every invoice issued from now on is in it.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    /// The price of a visit no rule matches; absent: such a visit's draft invoice has no lines.
    #[schema(value_type = Option<i64>, minimum = 1, example = 6000)]
    pub default_fee: Option<Amount>,
    /// What a no-show costs; absent: a no-show is not charged.
    #[schema(value_type = Option<i64>, minimum = 1, example = 2500)]
    pub no_show_fee: Option<Amount>,
    /// At most 500; each names an appointment type, a doctor or both, and no two the same.
    #[serde(default)]
    pub rules: Vec<FeeRuleBody>,
}

/// One price: for an appointment type, a doctor of the clinic, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeRuleBody {
    /// The clinic's code for a kind of visit (as in a booking).
    #[schema(value_type = Option<String>, example = "follow-up")]
    pub appointment_type: Option<AppointmentType>,
    /// A staff member of the clinic with the doctor role.
    pub doctor_id: Option<Uuid>,
    #[schema(value_type = i64, minimum = 1, example = 4000)]
    pub amount: Amount,
}

impl From<SetFees> for Schedule {
    fn from(req: SetFees) -> Self {
        Schedule {
            currency: req.currency,
            default_fee: req.default_fee,
            no_show_fee: req.no_show_fee,
            rules: req
                .rules
                .into_iter()
                .map(|r| FeeRule {
                    appointment_type: r.appointment_type,
                    doctor_id: r.doctor_id.map(StaffId::from_uuid),
                    amount: r.amount,
                })
                .collect(),
        }
    }
}

/// The clinic's fee schedule, with its version (also in `ETag`; send it as `If-Match`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FeeScheduleView {
    #[schema(example = "EUR")]
    pub currency: String,
    pub default_fee: Option<i64>,
    pub no_show_fee: Option<i64>,
    pub rules: Vec<FeeRuleView>,
    pub version: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeeRuleView {
    pub appointment_type: Option<String>,
    pub doctor_id: Option<Uuid>,
    pub amount: i64,
}

impl FeeScheduleView {
    fn new(schedule: Schedule, version: u64) -> Self {
        FeeScheduleView {
            currency: schedule.currency.as_str().to_owned(),
            default_fee: schedule.default_fee.map(Amount::minor),
            no_show_fee: schedule.no_show_fee.map(Amount::minor),
            rules: schedule
                .rules
                .into_iter()
                .map(|r| FeeRuleView {
                    appointment_type: r.appointment_type.map(|t| t.as_str().to_owned()),
                    doctor_id: r.doctor_id.map(|d| d.as_uuid()),
                    amount: r.amount.minor(),
                })
                .collect(),
            version,
        }
    }
}

/// The clinic's fee schedule (`ETag` carries its version). 404 until a clinic admin sets one.
/// Every clinic role may read it; the platform admin may not (403).
#[utoipa::path(get, path = "/v1/clinic/fees", tag = "clinic", security(("bearer" = [])),
    responses((status = 200, description = "The fee schedule", body = FeeScheduleView), ReadProblems))]
async fn get_fees(mut read: Read) -> Result<Response, ApiError> {
    let (clinic, _) = read.authorise(roles::read::FEES, in_clinic)?;
    let current = fees::current(&read.state.store, clinic).await?;
    let (schedule, version) = found(current, "fee schedule")?;
    Ok(with_etag(
        version as i64,
        FeeScheduleView::new(schedule, version),
    ))
}

/// Set the clinic's whole fee schedule (clinic admins). A visit is priced by the most
/// specific rule: its type with its doctor, then its type, then its doctor, then
/// `default_fee`. Every `doctor_id` must be a doctor of the clinic (422 naming
/// `rules[i].doctor_id`); a rule without a key or a repeated one is a 422 naming `rules[i]`.
/// Sending the schedule it already is writes nothing. The answer's `id` is the clinic's and
/// its `version` the schedule's (send it as `If-Match`: `"0"` before the first).
#[utoipa::path(put, path = "/v1/clinic/fees", tag = "clinic", request_body = SetFees,
    security(("bearer" = [])),
    params(("If-Match" = Option<String>, Header, description = "The schedule's version, e.g. \"2\"")),
    responses((status = 200, description = "Set; the version is the schedule's", body = CommandAccepted), CommandProblems))]
async fn set_fees(cmd: Command) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: SetFees, ctx| async move {
        let meta = ctx.meta()?;
        let committed = fees::set_schedule(ctx.store(), &meta, ctx.expect, req.into()).await?;
        Ok(CommandResponse::updated(
            meta.clinic_id.as_uuid(),
            &committed,
        ))
    })
    .await
}
