//! Invoices (issue 14): list and read them and a patient's balance; add lines to a draft,
//! finalise it, record payments, refund, void; the platform's per-clinic billing totals.
//!
//! Receptionists and clinic admins add lines, finalise and record payments; only clinic
//! admins refund and void. A doctor reads only the invoices of their own appointments (another
//! doctor's is a 404), auditors read everything and change nothing, nurses have no access, and
//! the platform admin sees per-clinic totals only. Every answer that carries an invoice is in
//! the access log with its patient(s).

use axum::http::Uri;
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use commands::invoices::{self, Payment};
use domain::ids::{InvoiceId, PatientId, PaymentId, StaffId};
use domain::invoice::{InvoiceLine, InvoiceStatus};
use domain::values::{Amount, Module, NonEmptyText, PaymentMethod};
use projections::invoices::{
    InvoiceCursor, InvoiceFilter, InvoicePage, InvoiceView, PatientBalance, PlatformBilling,
};
use projections::page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use projections::Projection;
use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{roles, CommandProblems};
use crate::access_log::{self, ClientIp, Subjects};
use crate::auth::RequiredModule;
use crate::http::{CommandAccepted, CommandResponse, IdPath};
use crate::pipeline::{Command, Ctx};
use crate::problem::ApiError;
use crate::query::{self, NoParams};
use crate::read::{clinic_and_doctor, found, platform, with_etag, Read, ReadProblems};
use crate::read::{MinPositionHeader, MinPositionQuery};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_invoices))
        .routes(routes!(get_invoice))
        .routes(routes!(patient_balance))
        .routes(routes!(add_line))
        .routes(routes!(finalise))
        .routes(routes!(record_payment))
        .routes(routes!(refund))
        .routes(routes!(void))
        // The billing module: 403 `module-disabled` when the clinic has it off.
        .layer(axum::Extension(RequiredModule(Module::Billing)))
        .merge(OpenApiRouter::new().routes(routes!(platform_billing)))
}

// ---------------------------------------------------------------------------------------
// Commands.

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLine {
    #[schema(value_type = String, example = "ECG")]
    pub description: NonEmptyText,
    /// Minor units of the invoice's currency (cents): a positive integer.
    #[schema(value_type = i64, example = 2500, minimum = 1)]
    pub amount: Amount,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPayment {
    /// Minor units of the invoice's currency: at most its balance.
    #[schema(value_type = i64, example = 6000, minimum = 1)]
    pub amount: Amount,
    /// `cash`, `card`, `transfer` or `insurance`.
    #[schema(value_type = String, example = "card")]
    pub method: PaymentMethod,
    /// The payer's reference (a card slip, a transfer's reference, a claim number).
    #[schema(value_type = Option<String>, example = "slip 0042")]
    pub reference: Option<NonEmptyText>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// Minor units: at most what was paid and not refunded yet.
    #[schema(value_type = i64, example = 1000, minimum = 1)]
    pub amount: Amount,
    #[schema(value_type = String, example = "overcharged")]
    pub reason: NonEmptyText,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Void {
    #[schema(value_type = String, example = "billed in error")]
    pub reason: NonEmptyText,
}

/// The invoice the path names.
fn invoice_id(ctx: &Ctx<IdPath>) -> InvoiceId {
    InvoiceId::from_uuid(ctx.id())
}

/// Add a line to a draft invoice (409 once it is finalised).
#[utoipa::path(post, path = "/v1/invoices/{id}/lines", tag = "invoices", request_body = AddLine,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Added", body = CommandAccepted), CommandProblems))]
async fn add_line(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::INVOICE_DESK, |req: AddLine, ctx| async move {
        let meta = ctx.meta()?;
        let line = InvoiceLine {
            description: req.description,
            amount: req.amount,
        };
        let id = invoice_id(&ctx);
        let committed = invoices::add_line(ctx.store(), &meta, ctx.expect, id, line).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Finalise a draft: it takes the clinic's next gap-free number of the year
/// (`INV-2027-000001`) and becomes payable (`issued`). A draft without lines is a 422 naming
/// `lines`.
#[utoipa::path(post, path = "/v1/invoices/{id}/finalise", tag = "invoices",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Finalised", body = CommandAccepted), CommandProblems))]
async fn finalise(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::INVOICE_DESK, |_: Empty, ctx| async move {
        let meta = ctx.meta()?;
        let id = invoice_id(&ctx);
        let committed = invoices::finalise(ctx.store(), &meta, ctx.expect, id).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Record a payment on an issued or partially paid invoice. `Idempotency-Key` is required
/// (422 naming it when missing): a retry with the same key gets the first answer and records
/// nothing more. More than the balance is a 422 naming `amount`.
#[utoipa::path(post, path = "/v1/invoices/{id}/payments", tag = "invoices",
    request_body = RecordPayment, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = String, Header, description = "Required: one key per payment")),
    responses((status = 200, description = "Recorded", body = CommandAccepted), CommandProblems))]
async fn record_payment(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    let cmd = cmd.requiring_idempotency_key();
    cmd.run(roles::INVOICE_DESK, |req: RecordPayment, ctx| async move {
        let meta = ctx.meta()?;
        let key = ctx.idempotency_key.as_deref().unwrap_or_default();
        let payment = Payment {
            payment_id: payment_id(ctx.principal.account_id, key),
            amount: req.amount,
            method: req.method,
            reference: req.reference,
        };
        let id = invoice_id(&ctx);
        let committed =
            invoices::record_payment(ctx.store(), &meta, ctx.expect, id, payment).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// The payment a key stands for: one key, one payment, for this account (a UUIDv8 from
/// SHA-256 of the account and the key). The idempotency table answers a retry with the first
/// answer; should a retry reach the invoice all the same, the domain refuses the payment id a
/// second time.
fn payment_id(account: Uuid, key: &str) -> PaymentId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(account.as_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    PaymentId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Refund part or all of what was paid (clinic admins only). More than was paid and not
/// refunded yet is a 422 naming `amount`.
#[utoipa::path(post, path = "/v1/invoices/{id}/refunds", tag = "invoices", request_body = Refund,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Refunded", body = CommandAccepted), CommandProblems))]
async fn refund(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: Refund, ctx| async move {
        let meta = ctx.meta()?;
        let id = invoice_id(&ctx);
        let committed =
            invoices::refund(ctx.store(), &meta, ctx.expect, id, req.amount, req.reason).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

/// Void a draft or an issued invoice with nothing paid left (clinic admins only; refund first).
#[utoipa::path(post, path = "/v1/invoices/{id}/void", tag = "invoices", request_body = Void,
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Voided", body = CommandAccepted), CommandProblems))]
async fn void(cmd: Command<IdPath>) -> Result<Response, ApiError> {
    cmd.run(roles::CLINIC_ADMIN, |req: Void, ctx| async move {
        let meta = ctx.meta()?;
        let id = invoice_id(&ctx);
        let committed = invoices::void(ctx.store(), &meta, ctx.expect, id, req.reason).await?;
        Ok(CommandResponse::updated(ctx.id(), &committed))
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Queries.

/// The projections the invoice endpoints read, for `X-Min-Position`.
const READS: &[Projection] = &[
    projections::invoices::PROJECTION,
    projections::patients::PROJECTION,
    projections::staff::PROJECTION,
];

/// The filters of the invoice list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceParams {
    /// `draft`, `issued`, `partially-paid`, `paid` or `void`
    #[serde(default, deserialize_with = "status")]
    #[param(value_type = Option<String>)]
    pub status: Option<InvoiceStatus>,
    /// Only this patient's
    #[serde(default, deserialize_with = "query::uuid")]
    pub patient_id: Option<Uuid>,
    /// Only this doctor's
    #[serde(default, deserialize_with = "query::uuid")]
    pub doctor_id: Option<Uuid>,
    /// Issued on or after this date (YYYY-MM-DD, the clinic's local date)
    #[serde(default, deserialize_with = "query::date")]
    #[param(value_type = Option<String>, example = "2027-01-01")]
    pub from: Option<NaiveDate>,
    /// Issued on or before this date (YYYY-MM-DD, the clinic's local date)
    #[serde(default, deserialize_with = "query::date")]
    #[param(value_type = Option<String>, example = "2027-01-31")]
    pub to: Option<NaiveDate>,
    /// `next_page_token` of the previous page
    #[serde(default, deserialize_with = "page_token")]
    #[param(value_type = Option<String>)]
    pub page_token: Option<InvoiceCursor>,
    /// Page size, 1 to 200 (default 50)
    #[serde(default, deserialize_with = "query::int_in::<_, 1, MAX_PAGE_SIZE>")]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn status<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InvoiceStatus>, D::Error> {
    query::with(d, |s| {
        serde_json::from_value::<InvoiceStatus>(serde_json::Value::String(s.to_owned()))
            .ok()
            .filter(|status| *status != InvoiceStatus::Unissued)
            .ok_or_else(|| "must be draft, issued, partially-paid, paid or void".to_owned())
    })
}

fn page_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<InvoiceCursor>, D::Error> {
    query::with(d, |t| InvoiceCursor::decode(t).map_err(|e| e.to_string()))
}

/// The clinic's invoices, newest first (by when they were issued), with the patient's and the
/// doctor's names; amounts in minor units of each invoice's currency.
///
/// A doctor sees only their own appointments' invoices: without `doctor_id` they get theirs,
/// and `doctor_id` naming another doctor is a 403. `from`/`to` are the clinic's local dates
/// the invoices were issued on, both included.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", security(("bearer" = [])),
    params(InvoiceParams, MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "One page of invoices", body = InvoicePage), ReadProblems))]
async fn list_invoices(
    client_ip: ClientIp,
    uri: Uri,
    mut read: Read<InvoiceParams>,
) -> Result<Json<InvoicePage>, ApiError> {
    // Every page names its patients: recorded with those patients and the filter (and the
    // patient filtered on, whether or not the rest of the query is valid).
    let patient = query::raw(&uri, "patient_id").and_then(|raw| Uuid::parse_str(&raw).ok());
    let result = read_invoices(&mut read).await;
    let returned = result.iter().flat_map(|Json(page)| &page.items);
    let mut subjects = Subjects::list(&uri, returned.map(|i| i.patient_id));
    subjects.patient_id = patient;
    let (state, principal) = (&read.state, &read.principal);
    let endpoint = "GET /v1/invoices";
    access_log::logged(state, principal, subjects, endpoint, client_ip, result).await
}

async fn read_invoices(read: &mut Read<InvoiceParams>) -> Result<Json<InvoicePage>, ApiError> {
    let ((clinic, own), params) = read.authorise(roles::read::INVOICES, clinic_and_doctor)?;
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if to < from {
            return Err(ApiError::field("to", "must not be before `from`"));
        }
    }
    let doctor = params.doctor_id.map(StaffId::from_uuid);
    let doctor = match own {
        None => doctor,
        Some(me) if doctor.is_none() || doctor == Some(me) => Some(me),
        Some(_) => {
            return Err(ApiError::Forbidden(
                "a doctor may only list the invoices of their own appointments".into(),
            ))
        }
    };
    read.wait(READS).await?;
    let filter = InvoiceFilter {
        status: params.status,
        patient: params.patient_id.map(PatientId::from_uuid),
        doctor,
        from: params.from,
        to: params.to,
        after: params.page_token,
        limit: params.limit.unwrap_or(DEFAULT_PAGE_SIZE),
    };
    let page = projections::invoices::invoices(&read.state.pool, clinic, &filter).await?;
    Ok(Json(page))
}

/// One invoice with its lines, payments and refunds (`ETag` carries its version). A doctor
/// gets a 404 for another doctor's.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Invoice id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The invoice", body = InvoiceView), ReadProblems))]
async fn get_invoice(
    client_ip: ClientIp,
    mut read: Read<NoParams, IdPath>,
) -> Result<Response, ApiError> {
    let result = read_invoice(&mut read).await;
    // The answer names its patient; a refused read is logged without one.
    let patient = result.as_ref().ok().map(|view| view.summary.patient_id);
    let endpoint = "GET /v1/invoices/{id}";
    access_log::logged(
        &read.state,
        &read.principal,
        Subjects::patient(patient),
        endpoint,
        client_ip,
        result,
    )
    .await
    .map(|view| with_etag(view.summary.version, view))
}

async fn read_invoice(read: &mut Read<NoParams, IdPath>) -> Result<InvoiceView, ApiError> {
    let ((clinic, doctor), _) = read
        .ready(roles::read::INVOICES, clinic_and_doctor, READS)
        .await?;
    let id = InvoiceId::from_uuid(read.path.0);
    let view = projections::invoices::invoice(&read.state.pool, clinic, id, doctor).await?;
    found(view, "invoice")
}

/// A patient's balance: what is still due on their issued and partially-paid invoices, per
/// currency (minor units). A doctor sees it over their own appointments' invoices only, and
/// gets a 404 for a patient none of whose invoices is theirs.
#[utoipa::path(get, path = "/v1/patients/{id}/balance", tag = "invoices", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Patient id"), MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "The patient's balance", body = PatientBalance), ReadProblems))]
async fn patient_balance(
    client_ip: ClientIp,
    mut read: Read<NoParams, IdPath>,
) -> Result<Json<PatientBalance>, ApiError> {
    let result = read_balance(&mut read).await;
    let (IdPath(id), endpoint) = (read.path, "GET /v1/patients/{id}/balance");
    access_log::logged(
        &read.state,
        &read.principal,
        Subjects::patient(Some(id)),
        endpoint,
        client_ip,
        result,
    )
    .await
}

async fn read_balance(read: &mut Read<NoParams, IdPath>) -> Result<Json<PatientBalance>, ApiError> {
    let ((clinic, doctor), _) = read
        .ready(roles::read::INVOICES, clinic_and_doctor, READS)
        .await?;
    let patient = PatientId::from_uuid(read.path.0);
    let balance =
        projections::invoices::patient_balance(&read.state.pool, clinic, patient, doctor).await?;
    found(balance, "patient").map(Json)
}

/// The platform's billing figures per clinic and currency: invoices finalised, drafts, the
/// amount outstanding and the revenue of the clinic's current local month (platform admin;
/// sums and counts only, never an invoice or a patient).
#[utoipa::path(get, path = "/v1/platform/billing", tag = "clinics", security(("bearer" = [])),
    params(MinPositionQuery, MinPositionHeader),
    responses((status = 200, description = "Per-clinic billing totals", body = PlatformBilling), ReadProblems))]
async fn platform_billing(mut read: Read) -> Result<Json<PlatformBilling>, ApiError> {
    let reads = &[
        projections::clinics::PROJECTION,
        projections::invoices::PROJECTION,
    ];
    read.ready(roles::PLATFORM, platform, reads).await?;
    let (pool, now) = (&read.state.pool, read.state.clock.now());
    Ok(Json(
        projections::invoices::platform_billing(pool, now).await?,
    ))
}
