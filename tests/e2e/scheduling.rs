//! Scheduling over HTTP: a doctor's availability (`GET /v1/doctors/{id}/availability`) and
//! the booking rules it must agree with. What availability offers can be booked, and what a
//! booking accepts was offered; both follow the clinic's clocks across a daylight-saving
//! change.
//!
//! Reads after a command pass the command's `position` as `X-Min-Position`, so they see the
//! new state without sleeping or polling.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Offset as _, TimeZone as _, Utc};
use domain::values::TimeZone as Zone;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{default_now, patient_body, spawn_app_at, utc, Answer, TestApp, PASSWORD};

// ---------------------------------------------------------------------------------------
// Helpers.

/// A clinic set up over HTTP for these tests: no appointments yet (so nothing here depends on
/// the shared fixture's booking), a doctor, a nurse, a receptionist and an auditor.
struct Clinic {
    tz: Zone,
    admin: String,
    doctor: String,
    doctor_id: Uuid,
    nurse: String,
    nurse_id: Uuid,
    receptionist: String,
    auditor: String,
    /// The position of the last setup command.
    position: i64,
}

/// The position of a command's answer (asserting it succeeded).
#[track_caller]
fn position(answer: &Answer) -> i64 {
    assert!(answer.status == 200 || answer.status == 201, "{answer:?}");
    answer.body["position"]
        .as_i64()
        .unwrap_or_else(|| panic!("no position in {answer:?}"))
}

async fn setup(app: &TestApp, platform: &str, code: &str, time_zone: &str) -> Clinic {
    let admin_email = format!("admin@{code}.example");
    let created = app
        .post(
            "/v1/clinics",
            platform,
            json!({"name": format!("Clinic {code}"), "code": code, "time_zone": time_zone,
                   "plan": "professional",
                   "admin": {"name": "Admin Person", "email": admin_email, "password": PASSWORD}}),
        )
        .await;
    let mut last = position(&created);
    let admin = app.login(&admin_email).await;
    let mut tokens = std::collections::HashMap::new();
    let mut ids = std::collections::HashMap::new();
    for role in ["doctor", "nurse", "receptionist", "auditor"] {
        let email = format!("{role}@{code}.example");
        let mut body = json!({"name": format!("{role} person"), "email": email, "role": role,
                              "password": PASSWORD});
        if role == "doctor" {
            body["licence_number"] = json!("LIC-1");
        }
        let hired = app.post("/v1/staff", &admin, body).await;
        last = position(&hired);
        ids.insert(role, hired.id());
        tokens.insert(role, app.login(&email).await);
    }
    Clinic {
        tz: Zone::parse(time_zone).unwrap(),
        admin,
        doctor: tokens["doctor"].clone(),
        doctor_id: ids["doctor"],
        nurse: tokens["nurse"].clone(),
        nurse_id: ids["nurse"],
        receptionist: tokens["receptionist"].clone(),
        auditor: tokens["auditor"].clone(),
        position: last,
    }
}

/// Working hours with the same intervals on every day of the week.
fn every_day(intervals: &[(&str, &str)]) -> Value {
    let day: Vec<Value> = intervals
        .iter()
        .map(|(start, end)| json!({"start": start, "end": end}))
        .collect();
    json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day})
}

/// Sets the doctor's working hours; returns the command's position.
async fn set_hours(app: &TestApp, clinic: &Clinic, hours: Value) -> i64 {
    let answer = app
        .put(
            &format!("/v1/staff/{}/working-hours", clinic.doctor_id),
            &clinic.admin,
            hours,
        )
        .await;
    position(&answer)
}

/// `GET /v1/doctors/{doctor}/availability?{query}` as `token`, at `position`.
async fn availability(
    app: &TestApp,
    token: &str,
    doctor: Uuid,
    query: &str,
    position: i64,
) -> Answer {
    app.read_at(
        &format!("/v1/doctors/{doctor}/availability?{query}"),
        token,
        position,
    )
    .await
}

/// The query string of a window and a duration (instants percent-encoded).
fn window(from: DateTime<Utc>, to: DateTime<Utc>, minutes: i64) -> String {
    format!(
        "from={}&to={}&duration={minutes}",
        rfc3339(from),
        rfc3339(to)
    )
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The offered starts of a 200 answer, checking every slot's shape on the way: UTC `start`
/// and `end` `minutes` apart, and `local_*` the same instants with the clinic's offset.
#[track_caller]
fn offered(answer: &Answer, zone: Zone, minutes: i64) -> Vec<DateTime<Utc>> {
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    assert_eq!(body["time_zone"], zone.name(), "{body}");
    assert_eq!(body["duration_minutes"], minutes, "{body}");
    let slots = body["slots"]
        .as_array()
        .unwrap_or_else(|| panic!("no slots in {body}"));
    let mut starts = Vec::new();
    for slot in slots {
        let utc = |key: &str| {
            let raw = slot[key].as_str().unwrap();
            assert!(raw.ends_with('Z'), "{key} is not UTC: {slot}");
            raw.parse::<DateTime<Utc>>().unwrap()
        };
        let (start, end) = (utc("start"), utc("end"));
        assert_eq!(end - start, Duration::minutes(minutes), "{slot}");
        for (key, instant) in [("local_start", start), ("local_end", end)] {
            let local = DateTime::parse_from_rfc3339(slot[key].as_str().unwrap())
                .unwrap_or_else(|_| panic!("{key} is not RFC 3339: {slot}"));
            assert_eq!(local.with_timezone(&Utc), instant, "{key}: {slot}");
            assert_eq!(
                *local.offset(),
                zone.tz()
                    .offset_from_utc_datetime(&instant.naive_utc())
                    .fix(),
                "{key} carries the clinic's offset: {slot}"
            );
        }
        starts.push(start);
    }
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "slots are sorted and distinct: {body}"
    );
    starts
}

fn t(hour: u32, minute: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(hour, minute, 0).unwrap()
}

/// A clinic-local wall time as an instant (the times used here exist exactly once).
fn local(zone: Zone, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    zone.tz()
        .from_local_datetime(&date.and_time(time))
        .single()
        .unwrap_or_else(|| panic!("{date} {time} is not a single local time in {zone}"))
        .with_timezone(&Utc)
}

/// The oracle, written independently of `Schedule`: starts on the 15-minute grid of each
/// local day, inside one of `hours`, inside `[from, to)`, clear of `blocked`.
fn expected(
    zone: Zone,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    minutes: i64,
    hours: &[(NaiveTime, NaiveTime)],
    blocked: &[(DateTime<Utc>, DateTime<Utc>)],
) -> Vec<DateTime<Utc>> {
    let length = Duration::minutes(minutes);
    let mut out = Vec::new();
    let mut date = from.with_timezone(&zone.tz()).date_naive();
    while date <= to.with_timezone(&zone.tz()).date_naive() {
        for &(open, close) in hours {
            let mut at = open;
            while at + length <= close && at + length > at {
                let start = local(zone, date, at);
                let end = start + length;
                let free = blocked.iter().all(|(b0, b1)| end <= *b0 || *b1 <= start);
                if start >= from && end <= to && free {
                    out.push(start);
                }
                at += Duration::minutes(15);
            }
        }
        date = date.succ_opt().unwrap();
    }
    out.sort();
    out
}

/// Registers a patient; returns (id, position).
async fn register(app: &TestApp, token: &str, given: &str) -> (Uuid, i64) {
    let answer = app.post("/v1/patients", token, patient_body(given)).await;
    (answer.id(), position(&answer))
}

/// Tries to book `[start, start + minutes)`.
async fn try_book(
    app: &TestApp,
    token: &str,
    patient: Uuid,
    doctor: Uuid,
    start: DateTime<Utc>,
    minutes: i64,
) -> Answer {
    app.post(
        "/v1/appointments",
        token,
        json!({"patient_id": patient, "doctor_id": doctor, "start": start,
               "end": start + Duration::minutes(minutes), "reason": "check-up"}),
    )
    .await
}

/// An appointment command with an empty body (`check-in`, `start`, `complete`, `no-show`).
async fn act(app: &TestApp, token: &str, appointment: Uuid, action: &str) -> i64 {
    let body = if action == "cancel" {
        json!({"reason": "patient called"})
    } else {
        json!({})
    };
    let answer = app
        .post(
            &format!("/v1/appointments/{appointment}/{action}"),
            token,
            body,
        )
        .await;
    position(&answer)
}

// ---------------------------------------------------------------------------------------
// Availability.

/// Slots on the 15-minute grid inside the hours, in UTC and local time; time off and active
/// appointments are left out; a cancelled (or finished, or no-show) appointment's slot is
/// offered again.
#[tokio::test]
async fn availability_offers_the_grid_inside_working_hours_minus_time_off_and_bookings() {
    availability_offers_the_grid_inside_working_hours_minus_time_off_and_bookings_at(default_now())
        .await;
}

/// [`availability_offers_the_grid_inside_working_hours_minus_time_off_and_bookings`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn availability_offers_the_grid_inside_working_hours_minus_time_off_and_bookings_at(
    now: DateTime<Utc>,
) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    // New York: a negative offset, so local and UTC dates differ in the evening.
    let clinic = setup(&app, &platform, "east", "America/New_York").await;
    let tz = clinic.tz;
    let hours = [(t(9, 0), t(12, 0))];
    let at = set_hours(&app, &clinic, every_day(&[("09:00", "12:00")])).await;

    // Without from/to: from now, for 14 days.
    let (before, after) = (app.now(), app.now());
    let answer = availability(&app, &clinic.receptionist, clinic.doctor_id, "", at).await;
    assert_eq!(answer.body["doctor_id"], clinic.doctor_id.to_string());
    assert_eq!(answer.body["step_minutes"], 15);
    let starts = offered(&answer, tz, 30);
    assert!(
        starts.len() >= 13 * 11,
        "at least 13 whole days: {starts:?}"
    );
    assert!(starts.iter().all(|s| *s >= before));
    assert!(starts
        .iter()
        .all(|s| *s + Duration::minutes(30) <= after + Duration::days(14)));
    let lower = expected(tz, after, before + Duration::days(14), 30, &hours, &[]);
    let upper = expected(tz, before, after + Duration::days(14), 30, &hours, &[]);
    assert!(lower.iter().all(|s| starts.contains(s)), "{starts:?}");
    assert!(starts.iter().all(|s| upper.contains(s)), "{starts:?}");

    // An explicit window of two weeks, from tomorrow's local midnight: exactly the oracle.
    let today = app.now().with_timezone(&tz.tz()).date_naive();
    let day = |n: u64| today + chrono::Days::new(n);
    let from = local(tz, day(1), t(0, 0));
    let to = local(tz, day(15), t(0, 0));
    let q30 = window(from, to, 30);
    let starts = offered(
        &availability(&app, &clinic.nurse, clinic.doctor_id, &q30, at).await,
        tz,
        30,
    );
    assert_eq!(starts, expected(tz, from, to, 30, &hours, &[]));
    assert_eq!(starts.len(), 14 * 11);
    // Other lengths: a 45-minute slot may start at 11:15 at the latest; a 3-hour slot only at
    // 09:00; a slot longer than the hours never.
    let starts = offered(
        &availability(
            &app,
            &clinic.doctor,
            clinic.doctor_id,
            &window(from, to, 45),
            at,
        )
        .await,
        tz,
        45,
    );
    assert_eq!(starts, expected(tz, from, to, 45, &hours, &[]));
    assert_eq!(starts.len(), 14 * 10);
    let starts = offered(
        &availability(
            &app,
            &clinic.admin,
            clinic.doctor_id,
            &window(from, to, 180),
            at,
        )
        .await,
        tz,
        180,
    );
    assert_eq!(starts.len(), 14);
    assert!(starts
        .iter()
        .all(|s| s.with_timezone(&tz.tz()).time() == t(9, 0)));
    let starts = offered(
        &availability(
            &app,
            &clinic.admin,
            clinic.doctor_id,
            &window(from, to, 185),
            at,
        )
        .await,
        tz,
        185,
    );
    assert!(starts.is_empty());

    // Time off on day 3, 10:00-11:00 local: every slot touching it goes, the neighbours stay.
    let off = (local(tz, day(3), t(10, 0)), local(tz, day(3), t(11, 0)));
    let answer = app
        .post(
            &format!("/v1/staff/{}/time-off", clinic.doctor_id),
            &clinic.admin,
            json!({"start": off.0, "end": off.1, "reason": "training"}),
        )
        .await;
    let at = position(&answer);
    let starts = offered(
        &availability(&app, &clinic.receptionist, clinic.doctor_id, &q30, at).await,
        tz,
        30,
    );
    assert_eq!(starts, expected(tz, from, to, 30, &hours, &[off]));
    for gone in [(9, 45), (10, 0), (10, 15), (10, 30), (10, 45)] {
        assert!(!starts.contains(&local(tz, day(3), t(gone.0, gone.1))));
    }
    for kept in [(9, 30), (11, 0)] {
        assert!(starts.contains(&local(tz, day(3), t(kept.0, kept.1))));
    }

    // An appointment on day 5, 09:30-10:00 local.
    let (patient, _) = register(&app, &clinic.receptionist, "Ada").await;
    let slot = (local(tz, day(5), t(9, 30)), local(tz, day(5), t(10, 0)));
    let booked = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        slot.0,
        30,
    )
    .await;
    assert_eq!(booked.status, 201, "{booked:?}");
    let appointment = booked.id();
    let with_booking = expected(tz, from, to, 30, &hours, &[off, slot]);
    let without_booking = expected(tz, from, to, 30, &hours, &[off]);
    let starts = offered(
        &availability(
            &app,
            &clinic.receptionist,
            clinic.doctor_id,
            &q30,
            position(&booked),
        )
        .await,
        tz,
        30,
    );
    assert_eq!(starts, with_booking);
    assert!(
        starts.contains(&local(tz, day(5), t(9, 0))),
        "touching ends do not overlap"
    );
    assert!(!starts.contains(&local(tz, day(5), t(9, 15))));
    assert!(!starts.contains(&local(tz, day(5), t(9, 45))));
    // The answer names no patient.
    assert!(!answer_mentions(
        &availability(
            &app,
            &clinic.nurse,
            clinic.doctor_id,
            &q30,
            position(&booked)
        )
        .await,
        patient
    ));

    // Checked in and in progress still hold the slot; once fulfilled it is free again.
    for action in ["check-in", "start"] {
        let at = act(&app, &clinic.nurse, appointment, action).await;
        let starts = offered(
            &availability(&app, &clinic.nurse, clinic.doctor_id, &q30, at).await,
            tz,
            30,
        );
        assert_eq!(starts, with_booking, "after {action}");
    }
    let at = act(&app, &clinic.nurse, appointment, "complete").await;
    let starts = offered(
        &availability(&app, &clinic.nurse, clinic.doctor_id, &q30, at).await,
        tz,
        30,
    );
    assert_eq!(
        starts, without_booking,
        "a fulfilled appointment holds nothing"
    );

    // Booked again, then cancelled: offered again. The same for a no-show.
    for action in ["cancel", "no-show"] {
        let (patient, _) = register(&app, &clinic.receptionist, "Grace").await;
        let booked = try_book(
            &app,
            &clinic.receptionist,
            patient,
            clinic.doctor_id,
            slot.0,
            30,
        )
        .await;
        assert_eq!(booked.status, 201, "{booked:?}");
        let starts = offered(
            &availability(
                &app,
                &clinic.receptionist,
                clinic.doctor_id,
                &q30,
                position(&booked),
            )
            .await,
            tz,
            30,
        );
        assert_eq!(starts, with_booking);
        let at = act(&app, &clinic.receptionist, booked.id(), action).await;
        let starts = offered(
            &availability(&app, &clinic.receptionist, clinic.doctor_id, &q30, at).await,
            tz,
            30,
        );
        assert_eq!(starts, without_booking, "after {action}");
    }

    // The clinic changes its grid to 20 minutes and moves to Chicago: availability and booking
    // follow at once.
    let changed = app
        .patch(
            "/v1/clinic",
            &clinic.admin,
            json!({"slot_minutes": 20, "time_zone": "America/Chicago"}),
        )
        .await;
    let at = position(&changed);
    let tz = Zone::parse("America/Chicago").unwrap();
    let day7 = (local(tz, day(7), t(0, 0)), local(tz, day(8), t(0, 0)));
    let answer = availability(
        &app,
        &clinic.receptionist,
        clinic.doctor_id,
        &window(day7.0, day7.1, 30),
        at,
    )
    .await;
    assert_eq!(answer.body["step_minutes"], 20, "{answer:?}");
    let starts = offered(&answer, tz, 30);
    let grid: Vec<DateTime<Utc>> = (0..8)
        .map(|k| local(tz, day(7), t(9, 0)) + Duration::minutes(20 * k))
        .collect();
    assert_eq!(starts, grid, "09:00, 09:20, … 11:20 Chicago time");
    let (patient, _) = register(&app, &clinic.receptionist, "Linus").await;
    let off_grid = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        local(tz, day(7), t(9, 15)),
        30,
    )
    .await;
    off_grid.names_field("start");
    let on_grid = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        local(tz, day(7), t(9, 20)),
        30,
    )
    .await;
    assert_eq!(on_grid.status, 201, "{on_grid:?}");
}

fn answer_mentions(answer: &Answer, id: Uuid) -> bool {
    answer.body.to_string().contains(&id.to_string())
}

/// Parameters, roles and which doctor: 422 naming the parameter, 403 for the auditor and the
/// platform admin, 404 for another clinic's doctor, a non-doctor, a deactivated doctor or an
/// unknown id.
#[tokio::test]
async fn availability_checks_parameters_roles_and_the_doctor() {
    availability_checks_parameters_roles_and_the_doctor_at(default_now()).await;
}

/// [`availability_checks_parameters_roles_and_the_doctor`] with the service clock standing at `now` (the calendar matrix runs it at
/// every weekday and at both daylight-saving changes).
pub(crate) async fn availability_checks_parameters_roles_and_the_doctor_at(now: DateTime<Utc>) {
    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let north = setup(&app, &platform, "north", "Europe/Berlin").await;
    let south = setup(&app, &platform, "south", "Europe/Lisbon").await;
    let at = set_hours(&app, &north, every_day(&[("09:00", "17:00")])).await;
    let path = |doctor: Uuid, query: &str| format!("/v1/doctors/{doctor}/availability?{query}");
    let app_ref = &app;
    let get = move |token: &str, path: String| {
        let token = token.to_owned();
        async move { app_ref.read_at(&path, &token, at).await }
    };

    // Bad parameters name themselves.
    let from = "2030-01-07T00:00:00Z";
    for (query, field) in [
        ("duration=4", "duration"),
        ("duration=481", "duration"),
        ("duration=30.5", "duration"),
        ("duration=abc", "duration"),
        ("from=yesterday", "from"),
        ("to=2030-13-01T00:00:00Z", "to"),
        (&format!("from={from}&to={from}") as &str, "to"),
        ("from=2030-01-07T00:00:00Z&to=2030-01-06T00:00:00Z", "to"),
        ("from=2030-01-07T00:00:00Z&to=2030-02-07T00:00:01Z", "to"),
        (
            "from=2030-01-07T00:00:00Z&to=2030-02-07T00:00:00-01:00",
            "to",
        ),
        ("doctor_id=x", "doctor_id"),
        ("duration=30&duration=45", "duration"),
        // An empty value is refused (scripts/fuzz-api found it read as "absent").
        ("from=2030-01-07T00:00:00Z&to=", "to"),
        ("duration=", "duration"),
    ] {
        get(&north.receptionist, path(north.doctor_id, query))
            .await
            .names_field(field);
    }
    // The limits themselves are fine; a 31-day window is; an unencoded `+` in an offset is
    // read as one.
    for query in [
        "duration=5",
        "duration=480",
        "from=2030-01-07T00:00:00Z&to=2030-02-07T00:00:00Z",
        "from=2030-01-07T09:00:00+01:00&duration=60",
    ] {
        let answer = get(&north.receptionist, path(north.doctor_id, query)).await;
        assert_eq!(answer.status, 200, "{query}: {answer:?}");
    }
    let answer = get(
        &north.receptionist,
        path(
            north.doctor_id,
            "from=2030-01-07T09:00:00+01:00&duration=60",
        ),
    )
    .await;
    let starts = offered(&answer, north.tz, 60);
    assert_eq!(
        starts.first(),
        Some(&"2030-01-07T08:00:00Z".parse().unwrap())
    );
    assert_eq!(
        answer.body["slots"][0]["local_start"],
        "2030-01-07T09:00:00+01:00"
    );
    // `from` defaults to now and `to` to 14 days later: with `from` alone, 14 days of hours.
    let starts = offered(
        &get(
            &north.receptionist,
            path(north.doctor_id, "from=2030-01-06T23:00:00Z"),
        )
        .await,
        north.tz,
        30,
    );
    assert_eq!(starts.len(), 14 * 31);
    // A window in the past offers nothing.
    let answer = get(
        &north.receptionist,
        path(north.doctor_id, "from=2020-01-06T00:00:00Z"),
    )
    .await;
    assert!(offered(&answer, north.tz, 30).is_empty());

    // Roles: the booking roles may look; the auditor and the platform admin may not.
    for token in [
        &north.admin,
        &north.receptionist,
        &north.nurse,
        &north.doctor,
    ] {
        assert_eq!(get(token, path(north.doctor_id, "")).await.status, 200);
    }
    get(&north.auditor, path(north.doctor_id, ""))
        .await
        .problem(403);
    get(&platform, path(north.doctor_id, "")).await.problem(403);
    let anonymous = app
        .get(&format!("/v1/doctors/{}/availability", north.doctor_id))
        .await;
    assert_eq!(anonymous.status(), 401);

    // Which doctor: another clinic's, a nurse, an unknown id, a malformed id.
    get(&north.receptionist, path(south.doctor_id, ""))
        .await
        .problem(404);
    get(&south.receptionist, path(north.doctor_id, ""))
        .await
        .problem(404);
    get(&north.receptionist, path(north.nurse_id, ""))
        .await
        .problem(404);
    get(&north.receptionist, path(Uuid::new_v4(), ""))
        .await
        .problem(404);
    get(&north.receptionist, "/v1/doctors/nope/availability".into())
        .await
        .names_field("id");
    // The south doctor (no working hours yet) is available nowhere, in their own clinic.
    let answer = get(&south.nurse, path(south.doctor_id, "")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(offered(&answer, south.tz, 30).is_empty());

    // A deactivated doctor has no availability: 404.
    let answer = app
        .post(
            &format!("/v1/staff/{}/deactivate", north.doctor_id),
            &north.admin,
            json!({"reason": "left"}),
        )
        .await;
    let gone = availability(
        &app,
        &north.receptionist,
        north.doctor_id,
        "",
        position(&answer),
    )
    .await;
    gone.problem(404);

    // X-Min-Position is honoured: a position no event has yet is a 422 naming it.
    let far = (position(&answer) + 1_000).to_string();
    let future = app
        .send_with(
            reqwest::Method::GET,
            &format!("/v1/doctors/{}/availability", south.doctor_id),
            Some(&north.receptionist),
            None,
            &[("x-min-position", &far)],
        )
        .await;
    future.names_field("X-Min-Position");
}

// ---------------------------------------------------------------------------------------
// Daylight saving.

/// Europe/Berlin moves from UTC+1 to UTC+2 on Sunday 2027-03-28: 09:00 local is 08:00Z on
/// Saturday the 27th and 07:00Z from the 28th on, in availability and in booking alike.
#[tokio::test]
async fn availability_and_booking_follow_the_clocks_across_the_spring_change() {
    // The calendar: Saturday 20 March 2027, a week before the clocks go forward.
    let app = spawn_app_at(utc("2027-03-20T10:00:00Z")).await;
    let platform = app.platform_admin().await;
    let clinic = setup(&app, &platform, "berlin", "Europe/Berlin").await;
    let tz = clinic.tz;
    let hours = [(t(9, 0), t(12, 0))];
    let at = set_hours(&app, &clinic, every_day(&[("09:00", "12:00")])).await;
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let (from, to) = (utc("2027-03-27T00:00:00Z"), utc("2027-03-30T00:00:00Z"));
    let query = window(from, to, 30);

    let answer = availability(&app, &clinic.receptionist, clinic.doctor_id, &query, at).await;
    let starts = offered(&answer, tz, 30);
    assert_eq!(starts, expected(tz, from, to, 30, &hours, &[]));
    assert_eq!(starts.len(), 3 * 11);
    let slots = answer.body["slots"].as_array().unwrap();
    let first_of = |date: &str| {
        slots
            .iter()
            .find(|s| s["local_start"].as_str().unwrap().starts_with(date))
            .unwrap_or_else(|| panic!("no slot on {date}: {slots:?}"))
            .clone()
    };
    let saturday = first_of("2027-03-27");
    assert_eq!(saturday["start"], "2027-03-27T08:00:00Z");
    assert_eq!(saturday["local_start"], "2027-03-27T09:00:00+01:00");
    assert_eq!(saturday["local_end"], "2027-03-27T09:30:00+01:00");
    let sunday = first_of("2027-03-28");
    assert_eq!(sunday["start"], "2027-03-28T07:00:00Z");
    assert_eq!(sunday["local_start"], "2027-03-28T09:00:00+02:00");
    let monday = first_of("2027-03-29");
    assert_eq!(monday["start"], "2027-03-29T07:00:00Z");
    assert_eq!(monday["end"], "2027-03-29T07:30:00Z");
    assert_eq!(monday["local_start"], "2027-03-29T09:00:00+02:00");
    assert_eq!(monday["local_end"], "2027-03-29T09:30:00+02:00");
    assert_eq!(
        slots.last().unwrap()["local_start"],
        "2027-03-29T11:30:00+02:00"
    );

    // Booking agrees: 07:00Z on the 29th is 09:00 local, 06:30Z is 08:30 local.
    let (patient, _) = register(&app, &clinic.receptionist, "Ada").await;
    let monday_nine = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        utc("2027-03-29T07:00:00Z"),
        30,
    )
    .await;
    assert_eq!(monday_nine.status, 201, "{monday_nine:?}");
    let too_early = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        utc("2027-03-29T06:30:00Z"),
        30,
    )
    .await;
    let problem = too_early.problem(422);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/outside-working-hours"),
        "{problem}"
    );
    too_early.names_field("start");
    // On the Saturday, before the change, 08:00Z is 09:00 local and 07:30Z is 08:30.
    let saturday_nine = try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        utc("2027-03-27T08:00:00Z"),
        30,
    )
    .await;
    assert_eq!(saturday_nine.status, 201, "{saturday_nine:?}");
    try_book(
        &app,
        &clinic.receptionist,
        patient,
        clinic.doctor_id,
        utc("2027-03-27T07:30:00Z"),
        30,
    )
    .await
    .names_field("start");

    // A clinic admin may book outside the hours (08:00-09:15 local on the Sunday); the
    // overlap with the hours is then taken, and 08:00 is still not offered.
    let (other, _) = register(&app, &clinic.receptionist, "Grace").await;
    let overridden = app
        .post(
            "/v1/appointments",
            &clinic.admin,
            json!({"patient_id": other, "doctor_id": clinic.doctor_id,
                   "start": "2027-03-28T06:00:00Z", "end": "2027-03-28T07:15:00Z",
                   "override_hours": true}),
        )
        .await;
    assert_eq!(overridden.status, 201, "{overridden:?}");
    let starts = offered(
        &availability(
            &app,
            &clinic.receptionist,
            clinic.doctor_id,
            &query,
            position(&overridden),
        )
        .await,
        tz,
        30,
    );
    let taken = [
        (utc("2027-03-29T07:00:00Z"), utc("2027-03-29T07:30:00Z")),
        (utc("2027-03-27T08:00:00Z"), utc("2027-03-27T08:30:00Z")),
        (utc("2027-03-28T06:00:00Z"), utc("2027-03-28T07:15:00Z")),
    ];
    assert_eq!(starts, expected(tz, from, to, 30, &hours, &taken));
    assert!(!starts.contains(&utc("2027-03-28T07:00:00Z")));
    assert!(starts.contains(&utc("2027-03-28T07:15:00Z")));

    // Rescheduling follows the same clocks: Monday 08:30 local (06:30Z) is refused and the
    // appointment keeps its time; 09:15 local (07:15Z), overlapping only its own old slot, is
    // fine, and availability then follows the move.
    let monday = monday_nine.id();
    let refused = app
        .post(
            &format!("/v1/appointments/{monday}/reschedule"),
            &clinic.receptionist,
            json!({"start": "2027-03-29T06:30:00Z", "end": "2027-03-29T07:00:00Z"}),
        )
        .await;
    refused.names_field("start");
    let moved = app
        .post(
            &format!("/v1/appointments/{monday}/reschedule"),
            &clinic.receptionist,
            json!({"start": "2027-03-29T07:15:00Z", "end": "2027-03-29T07:45:00Z"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    let starts = offered(
        &availability(
            &app,
            &clinic.receptionist,
            clinic.doctor_id,
            &query,
            position(&moved),
        )
        .await,
        tz,
        30,
    );
    let taken = [
        (utc("2027-03-29T07:15:00Z"), utc("2027-03-29T07:45:00Z")),
        taken[1],
        taken[2],
    ];
    assert_eq!(starts, expected(tz, from, to, 30, &hours, &taken));
    assert!(starts.contains(&utc("2027-03-29T07:45:00Z")));
}

// ---------------------------------------------------------------------------------------
// Availability agrees with booking.

/// A patient's MRN, read at `position`.
async fn mrn_of(app: &TestApp, clinic: &Clinic, patient: Uuid, position: i64) -> String {
    let answer = app
        .read_at(
            &format!("/v1/patients/{patient}"),
            &clinic.receptionist,
            position,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["mrn"].as_str().unwrap().to_owned()
}

/// The default seed of [`availability_agrees_with_what_booking_accepts`]; set
/// `SCHEDULING_SEED` to replay another run.
const SEED: u64 = 0x5EED_2026_1125;

/// xorshift64*: small, deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// For ~40 pseudo-random candidate slots (a day of the next two weeks, a grid-aligned or
/// unaligned local time between 07:00 and 14:00, 15 to 60 minutes; now and then the start of
/// an earlier booking): offered by availability ⇔ booking answers 201, and once booked a slot
/// is offered no more. Each booking is for a new patient, so only the doctor's calendar
/// decides.
#[tokio::test]
async fn availability_agrees_with_what_booking_accepts() {
    availability_agrees_with_what_booking_accepts_at(default_now()).await;
}

/// [`availability_agrees_with_what_booking_accepts`] with the service clock standing at `now`.
pub(crate) async fn availability_agrees_with_what_booking_accepts_at(now: DateTime<Utc>) {
    let seed = std::env::var("SCHEDULING_SEED")
        .ok()
        .and_then(|s| {
            s.strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
        .unwrap_or(SEED);
    println!("availability_agrees_with_what_booking_accepts: SCHEDULING_SEED={seed:#x}");
    let mut rng = Rng::new(seed);

    let app = spawn_app_at(now).await;
    let platform = app.platform_admin().await;
    let clinic = setup(&app, &platform, "prop", "Europe/Berlin").await;
    let tz = clinic.tz;
    // Two intervals on weekdays, a short Saturday, Sunday off.
    let weekday = [
        json!({"start": "08:00", "end": "11:00"}),
        json!({"start": "11:30", "end": "13:00"}),
    ];
    let mut latest = set_hours(
        &app,
        &clinic,
        json!({"mon": weekday, "tue": weekday, "wed": weekday, "thu": weekday, "fri": weekday,
               "sat": [{"start": "09:00", "end": "12:00"}], "sun": []}),
    )
    .await
    .max(clinic.position);
    // Time off on the first weekday from the day after tomorrow on, 10:00-12:00 local
    // (across the end of the first interval and the start of the second).
    let today = app.now().with_timezone(&tz.tz()).date_naive();
    let off_day = (2..9)
        .map(|n| today + chrono::Days::new(n))
        .find(|d| chrono::Datelike::weekday(d).num_days_from_monday() < 5)
        .unwrap();
    let off = app
        .post(
            &format!("/v1/staff/{}/time-off", clinic.doctor_id),
            &clinic.admin,
            json!({"start": local(tz, off_day, t(10, 0)), "end": local(tz, off_day, t(12, 0))}),
        )
        .await;
    latest = latest.max(position(&off));

    // (start, patient id, patient given name, MRN) of every booking made.
    let mut booked: Vec<(DateTime<Utc>, Uuid, String, String)> = Vec::new();
    let (mut accepted, mut refused_422, mut refused_409) = (0, 0, 0);
    for case in 0..40 {
        // The candidate: now and then on or next to an earlier booking, or on the day off.
        let minutes = [15, 30, 45, 60][rng.below(4) as usize];
        let (date, start) = if !booked.is_empty() && rng.below(6) == 0 {
            let (start, ..) = booked[rng.below(booked.len() as u64) as usize];
            let start = start + Duration::minutes(15 * (rng.below(3) as i64 - 1));
            (start.with_timezone(&tz.tz()).date_naive(), start)
        } else {
            let date = if rng.below(8) == 0 {
                off_day
            } else {
                today + chrono::Days::new(1 + rng.below(14))
            };
            let minute = (if rng.below(4) == 0 {
                7 * 60 + rng.below(7 * 60)
            } else {
                7 * 60 + 15 * rng.below(28)
            }) as u32;
            (date, local(tz, date, t(minute / 60, minute % 60)))
        };
        let label = format!(
            "seed {seed:#x}, case {case}: {} ({}) for {minutes} min",
            rfc3339(start),
            start
                .with_timezone(&tz.tz())
                .format("%a %Y-%m-%d %H:%M local")
        );

        // What availability offers for that day.
        let from = local(tz, date, t(0, 0));
        let to = local(tz, date + chrono::Days::new(1), t(0, 0));
        let query = window(from, to, minutes);
        let answer =
            availability(&app, &clinic.receptionist, clinic.doctor_id, &query, latest).await;
        let was_offered = offered(&answer, tz, minutes).contains(&start);

        // What booking says, for a new patient.
        let given = format!("Case{case}");
        let registration = app
            .post("/v1/patients", &clinic.receptionist, patient_body(&given))
            .await;
        latest = latest.max(position(&registration));
        let patient = registration.id();
        let answer = try_book(
            &app,
            &clinic.receptionist,
            patient,
            clinic.doctor_id,
            start,
            minutes,
        )
        .await;
        match answer.status {
            201 => {
                accepted += 1;
                assert!(was_offered, "{label}: booked (201) but not offered");
                latest = latest.max(position(&answer));
                let after = availability(
                    &app,
                    &clinic.receptionist,
                    clinic.doctor_id,
                    &query,
                    position(&answer),
                )
                .await;
                assert!(
                    !offered(&after, tz, minutes).contains(&start),
                    "{label}: still offered after booking"
                );
                let mrn = mrn_of(&app, &clinic, patient, latest).await;
                booked.push((start, patient, given, mrn));
            }
            409 => {
                refused_409 += 1;
                assert!(!was_offered, "{label}: offered but booking said {answer:?}");
                let problem = answer.problem(409);
                assert!(
                    problem["type"].as_str().unwrap().ends_with("/slot-taken"),
                    "{label}: {problem}"
                );
                let wanted = (start, start + Duration::minutes(minutes));
                let conflicts = problem["conflicts"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{label}: no conflicts in {problem}"));
                assert!(!conflicts.is_empty(), "{label}: {problem}");
                for conflict in conflicts {
                    let at = |k: &str| {
                        conflict[k]
                            .as_str()
                            .unwrap()
                            .parse::<DateTime<Utc>>()
                            .unwrap()
                    };
                    assert!(
                        at("start") < wanted.1 && wanted.0 < at("end"),
                        "{label}: {conflict} does not overlap the slot"
                    );
                    assert_eq!(
                        conflict.as_object().unwrap().len(),
                        2,
                        "{label}: a conflict is only {{start, end}}: {conflict}"
                    );
                }
                let body = problem.to_string();
                for (_, id, name, mrn) in &booked {
                    for secret in [&id.to_string(), name, mrn] {
                        assert!(
                            !body.contains(secret.as_str()),
                            "{label}: the conflict names another patient ({secret}): {body}"
                        );
                    }
                }
            }
            422 => {
                refused_422 += 1;
                assert!(!was_offered, "{label}: offered but booking said {answer:?}");
                answer.names_field("start");
            }
            _ => panic!("{label}: unexpected answer {answer:?}"),
        }
        println!("{label}: offered={was_offered} booking={}", answer.status);
    }
    println!("accepted {accepted}, refused 422 {refused_422}, refused 409 {refused_409}");
    assert!(accepted >= 3, "too few bookable cases to mean much");
    assert!(refused_422 >= 3, "too few unbookable cases to mean much");
}

/// When the clocks go back, the repeated local hour exists twice; both occurrences are offered
/// and both can be booked (availability and booking agree).
#[tokio::test]
async fn the_repeated_autumn_hour_is_offered_and_bookable_twice() {
    // The calendar: Sunday 24 October 2027, a week before the clocks go back.
    let app = spawn_app_at(utc("2027-10-24T10:00:00Z")).await;
    let platform = app.platform_admin().await;
    let clinic = setup(&app, &platform, "night", "Europe/Berlin").await;
    let tz = clinic.tz;
    let at = set_hours(&app, &clinic, every_day(&[("01:00", "04:00")])).await;
    let utc = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    let (from, to) = (utc("2027-10-30T22:00:00Z"), utc("2027-10-31T04:00:00Z"));
    let answer = availability(
        &app,
        &clinic.receptionist,
        clinic.doctor_id,
        &window(from, to, 30),
        at,
    )
    .await;
    let starts = offered(&answer, tz, 30);
    // 02:00 CEST (00:00Z) and 02:00 CET (01:00Z) are both 02:00 on the wall clock.
    let first = utc("2027-10-31T00:00:00Z");
    let second = utc("2027-10-31T01:00:00Z");
    assert!(starts.contains(&first), "{starts:?}");
    assert!(starts.contains(&second), "{starts:?}");
    assert!(starts.contains(&utc("2027-10-31T02:00:00Z")), "{starts:?}");
    for (given, start) in [("Ada", first), ("Bea", second)] {
        let (patient, _) = register(&app, &clinic.receptionist, given).await;
        let booking = try_book(
            &app,
            &clinic.receptionist,
            patient,
            clinic.doctor_id,
            start,
            30,
        )
        .await;
        assert_eq!(
            booking.status, 201,
            "{start} was offered, so it must be bookable: {booking:?}"
        );
    }
}

#[test]
fn the_openapi_document_describes_availability() {
    let json = serde_json::to_value(api::startup::openapi()).unwrap();
    let op = &json["paths"]["/v1/doctors/{id}/availability"]["get"];
    assert!(
        op.is_object(),
        "GET /v1/doctors/{{id}}/availability is not documented"
    );
    assert_eq!(op["security"], json!([{"bearer": []}]));
    for status in ["200", "400", "401", "403", "404", "422", "503"] {
        assert!(op["responses"][status].is_object(), "documents no {status}");
    }
    assert!(op["responses"]["404"]["content"]["application/problem+json"].is_object());
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "id",
        "from",
        "to",
        "duration",
        "min_position",
        "X-Min-Position",
    ] {
        assert!(params.contains(&name), "{name} missing: {params:?}");
    }
    let schemas = &json["components"]["schemas"];
    for field in [
        "doctor_id",
        "time_zone",
        "step_minutes",
        "duration_minutes",
        "slots",
    ] {
        assert!(
            schemas["Availability"]["properties"][field].is_object(),
            "Availability.{field}"
        );
    }
    for field in ["start", "end", "local_start", "local_end"] {
        assert!(
            schemas["FreeSlot"]["properties"][field].is_object(),
            "FreeSlot.{field}"
        );
    }
}
