//! The per-clinic hash chain over the event log (tamper evidence).
//!
//! The projection `audit_chain` links every event of a clinic, in commit order
//! (`transaction_id, position`), into a chain:
//!
//! ```text
//! hash_0 = 32 zero bytes
//! hash_n = SHA-256(hash_{n-1} || canonical(event_n))
//! ```
//!
//! and stores each link as `audit_chain (clinic_id, position, link = n, hash)` in the same
//! transaction as its checkpoint. The chain is evidence, not a read model: it is never rebuilt.
//!
//! **Canonical bytes** of an event ([`canonical_bytes`]): the fields below, in this order,
//! each written as its length (4 bytes, big-endian) followed by its UTF-8 bytes:
//! `position` (decimal), `aggregate_type`, `aggregate_id`, `sequence` (decimal), `event_type`,
//! `event_version`, `payload::jsonb::text`, `metadata::jsonb::text`. The JSON columns are
//! `json` (kept as sent); their `jsonb` text form normalises key order and whitespace, so the
//! bytes depend only on the JSON values. The metadata carries the tenant, the actor, the
//! request id and the instant.
//!
//! [`verify`] recomputes the chain from the events alone (no writes) and compares it with the
//! stored links up to the projection's checkpoint. Events past the checkpoint are not chained
//! yet (the worker lags) and are reported as `pending`, not as tampering.

mod verify;

use std::collections::HashMap;

use domain::ids::ClinicId;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::StoredEvent;
use crate::projection::Projection;
use crate::ProjectionError;

pub use verify::{
    verify, ChainStatus, Discrepancy, DiscrepancyKind, ExpectedHead, HeadCheck, Verification,
};

/// The projection (and its checkpoint). The chain is evidence, not a read model: it is never
/// rebuilt.
pub const PROJECTION: Projection = Projection {
    name: "audit_chain",
    tables: &["audit_chain"],
    rebuildable: false,
    aggregate_type: None,
    apply: |_schema, conn, events| Box::pin(apply(conn, events)),
};

/// The hash before the first event of a clinic.
pub const GENESIS: [u8; 32] = [0; 32];

/// The event columns the canonical bytes are made of.
pub(crate) const CANONICAL_COLUMNS: &str =
    "e.position, e.aggregate_type, e.aggregate_id, e.sequence, \
     e.event_type, e.event_version, e.payload::jsonb::text AS payload, \
     e.metadata::jsonb::text AS metadata";

/// The fields of an event that the chain covers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CanonicalEvent {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// `payload::jsonb::text`
    pub payload: String,
    /// `metadata::jsonb::text`
    pub metadata: String,
}

/// The canonical bytes of an event (see the module documentation).
pub fn canonical_bytes(e: &CanonicalEvent) -> Vec<u8> {
    let position = e.position.to_string();
    let sequence = e.sequence.to_string();
    let fields: [&str; 8] = [
        &position,
        &e.aggregate_type,
        &e.aggregate_id,
        &sequence,
        &e.event_type,
        &e.event_version,
        &e.payload,
        &e.metadata,
    ];
    length_prefixed(&fields)
}

/// `fields`, each as its length (4 bytes, big-endian) and its UTF-8 bytes: the canonical
/// encoding of both chains (events and the access log).
pub fn length_prefixed(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for field in fields {
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// `SHA-256(prev || canonical)`.
pub fn link_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// Parses 64 hex digits (either case).
pub fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

pub(crate) fn to_hash(bytes: Vec<u8>) -> Result<[u8; 32], sqlx::Error> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|b| sqlx::Error::Protocol(format!("a chain hash of {} bytes", b.len())))
}

/// Links `events` (a batch, in commit order) to their clinics' chains: the worker's `apply`
/// for `audit_chain`. Three statements per batch: the events' canonical columns, the head of
/// each clinic's chain, and one multi-row insert of the new links.
async fn apply(conn: &mut PgConnection, events: &[&StoredEvent]) -> Result<(), ProjectionError> {
    let positions: Vec<i64> = events.iter().map(|e| e.position).collect();
    let mut clinics: Vec<Uuid> = events.iter().map(|e| e.tenant_id).collect();
    clinics.sort_unstable();
    clinics.dedup();
    let rows: Vec<CanonicalEvent> = sqlx::query_as(&format!(
        "SELECT {CANONICAL_COLUMNS} FROM events e WHERE e.position = ANY($1)"
    ))
    .bind(&positions)
    .fetch_all(&mut *conn)
    .await?;
    let mut canonical: HashMap<i64, CanonicalEvent> =
        rows.into_iter().map(|r| (r.position, r)).collect();
    let stored: Vec<(Uuid, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT t.clinic_id, p.link, p.hash FROM unnest($1::uuid[]) AS t(clinic_id) \
         LEFT JOIN LATERAL (SELECT c.link, c.hash FROM audit_chain c WHERE c.clinic_id = t.clinic_id \
                            ORDER BY c.link DESC LIMIT 1) p ON true",
    )
    .bind(&clinics)
    .fetch_all(&mut *conn)
    .await?;
    let mut heads: HashMap<Uuid, (i64, [u8; 32])> = HashMap::new();
    for (clinic, link, hash) in stored {
        let hash = match hash {
            Some(bytes) => to_hash(bytes)?,
            None => GENESIS,
        };
        heads.insert(clinic, (link.unwrap_or(0), hash));
    }
    let mut links = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for event in events {
        let row = canonical
            .remove(&event.position)
            .ok_or_else(|| event.poison("the event is gone"))?;
        let head = heads.entry(event.tenant_id).or_insert((0, GENESIS));
        *head = (head.0 + 1, link_hash(&head.1, &canonical_bytes(&row)));
        links.0.push(event.tenant_id);
        links.1.push(event.position);
        links.2.push(head.0);
        links.3.push(head.1.to_vec());
    }
    sqlx::query(
        "INSERT INTO audit_chain (clinic_id, position, link, hash) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::bytea[])",
    )
    .bind(links.0)
    .bind(links.1)
    .bind(links.2)
    .bind(links.3)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The newest link of a clinic's chain, to keep outside the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChainHead {
    /// Position of the newest chained event (0 before the first).
    pub position: i64,
    /// Its chain hash, hex (64 zeros before the first event).
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub hash: String,
    /// How many events the chain covers.
    pub events: i64,
}

/// The head of `clinic`'s chain.
pub async fn head(pool: &PgPool, clinic: ClinicId) -> Result<ChainHead, sqlx::Error> {
    let mut tx = crate::scope::clinic_tx(pool, clinic).await?;
    let row: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT position, link, hash FROM audit_chain WHERE clinic_id = $1 \
         ORDER BY link DESC LIMIT 1",
    )
    .bind(clinic.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    crate::scope::end_read(tx);
    Ok(match row {
        Some((position, events, hash)) => ChainHead {
            position,
            hash: to_hex(&hash),
            events,
        },
        None => ChainHead {
            position: 0,
            hash: to_hex(&GENESIS),
            events: 0,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: &str) -> CanonicalEvent {
        CanonicalEvent {
            position: 7,
            aggregate_type: "Patient".into(),
            aggregate_id: "a:b".into(),
            sequence: 1,
            event_type: "PatientRegistered".into(),
            event_version: "1.0".into(),
            payload: payload.into(),
            metadata: "{}".into(),
        }
    }

    #[test]
    fn the_chain_is_never_rebuilt() {
        assert!(crate::PROJECTIONS.contains(&PROJECTION));
        assert!(matches!(
            crate::rebuild::rebuildable(PROJECTION.name),
            Err(ProjectionError::NotRebuildable(_))
        ));
    }

    #[test]
    fn hex_round_trips() {
        let h = link_hash(&GENESIS, b"x");
        assert_eq!(parse_hash(&to_hex(&h)), Some(h));
        assert_eq!(parse_hash(&to_hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_hash(&"g".repeat(64)), None);
    }

    #[test]
    fn the_hash_is_sha256_of_prev_and_canonical_bytes() {
        // SHA-256 of 32 zero bytes followed by nothing.
        assert_eq!(
            to_hex(&link_hash(&GENESIS, b"")),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn canonical_bytes_are_length_prefixed_and_unambiguous() {
        let a = event(r#"{"a": 1}"#);
        let mut b = a.clone();
        b.aggregate_type = "Patien".into();
        b.aggregate_id = "ta:b".into();
        assert_ne!(canonical_bytes(&a), canonical_bytes(&b));
        assert_ne!(canonical_bytes(&a), canonical_bytes(&event(r#"{"a": 2}"#)));
        assert_eq!(&canonical_bytes(&a)[..5], &[0, 0, 0, 1, b'7']);
    }
}
