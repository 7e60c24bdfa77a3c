//! Request and response plumbing shared by the command endpoints: JSON bodies parsed after
//! authorisation (415/413/400/422 with the field named), `If-Match`, `Idempotency-Key`, and
//! the command answers.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use commands::{Committed, Expect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{ApiError, FieldError};

/// A JSON request body, read but not yet parsed: handlers authorise first, then parse, so a
/// caller without the right role learns nothing about validation.
///
/// An empty body stands for `{}` on a `POST` (the actions whose body is optional:
/// `/deactivate`, `/check-in`, …). On a `PUT` or `PATCH` it is a 422 naming `body`: a `PUT`
/// replaces a whole record, and taking "no body" for `{}` there (found by `scripts/fuzz-api`:
/// `PUT /v1/staff/{id}/working-hours` with no body cleared every day's hours) would change
/// data the client never sent.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes, pub EmptyBody);

/// What an empty body means (see [`JsonBody`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyBody {
    IsEmptyObject,
    Refused,
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = if req.method() == axum::http::Method::POST {
            EmptyBody::IsEmptyObject
        } else {
            EmptyBody::Refused
        };
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        match content_type {
            Some(ct) if is_json(&ct) => Ok(JsonBody(bytes, empty)),
            // A command without a body may omit the content type.
            None if bytes.is_empty() => Ok(JsonBody(bytes, empty)),
            _ => Err(ApiError::UnsupportedMediaType),
        }
    }
}

impl JsonBody {
    /// Parses the body into `T`. Malformed JSON is a 400; JSON of the wrong shape is a 422
    /// naming the field. An empty body parses as `{}` on a `POST`, and is a 422 naming `body`
    /// otherwise.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let bytes: &[u8] = if self.0.iter().all(u8::is_ascii_whitespace) {
            if self.1 == EmptyBody::Refused {
                return Err(ApiError::field("body", "required"));
            }
            b"{}"
        } else {
            &self.0
        };
        refuse_nul(bytes)?;
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
                }
                _ => ApiError::Validation(vec![field_error(&path, &inner.to_string())]),
            }
        })?;
        de.end()
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        Ok(value)
    }
}

/// What a string holding U+0000 is told. PostgreSQL cannot store the character in `text`,
/// and no field of this API has a use for it.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Refuses a JSON body with U+0000 in any string, key or value, with a 422 naming the field
/// (as serde_path_to_error writes paths: `name.given`, `allergies[0]`). JSON can carry the
/// character only escaped, so a body without the escape `\u0000` is passed at once. Malformed
/// JSON is left to the parse that follows.
fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !bytes.windows(6).any(|w| w == br"\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    match domain::values::nul_path(&value) {
        Some(path) => Err(ApiError::field(path, NUL_MESSAGE)),
        None => Ok(()),
    }
}

/// Turns a serde error at `path` into a field error. Unknown and missing fields are reported
/// under their own name: serde_path_to_error already ends the path of an unknown field with
/// its key, while a missing field's path is its parent (`.` at the top).
fn field_error(path: &str, message: &str) -> FieldError {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let path = if path == "." { "" } else { path };
    let field = match named {
        Some(name) if path == name || path.ends_with(&format!(".{name}")) => path.to_owned(),
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None if path.is_empty() => "body".to_owned(),
        None => path.to_owned(),
    };
    let message = if message.starts_with("unknown field `") {
        "this field may not be set here".to_owned()
    } else {
        message
    };
    FieldError::new(field, message)
}

/// The `{id}` of a path, as a UUID. A malformed id is a 422 naming `id` (as problem+json,
/// unlike axum's plain-text `Path` rejection).
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<Uuid>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| IdPath(id))
            .map_err(|_| ApiError::field("id", "must be a UUID"))
    }
}

/// The command context of a request: `If-Match`, `Idempotency-Key`, method and path.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub expect: Expect,
    pub idempotency_key: Option<String>,
    pub(crate) method: Method,
    pub(crate) path: String,
    /// The matched route template (`/v1/patients/{id}`), which names the command in metrics.
    pub(crate) route: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for CommandRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let expect = match parts.headers.get(IF_MATCH) {
            None => Expect::Any,
            Some(v) => parse_if_match(v.to_str().unwrap_or(""))?,
        };
        let idempotency_key = match parts.headers.get("idempotency-key") {
            None => None,
            Some(v) => {
                let key = v.to_str().unwrap_or("").trim().to_owned();
                if key.is_empty() || key.len() > 255 {
                    return Err(ApiError::field(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters",
                    ));
                }
                Some(key)
            }
        };
        Ok(CommandRequest {
            expect,
            idempotency_key,
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            route: parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str().to_owned()),
        })
    }
}

/// `"3"`, `W/"3"` or `3` → version 3; `*` → any.
pub fn parse_if_match(raw: &str) -> Result<Expect, ApiError> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(Expect::Any);
    }
    let unquoted = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
    unquoted.parse::<u64>().map(Expect::Version).map_err(|_| {
        ApiError::BadRequest("If-Match must be a version as returned in ETag, e.g. \"3\"".into())
    })
}

/// The answer to a command.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CommandAccepted {
    /// The id of the record the command acted on.
    pub id: Uuid,
    /// The record's version after the command; send it back as `If-Match: "<version>"`.
    pub version: u64,
    /// The global position of the last committed event: pass it as `X-Min-Position` to read
    /// your own write.
    pub position: Option<i64>,
}

/// A command's HTTP answer: 201 with `Location` for a create, 200 otherwise; `ETag` carries the
/// version.
#[derive(Debug, Clone)]
pub struct CommandResponse {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: CommandAccepted,
}

impl CommandResponse {
    pub fn created(id: Uuid, location: String, committed: &Committed) -> Self {
        CommandResponse {
            status: StatusCode::CREATED,
            location: Some(location),
            body: CommandAccepted {
                id,
                version: committed.version,
                position: committed.last_position(),
            },
        }
    }

    /// 201 for a record created in `collection` (its path, e.g. `/v1/patients`).
    pub fn created_in(collection: &str, id: impl Into<Uuid>, committed: &Committed) -> Self {
        let id = id.into();
        Self::created(id, format!("{collection}/{id}"), committed)
    }

    pub fn updated(id: Uuid, committed: &Committed) -> Self {
        CommandResponse {
            status: StatusCode::OK,
            location: None,
            body: CommandAccepted {
                id,
                version: committed.version,
                position: committed.last_position(),
            },
        }
    }
}

pub(crate) fn respond(
    status: StatusCode,
    location: Option<&str>,
    body: Vec<u8>,
    version: Option<u64>,
    replayed: bool,
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(LOCATION, location);
    }
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(&format!("\"{v}\"")).ok()) {
        headers.insert(ETAG, v);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

impl IntoResponse for CommandResponse {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).unwrap_or_default();
        respond(
            self.status,
            self.location.as_deref(),
            body,
            Some(self.body.version),
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let e = field_error(
            ".",
            "unknown field `clinic_id`, expected one of `name`, `email` at line 1 column 12",
        );
        assert_eq!(e.field, "clinic_id");
        let e = field_error("address", "missing field `city` at line 1 column 40");
        assert_eq!(e.field, "address.city");
        let e = field_error("email", "invalid e-mail address");
        assert_eq!(e.field, "email");
    }

    #[test]
    fn if_match_accepts_quoted_weak_and_bare_versions() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), Expect::Version(3));
        assert_eq!(parse_if_match("W/\"4\"").unwrap(), Expect::Version(4));
        assert_eq!(parse_if_match("5").unwrap(), Expect::Version(5));
        assert_eq!(parse_if_match("*").unwrap(), Expect::Any);
        assert!(parse_if_match("\"abc\"").is_err());
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
    }
}
