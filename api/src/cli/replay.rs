//! `clinic replay --clinic CODE [--until T] [--out FILE] [--check]`.
//!
//! Without `--check`: exports the clinic's events as NDJSON (to FILE or standard output), the
//! same lines `GET /v1/audit/events` streams (with `--until`: only events that occurred at or
//! before T, like `?until=`).
//!
//! With `--check`: replays every aggregate of the clinic from its events in memory (through
//! the domain's `Aggregate::apply`) and compares it with the read models (`rm.clinics`,
//! `rm.staff`, `rm.patients`, `rm.appointments`, `rm.invoices`), field by field where both
//! have the field. The fee schedule has no read model (it is read from its stream).
//! Every difference is printed on standard output, one per line; the exit status is 0 when
//! there is none and 1 otherwise.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Args;
use domain::clinic::ClinicStatus;
use domain::ids::ClinicId;
use domain::patient::PatientStatus;
use domain::replay::Replayed;
use domain::values::ClinicCode;
use projections::audit::{self, EventFilter, ReadModelRows};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use uuid::Uuid;

use crate::infra::config::DatabaseArgs;

use super::{invalid, open_pool, CliError};

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The clinic's code.
    #[arg(long)]
    pub clinic: String,
    /// Only events that occurred at or before this RFC 3339 instant.
    #[arg(long)]
    pub until: Option<String>,
    /// Write the NDJSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replay every aggregate in memory and compare with the read models; list differences.
    #[arg(long)]
    pub check: bool,
}

const BUFFER: usize = 256;

pub async fn run(args: ReplayArgs) -> Result<(), CliError> {
    let code = ClinicCode::parse(&args.clinic).map_err(|e| invalid("--clinic", e))?;
    let until = args
        .until
        .as_deref()
        .map(|raw| {
            DateTime::parse_from_rfc3339(raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    invalid(
                        "--until",
                        "must be an RFC 3339 instant, e.g. 2026-03-01T09:00:00Z",
                    )
                })
        })
        .transpose()?;
    if args.check && until.is_some() {
        return Err(invalid(
            "--until",
            "cannot be combined with --check (the read models hold the present state)",
        ));
    }
    if args.check && args.out.is_some() {
        return Err(invalid("--out", "cannot be combined with --check"));
    }
    let (_database, pool) = open_pool(&args.database).await?;
    let clinic = commands::registry::clinic_by_code(&pool, &code)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?
        .ok_or_else(|| invalid("--clinic", format!("no clinic has the code {code}")))?;

    let outcome = if args.check {
        check(&pool, clinic).await
    } else {
        export(&pool, clinic, until, args.out.as_deref()).await
    };
    pool.close().await;
    outcome
}

async fn export(
    pool: &sqlx::PgPool,
    clinic: ClinicId,
    until: Option<DateTime<Utc>>,
    out: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let sink: Box<dyn AsyncWrite + Unpin + Send> = match out {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| invalid("--out", format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut sink = BufWriter::new(sink);
    let write_failed =
        |e: std::io::Error| CliError::Refused(format!("cannot write the export: {e}"));
    let filter = EventFilter {
        until,
        ..EventFilter::default()
    };
    // No limits: the CLI's own reader is the file it writes.
    let limits = audit::StreamLimits::default();
    let mut rx = audit::stream_ndjson(
        pool.clone(),
        clinic,
        filter,
        audit::CHUNKS_BUFFERED,
        limits,
        (),
    )
    .rx;
    let mut count: usize = 0;
    while let Some(lines) = rx.recv().await {
        let lines = lines.map_err(|e| CliError::Refused(format!("reading the events: {e}")))?;
        sink.write_all(&lines).await.map_err(write_failed)?;
        // One line per event: JSON text escapes every newline inside a string.
        count += lines.iter().filter(|b| **b == b'\n').count();
    }
    sink.flush().await.map_err(write_failed)?;
    if let Some(path) = out {
        println!("wrote {count} events to {}", path.display());
    }
    Ok(())
}

/// One aggregate replayed from its events.
struct Rebuilt {
    aggregate: Replayed,
    version: i64,
}

async fn check(pool: &sqlx::PgPool, clinic: ClinicId) -> Result<(), CliError> {
    let mut aggregates: BTreeMap<(String, Uuid), Rebuilt> = BTreeMap::new();
    let mut rx = audit::stream_events(pool.clone(), clinic, EventFilter::default(), BUFFER);
    let mut events: u64 = 0;
    while let Some(event) = rx.recv().await {
        let event = event.map_err(|e| CliError::Refused(format!("reading the events: {e}")))?;
        events += 1;
        let Ok(id) = Uuid::parse_str(&event.aggregate_id) else {
            return Err(CliError::Refused(format!(
                "event at position {} has a malformed stream id",
                event.position
            )));
        };
        let key = (event.aggregate_type.clone(), id);
        if !aggregates.contains_key(&key) {
            let Some(empty) = Replayed::empty(&event.aggregate_type) else {
                return Err(CliError::Refused(format!(
                    "event at position {} has an unknown aggregate type {}",
                    event.position, event.aggregate_type
                )));
            };
            aggregates.insert(
                key.clone(),
                Rebuilt {
                    aggregate: empty,
                    version: 0,
                },
            );
        }
        if let Some(rebuilt) = aggregates.get_mut(&key) {
            rebuilt.aggregate.apply(&event.payload).map_err(|e| {
                CliError::Refused(format!(
                    "event at position {} ({}) cannot be replayed: {e}",
                    event.position, event.event_type
                ))
            })?;
            rebuilt.version = event.sequence;
        }
    }
    let rows = audit::read_model_rows(pool, clinic)
        .await
        .map_err(|e| CliError::Refused(format!("reading the read models: {e}")))?;
    let differences = compare(&aggregates, &rows);
    for line in &differences {
        println!("{line}");
    }
    if differences.is_empty() {
        println!(
            "no differences: {} aggregates replayed from {events} events match the read models",
            aggregates.len()
        );
        Ok(())
    } else {
        Err(CliError::Refused(format!(
            "{} difference(s) between the events and the read models",
            differences.len()
        )))
    }
}

/// Collects differences, one line each.
struct Diff<'a> {
    lines: &'a mut Vec<String>,
    what: String,
}

impl<'a> Diff<'a> {
    fn new(lines: &'a mut Vec<String>, kind: &str, id: Uuid) -> Self {
        Diff {
            lines,
            what: format!("{kind} {id}"),
        }
    }

    fn field<T: Serialize>(&mut self, field: &str, events: T, read_model: T) {
        let events = serde_json::to_value(events).unwrap_or(Value::Null);
        let read_model = serde_json::to_value(read_model).unwrap_or(Value::Null);
        if events != read_model {
            self.lines.push(format!(
                "{}: {field}: events say {events}, read model says {read_model}",
                self.what
            ));
        }
    }
}

fn micros(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.timestamp_micros())
}

fn patient_status(status: PatientStatus) -> &'static str {
    match status {
        PatientStatus::NotRegistered => "not-registered",
        PatientStatus::Active => "active",
        PatientStatus::Deactivated => "inactive",
        PatientStatus::Merged => "merged",
    }
}

fn clinic_status(status: ClinicStatus) -> &'static str {
    match status {
        ClinicStatus::Unregistered => "unregistered",
        ClinicStatus::Active => "active",
        ClinicStatus::Suspended => "suspended",
    }
}

type Seen = std::collections::BTreeSet<(String, Uuid)>;

/// The replayed aggregate of a read-model row, marked as seen; a row with no events behind it
/// is reported instead.
fn matched<'a>(
    aggregates: &'a BTreeMap<(String, Uuid), Rebuilt>,
    seen: &mut Seen,
    lines: &mut Vec<String>,
    kind: &str,
    id: Uuid,
) -> Option<&'a Rebuilt> {
    let key = (kind.to_owned(), id);
    let found = aggregates.get(&key);
    match found {
        Some(_) => {
            seen.insert(key);
        }
        None => lines.push(format!(
            "{kind} {id}: in the read model but not in the events"
        )),
    }
    found
}

/// Every difference between the replayed aggregates and the read-model rows.
fn compare(aggregates: &BTreeMap<(String, Uuid), Rebuilt>, rows: &ReadModelRows) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen = Seen::default();

    for row in &rows.clinics {
        let Some(Rebuilt {
            aggregate: Replayed::Clinic(c),
            ..
        }) = matched(aggregates, &mut seen, &mut lines, "Clinic", row.clinic_id)
        else {
            continue;
        };
        let mut d = Diff::new(&mut lines, "Clinic", row.clinic_id);
        d.field(
            "name",
            c.name().map(|n| n.as_str()),
            Some(row.name.as_str()),
        );
        d.field(
            "code",
            c.code().map(|n| n.as_str()),
            Some(row.code.as_str()),
        );
        d.field(
            "time_zone",
            c.time_zone().map(|t| t.to_string()),
            Some(row.time_zone.clone()),
        );
        d.field("plan", c.plan().as_str(), row.plan.as_str());
        d.field("status", clinic_status(c.status()), row.status.as_str());
        d.field(
            "slot_minutes",
            i64::from(c.slot_minutes()),
            i64::from(row.slot_minutes),
        );
    }

    for row in &rows.staff {
        let Some(Rebuilt {
            aggregate: Replayed::Staff(s),
            version,
        }) = matched(aggregates, &mut seen, &mut lines, "Staff", row.staff_id)
        else {
            continue;
        };
        let mut d = Diff::new(&mut lines, "Staff", row.staff_id);
        d.field(
            "name",
            s.name().map(|n| n.as_str()),
            Some(row.name.as_str()),
        );
        d.field(
            "email",
            s.email().map(|e| e.as_str()),
            Some(row.email.as_str()),
        );
        d.field(
            "role",
            s.role().map(|r| r.as_str()),
            Some(row.role.as_str()),
        );
        d.field(
            "department_id",
            s.department_id().map(|id| id.as_uuid()),
            row.department_id,
        );
        d.field("active", s.is_active(), row.active);
        d.field("version", *version, row.version);
    }

    for patient_row in &rows.patients {
        let row = &patient_row.summary;
        let Some(Rebuilt {
            aggregate: Replayed::Patient(p),
            version,
        }) = matched(aggregates, &mut seen, &mut lines, "Patient", row.patient_id)
        else {
            continue;
        };
        let mut d = Diff::new(&mut lines, "Patient", row.patient_id);
        d.field("mrn", p.mrn().map(|m| m.to_string()), Some(row.mrn.clone()));
        d.field(
            "name.given",
            p.name().map(|n| n.given.as_str()),
            Some(row.name.given.as_str()),
        );
        d.field(
            "name.family",
            p.name().map(|n| n.family.as_str()),
            Some(row.name.family.as_str()),
        );
        d.field("birth_date", p.birth_date(), Some(row.birth_date));
        d.field("sex", p.sex().map(|s| s.as_str()), Some(row.sex.as_str()));
        d.field("phone", p.phone().map(|x| x.as_str()), row.phone.as_deref());
        d.field("email", p.email().map(|x| x.as_str()), row.email.as_deref());
        d.field("status", patient_status(p.status()), row.status.as_str());
        d.field(
            "merged_into",
            p.merged_into().map(|id| id.as_uuid()),
            row.merged_into,
        );
        d.field("version", *version, patient_row.version);
    }

    for row in &rows.appointments {
        let Some(Rebuilt {
            aggregate: Replayed::Appointment(a),
            version,
        }) = matched(
            aggregates,
            &mut seen,
            &mut lines,
            "Appointment",
            row.appointment_id,
        )
        else {
            continue;
        };
        let mut d = Diff::new(&mut lines, "Appointment", row.appointment_id);
        d.field(
            "patient_id",
            a.patient_id().map(|id| id.as_uuid()),
            Some(row.patient_id),
        );
        d.field(
            "doctor_id",
            a.doctor_id().map(|id| id.as_uuid()),
            Some(row.doctor_id),
        );
        d.field(
            "start",
            a.slot().and_then(|s| micros(s.start())),
            Some(row.start_at),
        );
        d.field(
            "end",
            a.slot().and_then(|s| micros(s.end())),
            Some(row.end_at),
        );
        d.field(
            "status",
            a.status().map(|s| s.as_str()),
            Some(row.status.as_str()),
        );
        d.field(
            "reason",
            a.reason().map(|r| r.as_str()),
            row.reason.as_deref(),
        );
        d.field(
            "appointment_type",
            a.appointment_type().map(|t| t.as_str()),
            row.appointment_type.as_deref(),
        );
        d.field("version", *version, row.version);
    }

    for row in &rows.invoices {
        let Some(Rebuilt {
            aggregate: Replayed::Invoice(i),
            version,
        }) = matched(aggregates, &mut seen, &mut lines, "Invoice", row.invoice_id)
        else {
            continue;
        };
        let mut d = Diff::new(&mut lines, "Invoice", row.invoice_id);
        let issued = i.issued();
        d.field(
            "appointment_id",
            issued.map(|n| n.appointment_id.as_uuid()),
            Some(row.appointment_id),
        );
        d.field(
            "patient_id",
            issued.map(|n| n.patient_id.as_uuid()),
            Some(row.patient_id),
        );
        d.field(
            "doctor_id",
            issued.map(|n| n.doctor_id.as_uuid()),
            Some(row.doctor_id),
        );
        d.field(
            "basis",
            issued.map(|n| json!(n.basis)),
            Some(json!(row.basis)),
        );
        d.field(
            "currency",
            issued.map(|n| n.currency.to_string()),
            Some(row.currency.clone()),
        );
        d.field("status", json!(i.status()), json!(row.status));
        d.field(
            "number",
            i.number().map(|n| n.as_str()),
            row.number.as_deref(),
        );
        d.field("lines", json!(i.lines()), row.lines.clone());
        d.field("total", i.total(), row.total);
        d.field("paid", i.paid(), row.paid);
        d.field("refunded", i.refunded(), row.refunded);
        d.field("balance", i.balance(), row.balance);
        d.field("version", *version, row.version);
    }

    // Aggregates the events hold but no read model does.
    for (key, rebuilt) in aggregates {
        if seen.contains(key) {
            continue;
        }
        let registered = match &rebuilt.aggregate {
            Replayed::Clinic(c) => c.is_registered(),
            Replayed::Staff(s) => s.is_hired(),
            Replayed::Patient(p) => p.is_registered(),
            Replayed::Appointment(a) => a.is_booked(),
            // No read model of its own: the fee schedule is read from its stream.
            Replayed::FeeSchedule(_) => false,
            Replayed::Invoice(i) => i.issued().is_some(),
        };
        if registered {
            lines.push(format!(
                "{} {}: in the events (version {}) but not in the read model",
                key.0,
                key.1,
                json!(rebuilt.version)
            ));
        }
    }
    lines
}
