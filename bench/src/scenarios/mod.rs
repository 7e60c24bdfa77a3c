//! The measured scenarios: commands, reads, the mixed load with projection lag, and the
//! check that every accepted command reached the read models.

pub mod commands;
pub mod mixed;
pub mod reads;
pub mod verify;

use std::sync::Arc;

use crate::client::Api;
use crate::fixture::Fixture;
use crate::scenarios::commands::Ledger;

/// What every scenario needs.
#[derive(Clone)]
pub struct Ctx {
    pub api: Api,
    pub fixture: Arc<Fixture>,
    pub ledger: Arc<Ledger>,
}
