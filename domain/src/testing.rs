//! Shared test helpers.

use chrono::{DateTime, Utc};

use crate::clock::Services;
use crate::values::{NonEmptyText, PersonName};

/// Parses an RFC 3339 instant.
pub(crate) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// "Now" in aggregate tests: Monday 2 June 2025, 08:00 UTC.
pub(crate) fn now() -> DateTime<Utc> {
    at("2025-06-02T08:00:00Z")
}

pub(crate) fn services() -> Services {
    Services::fixed(now())
}

pub(crate) fn text(s: &str) -> NonEmptyText {
    NonEmptyText::parse(s).unwrap()
}

pub(crate) fn person(s: &str) -> PersonName {
    PersonName::parse(s).unwrap()
}
