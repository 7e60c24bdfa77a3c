//! Command count and latency by command name. The names come from a fixed table keyed by
//! method and route template, so the label set is bounded and a renamed route is caught by
//! the test that checks the table against the OpenAPI document.

use std::time::Duration;

use axum::http::{Method, StatusCode};

use super::Metrics;

/// Every command endpoint: method, route template, command name.
pub const COMMANDS: &[(Method, &str, &str)] = &[
    (Method::POST, "/v1/clinics", "create_clinic"),
    (Method::POST, "/v1/clinics/{id}/suspend", "suspend_clinic"),
    (
        Method::POST,
        "/v1/clinics/{id}/reactivate",
        "reactivate_clinic",
    ),
    (Method::PUT, "/v1/clinics/{id}/plan", "change_plan"),
    (Method::PATCH, "/v1/clinic", "update_clinic"),
    (Method::POST, "/v1/clinic/departments", "add_department"),
    (
        Method::PATCH,
        "/v1/clinic/departments/{id}",
        "update_department",
    ),
    (Method::PUT, "/v1/clinic/modules/{module}", "set_module"),
    (Method::PUT, "/v1/clinic/fees", "set_fee_schedule"),
    (Method::POST, "/v1/staff", "hire_staff"),
    (Method::PATCH, "/v1/staff/{id}", "update_staff_profile"),
    (Method::PUT, "/v1/staff/{id}/role", "change_staff_role"),
    (
        Method::PUT,
        "/v1/staff/{id}/working-hours",
        "set_working_hours",
    ),
    (Method::POST, "/v1/staff/{id}/time-off", "add_time_off"),
    (
        Method::POST,
        "/v1/staff/{id}/deactivate",
        "deactivate_staff",
    ),
    (
        Method::POST,
        "/v1/staff/{id}/reactivate",
        "reactivate_staff",
    ),
    (Method::POST, "/v1/patients", "register_patient"),
    (Method::PATCH, "/v1/patients/{id}", "update_patient"),
    (Method::POST, "/v1/patients/{id}/merge", "merge_patient"),
    (
        Method::POST,
        "/v1/patients/{id}/deactivate",
        "deactivate_patient",
    ),
    (Method::POST, "/v1/appointments", "book_appointment"),
    (
        Method::POST,
        "/v1/appointments/{id}/reschedule",
        "reschedule_appointment",
    ),
    (
        Method::POST,
        "/v1/appointments/{id}/cancel",
        "cancel_appointment",
    ),
    (Method::POST, "/v1/appointments/{id}/check-in", "check_in"),
    (Method::POST, "/v1/appointments/{id}/start", "start_visit"),
    (
        Method::POST,
        "/v1/appointments/{id}/complete",
        "complete_visit",
    ),
    (
        Method::POST,
        "/v1/appointments/{id}/no-show",
        "mark_no_show",
    ),
    (Method::POST, "/v1/invoices/{id}/lines", "add_invoice_line"),
    (
        Method::POST,
        "/v1/invoices/{id}/finalise",
        "finalise_invoice",
    ),
    (Method::POST, "/v1/invoices/{id}/payments", "record_payment"),
    (Method::POST, "/v1/invoices/{id}/refunds", "refund_payment"),
    (Method::POST, "/v1/invoices/{id}/void", "void_invoice"),
];

/// The name of a command not in the table (a table that is out of date; the coverage test
/// keeps it from happening).
pub const UNKNOWN: &str = "unknown";

/// The command name of `method` on `route` (a route template).
pub fn command_name(method: &Method, route: Option<&str>) -> &'static str {
    COMMANDS
        .iter()
        .find(|(m, r, _)| m == method && Some(*r) == route)
        .map_or(UNKNOWN, |(_, _, name)| name)
}

/// What became of a command, from its answer's status.
fn outcome(status: StatusCode) -> &'static str {
    if status.is_success() {
        "accepted"
    } else if status.is_server_error() {
        "failed"
    } else {
        "rejected"
    }
}

impl Metrics {
    /// Counts a command (`clinic_commands_total{command, outcome}`) and observes its latency
    /// (`clinic_command_duration_seconds{command}`): from authorisation to the answer, the
    /// idempotency bookkeeping included.
    pub fn command(&self, name: &'static str, status: StatusCode, elapsed: Duration) {
        self.record(|| {
            ::metrics::counter!("clinic_commands_total", "command" => name, "outcome" => outcome(status))
                .increment(1);
            ::metrics::histogram!("clinic_command_duration_seconds", "command" => name)
                .record(elapsed.as_secs_f64());
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The non-GET operations that are not commands (they touch no aggregate).
    const NOT_COMMANDS: &[(&str, &str)] = &[
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/logout"),
    ];

    #[test]
    fn every_command_route_has_a_name_and_every_name_a_route() {
        let api = crate::startup::openapi();
        let mut routes = BTreeSet::new();
        for (path, item) in &api.paths.paths {
            let ops = [
                ("post", item.post.is_some()),
                ("put", item.put.is_some()),
                ("patch", item.patch.is_some()),
                ("delete", item.delete.is_some()),
            ];
            for (method, _) in ops.into_iter().filter(|(_, present)| *present) {
                if !NOT_COMMANDS.contains(&(method, path.as_str())) {
                    routes.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let table: BTreeSet<(String, String)> = COMMANDS
            .iter()
            .map(|(m, r, _)| (m.as_str().to_ascii_lowercase(), (*r).to_owned()))
            .collect();
        assert_eq!(
            routes, table,
            "the command table and the OpenAPI document differ"
        );
        let names: BTreeSet<&str> = COMMANDS.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(names.len(), COMMANDS.len(), "command names must be unique");
    }

    #[test]
    fn names_are_looked_up_by_method_and_template() {
        assert_eq!(
            command_name(&Method::POST, Some("/v1/patients")),
            "register_patient"
        );
        assert_eq!(command_name(&Method::PATCH, Some("/v1/patients")), UNKNOWN);
        assert_eq!(command_name(&Method::POST, None), UNKNOWN);
    }
}
