//! Connections for `GET /v1/audit/events`. An export holds a database connection until its
//! reader has taken the last line, outside the request timeout. So exports get their own small
//! pool (the requests' pool never waits for a slow reader), each clinic at most
//! [`StreamSettings::per_clinic`] exports at a time (429 with `Retry-After` beyond), and every
//! export is cut off when its reader stalls or it runs too long ([`StreamLimits`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::ids::ClinicId;
use projections::audit::StreamLimits;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of the audit exports.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    /// Connections of the exports' own pool.
    pub pool_size: u32,
    /// Exports one clinic may run at once.
    pub per_clinic: usize,
    /// Cut an export off when its reader has not taken a chunk (64 KiB) for this long.
    pub stall: Duration,
    /// Cut an export off when it has run this long.
    pub total: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            pool_size: 4,
            per_clinic: 2,
            stall: Duration::from_secs(30),
            total: Duration::from_secs(15 * 60),
        }
    }
}

/// The exports' pool and each clinic's share of it.
#[derive(Debug)]
pub struct StreamGate {
    pub pool: PgPool,
    pub limits: StreamLimits,
    per_clinic: usize,
    clinics: Mutex<HashMap<ClinicId, Arc<Semaphore>>>,
}

impl StreamGate {
    pub fn new(pool: PgPool, settings: &StreamSettings) -> Self {
        StreamGate {
            pool,
            limits: StreamLimits {
                stall: Some(settings.stall),
                total: Some(settings.total),
            },
            per_clinic: settings.per_clinic.max(1),
            clinics: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more export of `clinic`, held until the permit is dropped; `None` while
    /// the clinic already runs its share.
    pub fn enter(&self, clinic: ClinicId) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut clinics = self.clinics.lock().unwrap_or_else(|e| e.into_inner());
            clinics
                .entry(clinic)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_clinic)))
                .clone()
        };
        semaphore.try_acquire_owned().ok()
    }
}
