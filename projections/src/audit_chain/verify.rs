//! Verification: the chain recomputed from the events alone (no writes), compared with the
//! stored links up to the projection's checkpoint.

use std::collections::HashMap;

use domain::ids::ClinicId;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    canonical_bytes, link_hash, to_hash, to_hex, CanonicalEvent, CANONICAL_COLUMNS, GENESIS,
    PROJECTION,
};

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
    .bind(PROJECTION.name)
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
