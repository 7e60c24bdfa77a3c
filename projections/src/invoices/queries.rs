//! Invoice lists, single invoices with their lines and payments, a patient's balance, and the
//! platform's per-clinic billing totals.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use domain::ids::{ClinicId, InvoiceId, PatientId, StaffId};
use domain::invoice::InvoiceStatus;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::page::{decode_token, encode_token, page_end, InvalidQuery, MAX_PAGE_SIZE};
use crate::scope::{clinic_tx, end_read, platform_tx};

/// The position after the last invoice of a page: (issued_at, invoice_id), newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceCursor {
    #[serde(rename = "t")]
    issued_at: DateTime<Utc>,
    #[serde(rename = "i")]
    invoice_id: Uuid,
}

impl InvoiceCursor {
    pub fn decode(token: &str) -> Result<Self, InvalidQuery> {
        decode_token(token)
    }

    pub fn encode(&self) -> String {
        encode_token(self)
    }
}

/// Filters of the invoice list; `None` means any. `from`/`to` bound the clinic-local date the
/// invoice was issued on, both included.
#[derive(Debug, Clone)]
pub struct InvoiceFilter {
    pub status: Option<InvoiceStatus>,
    pub patient: Option<PatientId>,
    /// A doctor's own invoices (a doctor's view, or a filter).
    pub doctor: Option<StaffId>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub after: Option<InvoiceCursor>,
    /// 1..=[`MAX_PAGE_SIZE`].
    pub limit: i64,
}

/// An invoice as the list shows it (amounts in minor units of `currency`).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct InvoiceSummary {
    pub invoice_id: Uuid,
    /// `INV-YYYY-NNNNNN`, once finalised.
    #[schema(example = "INV-2027-000001")]
    pub number: Option<String>,
    /// `draft`, `issued`, `partially-paid`, `paid` or `void`.
    pub status: String,
    /// `visit` or `no_show`.
    pub basis: String,
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    /// "Given Family" (absent if the patient's record is not projected yet).
    pub patient_name: Option<String>,
    pub doctor_id: Uuid,
    pub doctor_name: Option<String>,
    /// ISO 4217.
    #[schema(example = "EUR")]
    pub currency: String,
    /// The sum of the lines, in minor units.
    pub total: i64,
    /// Every payment recorded, in minor units.
    pub paid: i64,
    /// Every refund, in minor units.
    pub refunded: i64,
    /// Still due (0 for a draft or a void invoice).
    pub balance: i64,
    pub issued_at: DateTime<Utc>,
    pub finalised_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// One page of invoices, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoicePage {
    pub items: Vec<InvoiceSummary>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A line of an invoice.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvoiceLineView {
    pub description: String,
    /// Minor units.
    pub amount: i64,
}

/// A payment or a refund.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct PaymentView {
    /// `payment` or `refund`.
    pub kind: String,
    /// A payment's id (absent for a refund).
    pub payment_id: Option<Uuid>,
    /// Minor units, positive for both kinds.
    pub amount: i64,
    /// A payment's method: `cash`, `card`, `transfer` or `insurance`.
    pub method: Option<String>,
    pub reference: Option<String>,
    /// A refund's reason.
    pub reason: Option<String>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// One invoice with its lines and its payments and refunds (oldest first).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceView {
    #[serde(flatten)]
    pub summary: InvoiceSummary,
    pub lines: Vec<InvoiceLineView>,
    pub payments: Vec<PaymentView>,
    pub voided_at: Option<DateTime<Utc>>,
    pub void_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    #[sqlx(flatten)]
    summary: InvoiceSummary,
    lines: Json<Vec<InvoiceLineView>>,
    voided_at: Option<DateTime<Utc>>,
    void_reason: Option<String>,
}

/// An amount in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CurrencyAmount {
    #[schema(example = "EUR")]
    pub currency: String,
    /// Minor units.
    pub amount: i64,
}

/// What a patient still owes in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct CurrencyBalance {
    #[schema(example = "EUR")]
    pub currency: String,
    /// Still due on the issued and partially-paid invoices, in minor units.
    pub due: i64,
    /// How many invoices that is.
    pub invoices: i64,
}

/// A patient's balance: what is still due on their issued and partially-paid invoices, per
/// currency (none when nothing is due).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PatientBalance {
    pub patient_id: Uuid,
    pub balances: Vec<CurrencyBalance>,
}

const SUMMARY_COLUMNS: &str = "i.invoice_id, i.number, i.status, i.basis, i.appointment_id, \
     i.patient_id, p.given || ' ' || p.family AS patient_name, i.doctor_id, s.name AS doctor_name, \
     i.currency, i.total, i.paid, i.refunded, i.balance, i.issued_at, i.finalised_at, \
     i.updated_at, i.version";

const FROM_INVOICES: &str = " FROM rm.invoices i \
     LEFT JOIN rm.patients p ON p.clinic_id = i.clinic_id AND p.patient_id = i.patient_id \
     LEFT JOIN rm.staff s ON s.clinic_id = i.clinic_id AND s.staff_id = i.doctor_id \
     WHERE i.clinic_id = ";

/// The statuses whose balance is due.
const DUE: &str = "('issued', 'partially-paid')";

/// The clinic's invoices, newest first, one page at a time.
pub async fn invoices(
    pool: &PgPool,
    clinic: ClinicId,
    filter: &InvoiceFilter,
) -> Result<InvoicePage, sqlx::Error> {
    let limit = filter.limit.clamp(1, MAX_PAGE_SIZE);
    let mut sql = QueryBuilder::<Postgres>::new(format!("SELECT {SUMMARY_COLUMNS}{FROM_INVOICES}"));
    sql.push_bind(clinic.as_uuid());
    if let Some(status) = filter.status {
        sql.push(" AND i.status = ").push_bind(status.to_string());
    }
    if let Some(patient) = filter.patient {
        sql.push(" AND i.patient_id = ")
            .push_bind(patient.as_uuid());
    }
    if let Some(doctor) = filter.doctor {
        sql.push(" AND i.doctor_id = ").push_bind(doctor.as_uuid());
    }
    let mut tx = clinic_tx(pool, clinic).await?;
    // The local dates as instants in the clinic's time zone (UTC for a clinic not projected
    // yet), read first: bound as values, they bound a range of the index.
    if filter.from.is_some() || filter.to.is_some() {
        let (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
            "WITH z AS (SELECT coalesce(min(time_zone), 'UTC') AS tz FROM rm.clinics \
                        WHERE clinic_id = $1) \
             SELECT $2::date::timestamp AT TIME ZONE tz, ($3::date + 1)::timestamp AT TIME ZONE tz \
             FROM z",
        )
        .bind(clinic.as_uuid())
        .bind(filter.from)
        .bind(filter.to)
        .fetch_one(&mut *tx)
        .await?;
        if let Some(from) = from {
            sql.push(" AND i.issued_at >= ").push_bind(from);
        }
        if let Some(to) = to {
            sql.push(" AND i.issued_at < ").push_bind(to);
        }
    }
    if let Some(after) = &filter.after {
        sql.push(" AND (i.issued_at, i.invoice_id) < (")
            .push_bind(after.issued_at)
            .push(", ")
            .push_bind(after.invoice_id)
            .push(")");
    }
    sql.push(" ORDER BY i.issued_at DESC, i.invoice_id DESC LIMIT ")
        .push_bind(limit + 1);
    let mut rows: Vec<InvoiceSummary> = sql.build_query_as().fetch_all(&mut *tx).await?;
    end_read(tx);
    let next_page_token = page_end(&mut rows, limit).map(|last| {
        InvoiceCursor {
            issued_at: last.issued_at,
            invoice_id: last.invoice_id,
        }
        .encode()
    });
    Ok(InvoicePage {
        items: rows,
        next_page_token,
    })
}

/// One invoice of the clinic with its lines and payments; with `doctor`, only if it is that
/// doctor's.
pub async fn invoice(
    pool: &PgPool,
    clinic: ClinicId,
    invoice: InvoiceId,
    doctor: Option<StaffId>,
) -> Result<Option<InvoiceView>, sqlx::Error> {
    let mut sql = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SUMMARY_COLUMNS}, i.lines, i.voided_at, i.void_reason{FROM_INVOICES}"
    ));
    sql.push_bind(clinic.as_uuid())
        .push(" AND i.invoice_id = ")
        .push_bind(invoice.as_uuid());
    if let Some(doctor) = doctor {
        sql.push(" AND i.doctor_id = ").push_bind(doctor.as_uuid());
    }
    let mut tx = clinic_tx(pool, clinic).await?;
    let Some(row): Option<InvoiceRow> = sql.build_query_as().fetch_optional(&mut *tx).await? else {
        end_read(tx);
        return Ok(None);
    };
    let payments: Vec<PaymentView> = sqlx::query_as(
        "SELECT kind, payment_id, amount, method, reference, reason, recorded_at \
         FROM rm.invoice_payments WHERE clinic_id = $1 AND invoice_id = $2 ORDER BY seq",
    )
    .bind(clinic.as_uuid())
    .bind(invoice.as_uuid())
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);
    Ok(Some(InvoiceView {
        summary: row.summary,
        lines: row.lines.0,
        payments,
        voided_at: row.voided_at,
        void_reason: row.void_reason,
    }))
}

/// What `patient` still owes on their issued and partially-paid invoices, per currency; with
/// `doctor`, on that doctor's invoices only. `None` when the patient is not in the clinic (for
/// a doctor: when none of the doctor's invoices is the patient's).
pub async fn patient_balance(
    pool: &PgPool,
    clinic: ClinicId,
    patient: PatientId,
    doctor: Option<StaffId>,
) -> Result<Option<PatientBalance>, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    let known: bool = match doctor {
        None => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM rm.patients WHERE clinic_id = $1 AND patient_id = $2)",
        )
        .bind(clinic.as_uuid())
        .bind(patient.as_uuid())
        .fetch_one(&mut *tx)
        .await?,
        Some(doctor) => {
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM rm.invoices \
                            WHERE clinic_id = $1 AND patient_id = $2 AND doctor_id = $3)",
            )
            .bind(clinic.as_uuid())
            .bind(patient.as_uuid())
            .bind(doctor.as_uuid())
            .fetch_one(&mut *tx)
            .await?
        }
    };
    if !known {
        end_read(tx);
        return Ok(None);
    }
    let balances: Vec<CurrencyBalance> = sqlx::query_as(&format!(
        "SELECT currency, sum(balance)::bigint AS due, count(*) AS invoices FROM rm.invoices \
         WHERE clinic_id = $1 AND patient_id = $2 AND status IN {DUE} \
           AND ($3::uuid IS NULL OR doctor_id = $3) \
         GROUP BY currency ORDER BY currency"
    ))
    .bind(clinic.as_uuid())
    .bind(patient.as_uuid())
    .bind(doctor.map(|d| d.as_uuid()))
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);
    Ok(Some(PatientBalance {
        patient_id: patient.as_uuid(),
        balances,
    }))
}

/// A clinic's billing figures, at the platform's level: sums and counts per currency, never
/// an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClinicBilling {
    pub clinic_id: Uuid,
    pub code: String,
    pub currencies: Vec<CurrencyTotals>,
}

/// One currency of a clinic's billing figures (minor units).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CurrencyTotals {
    #[schema(example = "EUR")]
    pub currency: String,
    /// Invoices issued (as drafts) in the clinic's current local month.
    pub invoices_this_month: i64,
    /// Drafts not finalised yet.
    pub drafts: i64,
    /// Still due on issued and partially-paid invoices.
    pub outstanding: i64,
    /// Payments minus refunds recorded in the clinic's current local month.
    pub revenue_this_month: i64,
}

/// The platform's billing figures: every clinic (one with no invoice has no currencies).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformBilling {
    pub generated_at: DateTime<Utc>,
    pub clinics: Vec<ClinicBilling>,
}

#[derive(sqlx::FromRow)]
struct BillingRow {
    clinic_id: Uuid,
    code: String,
    currency: Option<String>,
    invoices_this_month: Option<i64>,
    drafts: Option<i64>,
    outstanding: Option<i64>,
    revenue_this_month: Option<i64>,
}

/// Every clinic's billing totals at `now` (the service clock's), for the platform admin. The
/// invoices are counted by `rm_platform_billing` (a SECURITY DEFINER function, see its
/// migration), which gives back sums and counts only.
pub async fn platform_billing(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<PlatformBilling, sqlx::Error> {
    let mut tx = platform_tx(pool).await?;
    let rows: Vec<BillingRow> = sqlx::query_as(
        "SELECT c.clinic_id, c.code, b.currency, b.invoices_this_month, b.drafts, b.outstanding, \
                b.revenue_this_month \
         FROM rm.clinics c LEFT JOIN rm_platform_billing($1) b ON b.clinic_id = c.clinic_id \
         ORDER BY c.code, b.currency",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    end_read(tx);
    let mut clinics: BTreeMap<(String, Uuid), Vec<CurrencyTotals>> = BTreeMap::new();
    for r in rows {
        let totals = clinics.entry((r.code, r.clinic_id)).or_default();
        if let Some(currency) = r.currency {
            totals.push(CurrencyTotals {
                currency,
                invoices_this_month: r.invoices_this_month.unwrap_or(0),
                drafts: r.drafts.unwrap_or(0),
                outstanding: r.outstanding.unwrap_or(0),
                revenue_this_month: r.revenue_this_month.unwrap_or(0),
            });
        }
    }
    Ok(PlatformBilling {
        generated_at: now,
        clinics: clinics
            .into_iter()
            .map(|((code, clinic_id), currencies)| ClinicBilling {
                clinic_id,
                code,
                currencies,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip() {
        let cursor = InvoiceCursor {
            issued_at: "2027-01-13T08:00:00.123456Z".parse().unwrap(),
            invoice_id: Uuid::now_v7(),
        };
        assert_eq!(InvoiceCursor::decode(&cursor.encode()), Ok(cursor));
        assert_eq!(
            InvoiceCursor::decode("bm90IGEgdG9rZW4"),
            Err(InvalidQuery::BadPageToken)
        );
    }
}
