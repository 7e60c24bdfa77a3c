//! Injected time. Aggregates never read the system clock directly.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
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
    fn system_clock_moves_forward() {
        let services = Services::default();
        let a = services.now();
        let b = services.now();
        assert!(b >= a);
    }
}
