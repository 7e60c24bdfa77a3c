//! Typed query strings. An endpoint names the parameters it knows as the fields of a
//! `#[derive(Deserialize, IntoParams)] #[serde(deny_unknown_fields)]` struct, every field
//! optional (`#[serde(default)]`; a required one is checked by the handler), each parsed by
//! one of the `deserialize_with` readers below or its own. [`Query`] reads the query string
//! into it:
//!
//! - a malformed query string is a 400;
//! - an unknown parameter, one given twice, or a value that does not parse is a 422 naming
//!   it, every such parameter listed at once;
//! - values are trimmed, and an empty one is a 422 too (leave the parameter out instead): it
//!   is no UUID, date or number, and taking it for "absent" would hide a client's bug.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Uri;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::value::{Error as ValueError, MapDeserializer};
use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};
use serde::Deserialize;
use uuid::Uuid;

use crate::problem::{ApiError, FieldError};
use crate::read::MIN_POSITION_PARAM;

/// A query string read into `T` (see the module documentation). With `MIN_POSITION`,
/// `min_position` is let through as well: the [`crate::read::MinPosition`] extractor reads it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T, const MIN_POSITION: bool = false>(pub T);

/// The query string of a read endpoint, which also honours `?min_position=`.
pub type ReadQuery<T> = Query<T, true>;

/// The query string of an endpoint that takes no parameters.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl<T, S, const MIN_POSITION: bool> FromRequestParts<S> for Query<T, MIN_POSITION>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let also: &[&str] = if MIN_POSITION {
            &[MIN_POSITION_PARAM]
        } else {
            &[]
        };
        parse(&parts.uri, also).map(Query)
    }
}

/// The name/value pairs of `uri`'s query string, in order; a malformed one is a 400, and one
/// with U+0000 (`%00`) in a name or a value is a 422 naming the parameter.
pub fn pairs(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    if uri.query().is_none() {
        return Ok(Vec::new());
    }
    let pairs = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|axum::extract::Query(pairs)| pairs)
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
    let with_nul: Vec<FieldError> = pairs
        .iter()
        .filter(|(name, value)| name.contains('\0') || value.contains('\0'))
        .map(|(name, _)| FieldError::new(name.replace('\0', "%00"), crate::http::NUL_MESSAGE))
        .collect();
    if with_nul.is_empty() {
        Ok(pairs)
    } else {
        Err(ApiError::Validation(with_nul))
    }
}

/// The first value of `name` in `uri`'s query string (trimmed; an empty one is absent), for a
/// handler that must know it even when the query as a whole is refused.
pub fn raw(uri: &Uri, name: &str) -> Option<String> {
    pairs(uri)
        .ok()?
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The message of a parameter given with an empty value.
pub const EMPTY_MESSAGE: &str = "empty: give a value or leave the parameter out";

/// Reads `uri`'s query string into `T`; the parameters in `also` are let through unread.
pub fn parse<T: DeserializeOwned>(uri: &Uri, also: &[&str]) -> Result<T, ApiError> {
    let pairs = pairs(uri)?;
    let known = field_names::<T>();
    let mut errors: Vec<FieldError> = Vec::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if errors.iter().any(|e| &e.field == name) {
            continue;
        }
        if !known.contains(&name.as_str()) && !also.contains(&name.as_str()) {
            errors.push(FieldError::new(
                name.clone(),
                format!("unknown query parameter (known: {})", known.join(", ")),
            ));
        } else if pairs[..i].iter().any(|(n, _)| n == name) {
            errors.push(FieldError::new(name.clone(), "given more than once"));
        } else if known.contains(&name.as_str()) && value.trim().is_empty() {
            errors.push(FieldError::new(name.clone(), EMPTY_MESSAGE));
        }
    }
    let given: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| known.contains(&name.as_str()))
        .map(|(name, value)| (name, value.trim().to_owned()))
        .collect();
    // Each value on its own, so that every one that does not parse is named.
    for (name, value) in &given {
        if errors.iter().any(|e| &e.field == name) {
            continue;
        }
        if let Err(e) = from_pairs::<T>(vec![(name.clone(), value.clone())]) {
            errors.push(FieldError::new(name.clone(), e.to_string()));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // Each given value parsed above: what fails now is a required parameter left out.
    from_pairs(given).map_err(|e| {
        let message = e.to_string();
        let field = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or("query")
            .to_owned();
        ApiError::Validation(vec![FieldError::new(field, message)])
    })
}

fn from_pairs<T: DeserializeOwned>(pairs: Vec<(String, String)>) -> Result<T, ValueError> {
    T::deserialize(MapDeserializer::new(pairs.into_iter()))
}

/// The field names of the struct `T`, as serde reads them.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Probe(Some(fields))) => fields,
        _ => &[],
    }
}

/// A deserializer that only asks a struct for its field names.
struct FieldNames;

#[derive(Debug)]
struct Probe(Option<&'static [&'static str]>);

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probing for field names")
    }
}

impl std::error::Error for Probe {}

impl serde::de::Error for Probe {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Probe(None)
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Probe;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probe> {
        Err(Probe(Some(fields)))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Probe> {
        Err(Probe(None))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

// ---------------------------------------------------------------------------------------
// Readers for `#[serde(default, deserialize_with = "…")]`: each reads the value's text, and
// its error message is the one the 422 gives.

/// Reads a value's text with `parse`.
pub fn with<'de, D, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = String::deserialize(deserializer)?;
    parse(&raw).map(Some).map_err(D::Error::custom)
}

/// A UUID.
pub fn uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    with(d, |raw| {
        Uuid::parse_str(raw).map_err(|_| "must be a UUID".into())
    })
}

/// An RFC 3339 instant. A `+` left unencoded in the query string arrives as a space; it is
/// read back as the `+` it was.
pub fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    with(d, |raw| {
        DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| "must be an RFC 3339 instant, e.g. 2026-03-01T09:00:00Z".into())
    })
}

/// A calendar date, `YYYY-MM-DD`.
pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    with(d, |raw| {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| "must be a date, YYYY-MM-DD (e.g. 2027-01-13)".into())
    })
}

/// `true` or `false`.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    with(d, |raw| match raw {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be `true` or `false`".into()),
    })
}

/// An integer from `MIN` to `MAX`.
pub fn int_in<'de, D: Deserializer<'de>, const MIN: i64, const MAX: i64>(
    d: D,
) -> Result<Option<i64>, D::Error> {
    with(d, |raw| {
        raw.parse::<i64>()
            .ok()
            .filter(|n| (MIN..=MAX).contains(n))
            .ok_or_else(|| format!("must be an integer from {MIN} to {MAX}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default, deserialize_with = "uuid")]
        id: Option<Uuid>,
        #[serde(default, deserialize_with = "int_in::<_, 1, 200>")]
        limit: Option<i64>,
        #[serde(default, deserialize_with = "instant")]
        from: Option<DateTime<Utc>>,
    }

    fn read(uri: &str, also: &[&str]) -> Result<Sample, ApiError> {
        parse(&uri.parse::<Uri>().unwrap(), also)
    }

    fn fields(err: ApiError) -> Vec<(String, String)> {
        match err {
            ApiError::Validation(errors) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("not a 422: {other:?}"),
        }
    }

    #[test]
    fn field_names_are_the_structs() {
        assert_eq!(field_names::<Sample>(), &["id", "limit", "from"]);
        assert!(field_names::<NoParams>().is_empty());
    }

    #[test]
    fn values_are_trimmed_and_empty_ones_refused() {
        let id = Uuid::now_v7();
        assert_eq!(
            read(
                &format!("/x?id=%20{id}%20&from=2026-03-01T10:00:00+01:00"),
                &[]
            )
            .unwrap(),
            Sample {
                id: Some(id),
                limit: None,
                from: Some("2026-03-01T09:00:00Z".parse().unwrap()),
            }
        );
        // Found by the fuzzer (scripts/fuzz-api): `?to=` was taken for "no `to`".
        let errors = fields(read("/x?id=&limit=%20&from=2026-03-01T10:00:00Z", &[]).unwrap_err());
        assert_eq!(
            errors,
            [
                ("id".to_owned(), EMPTY_MESSAGE.to_owned()),
                ("limit".to_owned(), EMPTY_MESSAGE.to_owned())
            ]
        );
        assert_eq!(
            read("/x", &[]).unwrap(),
            Sample {
                id: None,
                limit: None,
                from: None
            }
        );
    }

    #[test]
    fn every_bad_parameter_is_named() {
        let errors = fields(
            read(
                "/x?limit=0&id=x&colour=red&from=2026-01-01T00:00:00Z&from=x",
                &[],
            )
            .unwrap_err(),
        );
        let named: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(named, ["colour", "from", "limit", "id"]);
        assert_eq!(
            errors[0].1,
            "unknown query parameter (known: id, limit, from)"
        );
        assert_eq!(errors[1].1, "given more than once");
        assert_eq!(errors[2].1, "must be an integer from 1 to 200");
        assert_eq!(errors[3].1, "must be a UUID");
    }

    #[test]
    fn parameters_read_elsewhere_are_let_through() {
        assert!(read("/x?min_position=3", &[]).is_err());
        assert!(read("/x?min_position=3", &["min_position"]).is_ok());
    }
}
