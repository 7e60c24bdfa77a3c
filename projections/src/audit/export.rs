//! The audit export (`GET /v1/audit/events`, `clinic replay`): the clinic's events as NDJSON
//! lines, written straight from the rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::ids::ClinicId;
use futures::TryStreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use super::{push_filter, EventFilter};
#[cfg(doc)]
use super::{stream_events, AuditEvent};

/// A [`Line`]'s columns: the payload as stored (`json`, whose text PostgreSQL has checked).
const LINE_COLUMNS: &str = audit_columns!("payload");

/// One NDJSON line of the export, borrowed from its row: [`AuditEvent`]'s fields in its
/// order, with the payload's JSON text as the store holds it (`jsonb`'s output: `": "` and
/// `", "`, keys by length) instead of parsed into a `Value` and written again. It says what
/// [`AuditEvent::to_ndjson_line`] says (a test compares them).
#[derive(Serialize, sqlx::FromRow)]
struct Line<'r> {
    position: i64,
    time: Option<DateTime<Utc>>,
    aggregate_type: &'r str,
    aggregate_id: &'r str,
    sequence: i64,
    event_type: &'r str,
    event_version: &'r str,
    payload: &'r RawValue,
    actor: &'r str,
    role: &'r str,
    request_id: &'r str,
}

/// The NDJSON lines of an export are handed over in chunks of at least this many bytes
/// (whole lines; the last chunk may be shorter).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The chunks an export's readers buffer between the database cursor and their writer (the
/// HTTP body, `clinic replay`'s file): about 256 KiB.
pub const CHUNKS_BUFFERED: usize = 4;

/// How long an export may hold its database connection for a reader.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamLimits {
    /// Cut the export off when the reader has not taken a chunk for this long.
    pub stall: Option<Duration>,
    /// Cut the export off when it has run this long.
    pub total: Option<Duration>,
}

/// The chunks of an export, and whether it was cut off (see [`StreamLimits`]): when `rx` ends
/// with `cut_off` set, the lines stop short of the end and the reader must say so.
pub struct NdjsonStream {
    pub rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, sqlx::Error>>,
    pub cut_off: Arc<AtomicBool>,
}

impl NdjsonStream {
    pub fn was_cut_off(&self) -> bool {
        self.cut_off.load(Ordering::SeqCst)
    }
}

/// The NDJSON lines of `clinic`'s events that match `filter`, in commit order: for each
/// event of [`stream_events`], its `Line` (the payload as stored). A task reads them
/// with a cursor, writes each row's line straight from the row (no parsed payload, no
/// per-event allocation) and hands over chunks of whole lines ([`CHUNK_BYTES`]) on a bounded
/// channel of `capacity` chunks. It stops when the receiver is dropped, and is cut off by
/// `limits` (a slow reader then stops costing a connection); a database error ends the stream
/// with that error (the chunk being filled is not sent). The task holds `hold` (e.g. the
/// caller's place among the exports) until it ends.
pub fn stream_ndjson<H: Send + 'static>(
    pool: PgPool,
    clinic: ClinicId,
    filter: EventFilter,
    capacity: usize,
    limits: StreamLimits,
    hold: H,
) -> NdjsonStream {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
    let cut_off = Arc::new(AtomicBool::new(false));
    let cut = cut_off.clone();
    let deadline = limits.total.map(|t| tokio::time::Instant::now() + t);
    // Hands a chunk over within the limits; false when the export is to stop.
    let send = move |item: Result<Vec<u8>, sqlx::Error>| {
        let (tx, cut) = (tx.clone(), cut.clone());
        async move {
            let wait = match (limits.stall, deadline) {
                (Some(stall), Some(end)) => {
                    Some(stall.min(end.saturating_duration_since(tokio::time::Instant::now())))
                }
                (Some(stall), None) => Some(stall),
                (None, Some(end)) => {
                    Some(end.saturating_duration_since(tokio::time::Instant::now()))
                }
                (None, None) => None,
            };
            let sent = match wait {
                Some(wait) => match tokio::time::timeout(wait, tx.send(item)).await {
                    Ok(sent) => sent.is_ok(),
                    Err(_) => {
                        cut.store(true, Ordering::SeqCst);
                        false
                    }
                },
                None => tx.send(item).await.is_ok(),
            };
            let over = deadline.is_some_and(|end| tokio::time::Instant::now() >= end);
            if sent && over {
                cut.store(true, Ordering::SeqCst);
                return false;
            }
            sent
        }
    };
    tokio::spawn(async move {
        let _held = hold;
        let mut qb = QueryBuilder::<Postgres>::new(format!("SELECT {LINE_COLUMNS}"));
        push_filter(&mut qb, clinic, &filter);
        let mut rows = qb.build().fetch(&pool);
        let mut chunk = Vec::with_capacity(CHUNK_BYTES * 2);
        loop {
            let written = match rows.try_next().await {
                Ok(Some(row)) => write_line(&mut chunk, &row),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                send(Err(e)).await;
                return;
            }
            if chunk.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES * 2));
                if !send(Ok(full)).await {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            send(Ok(chunk)).await;
        }
    });
    NdjsonStream { rx, cut_off }
}

/// Appends `row`'s NDJSON line (newline included) to `out`.
fn write_line(out: &mut Vec<u8>, row: &sqlx::postgres::PgRow) -> Result<(), sqlx::Error> {
    let decode = |e: serde_json::Error| sqlx::Error::Decode(Box::new(e));
    let compact: Box<RawValue>;
    let mut line = Line::from_row(row)?;
    if line.payload.get().contains(['\n', '\r']) {
        // `json` keeps the text as it was given, line breaks between tokens included; our
        // writers never store one, but a line of NDJSON must not break: written compact.
        let parsed: Value = serde_json::from_str(line.payload.get()).map_err(decode)?;
        compact = serde_json::value::to_raw_value(&parsed).map_err(decode)?;
        line.payload = &compact;
    }
    serde_json::to_writer(&mut *out, &line).map_err(decode)?;
    out.push(b'\n');
    Ok(())
}
