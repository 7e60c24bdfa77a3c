use chrono::{Datelike, NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

use super::{TimeRange, TimeZone, ValueError};

/// A span of local (clinic) time inside one day, `[start, end)` with `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "LocalIntervalRepr", into = "LocalIntervalRepr")]
pub struct LocalInterval {
    start: NaiveTime,
    end: NaiveTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalIntervalRepr {
    start: NaiveTime,
    end: NaiveTime,
}

impl LocalInterval {
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, ValueError> {
        if end <= start {
            return Err(ValueError::EndNotAfterStart);
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }

    pub fn overlaps(&self, other: &LocalInterval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl TryFrom<LocalIntervalRepr> for LocalInterval {
    type Error = ValueError;

    fn try_from(repr: LocalIntervalRepr) -> Result<Self, Self::Error> {
        LocalInterval::new(repr.start, repr.end)
    }
}

impl From<LocalInterval> for LocalIntervalRepr {
    fn from(i: LocalInterval) -> Self {
        LocalIntervalRepr {
            start: i.start,
            end: i.end,
        }
    }
}

/// Weekly working hours in clinic-local time: for each weekday a sorted list of
/// non-overlapping intervals (at most [`WorkingHours::MAX_INTERVALS_PER_DAY`]).
/// Serialises as an object keyed `"mon"` … `"sun"`; missing days are empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "WorkingHoursRepr", into = "WorkingHoursRepr")]
pub struct WorkingHours {
    days: [Vec<LocalInterval>; 7],
}

#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
struct WorkingHoursRepr {
    mon: Vec<LocalInterval>,
    tue: Vec<LocalInterval>,
    wed: Vec<LocalInterval>,
    thu: Vec<LocalInterval>,
    fri: Vec<LocalInterval>,
    sat: Vec<LocalInterval>,
    sun: Vec<LocalInterval>,
}

const WEEK: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// The serialisation key of a weekday.
pub(crate) fn day_key(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

impl WorkingHours {
    pub const MAX_INTERVALS_PER_DAY: usize = 6;

    /// No working hours on any day.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds weekly hours; a weekday given more than once has its intervals combined.
    /// Intervals are sorted; overlaps or too many intervals on a day are rejected.
    pub fn new(
        days: impl IntoIterator<Item = (Weekday, Vec<LocalInterval>)>,
    ) -> Result<Self, ValueError> {
        let mut hours = Self::default();
        for (day, intervals) in days {
            hours.days[day.num_days_from_monday() as usize].extend(intervals);
        }
        for day in WEEK {
            let key = day_key(day);
            let list = &mut hours.days[day.num_days_from_monday() as usize];
            if list.len() > Self::MAX_INTERVALS_PER_DAY {
                return Err(ValueError::TooMany {
                    max: Self::MAX_INTERVALS_PER_DAY,
                }
                .in_field(key));
            }
            list.sort();
            if list.windows(2).any(|w| w[0].overlaps(&w[1])) {
                return Err(ValueError::OverlappingIntervals { day: key });
            }
        }
        Ok(hours)
    }

    /// The intervals of one weekday, sorted.
    pub fn day(&self, day: Weekday) -> &[LocalInterval] {
        &self.days[day.num_days_from_monday() as usize]
    }

    /// All seven days, Monday first.
    pub fn iter(&self) -> impl Iterator<Item = (Weekday, &[LocalInterval])> + '_ {
        WEEK.into_iter().map(move |d| (d, self.day(d)))
    }

    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    /// Whether `range`, seen in `tz`, falls on one local day inside one working interval.
    pub fn covers(&self, range: &TimeRange, tz: &TimeZone) -> bool {
        let start = range.start().with_timezone(&tz.tz());
        let end = range.end().with_timezone(&tz.tz());
        if start.date_naive() != end.date_naive() {
            return false;
        }
        self.day(start.weekday())
            .iter()
            .any(|i| i.start <= start.time() && end.time() <= i.end)
    }
}

impl TryFrom<WorkingHoursRepr> for WorkingHours {
    type Error = ValueError;

    fn try_from(r: WorkingHoursRepr) -> Result<Self, Self::Error> {
        WorkingHours::new([
            (Weekday::Mon, r.mon),
            (Weekday::Tue, r.tue),
            (Weekday::Wed, r.wed),
            (Weekday::Thu, r.thu),
            (Weekday::Fri, r.fri),
            (Weekday::Sat, r.sat),
            (Weekday::Sun, r.sun),
        ])
    }
}

impl From<WorkingHours> for WorkingHoursRepr {
    fn from(h: WorkingHours) -> Self {
        let [mon, tue, wed, thu, fri, sat, sun] = h.days;
        WorkingHoursRepr {
            mon,
            tue,
            wed,
            thu,
            fri,
            sat,
            sun,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::at;

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn iv(a: (u32, u32), b: (u32, u32)) -> LocalInterval {
        LocalInterval::new(t(a.0, a.1), t(b.0, b.1)).unwrap()
    }

    #[test]
    fn interval_start_before_end() {
        assert_eq!(
            LocalInterval::new(t(9, 0), t(9, 0)),
            Err(ValueError::EndNotAfterStart)
        );
        assert_eq!(
            LocalInterval::new(t(10, 0), t(9, 0)),
            Err(ValueError::EndNotAfterStart)
        );
    }

    #[test]
    fn intervals_are_sorted() {
        let h = WorkingHours::new([(
            Weekday::Mon,
            vec![iv((13, 0), (17, 0)), iv((9, 0), (12, 0))],
        )])
        .unwrap();
        assert_eq!(
            h.day(Weekday::Mon),
            &[iv((9, 0), (12, 0)), iv((13, 0), (17, 0))]
        );
        assert!(h.day(Weekday::Tue).is_empty());
        assert!(!h.is_empty());
        assert!(WorkingHours::empty().is_empty());
    }

    #[test]
    fn touching_intervals_are_fine_overlapping_are_not() {
        assert!(WorkingHours::new([(
            Weekday::Tue,
            vec![iv((9, 0), (12, 0)), iv((12, 0), (13, 0))]
        )])
        .is_ok());
        assert_eq!(
            WorkingHours::new([(
                Weekday::Tue,
                vec![iv((9, 0), (12, 0)), iv((11, 0), (13, 0))]
            )]),
            Err(ValueError::OverlappingIntervals { day: "tue" })
        );
        // The same weekday twice is combined, then checked.
        assert_eq!(
            WorkingHours::new([
                (Weekday::Sun, vec![iv((9, 0), (12, 0))]),
                (Weekday::Sun, vec![iv((10, 0), (11, 0))]),
            ]),
            Err(ValueError::OverlappingIntervals { day: "sun" })
        );
    }

    #[test]
    fn at_most_six_intervals_per_day() {
        let many: Vec<_> = (0..7).map(|i| iv((8 + i, 0), (8 + i, 30))).collect();
        let err = WorkingHours::new([(Weekday::Wed, many.clone())]).unwrap_err();
        assert_eq!(err.field(), Some("wed"));
        assert!(WorkingHours::new([(Weekday::Wed, many[..6].to_vec())]).is_ok());
    }

    #[test]
    fn serialises_keyed_by_day() {
        let h = WorkingHours::new([(Weekday::Fri, vec![iv((9, 0), (17, 30))])]).unwrap();
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["fri"][0]["start"], "09:00:00");
        assert_eq!(json["fri"][0]["end"], "17:30:00");
        assert_eq!(json["mon"], serde_json::json!([]));
        let back: WorkingHours = serde_json::from_value(json).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn deserialising_validates_and_accepts_missing_days() {
        let h: WorkingHours = serde_json::from_str(
            r#"{"mon":[{"start":"13:00","end":"17:00"},{"start":"08:00","end":"12:00"}]}"#,
        )
        .unwrap();
        assert_eq!(h.day(Weekday::Mon)[0], iv((8, 0), (12, 0)));
        assert!(serde_json::from_str::<WorkingHours>(
            r#"{"mon":[{"start":"13:00","end":"12:00"}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<WorkingHours>(
            r#"{"mon":[{"start":"09:00","end":"12:00"},{"start":"11:00","end":"13:00"}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<WorkingHours>(r#"{"monday":[]}"#).is_err());
    }

    #[test]
    fn covers_uses_the_clinic_time_zone() {
        // Monday 09:00-12:00 in Berlin (UTC+2 in June).
        let h = WorkingHours::new([(Weekday::Mon, vec![iv((9, 0), (12, 0))])]).unwrap();
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        let inside =
            TimeRange::new(at("2025-06-02T07:00:00Z"), at("2025-06-02T07:30:00Z")).unwrap();
        let too_early =
            TimeRange::new(at("2025-06-02T06:30:00Z"), at("2025-06-02T07:30:00Z")).unwrap();
        let to_the_end =
            TimeRange::new(at("2025-06-02T09:30:00Z"), at("2025-06-02T10:00:00Z")).unwrap();
        let tuesday =
            TimeRange::new(at("2025-06-03T07:00:00Z"), at("2025-06-03T07:30:00Z")).unwrap();
        assert!(h.covers(&inside, &berlin));
        assert!(!h.covers(&too_early, &berlin));
        assert!(h.covers(&to_the_end, &berlin));
        assert!(!h.covers(&tuesday, &berlin));
    }
}
