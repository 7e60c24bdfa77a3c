use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ValueError;

/// A half-open span of time `[start, end)` with `end` strictly after `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "TimeRangeRepr", into = "TimeRangeRepr")]
pub struct TimeRange {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeRangeRepr {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TimeRange {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ValueError> {
        if end <= start {
            return Err(ValueError::EndNotAfterStart);
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    /// Whether the two ranges share any instant (touching ends do not overlap).
    pub fn overlaps(&self, other: &TimeRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `instant` lies in `[start, end)`.
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }

    /// Whether `other` lies entirely inside this range.
    pub fn contains_range(&self, other: &TimeRange) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl TryFrom<TimeRangeRepr> for TimeRange {
    type Error = ValueError;

    fn try_from(repr: TimeRangeRepr) -> Result<Self, Self::Error> {
        TimeRange::new(repr.start, repr.end)
    }
}

impl From<TimeRange> for TimeRangeRepr {
    fn from(range: TimeRange) -> Self {
        TimeRangeRepr {
            start: range.start,
            end: range.end,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;

    fn range(a: &str, b: &str) -> TimeRange {
        TimeRange::new(at(a), at(b)).unwrap()
    }

    #[test]
    fn end_must_be_after_start() {
        assert_eq!(
            TimeRange::new(at("2025-01-01T10:00:00Z"), at("2025-01-01T10:00:00Z")),
            Err(ValueError::EndNotAfterStart)
        );
        assert_eq!(
            TimeRange::new(at("2025-01-01T10:00:00Z"), at("2025-01-01T09:00:00Z")),
            Err(ValueError::EndNotAfterStart)
        );
        let r = range("2025-01-01T10:00:00Z", "2025-01-01T10:30:00Z");
        assert_eq!(r.duration(), Duration::minutes(30));
    }

    #[test]
    fn overlap_is_half_open() {
        let a = range("2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z");
        let touching = range("2025-01-01T11:00:00Z", "2025-01-01T12:00:00Z");
        let inside = range("2025-01-01T10:15:00Z", "2025-01-01T10:45:00Z");
        let straddling = range("2025-01-01T09:30:00Z", "2025-01-01T10:01:00Z");
        assert!(!a.overlaps(&touching));
        assert!(!touching.overlaps(&a));
        assert!(a.overlaps(&inside) && inside.overlaps(&a));
        assert!(a.overlaps(&straddling) && straddling.overlaps(&a));
        assert!(a.overlaps(&a));
    }

    #[test]
    fn contains_instants_and_ranges() {
        let a = range("2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z");
        assert!(a.contains(at("2025-01-01T10:00:00Z")));
        assert!(a.contains(at("2025-01-01T10:59:59Z")));
        assert!(!a.contains(at("2025-01-01T11:00:00Z")));
        assert!(a.contains_range(&range("2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z")));
        assert!(!a.contains_range(&range("2025-01-01T10:00:00Z", "2025-01-01T11:00:01Z")));
    }

    #[test]
    fn serde_validates() {
        let r: TimeRange = serde_json::from_str(
            r#"{"start":"2025-01-01T10:00:00Z","end":"2025-01-01T11:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(r, range("2025-01-01T10:00:00Z", "2025-01-01T11:00:00Z"));
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["start"], "2025-01-01T10:00:00Z");
        assert!(serde_json::from_str::<TimeRange>(
            r#"{"start":"2025-01-01T11:00:00Z","end":"2025-01-01T10:00:00Z"}"#
        )
        .is_err());
    }
}
