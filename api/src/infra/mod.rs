//! What the `clinic` binary runs on, apart from HTTP: configuration ([`config`]), the database
//! connection and migrations ([`db`]), and the private PostgreSQL cluster ([`embedded_pg`]).

pub mod config;
pub mod db;
pub mod embedded_pg;
