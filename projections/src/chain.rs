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

use std::collections::HashMap;

use domain::ids::ClinicId;
use futures::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::apply::StoredEvent;
use crate::ProjectionError;

/// The projection's name (and checkpoint).
pub const NAME: &str = "audit_chain";

/// The hash before the first event of a clinic.
pub const GENESIS: [u8; 32] = [0; 32];

/// The event columns the canonical bytes are made of.
const CANONICAL_COLUMNS: &str = "e.position, e.aggregate_type, e.aggregate_id, e.sequence, \
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

fn to_hash(bytes: Vec<u8>) -> Result<[u8; 32], sqlx::Error> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|b| sqlx::Error::Protocol(format!("a chain hash of {} bytes", b.len())))
}

#[derive(sqlx::FromRow)]
struct ToLink {
    #[sqlx(flatten)]
    event: CanonicalEvent,
    prev_link: Option<i64>,
    prev_hash: Option<Vec<u8>>,
}

/// Links `event` to its clinic's chain (the worker's `apply` for `audit_chain`).
pub(crate) async fn apply(
    conn: &mut PgConnection,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    let poison = |reason: String| ProjectionError::Poison {
        position: event.position,
        event_type: event.event_type.clone(),
        reason,
    };
    let row: Option<ToLink> = sqlx::query_as(&format!(
        "SELECT {CANONICAL_COLUMNS}, p.link AS prev_link, p.hash AS prev_hash \
         FROM events e \
         LEFT JOIN LATERAL (SELECT c.link, c.hash FROM audit_chain c WHERE c.clinic_id = $2 \
                            ORDER BY c.link DESC LIMIT 1) p ON true \
         WHERE e.position = $1"
    ))
    .bind(event.position)
    .bind(event.tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.ok_or_else(|| poison("the event is gone".into()))?;
    let prev = match row.prev_hash {
        Some(bytes) => to_hash(bytes)?,
        None => GENESIS,
    };
    let hash = link_hash(&prev, &canonical_bytes(&row.event));
    sqlx::query(
        "INSERT INTO audit_chain (clinic_id, position, link, hash) VALUES ($1, $2, $3, $4)",
    )
    .bind(event.tenant_id)
    .bind(event.position)
    .bind(row.prev_link.unwrap_or(0) + 1)
    .bind(hash.as_slice())
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
    tx.commit().await?;
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

/// A head exported earlier, to check against the recomputed chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedHead {
    pub position: i64,
    pub hash: [u8; 32],
}

/// `intact` or `tampered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChainStatus {
    Intact,
    Tampered,
}

/// What was done to the history at the first place it differs from the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiscrepancyKind {
    /// The event at `position` is not the one that was chained (its hash differs).
    Changed,
    /// A chained event at `position` no longer exists.
    Removed,
    /// The event at `position` was never chained although later events were.
    Inserted,
}

/// The first place the history differs from the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    pub position: i64,
}

/// The check of an exported head against the chain recomputed from the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HeadCheck {
    pub position: i64,
    /// The exported hash, hex.
    pub hash: String,
    /// The hash recomputed from the events at that position (null: no event at that position).
    pub recomputed_hash: Option<String>,
    pub matches: bool,
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Verification {
    pub status: ChainStatus,
    /// Chained events found unaltered (all of them when intact).
    pub events: i64,
    /// Committed events the chain does not cover yet (worker lag; not tampering).
    pub pending: i64,
    /// The newest stored link (position 0 and 64 zeros before the first event).
    pub head_position: i64,
    pub head_hash: String,
    /// The first discrepancy in commit order; null when intact.
    pub first_discrepancy: Option<Discrepancy>,
    /// Present when an exported head was given: a mismatch means the history (and the stored
    /// chain with it) was rewritten since it was exported.
    pub expected_head: Option<HeadCheck>,
}

impl std::fmt::Display for Verification {
    /// One line: `intact: N events, head POS HEX` or `tampered: changed at position P`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.first_discrepancy, &self.expected_head) {
            (Some(d), _) => {
                let kind = match d.kind {
                    DiscrepancyKind::Changed => "changed",
                    DiscrepancyKind::Removed => "removed",
                    DiscrepancyKind::Inserted => "inserted",
                };
                write!(f, "tampered: {kind} at position {}", d.position)
            }
            (None, Some(h)) if !h.matches => write!(
                f,
                "tampered: the exported head at position {} does not match (recomputed {})",
                h.position,
                h.recomputed_hash.as_deref().unwrap_or("nothing")
            ),
            _ => {
                write!(
                    f,
                    "intact: {} events, head {} {}",
                    self.events, self.head_position, self.head_hash
                )?;
                if self.pending > 0 {
                    write!(f, " ({} pending)", self.pending)?;
                }
                if let Some(h) = &self.expected_head {
                    write!(f, "; exported head at position {} matches", h.position)?;
                }
                Ok(())
            }
        }
    }
}

/// Recomputes `clinic`'s chain from its events and compares it with the stored links, in one
/// read-only snapshot. Writes nothing.
pub async fn verify(
    pool: &PgPool,
    clinic: ClinicId,
    expected: Option<ExpectedHead>,
) -> Result<Verification, sqlx::Error> {
    let clinic_id: Uuid = clinic.as_uuid();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('app.clinic_id', $1, true)")
        .bind(clinic_id.to_string())
        .execute(&mut *tx)
        .await?;
    // The links, in chain order.
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT position, hash FROM audit_chain WHERE clinic_id = $1 ORDER BY link")
            .bind(clinic_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut links: Vec<(i64, [u8; 32])> = Vec::with_capacity(rows.len());
    for (position, hash) in rows {
        links.push((position, to_hash(hash)?));
    }
    let index: HashMap<i64, usize> = links
        .iter()
        .enumerate()
        .map(|(i, (p, _))| (*p, i))
        .collect();
    // The events the chain should cover (up to its checkpoint, in commit order) …
    let (cp_tx, cp_pos): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, position FROM projection_checkpoints WHERE name = $1",
    )
    .bind(NAME)
    .fetch_one(&mut *tx)
    .await?;
    // … and those it does not cover yet.
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE tenant_id = $1 \
           AND (transaction_id, position) > ($2::xid8, $3)",
    )
    .bind(clinic_id)
    .bind(&cp_tx)
    .bind(cp_pos)
    .fetch_one(&mut *tx)
    .await?;

    let mut prev = GENESIS;
    let mut next = 0usize; // the link the next event should match
    let mut verified = 0i64;
    let mut first: Option<Discrepancy> = None;
    let mut recomputed_at_expected: Option<[u8; 32]> = None;
    {
        let sql = format!(
            "SELECT {CANONICAL_COLUMNS} FROM events e WHERE e.tenant_id = $1 \
               AND (e.transaction_id, e.position) <= ($2::xid8, $3) \
             ORDER BY e.transaction_id, e.position"
        );
        let mut events = sqlx::query_as::<_, CanonicalEvent>(&sql)
            .bind(clinic_id)
            .bind(&cp_tx)
            .bind(cp_pos)
            .fetch(&mut *tx);
        while let Some(event) = events.try_next().await? {
            let hash = link_hash(&prev, &canonical_bytes(&event));
            prev = hash;
            if expected.is_some_and(|e| e.position == event.position) {
                recomputed_at_expected = Some(hash);
            }
            if first.is_some() {
                continue;
            }
            match links.get(next) {
                Some((position, stored)) if *position == event.position => {
                    if *stored == hash {
                        verified += 1;
                    } else {
                        first = Some(Discrepancy {
                            kind: DiscrepancyKind::Changed,
                            position: event.position,
                        });
                    }
                    next += 1;
                }
                expected_link => {
                    first = Some(match (index.get(&event.position), expected_link) {
                        // Never chained, yet later events were (the checkpoint is past it).
                        (None, _) => Discrepancy {
                            kind: DiscrepancyKind::Inserted,
                            position: event.position,
                        },
                        // Chained further on: the links before it lost their events.
                        (Some(&i), Some((missing, _))) if i > next => Discrepancy {
                            kind: DiscrepancyKind::Removed,
                            position: *missing,
                        },
                        // Chained earlier (moved in the commit order, or a duplicate).
                        (Some(_), _) => Discrepancy {
                            kind: DiscrepancyKind::Changed,
                            position: event.position,
                        },
                    });
                }
            }
        }
    }
    tx.commit().await?;
    if first.is_none() {
        if let Some((missing, _)) = links.get(next) {
            first = Some(Discrepancy {
                kind: DiscrepancyKind::Removed,
                position: *missing,
            });
        }
    }
    let expected_head = expected.map(|e| HeadCheck {
        position: e.position,
        hash: to_hex(&e.hash),
        recomputed_hash: recomputed_at_expected.map(|h| to_hex(&h)),
        matches: recomputed_at_expected == Some(e.hash),
    });
    let tampered = first.is_some() || expected_head.as_ref().is_some_and(|h| !h.matches);
    let (head_position, head_hash) = links
        .last()
        .map(|(p, h)| (*p, to_hex(h)))
        .unwrap_or((0, to_hex(&GENESIS)));
    Ok(Verification {
        status: if tampered {
            ChainStatus::Tampered
        } else {
            ChainStatus::Intact
        },
        events: verified,
        pending,
        head_position,
        head_hash,
        first_discrepancy: first,
        expected_head,
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
        assert!(crate::PROJECTIONS.contains(&NAME));
        assert!(matches!(
            crate::rebuild::tables(NAME),
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
