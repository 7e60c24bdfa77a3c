//! What a projection is: its name (the key of its checkpoint and its lease), the tables it
//! owns, and how it applies one event. The worker, the rebuild and the lag figures know the
//! projections only through [`PROJECTIONS`]; a new read model is a folder with its apply and
//! queries, and one more entry there.

use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::event::StoredEvent;
use crate::{appointments, audit_chain, clinics, invoices, patients, staff, ProjectionError};

/// How a projection applies a batch of events (its own, in commit order) to its tables in
/// `schema` (`rm`, or a rebuild's).
pub type ApplyFn = for<'a> fn(
    &'a str,
    &'a mut PgConnection,
    &'a [&'a StoredEvent],
) -> BoxFuture<'a, Result<(), ProjectionError>>;

/// A projection of the event log.
#[derive(Clone, Copy)]
pub struct Projection {
    /// Its name: the key of its checkpoint row and of its lease.
    pub name: &'static str,
    /// The tables it owns (in schema `rm` for a read model).
    pub tables: &'static [&'static str],
    /// False for evidence that must never be recomputed (the hash chain): a rebuild would
    /// forge it.
    pub rebuildable: bool,
    /// The only aggregate type whose events it reads (`None`: every event).
    pub aggregate_type: Option<&'static str>,
    pub(crate) apply: ApplyFn,
}

/// The projections, in the order a rebuild runs them. `audit_chain` (tamper evidence, see
/// [`audit_chain`]) is run by the workers but never rebuilt.
pub const PROJECTIONS: &[Projection] = &[
    clinics::PROJECTION,
    staff::PROJECTION,
    patients::PROJECTION,
    appointments::PROJECTION,
    invoices::PROJECTION,
    audit_chain::PROJECTION,
];

impl Projection {
    /// A read model: owns `tables` in schema `rm`, and can be rebuilt from zero.
    pub(crate) const fn read_model(
        name: &'static str,
        tables: &'static [&'static str],
        aggregate_type: Option<&'static str>,
        apply: ApplyFn,
    ) -> Projection {
        Projection {
            name,
            tables,
            rebuildable: true,
            aggregate_type,
            apply,
        }
    }

    /// The projection called `name`.
    pub fn named(name: &str) -> Result<Projection, ProjectionError> {
        PROJECTIONS
            .iter()
            .find(|p| p.name == name)
            .copied()
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_owned()))
    }

    /// Applies `events` (a batch, in commit order) to this projection's tables in `schema`
    /// (`rm`, or a rebuild schema), in one go: the events of one row are merged, and each
    /// table is written with a few set-based statements. Returns how many were its own.
    pub async fn apply(
        &self,
        schema: &str,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<usize, ProjectionError> {
        let mine: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| {
                self.aggregate_type
                    .is_none_or(|only| only == e.aggregate_type)
            })
            .collect();
        if !mine.is_empty() {
            (self.apply)(schema, conn, &mine).await?;
        }
        Ok(mine.len())
    }
}

/// The names of the projections a rebuild may be asked for, comma-separated.
pub(crate) fn rebuildable_names() -> String {
    PROJECTIONS
        .iter()
        .filter(|p| p.rebuildable)
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl PartialEq for Projection {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Projection {}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl std::fmt::Display for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for p in PROJECTIONS {
            assert_eq!(Projection::named(p.name).unwrap(), *p);
        }
        assert!(matches!(
            Projection::named("billing"),
            Err(ProjectionError::UnknownProjection(_))
        ));
        assert_eq!(
            rebuildable_names(),
            "clinics, staff, patients, appointments, invoices"
        );
    }
}
