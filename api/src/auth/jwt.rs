//! Access tokens: HS256 JWTs with `sub`, `clinic`, `role`, `aud`, `iat`, `exp` and `jti`.
//! Verification allows HS256 only and checks `exp` and `aud`. Both issuing and checking take
//! `now` from the service clock (`AppState::clock`), never from the system clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::ActorRole;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The audience of every access token.
pub const AUDIENCE: &str = "clinic-api";

/// Clock skew allowed when checking `exp`, in seconds.
pub const LEEWAY_SECS: i64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The account (for staff: the staff member's id).
    pub sub: Uuid,
    /// The clinic; absent for the platform admin.
    pub clinic: Option<Uuid>,
    pub role: ActorRole,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

/// Signing and verification keys from `CLINIC_JWT_SECRET`.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl: Duration,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8], access_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "iat", "sub"]);
        // `exp` is checked in `verify` against the service clock: jsonwebtoken's own check
        // reads the system clock.
        validation.validate_exp = false;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// A signed access token for the account issued at `now`, and its lifetime in seconds.
    pub fn issue(
        &self,
        account: Uuid,
        clinic: Option<Uuid>,
        role: ActorRole,
        now: DateTime<Utc>,
    ) -> Result<(String, u64), jsonwebtoken::errors::Error> {
        let now = now.timestamp();
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            sub: account,
            clinic,
            role,
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl as i64,
            jti: Uuid::new_v4(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, ttl))
    }

    /// Signs arbitrary claims (tests forge expired or wrong-audience tokens with this).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a token signed with our key, for HS256 and our audience, that has not
    /// expired at `now` (allowing [`LEEWAY_SECS`] of clock skew).
    pub fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        let claims = decode::<AccessClaims>(token, &self.decoding, &self.validation)?.claims;
        if claims.exp.saturating_add(LEEWAY_SECS) <= now.timestamp() {
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn keys() -> JwtKeys {
        JwtKeys::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issued_tokens_verify_with_all_claims() {
        let k = keys();
        let account = Uuid::new_v4();
        let clinic = Uuid::new_v4();
        let now = at("2027-03-03T08:00:00Z");
        let (token, ttl) = k
            .issue(account, Some(clinic), ActorRole::Doctor, now)
            .unwrap();
        assert_eq!(ttl, 900);
        let claims = k.verify(&token, now).unwrap();
        assert_eq!(claims.sub, account);
        assert_eq!(claims.clinic, Some(clinic));
        assert_eq!(claims.role, ActorRole::Doctor);
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.iat, now.timestamp());
    }

    #[test]
    fn expiry_is_judged_by_the_given_clock_not_the_system_clock() {
        let k = keys();
        // Issued far from today's date on purpose: only the clock passed in counts.
        let issued = at("2041-07-01T12:00:00Z");
        let (token, _) = k
            .issue(Uuid::new_v4(), None, ActorRole::PlatformAdmin, issued)
            .unwrap();
        let secs = chrono::Duration::seconds;
        assert!(k.verify(&token, issued + secs(899)).is_ok());
        assert!(k
            .verify(&token, issued + secs(900 + LEEWAY_SECS - 1))
            .is_ok());
        assert!(k.verify(&token, issued + secs(900 + LEEWAY_SECS)).is_err());
        assert!(k.verify(&token, issued + secs(86_400)).is_err());
    }

    #[test]
    fn expired_wrong_audience_alg_none_and_other_keys_are_refused() {
        let k = keys();
        let clock = at("2027-03-03T08:00:00Z");
        let now = clock.timestamp();
        let mut claims = AccessClaims {
            sub: Uuid::new_v4(),
            clinic: None,
            role: ActorRole::PlatformAdmin,
            aud: AUDIENCE.into(),
            iat: now - 3600,
            exp: now - 1800,
            jti: Uuid::new_v4(),
        };
        assert!(
            k.verify(&k.sign(&claims).unwrap(), clock).is_err(),
            "expired"
        );
        claims.exp = now + 600;
        claims.aud = "someone-else".into();
        assert!(
            k.verify(&k.sign(&claims).unwrap(), clock).is_err(),
            "audience"
        );
        claims.aud = AUDIENCE.into();
        assert!(k.verify(&k.sign(&claims).unwrap(), clock).is_ok());

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(k.verify(&none, clock).is_err(), "alg none");

        let other = JwtKeys::new(
            b"another secret of thirty-two b!!",
            Duration::from_secs(900),
        );
        assert!(
            k.verify(&other.sign(&claims).unwrap(), clock).is_err(),
            "other key"
        );
    }
}
