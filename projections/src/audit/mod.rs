//! Audit reads: event history, state as of an instant, access log.
//!
//! Everything here is scoped to one clinic. The event reads filter on `events.tenant_id` (the
//! event store has no row-level security; its streams are `{clinic_id}:{entity_id}`); the
//! access log and the read-model rows are read in a [`clinic_tx`], so row-level security
//! applies as well.

use chrono::{DateTime, Utc};
use domain::ids::ClinicId;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scope::clinic_tx;

/// The aggregate types of the event store, as stored in `events.aggregate_type`.
pub const AGGREGATE_TYPES: &[&str] = &[
    "Clinic",
    "Staff",
    "Patient",
    "Appointment",
    "Invoice",
    "FeeSchedule",
];

/// One event as an auditor sees it: one NDJSON line of `GET /v1/audit/events` and of
/// `clinic replay`, one item of a record's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEvent {
    /// Global position (append order). Pass the last one you received as `after_position`
    /// to resume.
    pub position: i64,
    /// When the event occurred (`occurred_at` of its metadata).
    pub time: Option<DateTime<Utc>>,
    /// `Clinic`, `Staff`, `Patient` or `Appointment`.
    pub aggregate_type: String,
    /// The record's id (the entity id, without the clinic prefix of the stream id).
    pub aggregate_id: String,
    /// The record's version after this event (1 for its first event).
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The event as stored: `{"<EventType>": {...}}`.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// The account that caused the event (the nil id for `system`).
    pub actor: String,
    /// The actor's role: `clinic_admin`, `doctor`, …, `platform_admin` or `system`.
    pub role: String,
    /// The HTTP request (`X-Request-Id`) or CLI command that caused it.
    pub request_id: String,
}

impl AuditEvent {
    /// The event as one NDJSON line, newline included.
    pub fn to_ndjson_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }
}

/// What the event reads select, with the payload as `payload` (an expression).
macro_rules! audit_columns {
    ($payload:literal) => {
        concat!(
            "position, m.occurred_at AS time, aggregate_type, \
             split_part(aggregate_id, ':', 2) AS aggregate_id, sequence, event_type, \
             event_version, ",
            $payload,
            " AS payload, coalesce(m.actor_id, '') AS actor, \
             coalesce(m.actor_role, '') AS role, coalesce(m.request_id, '') AS request_id"
        )
    };
}

mod access_writer;
mod export;
pub use access_writer::{append_accesses, AccessWriteError, AccessWriter};
pub use export::{stream_ndjson, NdjsonStream, StreamLimits, CHUNKS_BUFFERED, CHUNK_BYTES};

/// The events with their metadata's fields (`m`): the metadata's JSON text is parsed once
/// per row, not once per field (a quarter of the export's database time at 262k events).
const FROM_EVENTS: &str = " FROM events CROSS JOIN LATERAL json_to_record(metadata) \
     AS m(occurred_at timestamptz, actor_id text, actor_role text, request_id text)";

/// An [`AuditEvent`]'s columns: the payload parsed (`jsonb`, then a `Value`).
const AUDIT_COLUMNS: &str = audit_columns!("payload::jsonb");

/// What `GET /v1/audit/events` (and `clinic replay`) select.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Resume after this event (the position of the last line received). It must be one of
    /// the clinic's events (see [`is_clinic_event`]); 0 or `None` starts at the beginning.
    pub after_position: Option<i64>,
    /// Events that occurred at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Events that occurred at or before this instant.
    pub until: Option<DateTime<Utc>>,
    /// One aggregate type (as in [`AGGREGATE_TYPES`]).
    pub aggregate_type: Option<String>,
    /// One record (its entity id).
    pub aggregate_id: Option<Uuid>,
    /// At most this many events.
    pub limit: Option<i64>,
}

/// Whether `position` is one of `clinic`'s events (a valid `after_position`).
pub async fn is_clinic_event(
    pool: &PgPool,
    clinic: ClinicId,
    position: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE position = $1 AND tenant_id = $2)",
    )
    .bind(position)
    .bind(clinic.as_uuid())
    .fetch_one(pool)
    .await
}

fn push_filter(qb: &mut QueryBuilder<'static, Postgres>, clinic: ClinicId, filter: &EventFilter) {
    let clinic = clinic.as_uuid();
    qb.push(FROM_EVENTS);
    qb.push(" WHERE tenant_id = ");
    qb.push_bind(clinic);
    // The commit fence: only transactions that no running transaction precedes, so a reader
    // resuming from the last event it saw never misses a late commit with a lower position.
    qb.push(" AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())");
    if let Some(after) = filter.after_position.filter(|p| *p > 0) {
        // Resume in commit order: after the (transaction_id, position) of that event. Every
        // event committed later has a larger key (its transaction was still running, so it is
        // at or above the fence the earlier read used).
        qb.push(" AND (transaction_id, position) > (SELECT transaction_id, position FROM events WHERE position = ");
        qb.push_bind(after);
        qb.push(" AND tenant_id = ");
        qb.push_bind(clinic);
        qb.push(")");
    }
    if let Some(since) = filter.since {
        qb.push(" AND m.occurred_at >= ");
        qb.push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND m.occurred_at <= ");
        qb.push_bind(until);
    }
    if let Some(kind) = &filter.aggregate_type {
        qb.push(" AND aggregate_type = ");
        qb.push_bind(kind.clone());
    }
    if let Some(id) = filter.aggregate_id {
        qb.push(" AND aggregate_id = ");
        qb.push_bind(format!("{clinic}:{id}"));
    }
    qb.push(" ORDER BY transaction_id, position");
    if let Some(limit) = filter.limit {
        qb.push(" LIMIT ");
        qb.push_bind(limit);
    }
}

/// Streams `clinic`'s events that match `filter`, in commit order (transaction, position),
/// without loading them all: a task reads them with a cursor (`fetch`) and hands them over a
/// bounded channel of `capacity`. The task stops when the receiver is dropped. A database
/// error ends the stream with that error.
pub fn stream_events(
    pool: PgPool,
    clinic: ClinicId,
    filter: EventFilter,
    capacity: usize,
) -> tokio::sync::mpsc::Receiver<Result<AuditEvent, sqlx::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {AUDIT_COLUMNS}"));
        push_filter(&mut qb, clinic, &filter);
        let mut rows = qb.build_query_as::<AuditEvent>().fetch(&pool);
        loop {
            match rows.try_next().await {
                Ok(Some(event)) => {
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// Every committed event of one record of `clinic`, in order (its whole history), or only
/// those that occurred at or before `as_of`.
pub async fn record_events(
    pool: &PgPool,
    clinic: ClinicId,
    aggregate_type: &str,
    entity_id: Uuid,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {AUDIT_COLUMNS}{FROM_EVENTS} \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND tenant_id = $3 \
           AND ($4::timestamptz IS NULL OR m.occurred_at <= $4) \
         ORDER BY sequence"
    );
    sqlx::query_as::<_, AuditEvent>(&sql)
        .bind(aggregate_type)
        .bind(format!("{clinic}:{entity_id}"))
        .bind(clinic.as_uuid())
        .bind(as_of)
        .fetch_all(pool)
        .await
}

// ---------------------------------------------------------------------------------------
// Access log.

/// `allowed`, `denied` (403) or `not_found` (404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessOutcome {
    Allowed,
    Denied,
    NotFound,
}

impl AccessOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Allowed => "allowed",
            AccessOutcome::Denied => "denied",
            AccessOutcome::NotFound => "not_found",
        }
    }
}

/// One access to record.
#[derive(Debug, Clone)]
pub struct NewAccess<'a> {
    pub clinic: ClinicId,
    pub actor_id: Uuid,
    pub role: &'a str,
    pub patient_id: Option<Uuid>,
    /// The patients a list or page returned.
    pub patient_ids: &'a [Uuid],
    /// The query parameters of a list, search or export, as a JSON object.
    pub filter: Option<&'a serde_json::Value>,
    pub endpoint: &'a str,
    pub outcome: AccessOutcome,
    pub request_id: &'a str,
    pub client_ip: Option<std::net::IpAddr>,
    /// When it happened, by the service clock.
    pub at: DateTime<Utc>,
}

/// One row of the access log.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AccessRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Uuid,
    pub role: String,
    /// The one patient whose record was read (or asked for).
    pub patient_id: Option<Uuid>,
    /// The patients a list, search or page returned (empty for a one-record read).
    pub patient_ids: Vec<Uuid>,
    /// The query parameters of a list, search or export, as sent (`null` for a record read).
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    /// `METHOD /path/template`, e.g. `GET /v1/patients/{id}`.
    pub endpoint: String,
    /// `allowed`, `denied` or `not_found`.
    pub outcome: String,
    pub request_id: String,
    pub client_ip: Option<String>,
}

/// `GET /v1/audit/access-log`'s answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccessLogPage {
    /// Newest first.
    pub items: Vec<AccessRecord>,
}

#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub patient_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// The clinic's access log, newest first.
pub async fn access_log(
    pool: &PgPool,
    clinic: ClinicId,
    filter: &AccessFilter,
) -> Result<AccessLogPage, sqlx::Error> {
    let mut tx = clinic_tx(pool, clinic).await?;
    let items = sqlx::query_as::<_, AccessRecord>(
        "SELECT id, at, actor_id, role, patient_id, patient_ids, filter, endpoint, outcome, \
                request_id, host(client_ip) AS client_ip \
         FROM access_log \
         WHERE clinic_id = $1 \
           AND ($2::uuid IS NULL OR patient_id = $2 OR patient_ids @> ARRAY[$2::uuid]) \
           AND ($3::uuid IS NULL OR actor_id = $3) \
           AND ($4::timestamptz IS NULL OR at >= $4) \
           AND ($5::timestamptz IS NULL OR at <= $5) \
         ORDER BY at DESC, id DESC LIMIT $6",
    )
    .bind(clinic.as_uuid())
    .bind(filter.patient_id)
    .bind(filter.actor_id)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.limit)
    .fetch_all(&mut *tx)
    .await?;
    crate::scope::end_read(tx);
    Ok(AccessLogPage { items })
}

// ---------------------------------------------------------------------------------------
// Read-model rows, for `clinic replay --check`.

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClinicRow {
    pub clinic_id: Uuid,
    pub name: String,
    pub code: String,
    pub time_zone: String,
    pub plan: String,
    pub status: String,
    pub slot_minutes: i32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StaffRow {
    pub staff_id: Uuid,
    pub name: String,
    pub email: String,
    pub role: String,
    pub department_id: Option<Uuid>,
    pub active: bool,
    pub version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PatientRow {
    #[sqlx(flatten)]
    pub summary: crate::patients::PatientSummary,
    pub version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppointmentRow {
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    pub doctor_id: Uuid,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub status: String,
    pub reason: Option<String>,
    pub appointment_type: Option<String>,
    pub version: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceRow {
    pub invoice_id: Uuid,
    pub appointment_id: Uuid,
    pub patient_id: Uuid,
    pub doctor_id: Uuid,
    pub basis: String,
    pub status: String,
    pub number: Option<String>,
    pub currency: String,
    pub total: i64,
    pub paid: i64,
    pub refunded: i64,
    pub balance: i64,
    pub lines: serde_json::Value,
    pub version: i64,
}

/// A clinic's rows of every read model.
#[derive(Debug, Clone, Default)]
pub struct ReadModelRows {
    pub clinics: Vec<ClinicRow>,
    pub staff: Vec<StaffRow>,
    pub patients: Vec<PatientRow>,
    pub appointments: Vec<AppointmentRow>,
    pub invoices: Vec<InvoiceRow>,
}

/// Reads a clinic's rows of every read model in one snapshot.
pub async fn read_model_rows(
    pool: &PgPool,
    clinic: ClinicId,
) -> Result<ReadModelRows, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('app.clinic_id', $1, true)")
        .bind(clinic.to_string())
        .execute(&mut *tx)
        .await?;
    let id = clinic.as_uuid();
    let clinics = sqlx::query_as(
        "SELECT clinic_id, name, code, time_zone, plan, status, slot_minutes FROM rm.clinics WHERE clinic_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let staff = sqlx::query_as(
        "SELECT staff_id, name, email, role, department_id, active, version FROM rm.staff \
         WHERE clinic_id = $1 ORDER BY staff_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let patients = sqlx::query_as(
        "SELECT patient_id, mrn, given, family, birth_date, sex, phone, email, status, merged_into, version \
         FROM rm.patients WHERE clinic_id = $1 ORDER BY patient_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let appointments = sqlx::query_as(
        "SELECT appointment_id, patient_id, doctor_id, start_at, end_at, status, reason, \
         appointment_type, version FROM rm.appointments WHERE clinic_id = $1 ORDER BY appointment_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let invoices = sqlx::query_as(
        "SELECT invoice_id, appointment_id, patient_id, doctor_id, basis, status, number, currency, \
         total, paid, refunded, balance, lines, version FROM rm.invoices WHERE clinic_id = $1 ORDER BY invoice_id",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(ReadModelRows {
        clinics,
        staff,
        patients,
        appointments,
        invoices,
    })
}
