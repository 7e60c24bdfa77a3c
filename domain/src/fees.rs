//! A clinic's fee schedule (issue 14): what a visit costs, in the clinic's currency, and
//! whether a no-show is charged. One stream per clinic (its id is the clinic's). Clinic admins
//! set the whole schedule at once; the billing process manager prices a completed visit with
//! the schedule as it stood when the visit was completed, and an invoice keeps its lines, so a
//! later change never alters an invoice already issued.
//!
//! A visit's price is the most specific rule that matches it: its appointment type with its
//! doctor, then its type for any doctor, then its doctor for any type, then the default. No
//! match and no default: the draft invoice has no lines, and staff add them.

use std::collections::HashSet;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorKind};
use crate::ids::StaffId;
use crate::values::{Amount, AppointmentType, Currency};

/// The most rules a schedule holds.
pub const MAX_RULES: usize = 500;

/// One price: for an appointment type, a doctor, or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeRule {
    #[serde(default)]
    pub appointment_type: Option<AppointmentType>,
    #[serde(default)]
    pub doctor_id: Option<StaffId>,
    pub amount: Amount,
}

/// A whole fee schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// The clinic's ISO 4217 currency: every invoice issued from now on is in it.
    pub currency: Currency,
    /// The price of a visit no rule matches; `None`: such a draft starts with no lines.
    #[serde(default)]
    pub default_fee: Option<Amount>,
    /// What a no-show costs; `None`: a no-show is not charged.
    #[serde(default)]
    pub no_show_fee: Option<Amount>,
    #[serde(default)]
    pub rules: Vec<FeeRule>,
}

impl Schedule {
    /// The price of a visit of `appointment_type` with `doctor`: the most specific rule, else
    /// the default.
    pub fn fee_for(
        &self,
        appointment_type: Option<&AppointmentType>,
        doctor: StaffId,
    ) -> Option<Amount> {
        let find = |t: Option<&AppointmentType>, d: Option<StaffId>| {
            self.rules
                .iter()
                .find(|r| r.appointment_type.as_ref() == t && r.doctor_id == d)
                .map(|r| r.amount)
        };
        let typed = appointment_type
            .and_then(|t| find(Some(t), Some(doctor)).or_else(|| find(Some(t), None)));
        typed
            .or_else(|| find(None, Some(doctor)))
            .or(self.default_fee)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeScheduleCommand {
    /// Replaces the whole schedule.
    Set(Schedule),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeeScheduleEvent {
    FeeScheduleSet(Schedule),
}

impl DomainEvent for FeeScheduleEvent {
    fn event_type(&self) -> String {
        match self {
            FeeScheduleEvent::FeeScheduleSet(_) => "FeeScheduleSet",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeScheduleError {
    #[error(
        "rule {index} names neither an appointment type nor a doctor (that is the default fee)"
    )]
    RuleWithoutKey { index: usize },
    #[error("rule {index} repeats the appointment type and doctor of rule {first}")]
    DuplicateRule { index: usize, first: usize },
    #[error("a schedule holds at most {max} rules")]
    TooManyRules { max: usize },
}

impl DomainError for FeeScheduleError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }

    fn field(&self) -> Option<&'static str> {
        Some("rules")
    }
}

/// The schedule's state: `None` until a clinic admin first sets it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeeSchedule {
    schedule: Option<Schedule>,
}

impl FeeSchedule {
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Decides which events a command produces, without changing state. Setting the schedule
    /// it already is writes nothing.
    pub fn decide(
        &self,
        command: FeeScheduleCommand,
    ) -> Result<Vec<FeeScheduleEvent>, FeeScheduleError> {
        match command {
            FeeScheduleCommand::Set(schedule) => {
                if schedule.rules.len() > MAX_RULES {
                    return Err(FeeScheduleError::TooManyRules { max: MAX_RULES });
                }
                let mut seen = std::collections::HashMap::new();
                for (index, rule) in schedule.rules.iter().enumerate() {
                    if rule.appointment_type.is_none() && rule.doctor_id.is_none() {
                        return Err(FeeScheduleError::RuleWithoutKey { index });
                    }
                    let key = (rule.appointment_type.clone(), rule.doctor_id);
                    if let Some(first) = seen.insert(key, index) {
                        return Err(FeeScheduleError::DuplicateRule { index, first });
                    }
                }
                if self.schedule.as_ref() == Some(&schedule) {
                    return Ok(vec![]);
                }
                Ok(vec![FeeScheduleEvent::FeeScheduleSet(schedule)])
            }
        }
    }

    /// The doctors the schedule names, for the use case to check they are the clinic's.
    pub fn doctors(schedule: &Schedule) -> Vec<StaffId> {
        let set: HashSet<StaffId> = schedule.rules.iter().filter_map(|r| r.doctor_id).collect();
        set.into_iter().collect()
    }

    fn evolve(&mut self, event: FeeScheduleEvent) {
        match event {
            FeeScheduleEvent::FeeScheduleSet(schedule) => self.schedule = Some(schedule),
        }
    }
}

crate::aggregate!(
    FeeSchedule,
    "FeeSchedule",
    FeeScheduleCommand,
    FeeScheduleEvent,
    FeeScheduleError,
    decide
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::services;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    fn amount(minor: i64) -> Amount {
        Amount::new(minor).unwrap()
    }

    fn kind(code: &str) -> Option<AppointmentType> {
        Some(AppointmentType::parse(code).unwrap())
    }

    fn doctor(n: u128) -> StaffId {
        StaffId::from_uuid(Uuid::from_u128(n))
    }

    fn rule(t: Option<AppointmentType>, d: Option<StaffId>, minor: i64) -> FeeRule {
        FeeRule {
            appointment_type: t,
            doctor_id: d,
            amount: amount(minor),
        }
    }

    fn schedule(rules: Vec<FeeRule>) -> Schedule {
        Schedule {
            currency: Currency::parse("EUR").unwrap(),
            default_fee: Some(amount(5_000)),
            no_show_fee: None,
            rules,
        }
    }

    #[test]
    fn the_most_specific_rule_prices_a_visit() {
        let s = schedule(vec![
            rule(kind("checkup"), Some(doctor(1)), 9_000),
            rule(kind("checkup"), None, 4_000),
            rule(None, Some(doctor(1)), 8_000),
        ]);
        let checkup = kind("checkup");
        assert_eq!(s.fee_for(checkup.as_ref(), doctor(1)), Some(amount(9_000)));
        assert_eq!(s.fee_for(checkup.as_ref(), doctor(2)), Some(amount(4_000)));
        assert_eq!(
            s.fee_for(kind("ecg").as_ref(), doctor(1)),
            Some(amount(8_000))
        );
        assert_eq!(s.fee_for(None, doctor(1)), Some(amount(8_000)));
        assert_eq!(s.fee_for(None, doctor(2)), Some(amount(5_000)));
        let no_default = Schedule {
            default_fee: None,
            ..s
        };
        assert_eq!(no_default.fee_for(kind("ecg").as_ref(), doctor(2)), None);
    }

    #[test]
    fn a_schedule_is_set_whole_and_setting_it_again_writes_nothing() {
        let s = schedule(vec![rule(kind("checkup"), None, 4_000)]);
        TestFramework::<FeeSchedule>::with(services())
            .given_no_previous_events()
            .when(FeeScheduleCommand::Set(s.clone()))
            .then_expect_events(vec![FeeScheduleEvent::FeeScheduleSet(s.clone())]);
        TestFramework::<FeeSchedule>::with(services())
            .given(vec![FeeScheduleEvent::FeeScheduleSet(s.clone())])
            .when(FeeScheduleCommand::Set(s))
            .then_expect_events(vec![]);
    }

    #[test]
    fn rules_need_a_key_and_are_unique() {
        let refused = |rules: Vec<FeeRule>| {
            TestFramework::<FeeSchedule>::with(services())
                .given_no_previous_events()
                .when(FeeScheduleCommand::Set(schedule(rules)))
                .inspect_result()
        };
        assert_eq!(
            refused(vec![rule(None, None, 1)]),
            Err(FeeScheduleError::RuleWithoutKey { index: 0 })
        );
        assert_eq!(
            refused(vec![
                rule(kind("a"), Some(doctor(1)), 1),
                rule(kind("a"), None, 1),
                rule(kind("a"), Some(doctor(1)), 2),
            ]),
            Err(FeeScheduleError::DuplicateRule { index: 2, first: 0 })
        );
        let many = (0..=MAX_RULES as u128)
            .map(|n| rule(None, Some(doctor(n)), 1))
            .collect();
        assert_eq!(
            refused(many),
            Err(FeeScheduleError::TooManyRules { max: MAX_RULES })
        );
        assert_eq!(
            FeeScheduleError::TooManyRules { max: 1 }.field(),
            Some("rules")
        );
    }

    #[test]
    fn the_event_round_trips_with_a_stable_type() {
        let e = FeeScheduleEvent::FeeScheduleSet(schedule(vec![rule(kind("x"), None, 1)]));
        assert_eq!(e.event_type(), "FeeScheduleSet");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["FeeScheduleSet"]["currency"], "EUR");
        assert_eq!(serde_json::from_value::<FeeScheduleEvent>(json).unwrap(), e);
    }
}
