//! The calendar matrix: the date-sensitive scheduling, booking and endpoint tests, run with
//! the service clock standing on each day of the week and on both nights Europe/Berlin (the
//! fixtures' zone) changes its clocks. The hours vary too, including ones where the UTC date
//! and the Berlin date differ. Nothing here depends on the machine's date.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use chrono::{DateTime, Datelike, Utc, Weekday};
use futures::{FutureExt, StreamExt};

use crate::helpers::utc;
use crate::{booking, endpoints, scheduling};

/// The instants the matrix runs at, each with the calendar it stands for.
pub const INSTANTS: &[(&str, &str)] = &[
    ("Monday 00:15 UTC (01:15 in Berlin)", "2027-01-11T00:15:00Z"),
    ("Tuesday 06:00 UTC", "2027-01-12T06:00:00Z"),
    ("Wednesday 11:00 UTC", "2027-01-13T11:00:00Z"),
    ("Thursday 15:30 UTC", "2027-01-14T15:30:00Z"),
    ("Friday 20:00 UTC", "2027-01-15T20:00:00Z"),
    (
        "Saturday 22:45 UTC (23:45 in Berlin)",
        "2027-01-16T22:45:00Z",
    ),
    (
        "Sunday 23:30 UTC (already Monday 00:30 in Berlin)",
        "2027-01-17T23:30:00Z",
    ),
    (
        "the night the clocks go forward in Berlin (Sunday 28 March 2027, 01:30 CET)",
        "2027-03-28T00:30:00Z",
    ),
    (
        "the night the clocks go back in Berlin (Sunday 31 October 2027, 02:30 CEST)",
        "2027-10-31T00:30:00Z",
    ),
];

type Scenario = fn(DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()>>>;

/// The tests the matrix runs, by name.
fn scenarios() -> Vec<(&'static str, Scenario)> {
    macro_rules! scenario {
        ($($module:ident::$name:ident),* $(,)?) => {
            vec![$((
                concat!(stringify!($module), "::", stringify!($name)),
                (|now| Box::pin($module::$name(now))) as Scenario,
            )),*]
        };
    }
    scenario![
        scheduling::availability_offers_the_grid_inside_working_hours_minus_time_off_and_bookings_at,
        scheduling::availability_checks_parameters_roles_and_the_doctor_at,
        scheduling::availability_agrees_with_what_booking_accepts_at,
        booking::a_slot_taken_answer_names_the_ranges_but_not_the_other_patient_at,
        booking::a_patient_cannot_hold_two_overlapping_appointments_at,
        booking::a_reschedule_onto_a_taken_slot_keeps_the_old_time_at,
        booking::cancel_no_show_and_complete_free_the_slot_at_once_at,
        booking::working_hours_time_off_and_the_admin_override_at,
        endpoints::roles_that_may_not_use_an_endpoint_get_403_and_write_nothing_at,
        endpoints::another_clinics_records_are_404_or_a_422_naming_the_field_at,
        endpoints::bad_bodies_get_422_naming_the_field_and_write_nothing_at,
        endpoints::missing_expired_unsigned_and_foreign_audience_tokens_get_401_at,
        endpoints::valid_bodies_succeed_for_an_allowed_role_in_the_callers_clinic_at,
        endpoints::idempotency_keys_replay_the_first_answer_and_refuse_another_request_at,
        endpoints::if_match_refuses_other_versions_with_412_and_accepts_the_current_one_at,
        endpoints::doctors_act_only_on_their_own_appointments_and_only_update_patients_at,
    ]
}

/// The instants cover all seven weekdays and both of Berlin's changes (checked, so that an
/// edit of the table cannot quietly drop one).
#[test]
fn the_instants_cover_every_weekday_and_both_dst_changes() {
    let berlin = chrono_tz::Europe::Berlin;
    let mut days: Vec<Weekday> = INSTANTS.iter().map(|(_, at)| utc(at).weekday()).collect();
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    assert_eq!(days.len(), 7, "{days:?}");
    let offset = |at: DateTime<Utc>| {
        use chrono::Offset;
        at.with_timezone(&berlin).offset().fix().local_minus_utc()
    };
    let changes = INSTANTS
        .iter()
        .map(|(_, at)| utc(at))
        .filter(|at| offset(*at) != offset(*at + chrono::Duration::hours(2)))
        .count();
    assert_eq!(changes, 2, "an instant just before each DST change");
}

/// Every scenario at every instant, a few at a time; all failures are reported together,
/// each with the calendar it failed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_and_endpoint_tests_pass_on_every_weekday_and_across_both_dst_changes() {
    let runs: Vec<(String, DateTime<Utc>, Scenario)> = INSTANTS
        .iter()
        .flat_map(|(label, at)| {
            scenarios()
                .into_iter()
                .map(move |(name, run)| (format!("{name} on {label} ({at})"), utc(at), run))
        })
        .collect();
    let total = runs.len();
    let failures: Vec<String> = futures::stream::iter(runs)
        .map(|(label, at, run)| async move {
            let panic = AssertUnwindSafe(run(at)).catch_unwind().await.err()?;
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{label}: {why}"))
        })
        .buffer_unordered(3)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {total} runs failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
