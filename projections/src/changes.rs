//! The rows a batch of events changes, merged per row in memory before they are written.
//!
//! A read model's apply turns each event into a [`Merge`] value: a whole row for the event
//! that creates it (`PatientRegistered`, `StaffHired`, `AppointmentBooked`), a patch of the
//! columns it sets for any other. Consecutive events of one row fold into one value, in commit
//! order (a patch's set columns replace the older ones, appended lists are concatenated, and
//! the version and `updated_at` are the newest event's). The batch then costs two statements
//! per table: one multi-row `INSERT … SELECT … FROM unnest(…)` of the rows created in the
//! batch, and one `UPDATE … FROM unnest(…)` of the rows it patched. The result is what
//! applying the events one by one gives, whatever the batch boundaries (the e2e test
//! `projections::incremental_and_rebuilt_read_models_are_identical` checks it).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgHasArrayType};
use sqlx::{Arguments, Encode, PgConnection, Postgres, Type};
use uuid::Uuid;

use crate::event::StoredEvent;
use crate::ProjectionError;

/// A row, or a patch of a row, that a newer event's value can be folded into.
pub(crate) trait Merge: Sized {
    /// Folds `newer` (from a later event) into `self`.
    fn merge(&mut self, newer: Self);
    /// The columns of `rows`, in the order the table's `unnest(…)` reads them.
    fn columns(rows: &[Entry<Self>]) -> Unnest<'_, Self>;
}

/// Applies `events` to a table: folds each into the batch's rows with `fold` (in commit
/// order), then writes the rows the batch created with `insert` and the patches with `update`
/// (statements over the rows' [`Merge::columns`] that return the keys they wrote).
pub(crate) async fn apply<R: Merge>(
    conn: &mut PgConnection,
    events: &[&StoredEvent],
    fold: impl Fn(&mut Changes<R>, &StoredEvent) -> Result<(), ProjectionError>,
    insert: &str,
    update: &str,
) -> Result<(), ProjectionError> {
    let mut rows = Changes::new();
    // An event that cannot be read stops the batch there; the rows before it are still
    // written, so that a missing row earlier in the batch is the error reported.
    let folded = events.iter().try_for_each(|e| fold(&mut rows, e));
    let (created, patches) = rows.split();
    if !created.is_empty() {
        R::columns(&created).run(conn, insert).await?;
    }
    if !patches.rows.is_empty() {
        let updated = R::columns(&patches.rows).run(conn, update).await?;
        patches.check(&updated)?;
    }
    folded
}

/// A read-model row's key: the clinic and the entity.
pub(crate) type Key = (Uuid, Uuid);

/// What every row takes from the newest event that changed it: `updated_at` (when it
/// happened) and `version` (its sequence in the stream).
#[derive(Clone, Copy)]
pub(crate) struct Stamp {
    updated_at: DateTime<Utc>,
    version: i64,
}

/// A row of a batch: its key, its stamp, its columns (or the patch of them).
pub(crate) type Entry<R> = (Key, Stamp, R);

/// The key of the row `e` changes: its clinic and the entity of its stream.
pub(crate) fn key(e: &StoredEvent) -> Result<Key, ProjectionError> {
    Ok((e.tenant_id, e.entity()?))
}

struct Change<R> {
    /// Created by an event of this batch (else: a patch of a row already in the table).
    created: bool,
    /// The first event of the batch that touched the row, to name if the row is missing.
    position: i64,
    event_type: String,
    stamp: Stamp,
    row: R,
}

/// The rows of one table changed by a batch, merged per key.
pub(crate) struct Changes<R> {
    rows: BTreeMap<Key, Change<R>>,
}

impl<R: Merge> Changes<R> {
    pub(crate) fn new() -> Self {
        Changes {
            rows: BTreeMap::new(),
        }
    }

    /// `e` creates the row `key`.
    pub(crate) fn create(&mut self, e: &StoredEvent, row: R) -> Result<(), ProjectionError> {
        let key = key(e)?;
        match self.rows.get(&key) {
            None => {
                self.rows.insert(key, Change::first(e, true, row)?);
                Ok(())
            }
            Some(earlier) if earlier.created => Err(e.poison("the read-model row already exists")),
            // An earlier event of the batch changed a row that did not exist yet.
            Some(earlier) => Err(missing(earlier)),
        }
    }

    /// `e` changes the row `key` by `patch`.
    pub(crate) fn patch(&mut self, e: &StoredEvent, patch: R) -> Result<(), ProjectionError> {
        let key = key(e)?;
        match self.rows.get_mut(&key) {
            Some(change) => {
                change.stamp = Stamp::of(e)?;
                change.row.merge(patch);
            }
            None => {
                self.rows.insert(key, Change::first(e, false, patch)?);
            }
        }
        Ok(())
    }

    /// The rows created by the batch, and the patches of rows already in the table.
    pub(crate) fn split(self) -> (Vec<Entry<R>>, Patches<R>) {
        let mut created = Vec::new();
        let mut patched = Vec::new();
        let mut first = BTreeMap::new();
        for (key, change) in self.rows {
            if change.created {
                created.push((key, change.stamp, change.row));
            } else {
                first.insert(key, (change.position, change.event_type));
                patched.push((key, change.stamp, change.row));
            }
        }
        (
            created,
            Patches {
                rows: patched,
                first,
            },
        )
    }
}

/// Patches of rows that must already be in the table.
pub(crate) struct Patches<R> {
    pub(crate) rows: Vec<Entry<R>>,
    first: BTreeMap<Key, (i64, String)>,
}

impl<R> Patches<R> {
    /// Checks that every patched row was found (`updated`: the keys the `UPDATE` returned);
    /// else names the first event of the batch that touched a missing row.
    pub(crate) fn check(&self, updated: &[Key]) -> Result<(), ProjectionError> {
        if updated.len() == self.first.len() {
            return Ok(());
        }
        let mut missing_rows = self.first.clone();
        for key in updated {
            missing_rows.remove(key);
        }
        let (position, event_type) = missing_rows
            .into_values()
            .min()
            .unwrap_or((0, String::new()));
        Err(changed_nothing(position, event_type))
    }
}

impl Stamp {
    fn of(e: &StoredEvent) -> Result<Stamp, ProjectionError> {
        Ok(Stamp {
            updated_at: e.at()?,
            version: e.sequence,
        })
    }
}

impl<R> Change<R> {
    fn first(e: &StoredEvent, created: bool, row: R) -> Result<Self, ProjectionError> {
        Ok(Change {
            created,
            position: e.position,
            event_type: e.event_type.clone(),
            stamp: Stamp::of(e)?,
            row,
        })
    }
}

fn missing<R>(change: &Change<R>) -> ProjectionError {
    changed_nothing(change.position, change.event_type.clone())
}

pub(crate) fn changed_nothing(position: i64, event_type: String) -> ProjectionError {
    ProjectionError::Poison {
        position,
        event_type,
        reason: "expected to change one read-model row, changed 0".into(),
    }
}

/// `merge_newer!(self, newer; a, b, …)`: each field of `newer` that is set replaces the
/// field of `self` (see [`newer`]).
macro_rules! merge_newer {
    ($old:ident, $new:ident; $($field:ident),* $(,)?) => {
        $(crate::changes::newer(&mut $old.$field, $new.$field);)*
    };
}
pub(crate) use merge_newer;

/// `newer` if set, else `older`: a patch's column replaces the row's only when it is set.
pub(crate) fn newer<T>(older: &mut Option<T>, newer: Option<T>) {
    if newer.is_some() {
        *older = newer;
    }
}

/// The bytes a row's columns take, about (a patient's record is most of them).
const ROW_BYTES: usize = 768;

/// The columns of `rows` bound as arrays, `$1` the clinics and `$2` the entity ids, then one
/// per [`Unnest::col`], then `updated_at` and `version`, for a statement that reads them with
/// `unnest($1::uuid[], …)` and returns the keys it wrote.
pub(crate) struct Unnest<'r, R> {
    rows: &'r [Entry<R>],
    args: PgArguments,
    error: Option<BoxDynError>,
}

impl<'r, R> Unnest<'r, R> {
    pub(crate) fn new(rows: &'r [Entry<R>]) -> Self {
        let mut args = PgArguments::default();
        // Room for a typical row's columns up front: a batch of 10,000 rows is megabytes,
        // which grown by doubling was copied over and over.
        args.reserve(16, rows.len() * ROW_BYTES);
        let table = Unnest {
            rows,
            args,
            error: None,
        };
        table.key(|k| k.0).key(|k| k.1)
    }

    fn key(self, f: impl Fn(&Key) -> Uuid) -> Self {
        let ids: Vec<Uuid> = self.rows.iter().map(|(k, _, _)| f(k)).collect();
        self.add(ids)
    }

    /// The next column: `f` of every row (which may borrow from the row: the column is
    /// encoded here, before the rows are dropped).
    pub(crate) fn col<T>(self, f: impl Fn(&'r R) -> T) -> Self
    where
        T: Encode<'r, Postgres> + Type<Postgres> + PgHasArrayType + Send + 'r,
    {
        let column: Vec<T> = self.rows.iter().map(|(_, _, r)| f(r)).collect();
        self.add(column)
    }

    fn add<T>(mut self, column: Vec<T>) -> Self
    where
        Vec<T>: Encode<'r, Postgres> + Type<Postgres> + Send + 'r,
    {
        if let Err(err) = Arguments::<'r>::add(&mut self.args, column) {
            self.error.get_or_insert(err);
        }
        self
    }

    /// Runs `sql` with the columns bound; the keys it returned.
    pub(crate) async fn run(
        self,
        conn: &mut PgConnection,
        sql: &str,
    ) -> Result<Vec<Key>, sqlx::Error> {
        let stamps = self.rows.iter().map(|(_, s, _)| s);
        let updated_at: Vec<DateTime<Utc>> = stamps.clone().map(|s| s.updated_at).collect();
        let version: Vec<i64> = stamps.map(|s| s.version).collect();
        let this = self.add(updated_at).add(version);
        if let Some(err) = this.error {
            return Err(sqlx::Error::Encode(err));
        }
        sqlx::query_as_with(sql, this.args).fetch_all(conn).await
    }
}
