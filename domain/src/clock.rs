//! Injected time. Nothing in the service reads the system clock for a business rule: the
//! aggregates, the API and the workers all ask one [`Services`] (its [`Clock`]).
//!
//! The running service always uses [`SystemClock`]. [`ManualClock`] exists for tests (and
//! replays): the test harness hands it to the service in code. No environment variable,
//! flag or header can select it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // The one read of the wall clock for business time.
        Utc::now()
    }
}

/// A clock that always answers the same instant (tests, replays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// A clock that stands still at an instant until it is moved (tests). Shared: every clone of
/// the [`Services`] holding it sees a move at once.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(at))
    }

    /// Moves the clock to `at` (forwards or backwards).
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cqrs-es `Services` of every aggregate in this crate.
#[derive(Debug, Clone)]
pub struct Services {
    pub clock: Arc<dyn Clock>,
}

impl Services {
    pub fn system() -> Self {
        Services {
            clock: Arc::new(SystemClock),
        }
    }

    pub fn fixed(now: DateTime<Utc>) -> Self {
        Services {
            clock: Arc::new(FixedClock(now)),
        }
    }

    /// A clock that the caller can move (see [`ManualClock`]).
    pub fn manual(clock: Arc<ManualClock>) -> Self {
        Services { clock }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Today's date in UTC.
    pub fn today_utc(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

impl Default for Services {
    fn default() -> Self {
        Services::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_clock_answers_its_instant() {
        let t = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        let services = Services::fixed(t);
        assert_eq!(services.now(), t);
        assert_eq!(
            services.today_utc(),
            NaiveDate::from_ymd_opt(2025, 1, 2).unwrap()
        );
    }

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_every_clone_sees_the_move() {
        let t = Utc.with_ymd_and_hms(2027, 3, 3, 8, 0, 0).unwrap();
        let clock = Arc::new(ManualClock::new(t));
        let services = Services::manual(clock.clone());
        let copy = services.clone();
        assert_eq!(services.now(), t);
        assert_eq!(services.now(), t);
        clock.advance(chrono::Duration::minutes(90));
        assert_eq!(copy.now(), t + chrono::Duration::minutes(90));
        clock.set(t);
        assert_eq!(services.now(), t);
    }

    #[test]
    fn system_clock_moves_forward() {
        let services = Services::default();
        let a = services.now();
        let b = services.now();
        assert!(b >= a);
    }
}
