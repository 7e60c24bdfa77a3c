//! `clinic verify`: recomputes a clinic's hash chains, of the events (see
//! `projections::audit_chain`) and of the access log (`projections::access_chain`), and prints
//! one line for each: `intact: N events, head POS HEX` or `tampered: changed at position P`,
//! then `access log intact: N rows, head HEX` or `access log tampered: removed at row I`. A
//! tampered history or access log is an error (exit status 1).

use clap::Args;
use domain::values::ClinicCode;
use projections::audit_chain::{self as chain, ChainStatus, ExpectedHead};

use crate::infra::config::DatabaseArgs;

use super::{invalid, open_pool, CliError};

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The clinic's code.
    #[arg(long)]
    pub clinic: String,
    /// A chain head exported earlier (`GET /v1/audit/chain/head`), as `POSITION:HEX`: also
    /// check that the history up to it was not rewritten since.
    #[arg(long, value_name = "POS:HEX")]
    pub expect_head: Option<String>,
}

/// Parses `POSITION:HEX`.
fn parse_expect_head(raw: &str) -> Result<ExpectedHead, CliError> {
    let (position, hash) = raw
        .split_once(':')
        .ok_or_else(|| invalid("--expect-head", "expected POSITION:HEX"))?;
    let position: i64 = position
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid("--expect-head", "the position must be a positive integer"))?;
    let hash = chain::parse_hash(hash.trim())
        .ok_or_else(|| invalid("--expect-head", "the hash must be 64 hex digits"))?;
    Ok(ExpectedHead { position, hash })
}

pub async fn run(args: VerifyArgs) -> Result<(), CliError> {
    let code = ClinicCode::parse(&args.clinic).map_err(|e| invalid("--clinic", e))?;
    let expected = args
        .expect_head
        .as_deref()
        .map(parse_expect_head)
        .transpose()?;
    let (_database, pool) = open_pool(&args.database).await?;
    let clinic = commands::registry::clinic_by_code(&pool, &code)
        .await
        .map_err(|e| CliError::Refused(e.to_string()))?
        .ok_or_else(|| invalid("--clinic", format!("no clinic has the code {code}")))?;
    let verification = chain::verify(&pool, clinic, expected)
        .await
        .map_err(|e| CliError::Refused(format!("cannot verify the chain: {e}")))?;
    let access = projections::access_chain::verify(&pool, clinic)
        .await
        .map_err(|e| CliError::Refused(format!("cannot verify the access log's chain: {e}")))?;
    pool.close().await;
    println!("{verification}");
    println!("{access}");
    match (verification.status, access.status) {
        (ChainStatus::Intact, ChainStatus::Intact) => Ok(()),
        (ChainStatus::Tampered, _) => Err(CliError::Refused(format!(
            "the event history of clinic {code} was altered"
        ))),
        (_, ChainStatus::Tampered) => Err(CliError::Refused(format!(
            "the access log of clinic {code} was altered"
        ))),
    }
}
