//! Subscription plans and what each allows, defined here once. `GET /v1/plans` shows
//! [`PlanLimits::all`], the use cases of `commands::plans` enforce them, and the platform
//! overview measures each clinic's use against them.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone as _, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::values::{Module, Plan, TimeZone};

/// One of the things a plan limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Doctors whose accounts are active.
    ActiveDoctors,
    /// Staff of every role (doctors included) whose accounts are active.
    ActiveStaff,
    /// Patient records, less those merged into another.
    Patients,
    /// Appointments booked in a calendar month of the clinic's time zone (the month of the
    /// booking, not of the visit); a cancelled booking still counts.
    MonthlyBookings,
    /// Modules enabled at once.
    Modules,
}

impl Limit {
    pub const ALL: [Limit; 5] = [
        Limit::ActiveDoctors,
        Limit::ActiveStaff,
        Limit::Patients,
        Limit::MonthlyBookings,
        Limit::Modules,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ActiveDoctors => "active_doctors",
            Limit::ActiveStaff => "active_staff",
            Limit::Patients => "patients",
            Limit::MonthlyBookings => "monthly_bookings",
            Limit::Modules => "modules",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a plan allows. `None` is no limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanLimits {
    pub plan: Plan,
    /// Days a trial lasts from the clinic's registration; `None` for a paid plan, which does
    /// not end.
    pub trial_days: Option<u32>,
    pub active_doctors: Option<u32>,
    pub active_staff: Option<u32>,
    pub patients: Option<u32>,
    pub monthly_bookings: Option<u32>,
    /// The modules a clinic on the plan may enable.
    pub modules: &'static [Module],
}

const ALL_MODULES: &[Module] = &[Module::Appointments, Module::Billing, Module::Laboratory];

/// The plans, in the order of [`Plan::ALL`]. The one place their numbers are written.
const PLANS: [PlanLimits; 4] = [
    PlanLimits {
        plan: Plan::Trial,
        trial_days: Some(30),
        active_doctors: Some(2),
        active_staff: Some(10),
        patients: Some(500),
        monthly_bookings: Some(300),
        modules: ALL_MODULES,
    },
    PlanLimits {
        plan: Plan::Basic,
        trial_days: None,
        active_doctors: Some(5),
        active_staff: Some(25),
        patients: Some(5_000),
        monthly_bookings: None,
        modules: &[Module::Appointments, Module::Billing],
    },
    PlanLimits {
        plan: Plan::Professional,
        trial_days: None,
        active_doctors: Some(25),
        active_staff: Some(100),
        patients: Some(50_000),
        monthly_bookings: None,
        modules: ALL_MODULES,
    },
    PlanLimits {
        plan: Plan::Enterprise,
        trial_days: None,
        active_doctors: None,
        active_staff: None,
        patients: None,
        monthly_bookings: None,
        modules: ALL_MODULES,
    },
];

/// A command would take a clinic past a limit of its plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {plan} plan allows {allowed} {limit}; {in_use} in use")]
pub struct OverLimit {
    pub plan: Plan,
    pub limit: Limit,
    pub allowed: u32,
    /// The use before the refused command.
    pub in_use: u64,
}

impl PlanLimits {
    /// Every plan, in the order of [`Plan::ALL`].
    pub fn all() -> &'static [PlanLimits] {
        &PLANS
    }

    pub fn of(plan: Plan) -> &'static PlanLimits {
        PLANS
            .iter()
            .find(|p| p.plan == plan)
            .expect("every plan has limits")
    }

    /// The plan's number for `limit` (`None`: no limit).
    pub fn allowed(&self, limit: Limit) -> Option<u32> {
        match limit {
            Limit::ActiveDoctors => self.active_doctors,
            Limit::ActiveStaff => self.active_staff,
            Limit::Patients => self.patients,
            Limit::MonthlyBookings => self.monthly_bookings,
            Limit::Modules => Some(self.modules.len() as u32),
        }
    }

    /// Whether `adding` more of `limit`, with `in_use` already, stays within the plan. Use
    /// over the limit (after a downgrade) is left alone; only a command that adds to it is
    /// refused.
    pub fn admit(&self, limit: Limit, in_use: u64, adding: u64) -> Result<(), OverLimit> {
        match self.allowed(limit) {
            Some(allowed) if adding > 0 && in_use + adding > u64::from(allowed) => Err(OverLimit {
                plan: self.plan,
                limit,
                allowed,
                in_use,
            }),
            _ => Ok(()),
        }
    }

    pub fn allows_module(&self, module: Module) -> bool {
        self.modules.contains(&module)
    }

    /// When a trial that starts at `from` ends (`None` for a paid plan).
    pub fn trial_end(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.trial_days
            .map(|days| from + Duration::days(i64::from(days)))
    }
}

/// The calendar month of `tz` that holds `at`: the instant it starts, and the instant the next
/// one starts. A month that starts inside a daylight-saving gap starts when the gap ends.
pub fn local_month(at: DateTime<Utc>, tz: TimeZone) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = at.with_timezone(&tz.tz()).date_naive();
    let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).expect("a first day");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("a next month");
    (start_of_day(first, tz), start_of_day(next, tz))
}

/// The first instant of `date` in `tz`.
pub fn start_of_day(date: NaiveDate, tz: TimeZone) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight");
    // A gap is at most a few hours; the first local time after it that exists starts the day.
    for minutes in (0..=24 * 60).step_by(15) {
        match tz
            .tz()
            .from_local_datetime(&(midnight + Duration::minutes(minutes)))
        {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    midnight.and_utc()
}

/// The plan names of events written before the four plans, and the plans they are read as.
pub const LEGACY_PLAN_NAMES: [(&str, Plan); 2] =
    [("free", Plan::Trial), ("standard", Plan::Professional)];

/// Plans as stored in events: the event upcaster of plan names. Events written before the four
/// plans carry `free` and `standard`; they are read as [`LEGACY_PLAN_NAMES`] says, every time
/// they are read (a command's load, a projection, a replay, an audit). The stored events are
/// never rewritten, so their hashes still verify. Requests accept the current names only.
pub mod stored {
    use super::*;

    /// A stored plan name, current or legacy.
    pub fn parse(name: &str) -> Option<Plan> {
        name.parse().ok().or_else(|| {
            LEGACY_PLAN_NAMES
                .iter()
                .find(|(old, _)| *old == name)
                .map(|(_, plan)| *plan)
        })
    }

    /// `#[serde(deserialize_with = "crate::plan::stored::deserialize")]` on an event's plan.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
        let name = String::deserialize(d)?;
        parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format_args!("unknown plan {name:?} in a stored event"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_has_one_row_in_the_order_of_plan_all() {
        let plans: Vec<Plan> = PlanLimits::all().iter().map(|p| p.plan).collect();
        assert_eq!(plans, Plan::ALL);
        for plan in Plan::ALL {
            assert_eq!(PlanLimits::of(*plan).plan, *plan);
        }
    }

    #[test]
    fn the_suggested_limits() {
        let trial = PlanLimits::of(Plan::Trial);
        assert_eq!(
            (trial.trial_days, trial.active_doctors, trial.active_staff),
            (Some(30), Some(2), Some(10))
        );
        assert_eq!(
            (trial.patients, trial.monthly_bookings),
            (Some(500), Some(300))
        );
        assert_eq!(PlanLimits::of(Plan::Basic).active_doctors, Some(5));
        assert_eq!(PlanLimits::of(Plan::Basic).patients, Some(5_000));
        assert_eq!(PlanLimits::of(Plan::Professional).active_staff, Some(100));
        assert_eq!(PlanLimits::of(Plan::Professional).patients, Some(50_000));
        let enterprise = PlanLimits::of(Plan::Enterprise);
        for limit in [
            Limit::ActiveDoctors,
            Limit::ActiveStaff,
            Limit::Patients,
            Limit::MonthlyBookings,
        ] {
            assert_eq!(enterprise.allowed(limit), None, "{limit}");
        }
        assert_eq!(enterprise.trial_days, None);
    }

    #[test]
    fn admit_refuses_only_what_goes_past_the_number() {
        let trial = PlanLimits::of(Plan::Trial);
        assert_eq!(trial.admit(Limit::ActiveDoctors, 1, 1), Ok(()));
        assert_eq!(
            trial.admit(Limit::ActiveDoctors, 2, 1),
            Err(OverLimit {
                plan: Plan::Trial,
                limit: Limit::ActiveDoctors,
                allowed: 2,
                in_use: 2
            })
        );
        // Over the limit after a downgrade: what adds nothing is not refused.
        assert_eq!(trial.admit(Limit::ActiveDoctors, 7, 0), Ok(()));
        assert!(trial.admit(Limit::ActiveDoctors, 7, 1).is_err());
        assert_eq!(
            PlanLimits::of(Plan::Enterprise).admit(Limit::Patients, u64::MAX - 1, 1),
            Ok(())
        );
    }

    #[test]
    fn a_trial_ends_after_its_days_and_a_paid_plan_never() {
        let from = "2027-01-31T10:00:00Z".parse().unwrap();
        assert_eq!(
            PlanLimits::of(Plan::Trial).trial_end(from),
            Some("2027-03-02T10:00:00Z".parse().unwrap())
        );
        assert_eq!(PlanLimits::of(Plan::Basic).trial_end(from), None);
    }

    #[test]
    fn a_local_month_starts_at_local_midnight() {
        let berlin = TimeZone::parse("Europe/Berlin").unwrap();
        // 31 March 23:30 UTC is already 1 April in Berlin (summer time, +2).
        let (start, end) = local_month("2027-03-31T22:30:00Z".parse().unwrap(), berlin);
        assert_eq!(
            start,
            "2027-03-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            end,
            "2027-04-30T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let (start, end) = local_month("2027-03-15T12:00:00Z".parse().unwrap(), berlin);
        // March starts in winter time (+1) and ends in summer time (+2).
        assert_eq!(
            start,
            "2027-02-28T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            end,
            "2027-03-31T22:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // December runs into the next year.
        let utc = TimeZone::parse("UTC").unwrap();
        let (start, end) = local_month("2027-12-31T23:59:59Z".parse().unwrap(), utc);
        assert_eq!(
            start,
            "2027-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            end,
            "2028-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn a_day_that_starts_in_a_gap_starts_when_the_gap_ends() {
        // Santiago (Chile) moved its clocks from 00:00 to 01:00 on 2022-09-11.
        let santiago = TimeZone::parse("America/Santiago").unwrap();
        let date = NaiveDate::from_ymd_opt(2022, 9, 11).unwrap();
        assert_eq!(
            start_of_day(date, santiago),
            "2022-09-11T04:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn stored_names_old_and_new() {
        assert_eq!(stored::parse("free"), Some(Plan::Trial));
        assert_eq!(stored::parse("standard"), Some(Plan::Professional));
        for plan in Plan::ALL {
            assert_eq!(stored::parse(plan.as_str()), Some(*plan));
        }
        assert_eq!(stored::parse("gold"), None);
    }
}
