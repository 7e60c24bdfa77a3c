//! Accounts: staff log-ins (kept in step with staff events by a trigger on `events`) and
//! platform admins (who are not clinic staff and have no events), and their passwords
//! ([`credentials`]). The HTTP side of authentication (tokens, the login endpoints) is
//! `api::auth`.

pub mod credentials;
pub mod lookups;

use chrono::{DateTime, Duration, Utc};
use domain::ids::StaffId;
use domain::staff::{Staff, StaffCommand, StaffError};
use domain::values::Email;
use sqlx::PgPool;
use std::net::IpAddr;
use uuid::Uuid;

use crate::error::{CommandError, StoreError};
use crate::metadata::{ActorRole, CommandMeta};
use crate::store::{Committed, Expect};
use crate::tx::CommandTx;

/// Why a log-in was refused. A wrong password, an unknown e-mail and a deactivated account
/// are the same `BadCredentials`, so the answer tells nothing about which it was.
#[derive(Debug, thiserror::Error)]
pub enum LogInError {
    #[error("the e-mail or password is wrong")]
    BadCredentials,
    /// Too many failures for this e-mail lately; try again after this many seconds.
    #[error("too many failed log-ins for this e-mail")]
    LockedOut { retry_after_secs: u64 },
    /// Too many failures from this client address lately.
    #[error("too many failed log-ins from this address")]
    ClientLockedOut { retry_after_secs: u64 },
    /// Too many password checks are running or waiting on this server.
    #[error("too many log-ins are being checked right now")]
    Busy,
    #[error("the account's clinic is suspended")]
    ClinicSuspended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a log-in at `now` (the service clock) from `client` (its IP address, if known):
/// refuses over-long input; a client address with too many failures lately, and a locked-out
/// e-mail (both before the password is checked, and counting the attempt); a wrong password,
/// an unknown e-mail or a deactivated account alike (after the same argon2id work); an
/// account of a suspended clinic; and, when too many password checks are already running or
/// waiting, any log-in at once ([`LogInError::Busy`]). The e-mail is read as
/// [`Email::key`] for both the account and the throttle. A successful log-in clears the
/// e-mail's failures and takes one off the client's.
pub async fn log_in(
    pool: &PgPool,
    gate: &credentials::CheckGate,
    email: &str,
    password: String,
    client: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<Account, LogInError> {
    if email.len() > 254 || password.len() > credentials::MAX_LENGTH * 4 {
        return Err(LogInError::BadCredentials);
    }
    let key = Email::key(email);
    forget_old_attempts(pool, now).await?;
    if let Some(client) = client {
        let limit = Limit::client();
        if let Some(wait) = begin_attempt_as(pool, &client_key(client), limit, now).await? {
            return Err(LogInError::ClientLockedOut {
                retry_after_secs: wait,
            });
        }
    }
    if let Some(wait) = begin_attempt_as(pool, &key, Limit::email(), now).await? {
        return Err(LogInError::LockedOut {
            retry_after_secs: wait,
        });
    }
    let account = find_by_email(pool, &key).await?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    let verified = credentials::verify(gate, hash, password)
        .await
        .map_err(|credentials::Busy| LogInError::Busy)?;
    let account = match account {
        Some(a) if verified && a.active => a,
        // The attempt was already counted by `begin_attempt_as`.
        _ => return Err(LogInError::BadCredentials),
    };
    if account.clinic_suspended {
        return Err(LogInError::ClinicSuspended);
    }
    clear_failures(pool, &key).await?;
    if let Some(client) = client {
        forgive_one(pool, &client_key(client)).await?;
    }
    Ok(account)
}

/// An account as the login needs it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub password_hash: Option<String>,
    pub role: String,
    pub clinic_id: Option<Uuid>,
    pub active: bool,
    /// Whether the account's clinic is suspended (false for the platform admin).
    pub clinic_suspended: bool,
    /// When the clinic's trial ends (`None` on a paid plan, and for the platform admin).
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The clinic's enabled modules (`None` for the platform admin).
    pub clinic_modules: Option<Vec<String>>,
    /// Access tokens issued (`iat`) before this instant are refused: set by a logout, a
    /// deactivation or a new password.
    pub tokens_valid_after: Option<DateTime<Utc>>,
}

impl Account {
    pub fn actor_role(&self) -> Result<ActorRole, StoreError> {
        serde_json::from_value(serde_json::Value::String(self.role.clone()))
            .map_err(|e| StoreError(Box::new(e)))
    }
}

const ACCOUNT_COLUMNS: &str = "a.id, a.email, a.password_hash, a.role, a.clinic_id, a.active, \
     coalesce(c.suspended, false) AS clinic_suspended, c.trial_ends_at, \
     c.modules AS clinic_modules, a.tokens_valid_after \
     FROM accounts a LEFT JOIN clinic_codes c ON c.clinic_id = a.clinic_id";

/// The account of `email` (read as [`Email::key`]; accounts store their e-mail so).
pub async fn find_by_email(pool: &PgPool, email: &str) -> Result<Option<Account>, StoreError> {
    Ok(sqlx::query_as::<_, Account>(&format!(
        "SELECT {ACCOUNT_COLUMNS} WHERE lower(a.email) = lower($1)"
    ))
    .bind(Email::key(email))
    .fetch_optional(pool)
    .await?)
}

pub async fn find_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Account>, StoreError> {
    Ok(
        sqlx::query_as::<_, Account>(&format!("SELECT {ACCOUNT_COLUMNS} WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// The account `id`, read in `conn`'s transaction with its row share-locked, so that a
/// deactivation (which updates the row) waits until the transaction has committed and then
/// sees what it wrote.
pub async fn find_by_id_locked(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<Account>, StoreError> {
    Ok(sqlx::query_as::<_, Account>(&format!(
        "SELECT {ACCOUNT_COLUMNS} WHERE a.id = $1 FOR SHARE OF a"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?)
}

/// Hires a staff member (a new stream) and creates their account, on `tx`: the password hash
/// is staged first and moved into `accounts` by the event trigger, which also refuses an
/// e-mail that already has an account. If the command fails, the transaction rolls the
/// staged hash back with it.
pub async fn hire_with_credentials(
    tx: &mut CommandTx<'_>,
    meta: &CommandMeta,
    staff_id: StaffId,
    command: StaffCommand,
    password_hash: Option<String>,
) -> Result<Committed, CommandError<StaffError>> {
    if let Some(hash) = &password_hash {
        sqlx::query(
            "INSERT INTO pending_credentials (staff_id, password_hash) VALUES ($1, $2) \
             ON CONFLICT (staff_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, created_at = now()",
        )
        .bind(staff_id.as_uuid())
        .bind(hash)
        .execute(tx.conn())
        .await
        .map_err(StoreError::from)?;
    }
    tx.decide::<Staff>(meta, staff_id.as_uuid(), None, command, Expect::Any)
        .await
}

/// What [`ensure_platform_admin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum PlatformAdminOutcome {
    Created(Uuid),
    PasswordUpdated(Uuid),
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformAdminError {
    #[error("{0} already belongs to a clinic staff account; choose another e-mail")]
    EmailIsStaff(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the platform admin `email` with `password_hash`, or, if it exists, sets its
/// password and reactivates it. Idempotent.
pub async fn ensure_platform_admin(
    pool: &PgPool,
    email: &Email,
    password_hash: &str,
) -> Result<PlatformAdminOutcome, PlatformAdminError> {
    if let Some(existing) = find_by_email(pool, email.as_str()).await? {
        if existing.role != "platform_admin" {
            return Err(PlatformAdminError::EmailIsStaff(email.to_string()));
        }
        // A new password ends the access tokens issued before it.
        sqlx::query(
            "UPDATE accounts SET password_hash = $2, active = true, updated_at = now(), \
             tokens_valid_after = greatest(tokens_valid_after, date_trunc('second', now())) \
                                  + interval '1 second' WHERE id = $1",
        )
        .bind(existing.id)
        .bind(password_hash)
        .execute(pool)
        .await
        .map_err(StoreError::from)?;
        return Ok(PlatformAdminOutcome::PasswordUpdated(existing.id));
    }
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO accounts (id, email, password_hash, role, clinic_id) VALUES ($1, $2, $3, 'platform_admin', NULL)",
    )
    .bind(id)
    .bind(email.as_str())
    .bind(password_hash)
    .execute(pool)
    .await
    .map_err(StoreError::from)?;
    Ok(PlatformAdminOutcome::Created(id))
}

/// Ends every access token of `account` issued up to `now` (the service clock): they are
/// refused from the next request on. Tokens issued later (a log-in, a refresh) carry an `iat`
/// no earlier than the cut-off (see [`Account::tokens_valid_after`]), so the new cut-off is a
/// second past both `now` and the previous one: it ends those too.
pub async fn end_access_tokens<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    account: Uuid,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE accounts SET tokens_valid_after = \
             greatest(tokens_valid_after, date_trunc('second', $2::timestamptz)) + interval '1 second' \
         WHERE id = $1",
    )
    .bind(account)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(())
}

/// Login throttling per e-mail: after [`MAX_FAILURES`] failed attempts within
/// [`WINDOW_MINUTES`], further attempts are refused for [`LOCK_MINUTES`] without checking the
/// password. Per client address the same with [`MAX_CLIENT_FAILURES`], so that one client
/// cannot guess across many e-mails.
pub const MAX_FAILURES: i32 = 5;
pub const MAX_CLIENT_FAILURES: i32 = 100;
pub const WINDOW_MINUTES: i64 = 15;
pub const LOCK_MINUTES: i64 = 15;

/// A throttle's limit: failures within the window before a lock.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max_failures: i32,
}

impl Limit {
    fn email() -> Limit {
        Limit {
            max_failures: MAX_FAILURES,
        }
    }

    fn client() -> Limit {
        Limit {
            max_failures: MAX_CLIENT_FAILURES,
        }
    }
}

/// The throttle row of a client address (e-mail keys always hold an `@`, these never do).
fn client_key(client: IpAddr) -> String {
    format!("client {client}")
}

/// Counts a log-in attempt for `email` before its password is checked, atomically, so that a
/// burst of simultaneous guesses cannot outrun the limit. Returns `Some(seconds)` to wait when
/// the e-mail is locked out (the attempt must then be refused without checking the password).
/// `now` is the service clock's.
/// A successful log-in calls [`clear_failures`], so only failures accumulate.
pub async fn begin_attempt(
    pool: &PgPool,
    email: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>, StoreError> {
    begin_attempt_as(pool, &Email::key(email), Limit::email(), now).await
}

async fn begin_attempt_as(
    pool: &PgPool,
    key: &str,
    limit: Limit,
    now: DateTime<Utc>,
) -> Result<Option<u64>, StoreError> {
    let (locked_until,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "INSERT INTO login_throttle AS t (email_key, failures, window_start) VALUES ($1, 1, $2) \
         ON CONFLICT (email_key) DO UPDATE SET \
           failures = CASE WHEN t.window_start < $3 AND (t.locked_until IS NULL OR t.locked_until <= $2) \
                           THEN 1 ELSE t.failures + 1 END, \
           window_start = CASE WHEN t.window_start < $3 AND (t.locked_until IS NULL OR t.locked_until <= $2) \
                               THEN $2 ELSE t.window_start END, \
           locked_until = CASE \
               WHEN t.locked_until > $2 THEN t.locked_until \
               WHEN t.window_start >= $3 AND t.failures + 1 > $4 THEN $5 \
               ELSE NULL END \
         RETURNING locked_until",
    )
    .bind(key)
    .bind(now)
    .bind(now - Duration::minutes(WINDOW_MINUTES))
    .bind(limit.max_failures)
    .bind(now + Duration::minutes(LOCK_MINUTES))
    .fetch_one(pool)
    .await?;
    Ok(locked_until
        .map(|until| (until - now).num_seconds())
        .filter(|s| *s > 0)
        .map(|s| s as u64))
}

/// The most throttle rows one log-in removes: the rows of a burst of unknown e-mails go in a
/// few log-ins, and no log-in pays for a big delete.
const FORGET_PER_LOG_IN: i64 = 100;

/// Removes throttle rows whose window has passed and that hold no lock (at `now`, the
/// service clock's): a flood of unknown e-mails leaves no rows behind once its window is over.
pub async fn forget_old_attempts(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM login_throttle WHERE email_key IN ( \
             SELECT email_key FROM login_throttle \
             WHERE window_start < $1 AND (locked_until IS NULL OR locked_until <= $2) \
             LIMIT $3)",
    )
    .bind(now - Duration::minutes(WINDOW_MINUTES))
    .bind(now)
    .bind(FORGET_PER_LOG_IN)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub async fn clear_failures(pool: &PgPool, email: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_throttle WHERE email_key = $1")
        .bind(Email::key(email))
        .execute(pool)
        .await?;
    Ok(())
}

/// Takes the counted attempt of a successful log-in off `key`'s failures; a row left with
/// none (and no lock) goes.
async fn forgive_one(pool: &PgPool, key: &str) -> Result<(), StoreError> {
    sqlx::query(
        "WITH gone AS (DELETE FROM login_throttle \
                       WHERE email_key = $1 AND failures <= 1 AND locked_until IS NULL) \
         UPDATE login_throttle SET failures = failures - 1 \
         WHERE email_key = $1 AND (failures > 1 OR locked_until IS NOT NULL) AND failures > 0",
    )
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}
