//! The clinics of a run and their people: a platform admin (made with `clinic
//! create-superadmin`), then over HTTP C clinics, each with its admin, doctors working all
//! day, and a receptionist, each with an access token.
//!
//! Clinic 0 is the small clinic and clinic 1 the large one (reads); the others take the
//! command load and the filler events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::json;
use uuid::Uuid;

use crate::client::Api;
use crate::error::Result;
use crate::harness::ClinicBin;

pub const PASSWORD: &str = "clinic bench password";
const PLATFORM_EMAIL: &str = "root@platform.bench.example";

/// A role that sends commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Receptionist,
    Doctor,
}

pub struct Person {
    pub id: Uuid,
    pub email: String,
    pub token: Mutex<String>,
}

impl Person {
    pub fn token(&self) -> String {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Clinic {
    pub index: usize,
    pub id: Uuid,
    pub admin: Person,
    pub receptionist: Person,
    pub doctors: Vec<Person>,
    /// Hands out booking times: each number is a distinct 15-minute slot of the clinic, so
    /// no booking of the bench ever meets another (doctor or patient).
    pub slots: AtomicU64,
}

impl Clinic {
    /// The token of `role` (for a doctor: doctor `doctor`).
    pub fn token(&self, role: Role, doctor: usize) -> String {
        match role {
            Role::Admin => self.admin.token(),
            Role::Receptionist => self.receptionist.token(),
            Role::Doctor => self.doctors[doctor % self.doctors.len()].token(),
        }
    }

    fn people(&self) -> impl Iterator<Item = &Person> {
        [&self.admin, &self.receptionist]
            .into_iter()
            .chain(self.doctors.iter())
    }
}

pub struct Fixture {
    pub platform: Mutex<String>,
    pub clinics: Vec<Clinic>,
}

impl Fixture {
    pub fn platform(&self) -> String {
        self.platform
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn small(&self) -> &Clinic {
        &self.clinics[0]
    }

    pub fn large(&self) -> &Clinic {
        &self.clinics[1]
    }

    /// The clinics that take the command load.
    pub fn work(&self) -> &[Clinic] {
        &self.clinics[2..]
    }

    /// Logs everyone in again (access tokens live 15 minutes).
    pub async fn refresh_tokens(&self, api: &Api) -> Result<()> {
        *self.platform.lock().unwrap_or_else(|e| e.into_inner()) =
            api.login(PLATFORM_EMAIL, PASSWORD).await?;
        for clinic in &self.clinics {
            for person in clinic.people() {
                let token = api.login(&person.email, PASSWORD).await?;
                *person.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
            }
        }
        Ok(())
    }
}

/// Creates the platform admin with the CLI (before the server starts).
pub async fn create_platform_admin(clinic: &ClinicBin, database_url: &str) -> Result<()> {
    clinic
        .run(
            database_url,
            &["create-superadmin", "--email", PLATFORM_EMAIL],
            &[("CLINIC_SUPERADMIN_PASSWORD", PASSWORD)],
        )
        .await
        .map(|_| ())
}

/// Creates `count` clinics (time zone UTC) with `doctors` doctors each.
pub async fn build(api: &Api, count: usize, doctors: usize) -> Result<Fixture> {
    let platform = api.login(PLATFORM_EMAIL, PASSWORD).await?;
    let run = &Uuid::new_v4().simple().to_string()[..6];
    let mut clinics = Vec::with_capacity(count);
    for index in 0..count {
        let code = format!("bench-{run}-{index}");
        let admin_email = format!("admin@{code}.example");
        let created = api
            .post(
                "/v1/clinics",
                &platform,
                json!({"name": format!("Bench {index}"), "code": code, "time_zone": "UTC",
                       "plan": "enterprise",
                       "admin": {"name": "Bench Admin", "email": admin_email, "password": PASSWORD}}),
            )
            .await;
        let id = created.id();
        created.accepted("create a clinic")?;
        let admin_token = api.login(&admin_email, PASSWORD).await?;
        let admin = Person {
            id: Uuid::nil(),
            email: admin_email,
            token: Mutex::new(admin_token.clone()),
        };
        let receptionist = hire(api, &admin_token, &code, "receptionist", 0).await?;
        let mut staff = Vec::with_capacity(doctors);
        for d in 0..doctors {
            let doctor = hire(api, &admin_token, &code, "doctor", d).await?;
            let day = json!([{"start": "00:00", "end": "23:59"}]);
            api.put(
                &format!("/v1/staff/{}/working-hours", doctor.id),
                &admin_token,
                json!({"mon": day, "tue": day, "wed": day, "thu": day, "fri": day, "sat": day, "sun": day}),
            )
            .await
            .accepted("set working hours")?;
            staff.push(doctor);
        }
        clinics.push(Clinic {
            index,
            id: id.unwrap_or_default(),
            admin,
            receptionist,
            doctors: staff,
            slots: AtomicU64::new(0),
        });
    }
    Ok(Fixture {
        platform: Mutex::new(platform),
        clinics,
    })
}

async fn hire(api: &Api, admin: &str, code: &str, role: &str, n: usize) -> Result<Person> {
    let email = format!("{role}{n}@{code}.example");
    let mut body = json!({"name": format!("Bench {role} {n}"), "email": email, "role": role,
                          "password": PASSWORD});
    if role == "doctor" {
        body["licence_number"] = json!(format!("LIC-{n}"));
    }
    let reply = api.post("/v1/staff", admin, body).await;
    let id = reply.id().unwrap_or_default();
    reply.accepted(&format!("hire a {role}"))?;
    let token = api.login(&email, PASSWORD).await?;
    Ok(Person {
        id,
        email,
        token: Mutex::new(token),
    })
}

/// The next free slot of a clinic: (start, end) as RFC 3339, 15 minutes long, from tomorrow
/// 00:00 UTC on, 90 slots a day (00:00–22:30).
pub fn next_slot(clinic: &Clinic) -> (u64, String, String) {
    static TOMORROW: OnceLock<chrono::DateTime<chrono::Utc>> = OnceLock::new();
    let n = clinic.slots.fetch_add(1, Ordering::Relaxed);
    let tomorrow = TOMORROW.get_or_init(|| {
        (chrono::Utc::now() + chrono::Duration::days(1))
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    });
    let start = *tomorrow
        + chrono::Duration::days((n / 90) as i64)
        + chrono::Duration::minutes(((n % 90) * 15) as i64);
    let end = start + chrono::Duration::minutes(15);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (n, fmt(start), fmt(end))
}
