//! Refresh tokens: 32 random bytes (base64url), stored only as SHA-256, used once. Using a
//! spent or revoked token revokes its whole family (every token descended from that login).

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

pub const TTL_DAYS: i64 = 30;

pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Stores a new token of `family` for `account`, issued at `now`, and returns it.
pub async fn issue(
    db: impl sqlx::PgExecutor<'_>,
    account: Uuid,
    family: Uuid,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let token = generate();
    sqlx::query(
        "INSERT INTO refresh_tokens (id, account_id, family_id, token_hash, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::new_v4())
    .bind(account)
    .bind(family)
    .bind(digest(&token))
    .bind(now + Duration::days(TTL_DAYS))
    .execute(db)
    .await?;
    Ok(token)
}

/// Why a refresh token was refused. All of them answer the same 401.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    Unknown,
    Expired,
    Revoked,
    /// A spent token was presented again: the family is now revoked.
    Reused,
    /// The account was deactivated.
    Inactive,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    account_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// The namespace of the families' advisory locks (the two-key form, so it cannot meet the
/// projection workers' one-key leases).
const FAMILY_LOCK_SPACE: i32 = 0x7265_6672; // "refr"

/// Locks `family` until `conn`'s transaction ends. Every change to a family (a rotation, the
/// revocation that a reuse causes, a logout) takes this lock first, so they happen one after
/// the other. A statement run after the lock sees every token the previous holder inserted:
/// a revocation cannot miss a successor issued at the same moment.
async fn lock_family(conn: &mut sqlx::PgConnection, family: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
        .bind(FAMILY_LOCK_SPACE)
        .bind(family)
        .execute(conn)
        .await?;
    Ok(())
}

async fn revoke_family(conn: &mut sqlx::PgConnection, family: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The family of `token`, locked in `conn`'s transaction; `None` for an unknown token.
async fn lock_family_of(
    conn: &mut sqlx::PgConnection,
    token: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let family: Option<Uuid> =
        sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(family) = family {
        lock_family(conn, family).await?;
    }
    Ok(family)
}

/// Logs out: revokes the family of `token` and ends the account's access tokens issued up to
/// `now`, in one transaction. Unknown tokens are ignored.
pub async fn revoke(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<bool, crate::problem::ApiError> {
    let mut tx = pool.begin().await?;
    let Some(family) = lock_family_of(&mut tx, token).await? else {
        return Ok(false);
    };
    let revoked = revoke_family(&mut tx, family).await?;
    let account: Uuid =
        sqlx::query_scalar("SELECT account_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(digest(token))
            .fetch_one(&mut *tx)
            .await?;
    commands::accounts::end_access_tokens(&mut *tx, account, now).await?;
    tx.commit().await?;
    Ok(revoked > 0)
}

/// Redeems a refresh token at `now` (the service clock) and issues its successor, in one
/// transaction that holds the family's lock: the account the token belongs to and the new
/// refresh token. Of two uses of one token, the second waits for the first to commit, finds
/// the token spent and revokes the family, successor included.
///
/// A suspended clinic's token is refused (403) without being spent, so it still works after
/// the clinic is reactivated. An unknown, spent, revoked or expired token, or one of a
/// deactivated account, is a 401.
pub async fn rotate(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(commands::accounts::Account, String), crate::problem::ApiError> {
    use crate::problem::ApiError;
    use commands::accounts;

    let refuse = |why: Refused| {
        tracing::info!(reason = ?why, "refresh token refused");
        ApiError::Unauthorized("the refresh token is not valid".into())
    };
    let mut tx = pool.begin().await?;
    let Some(family) = lock_family_of(&mut tx, token).await? else {
        return Err(refuse(Refused::Unknown));
    };
    // Read after the lock: this sees what the family's previous holder committed.
    let row: TokenRow = sqlx::query_as(
        "SELECT id, account_id, expires_at, used_at, revoked_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(digest(token))
    .fetch_one(&mut *tx)
    .await?;
    if row.used_at.is_some() {
        revoke_family(&mut tx, family).await?;
        tx.commit().await?;
        tracing::warn!(account_id = %row.account_id, "a spent refresh token was reused; its family is revoked");
        return Err(refuse(Refused::Reused));
    }
    if row.revoked_at.is_some() {
        return Err(refuse(Refused::Revoked));
    }
    if row.expires_at <= now {
        return Err(refuse(Refused::Expired));
    }
    let account = accounts::find_by_id_locked(&mut tx, row.account_id)
        .await?
        .ok_or_else(|| refuse(Refused::Unknown))?;
    if account.clinic_suspended {
        return Err(ApiError::ClinicSuspended);
    }
    if !account.active {
        return Err(refuse(Refused::Inactive));
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    let successor = issue(&mut *tx, account.id, family, now).await?;
    tx.commit().await?;
    Ok((account, successor))
}
