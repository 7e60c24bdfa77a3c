//! Authentication over HTTP, in one module: access tokens ([`jwt`], HS256), refresh tokens
//! ([`refresh`]), the [`Principal`] extractor every protected handler takes ([`principal`]), and
//! the endpoints `POST /v1/auth/login`, `/refresh`, `/logout` and `GET /v1/me` ([`routes`]).
//!
//! Accounts and passwords (argon2id) are the write side's: `commands::accounts` and
//! `commands::accounts::credentials`.

pub mod jwt;
pub mod principal;
pub mod refresh;
pub mod routes;

pub use jwt::{AccessClaims, JwtKeys};
pub use principal::{Principal, RequiredModule};
