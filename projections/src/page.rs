//! What the paginated lists share: page sizes, the caller's mistakes, and page tokens (opaque
//! base64url of the last row's sort key).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Page sizes of the paginated lists.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

/// How many days the dashboard covers: today and the next 7.
pub const DASHBOARD_DAYS: i64 = 8;
/// How many upcoming appointments the dashboard lists.
pub const DASHBOARD_NEXT: i64 = 10;

/// A search or page token the caller sent that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuery {
    #[error("a phone number search needs at least 4 digits")]
    PhoneTooShort,
    #[error("not a valid date (YYYY-MM-DD)")]
    BadDate,
    #[error("not a valid MRN (e.g. MRN-000012)")]
    BadMrn,
    #[error("not a page token from a previous answer")]
    BadPageToken,
}

/// Cuts `rows`, fetched with a limit of `limit + 1`, to the page, and returns the page's last
/// row when another page follows (the row its page token is made from).
pub(crate) fn page_end<T>(rows: &mut Vec<T>, limit: i64) -> Option<&T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    rows.last().filter(|_| more)
}

pub(crate) fn encode_token<T: Serialize>(key: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

pub(crate) fn decode_token<T: DeserializeOwned>(token: &str) -> Result<T, InvalidQuery> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim())
        .map_err(|_| InvalidQuery::BadPageToken)?;
    // Our tokens never hold U+0000 (the keys come from `text` columns); a forged one would
    // reach PostgreSQL, which refuses the character.
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| InvalidQuery::BadPageToken)?;
    if domain::values::nul_path(&json).is_some() {
        return Err(InvalidQuery::BadPageToken);
    }
    serde_json::from_value(json).map_err(|_| InvalidQuery::BadPageToken)
}
