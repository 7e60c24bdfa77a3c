//! Access tokens: HS256 JWTs with `sub`, `clinic`, `role`, `aud`, `iat`, `exp` and `jti`.
//! Verification allows HS256 only and checks `exp` and `aud`.

use std::time::Duration;

use chrono::Utc;
use commands::ActorRole;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The audience of every access token.
pub const AUDIENCE: &str = "clinic-api";

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
        validation.validate_exp = true;
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
        }
    }

    /// A signed access token for the account, and its lifetime in seconds.
    pub fn issue(
        &self,
        account: Uuid,
        clinic: Option<Uuid>,
        role: ActorRole,
    ) -> Result<(String, u64), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
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

    pub fn verify(&self, token: &str) -> Result<AccessClaims, jsonwebtoken::errors::Error> {
        decode::<AccessClaims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

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
        let (token, ttl) = k.issue(account, Some(clinic), ActorRole::Doctor).unwrap();
        assert_eq!(ttl, 900);
        let claims = k.verify(&token).unwrap();
        assert_eq!(claims.sub, account);
        assert_eq!(claims.clinic, Some(clinic));
        assert_eq!(claims.role, ActorRole::Doctor);
        assert_eq!(claims.aud, AUDIENCE);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn expired_wrong_audience_alg_none_and_other_keys_are_refused() {
        let k = keys();
        let now = Utc::now().timestamp();
        let mut claims = AccessClaims {
            sub: Uuid::new_v4(),
            clinic: None,
            role: ActorRole::PlatformAdmin,
            aud: AUDIENCE.into(),
            iat: now - 3600,
            exp: now - 1800,
            jti: Uuid::new_v4(),
        };
        assert!(k.verify(&k.sign(&claims).unwrap()).is_err(), "expired");
        claims.exp = now + 600;
        claims.aud = "someone-else".into();
        assert!(k.verify(&k.sign(&claims).unwrap()).is_err(), "audience");
        claims.aud = AUDIENCE.into();
        assert!(k.verify(&k.sign(&claims).unwrap()).is_ok());

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert!(k.verify(&none).is_err(), "alg none");

        let other = JwtKeys::new(
            b"another secret of thirty-two b!!",
            Duration::from_secs(900),
        );
        assert!(
            k.verify(&other.sign(&claims).unwrap()).is_err(),
            "other key"
        );
    }
}
