//! Extractors whose rejections are [`ApiError`]s, so a bad request gets our problem+json shape
//! and not axum's text/plain: [`AppJson`], [`AppQuery`] and [`AppPath`]. Handlers use these,
//! never `axum::Json`, `Query` or `Path` directly.
//!
//! | what went wrong                                  | status | code                      |
//! |--------------------------------------------------|--------|---------------------------|
//! | `Content-Type` missing or not JSON               | 415    | `unsupported_media_type`  |
//! | body over the route's limit                      | 413    | `payload_too_large`       |
//! | body is not JSON (syntax, empty, trailing bytes) | 400    | `malformed_json`          |
//! | JSON of the wrong shape: type, unknown or missing field | 422 | `validation_failed`, with `errors[0].field` the path of the value (`layers[1]`, `optimizer.kind`) |
//! | query string of the wrong shape                  | 422    | `validation_failed`, `field` = the parameter |
//! | path parameter that cannot name anything         | 404    | `not_found`               |

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::RequestExt;
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub mod media_type;
pub mod query;
pub mod weights;

use super::error::{ApiError, FieldError};
use super::middleware::body_limit::BodyLimit;
use media_type::{is_json_media_type, media_type};

/// A JSON body in, or a JSON body out.
///
/// As an extractor it requires `Content-Type: application/json` (or `application/*+json`)
/// and maps every failure to an [`ApiError`]; as a response it is `200 application/json`.
#[derive(Clone, Copy, Debug, Default)]
#[must_use]
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        require_json(request.headers())?;
        let bytes = read_body(request).await?;
        from_json_slice(&bytes).map(AppJson)
    }
}

/// 415 unless the `Content-Type` is `application/json` or `application/*+json`.
///
/// # Errors
/// [`ApiError::UnsupportedMediaType`] naming what was given.
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if media_type(headers).is_some_and(|m| is_json_media_type(&m)) {
        return Ok(());
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Err(ApiError::UnsupportedMediaType {
        expected: "application/json",
        given,
    })
}

/// Reads the whole body within the route group's limit, with the errors [`AppJson`] gives:
/// 413 naming the limit, 400 for a body that cannot be read.
///
/// # Errors
/// [`ApiError::PayloadTooLarge`] or [`ApiError::BadRequest`].
pub async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let declared = super::middleware::body_limit::content_length(request.headers());
    let mut body = BodyPieces::new(request);
    let Some(first) = body.next().await? else {
        return Ok(Bytes::new());
    };
    let Some(second) = body.next().await? else {
        return Ok(first);
    };
    // Copied into one buffer as they arrive, sized from `Content-Length` (within the route's
    // limit): keeping the pieces until the end and then copying them would hold the body
    // twice (a 64 MiB upload, 128 MiB).
    let limit = body.body_limit().map_or(u64::MAX, |l| l.max.0);
    let expected = declared.map_or(0, |d| d.min(limit));
    let capacity = usize::try_from(expected)
        .unwrap_or(0)
        .max(first.len() + second.len());
    let mut all = BytesMut::with_capacity(capacity);
    all.extend_from_slice(&first);
    all.extend_from_slice(&second);
    drop((first, second));
    while let Some(piece) = body.next().await? {
        all.extend_from_slice(&piece);
    }
    Ok(all.freeze())
}

/// [`read_body`], handing each piece to `on_piece` as it arrives (to parse a body while it is
/// read) instead of keeping it: a piece shares the read buffer hyper cut it from, which
/// cannot be reused while the piece lives.
///
/// # Errors
/// As [`read_body`]: 413 when the body outgrows the route group's limit, 400 when it cannot
/// be read, with axum's own wording.
pub async fn read_body_with(
    request: Request,
    mut on_piece: impl FnMut(Bytes),
) -> Result<(), ApiError> {
    let mut body = BodyPieces::new(request);
    while let Some(piece) = body.next().await? {
        on_piece(piece);
    }
    Ok(())
}

/// A request body read a piece at a time, within the route group's limit, for a reader that
/// may stop early (dropping it reads no more) or await between pieces.
pub struct BodyPieces {
    body: axum::body::Body,
    body_limit: Option<BodyLimit>,
}

impl BodyPieces {
    /// The body of `request`, unread.
    #[must_use]
    pub fn new(request: Request) -> Self {
        let body_limit = request.extensions().get::<BodyLimit>().copied();
        Self {
            body: request.into_limited_body(),
            body_limit,
        }
    }

    /// The route group's limit, if the route has one.
    #[must_use]
    pub fn body_limit(&self) -> Option<BodyLimit> {
        self.body_limit
    }

    /// The next piece that is not empty, as hyper cut it from its read buffer; `None` at the
    /// end of the body.
    ///
    /// # Errors
    /// As [`read_body`]: 413 when the body outgrows the route group's limit, 400 when it
    /// cannot be read, with axum's own wording.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ApiError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|error| unreadable(error, self.body_limit))?;
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
        Ok(None)
    }
}

/// The error for a body that could not be read, as axum's `Bytes` extractor tells them
/// apart: the limit's `LengthLimitError` (inside one or two `axum::Error`s) is a 413, anything
/// else a 400 with axum's text.
fn unreadable(error: axum::Error, body_limit: Option<BodyLimit>) -> ApiError {
    let mut error: axum::BoxError = error.into_inner();
    for _ in 0..2 {
        error = match error.downcast::<axum::Error>() {
            Ok(inner) => inner.into_inner(),
            Err(other) => other,
        };
    }
    if error.is::<http_body_util::LengthLimitError>() {
        ApiError::PayloadTooLarge {
            limit: body_limit.map(|b| (b.limit, b.max)),
        }
    } else {
        ApiError::BadRequest {
            code: "unreadable_body",
            detail: format!("Failed to buffer the request body: {error}"),
        }
    }
}

/// Converts an already parsed JSON value into `T`, with [`from_json_slice`]'s 422 naming the
/// path of the offending value (for bodies taken apart before parsing, as a training request),
/// and its reading of `2.0` as an integer where one is expected.
///
/// # Errors
/// [`ApiError::Validation`].
pub fn from_json_value<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(&value).or_else(|error| {
        if whole_floats_as_integers(&mut value) {
            if let Ok(parsed) = serde_json::from_value(value) {
                return Ok(parsed);
            }
        }
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        Err(ApiError::Validation {
            errors: vec![FieldError::new(field_path(&path, &message), message)],
        })
    })
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        // serde_json's `to_vec` starts at 128 bytes and grows by reallocating; a one-row
        // prediction's answer (about 300 bytes) fits in this at once.
        let mut body = Vec::with_capacity(512);
        match serde_json::to_writer(&mut body, &self.0) {
            Ok(()) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(error) => ApiError::internal(error).into_response(),
        }
    }
}

/// Parses a JSON document into `T`, with the errors [`AppJson`] gives: 400 for bad syntax,
/// 422 naming the path of the offending value for the wrong shape — including a number out of
/// range for its field's type (`1e400`, or `1e50` where a 32-bit float is expected), which is
/// a value the field cannot hold, not a syntax error.
///
/// An integer field accepts a number written with a zero fraction (`2.0`): JSON Schema, which
/// `openapi.yaml` speaks, counts it as the integer 2. The typed parse runs first; only a
/// document it rejects is read again with such numbers as integers (error path only).
///
/// # Errors
/// [`ApiError::MalformedJson`] or [`ApiError::Validation`].
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson {
            detail: "the body is empty; expected a JSON document".to_owned(),
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer
                .end()
                .map_err(|error| ApiError::MalformedJson {
                    detail: error.to_string(),
                })?;
            return Ok(value);
        }
        Err(error) => error,
    };
    // A document that is malformed further on is malformed, whatever its first mismatch:
    // check the syntax alone before blaming a field. Skipping a value does not convert it, so
    // a number out of range for its field passes here and is blamed on the field below.
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::MalformedJson {
            detail: syntax.to_string(),
        });
    }
    // Skipping a string checks neither its UTF-8 nor its escapes (`"\ud800"`), so the typed
    // parse can be the first to find such a syntax error: it is malformed JSON, not a field's.
    if error.inner().is_syntax() && !error.inner().to_string().starts_with("number out of range") {
        return Err(ApiError::MalformedJson {
            detail: error.into_inner().to_string(),
        });
    }
    // A second try with whole floats as integers (`"epochs": 10.0`), through a `Value`. A
    // `Value` keeps only the last of a repeated key, which the typed parse refuses: a document
    // that repeats one is not retried, or whether it is accepted would depend on its numbers.
    if let Ok(mut value) = serde_json::from_slice::<Value>(bytes) {
        if whole_floats_as_integers(&mut value) && !repeats_a_key(bytes) {
            if let Ok(parsed) = serde_json::from_value(value) {
                return Ok(parsed);
            }
        }
    }
    let path = error.path().to_string();
    let message = data_message(&error.into_inner());
    Err(ApiError::Validation {
        errors: vec![FieldError::new(field_path(&path, &message), message)],
    })
}

/// Whether some object of the JSON document `bytes` has a key twice (or the document does not
/// parse).
fn repeats_a_key(bytes: &[u8]) -> bool {
    use serde::de::{Deserializer, Error, MapAccess, SeqAccess, Visitor};
    use std::collections::HashSet;
    use std::fmt;

    /// Any JSON value; deserializing it fails on a repeated key.
    struct Distinct;
    impl<'de> serde::Deserialize<'de> for Distinct {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Distinct)
        }
    }
    impl<'de> Visitor<'de> for Distinct {
        type Value = Distinct;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_unit<E>(self) -> Result<Self, E> {
            Ok(Distinct)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
            while seq.next_element::<Distinct>()?.is_some() {}
            Ok(Distinct)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
            let mut keys = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !keys.insert(key) {
                    return Err(A::Error::custom("a repeated key"));
                }
                map.next_value::<Distinct>()?;
            }
            Ok(Distinct)
        }
    }
    serde_json::from_slice::<Distinct>(bytes).is_err()
}

/// Replaces every number with a zero fraction (`2.0`, `-3e2`) by the same integer, where a
/// 64-bit float spells it exactly; whether anything was replaced. Negative zero stays: as an
/// integer it would lose its sign, and a float field (a prediction's inputs) would read +0.
pub fn whole_floats_as_integers(value: &mut Value) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f)
                if f.fract() == 0.0 && f.abs() <= EXACT && !(f == 0.0 && f.is_sign_negative()) =>
            {
                // In range and whole, so the casts are exact.
                *value = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
                true
            }
            _ => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| whole_floats_as_integers(v) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| whole_floats_as_integers(v) | any),
        _ => false,
    }
}

/// The message of a data error, without serde_json's position (the field path says more);
/// serde_json files a number out of range among syntax errors and says nothing of the field's
/// type, so that one is said in full.
fn data_message(error: &serde_json::Error) -> String {
    let message = without_position(error);
    if message.starts_with("number out of range") {
        "number out of range for this field's type".to_owned()
    } else {
        message
    }
}

/// serde_json appends " at line L column C"; for a data error the field path says more.
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&suffix)
        .map_or(message.clone(), str::to_owned)
}

/// The path of the offending value. serde_path_to_error stops at the struct that misses a
/// field, so a missing field is appended from serde's message ("missing field `kind`"); the
/// root, which serde_path_to_error writes as `.`, is the empty path.
fn field_path(path: &str, message: &str) -> String {
    let base = if path == "." { "" } else { path };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match missing {
        Some(name) if base.is_empty() => name.to_owned(),
        Some(name) => format!("{base}.{name}"),
        None => base.to_owned(),
    }
}

/// A query string, deserialized into `T`; a failure is 422 naming the parameter.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(AppQuery)
            .map_err(|error| {
                let message = error.inner().to_string();
                let field = field_path(&error.path().to_string(), &message);
                ApiError::Validation {
                    errors: vec![FieldError::new(
                        field,
                        format!("invalid query parameter: {message}"),
                    )],
                }
            })
    }
}

/// Path parameters, deserialized into `T`. A parameter that does not parse (a job id that is
/// no UUID) names nothing that exists, so it is 404, as an unknown id would be; a mismatch
/// between the route and `T` is a bug, so 500.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;

        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => {
                let detail = match error.kind() {
                    ErrorKind::ParseErrorAtKey {
                        key,
                        value,
                        expected_type,
                    } => format!("path parameter `{key}` must be {expected_type}, got '{value}'"),
                    ErrorKind::ParseErrorAtIndex {
                        value,
                        expected_type,
                        ..
                    }
                    | ErrorKind::ParseError {
                        value,
                        expected_type,
                    } => format!("path parameter must be {expected_type}, got '{value}'"),
                    ErrorKind::DeserializeError {
                        key,
                        value,
                        message,
                    } => format!("path parameter `{key}` = '{value}' is invalid: {message}"),
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        format!("path parameter `{key}` is not valid UTF-8")
                    }
                    ErrorKind::Message(message) => format!("invalid path parameter: {message}"),
                    _ => return Err(ApiError::internal(error.body_text())),
                };
                Err(ApiError::InvalidPath { detail })
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Spec {
        name: String,
        layers: Vec<usize>,
        optimizer: Optimizer,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Optimizer {
        kind: String,
        learning_rate: f64,
    }

    fn field_error(json: &str) -> FieldError {
        match from_json_slice::<Spec>(json.as_bytes()) {
            Err(ApiError::Validation { mut errors }) => errors.remove(0),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_path() {
        let e = field_error(
            r#"{"name":"x","layers":[2,"four",1],"optimizer":{"kind":"sgd","learning_rate":0.1}}"#,
        );
        assert_eq!(e.field, "layers[1]");
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert!(!e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn whole_floats_are_integers_but_a_repeated_key_is_refused_whatever_the_numbers() {
        let spec = r#"{"name":"x","layers":[2.0,1],"optimizer":{"kind":"sgd","learning_rate":1}}"#;
        let parsed = from_json_slice::<Spec>(spec.as_bytes()).expect("2.0 is the integer 2");
        assert_eq!(parsed.layers, [2, 1]);
        // The second try through a `Value` keeps the last of a repeated key; a whole float
        // (`2.0`, `-0`) must not let the repetition through. The error names the first
        // problem of the document.
        for (layers, first) in [
            ("[2,1]", "duplicate field `name`"),
            ("[2.0,1]", "floating point `2.0`"),
            ("[-0,1]", "floating point `-0.0`"),
        ] {
            let body = format!(
                r#"{{"name":"x","layers":{layers},"name":"y","optimizer":{{"kind":"sgd","learning_rate":1}}}}"#
            );
            let e = field_error(&body);
            assert!(e.message.contains(first), "{layers}: {}", e.message);
        }
    }

    #[test]
    fn a_missing_field_is_named_by_its_path() {
        let e = field_error(r#"{"name":"x","layers":[2,1],"optimizer":{"learning_rate":0.1}}"#);
        assert_eq!(e.field, "optimizer.kind");
        let e = field_error(r#"{"layers":[2,1],"optimizer":{"kind":"sgd","learning_rate":0.1}}"#);
        assert_eq!(e.field, "name");
    }

    #[test]
    fn an_unknown_field_is_named_by_its_path() {
        let e = field_error(
            r#"{"name":"x","layers":[2,1],"optimizer":{"kind":"sgd","learning_rate":0.1,"momentum":0.9}}"#,
        );
        assert_eq!(e.field, "optimizer.momentum");
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn syntax_errors_are_malformed_json_with_a_position() {
        for body in [
            r#"{"name": "x""#,
            "{,}",
            "",
            "{} trailing",
            r#"{"layers": "not a list", }"#,
        ] {
            match from_json_slice::<Spec>(body.as_bytes()) {
                Err(ApiError::MalformedJson { detail }) => {
                    assert!(
                        body.is_empty() || detail.contains("line 1"),
                        "{body:?}: {detail}"
                    );
                }
                other => panic!("{body:?}: expected malformed JSON, got {other:?}"),
            }
        }
    }
}
