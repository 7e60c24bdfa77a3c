//! Who did what, for which clinic: the metadata every event carries.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use domain::ids::ClinicId;
use domain::values::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Metadata keys, as stored in the `events.metadata` JSON object.
pub mod keys {
    pub const TENANT_ID: &str = "tenant_id";
    pub const ACTOR_ID: &str = "actor_id";
    pub const ACTOR_ROLE: &str = "actor_role";
    pub const REQUEST_ID: &str = "request_id";
    pub const OCCURRED_AT: &str = "occurred_at";
}

/// The role an event was issued under. Clinic staff roles plus the platform admin (who is not
/// clinic staff) and `system` (the CLI and internal jobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    PlatformAdmin,
    ClinicAdmin,
    Doctor,
    Nurse,
    Receptionist,
    Auditor,
    System,
}

impl ActorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::PlatformAdmin => "platform_admin",
            ActorRole::ClinicAdmin => "clinic_admin",
            ActorRole::Doctor => "doctor",
            ActorRole::Nurse => "nurse",
            ActorRole::Receptionist => "receptionist",
            ActorRole::Auditor => "auditor",
            ActorRole::System => "system",
        }
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Role> for ActorRole {
    fn from(role: Role) -> Self {
        match role {
            Role::ClinicAdmin => ActorRole::ClinicAdmin,
            Role::Doctor => ActorRole::Doctor,
            Role::Nurse => ActorRole::Nurse,
            Role::Receptionist => ActorRole::Receptionist,
            Role::Auditor => ActorRole::Auditor,
        }
    }
}

/// The authenticated party issuing a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    pub id: Uuid,
    pub role: ActorRole,
}

impl Actor {
    /// The CLI and internal jobs act as `system` with the nil id.
    pub fn system() -> Self {
        Actor {
            id: Uuid::nil(),
            role: ActorRole::System,
        }
    }
}

/// Everything about a command that is not the command itself: the clinic it runs in, who
/// issued it and the request it came from.
#[derive(Clone, Debug)]
pub struct CommandMeta {
    pub clinic_id: ClinicId,
    pub actor: Actor,
    pub request_id: String,
}

impl CommandMeta {
    pub fn new(clinic_id: ClinicId, actor: Actor, request_id: impl Into<String>) -> Self {
        CommandMeta {
            clinic_id,
            actor,
            request_id: request_id.into(),
        }
    }

    /// The metadata map stored with each event of this command, which occurred at
    /// `occurred_at` (the service clock's now).
    pub fn to_event_metadata(&self, occurred_at: DateTime<Utc>) -> HashMap<String, String> {
        HashMap::from([
            (keys::TENANT_ID.to_owned(), self.clinic_id.to_string()),
            (keys::ACTOR_ID.to_owned(), self.actor.id.to_string()),
            (
                keys::ACTOR_ROLE.to_owned(),
                self.actor.role.as_str().to_owned(),
            ),
            (keys::REQUEST_ID.to_owned(), self.request_id.clone()),
            (
                keys::OCCURRED_AT.to_owned(),
                occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        ])
    }
}

/// A stream address: `{clinic_id}:{entity_id}`. Every stream lives inside one clinic, so a
/// command for clinic B can never load clinic A's stream — it finds an empty one. The event
/// table's `events_stream_belongs_to_tenant` constraint holds the same rule in the database.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamId(String);

impl StreamId {
    pub fn new(clinic_id: ClinicId, entity_id: Uuid) -> Self {
        StreamId(format!("{clinic_id}:{entity_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_scoped_by_clinic() {
        let entity = Uuid::new_v4();
        let a = StreamId::new(ClinicId::new(), entity);
        let b = StreamId::new(ClinicId::new(), entity);
        assert_ne!(a, b);
        assert!(a.as_str().ends_with(&format!(":{entity}")));
    }

    #[test]
    fn metadata_carries_tenant_actor_request_and_time() {
        let clinic = ClinicId::new();
        let actor = Actor {
            id: Uuid::new_v4(),
            role: ActorRole::Receptionist,
        };
        let at = "2027-03-03T08:00:00.000001Z"
            .parse::<DateTime<Utc>>()
            .unwrap();
        let meta = CommandMeta::new(clinic, actor, "req-1").to_event_metadata(at);
        assert_eq!(meta[keys::TENANT_ID], clinic.to_string());
        assert_eq!(meta[keys::ACTOR_ID], actor.id.to_string());
        assert_eq!(meta[keys::ACTOR_ROLE], "receptionist");
        assert_eq!(meta[keys::REQUEST_ID], "req-1");
        assert_eq!(meta[keys::OCCURRED_AT], "2027-03-03T08:00:00.000001Z");
    }

    #[test]
    fn actor_roles_serialise_as_snake_case() {
        assert_eq!(
            serde_json::to_string(&ActorRole::PlatformAdmin).unwrap(),
            "\"platform_admin\""
        );
        assert_eq!(ActorRole::from(Role::ClinicAdmin), ActorRole::ClinicAdmin);
    }
}
