//! Authentication: passwords (argon2id), access tokens (JWT, HS256), refresh tokens, and the
//! [`Principal`] extractor every protected handler takes.

pub mod jwt;
pub mod principal;
pub mod refresh;

pub use jwt::{AccessClaims, JwtKeys};
pub use principal::Principal;
