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
    pool: &PgPool,
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
    .execute(pool)
    .await?;
    Ok(token)
}

/// Why a refresh token was refused. All of them answer the same 401.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Expired,
    Revoked,
    /// A spent token was presented again: the family is now revoked.
    Reused,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    account_id: Uuid,
    family_id: Uuid,
    expires_at: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

/// The account a valid token belongs to, after marking the token used (atomically: of two
/// concurrent uses, one wins and the other is treated as reuse). `now` is the service clock's.
pub async fn consume(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Result<(Uuid, Uuid), Refused>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT id, account_id, family_id, expires_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(digest(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(TokenRow {
        id,
        account_id: account,
        family_id: family,
        expires_at,
        used_at,
        revoked_at,
    }) = row
    else {
        return Ok(Err(Refused::Unknown));
    };
    if used_at.is_some() {
        sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
            .bind(family)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(account_id = %account, "a spent refresh token was reused; its family is revoked");
        return Ok(Err(Refused::Reused));
    }
    if revoked_at.is_some() {
        return Ok(Err(Refused::Revoked));
    }
    if expires_at <= now {
        return Ok(Err(Refused::Expired));
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok((account, family)))
}

/// The account a token was issued to, whatever its state.
pub async fn owner(pool: &PgPool, token: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT account_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(digest(token))
        .fetch_optional(pool)
        .await
}

/// Revokes the family of `token` (logout). Unknown tokens are ignored.
pub async fn revoke(pool: &PgPool, token: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() \
         WHERE family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1) \
           AND revoked_at IS NULL",
    )
    .bind(digest(token))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Redeems a refresh token at `now`: the account it belongs to and its family, for a new
/// pair. A suspended clinic's token is refused (403) without being spent, so it still works
/// after the clinic is reactivated; an unknown, spent, revoked or expired token, or one of a
/// deactivated account, is a 401.
pub async fn redeem(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<(commands::accounts::Account, Uuid), crate::problem::ApiError> {
    use crate::problem::ApiError;
    use commands::accounts;

    let refused = || ApiError::Unauthorized("the refresh token is not valid".into());
    if let Some(owner) = owner(pool, token).await? {
        let account = accounts::find_by_id(pool, owner).await?;
        if account.is_some_and(|a| a.clinic_suspended) {
            return Err(ApiError::ClinicSuspended);
        }
    }
    let (account_id, family) = consume(pool, token, now).await?.map_err(|why| {
        tracing::info!(reason = ?why, "refresh token refused");
        refused()
    })?;
    let account = accounts::find_by_id(pool, account_id)
        .await?
        .filter(|a| a.active)
        .ok_or_else(refused)?;
    if account.clinic_suspended {
        return Err(ApiError::ClinicSuspended);
    }
    Ok((account, family))
}
