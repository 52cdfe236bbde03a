//! Bearer tokens (RFC 6750) with two scopes, decided by the request path alone so that routes
//! added later fall under the right scope without being listed here:
//!
//! | scope      | paths                                                         | opened by            |
//! |------------|---------------------------------------------------------------|----------------------|
//! | public     | `/healthz`, `/readyz`, `/v2/health/{live,ready}`, `/openapi.yaml`, `/metrics`, `/`, `/dashboard/*` | anyone |
//! | inference  | `/v1/models/{m}/predict`, `/v2` and the rest of `/v2/`        | inference or management token |
//! | management | every other path (all of `/v1`, and unknown paths)            | management token     |
//!
//! A scope whose token is not configured is open. `/metrics` is public because it holds only
//! counts by route template and state (no ids, names or data), and a scraper should not need
//! the token that can delete models. The dashboard (`/` and its files under `/dashboard/`) is
//! public too: it is static files with no data, and its calls to the API carry the token the
//! user gives it.
//!
//! Tokens are kept only as SHA-256 digests and a presented token is hashed and compared with
//! both in constant time, so neither its content nor its length shows in the timing. Only the
//! `Authorization` header is read: a token in the query string is ignored (and so is 401), as
//! it would end up in proxies' access logs. The scheme is case-insensitive (RFC 7235), the
//! token is not. Errors under `/v2` use the Open Inference Protocol's `{"error": …}`; all
//! others are problem+json.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::gate::{Gate, Reply};
use crate::config::{AccessError, Config, Token};
use crate::http::error::ApiError;

/// The realm of every challenge.
const REALM: &str = "mlp-lab";

const NO_TOKEN: &str = "this route needs a bearer token in the Authorization header \
    (`Authorization: Bearer <token>`); a token in the query string is not read";
const OTHER_SCHEME: &str =
    "only the Bearer scheme is accepted: send `Authorization: Bearer <token>`";
const MALFORMED: &str = "the Authorization header is not `Bearer <token>`";
const WRONG_TOKEN: &str = "the bearer token is not valid for this route";
const WRONG_SCOPE: &str =
    "the inference token opens only predictions; this route needs the management token";

/// Who may call a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Anyone: health, the API description, metrics, the dashboard's static files.
    Public,
    /// The inference or the management token.
    Inference,
    /// The management token.
    Management,
}

/// The scope of `path` (the raw request path, as the router sees it).
#[must_use]
pub fn scope_of(path: &str) -> Scope {
    match path {
        // The protocol's liveness and readiness are probes, public like /healthz and /readyz.
        "/" | "/healthz" | "/readyz" | "/openapi.yaml" | "/metrics" | "/v2/health/live"
        | "/v2/health/ready" => return Scope::Public,
        "/v2" => return Scope::Inference,
        _ => {}
    }
    if path.starts_with("/v2/") {
        return Scope::Inference;
    }
    if path.starts_with("/dashboard/") {
        return Scope::Public;
    }
    // Everything else, experiments included (they create models and jobs), is management.
    let mut segments = path.split('/');
    let segments: [Option<&str>; 6] = std::array::from_fn(|_| segments.next());
    match segments {
        [Some(""), Some("v1"), Some("models"), Some(model), Some("predict"), None]
            if !model.is_empty() =>
        {
            Scope::Inference
        }
        _ => Scope::Management,
    }
}

type Sha = [u8; 32];

fn sha(token: &[u8]) -> Sha {
    Sha256::digest(token).into()
}

/// The configured tokens, as digests. Cloning is cheap enough to keep it in an `Arc`.
#[derive(Clone, Default)]
pub struct Auth {
    management: Option<Sha>,
    inference: Option<Sha>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("management", &self.management.is_some())
            .field("inference", &self.inference.is_some())
            .finish()
    }
}

/// What a token opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Grant {
    Management,
    Inference,
    Nothing,
}

impl Auth {
    /// Every route open.
    #[must_use]
    pub fn open() -> Self {
        Self::default()
    }

    /// The tokens of `config` (reading token files).
    ///
    /// # Errors
    /// [`AccessError`] as [`crate::config::Access::tokens`].
    pub fn from_config(config: &Config) -> Result<Self, AccessError> {
        let (management, inference) = config.access.tokens()?;
        Ok(Self::new(management.as_ref(), inference.as_ref()))
    }

    /// Auth with these tokens.
    #[must_use]
    pub fn new(management: Option<&Token>, inference: Option<&Token>) -> Self {
        Self {
            management: management.map(|t| sha(t.expose().as_bytes())),
            inference: inference.map(|t| sha(t.expose().as_bytes())),
        }
    }

    /// What `token` opens. Both digests are always compared, in constant time.
    fn grant(&self, token: &str) -> Grant {
        let presented = sha(token.as_bytes());
        let matches = |digest: &Option<Sha>| match digest {
            Some(d) => presented.ct_eq(d),
            None => 0u8.ct_eq(&1u8),
        };
        let management = bool::from(matches(&self.management));
        let inference = bool::from(matches(&self.inference));
        if management {
            Grant::Management
        } else if inference {
            Grant::Inference
        } else {
            Grant::Nothing
        }
    }

    /// Whether `scope` needs a token at all.
    fn guards(&self, scope: Scope) -> bool {
        match scope {
            Scope::Public => false,
            Scope::Inference => self.inference.is_some(),
            Scope::Management => self.management.is_some(),
        }
    }

    /// The decision for a request to a path of `scope` with this `Authorization`.
    fn check(&self, scope: Scope, authorization: Presented<'_>) -> Result<(), ApiError> {
        if !self.guards(scope) {
            return Ok(());
        }
        let token = match authorization {
            Presented::Nothing => return Err(unauthorized(None, NO_TOKEN)),
            Presented::OtherScheme => return Err(unauthorized(None, OTHER_SCHEME)),
            Presented::Malformed => return Err(unauthorized(Some("invalid_token"), MALFORMED)),
            Presented::Bearer(token) => token,
        };
        match (scope, self.grant(token)) {
            (_, Grant::Management) | (Scope::Inference, Grant::Inference) => Ok(()),
            (Scope::Management, Grant::Inference) => Err(ApiError::Forbidden {
                detail: WRONG_SCOPE.to_owned(),
                challenge: format!(
                    r#"Bearer realm="{REALM}", error="insufficient_scope", scope="management""#
                ),
            }),
            _ => Err(unauthorized(Some("invalid_token"), WRONG_TOKEN)),
        }
    }

    /// Warnings for the start-up log: a scope left open where it may not be meant to be.
    #[must_use]
    pub fn warnings(&self, addr: SocketAddr) -> Vec<String> {
        let mut warnings = Vec::new();
        match (self.management.is_some(), self.inference.is_some()) {
            (false, false) if !addr.ip().is_loopback() => warnings.push(format!(
                "listening on {addr}, beyond this machine, without tokens: anyone who reaches it can \
                 manage and delete models; set --management-token (and --inference-token)"
            )),
            (false, true) => warnings.push(
                "only an inference token is set: the management routes (datasets, models, jobs) are \
                 open to anyone; set --management-token"
                    .to_owned(),
            ),
            _ => {}
        }
        warnings
    }
}

fn unauthorized(error: Option<&str>, detail: &str) -> ApiError {
    let challenge = match error {
        Some(error) => format!(r#"Bearer realm="{REALM}", error="{error}""#),
        None => format!(r#"Bearer realm="{REALM}""#),
    };
    ApiError::Unauthorized {
        detail: detail.to_owned(),
        challenge,
    }
}

/// What the request's `Authorization` header holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presented<'a> {
    Nothing,
    OtherScheme,
    Malformed,
    Bearer(&'a str),
}

fn presented(headers: &axum::http::HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None at all, or several: which one would count is anyone's guess.
        return if headers.contains_key(header::AUTHORIZATION) {
            Presented::Malformed
        } else {
            Presented::Nothing
        };
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::OtherScheme;
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Presented::Malformed;
    }
    Presented::Bearer(token)
}

/// Middleware: answers 401 or 403 for a request whose token does not open its path.
#[derive(Clone, Debug)]
pub(crate) struct RequireToken(pub Arc<Auth>);

impl Gate for RequireToken {
    type Kept = ();

    fn before(&self, request: Request) -> Result<((), Request), Reply> {
        let path = request.uri().path();
        let scope = scope_of(path);
        match self.0.check(scope, presented(request.headers())) {
            Ok(()) => Ok(((), request)),
            Err(error) if path == "/v2" || path.starts_with("/v2/") => {
                Err(Reply::Now(oip_error(error)))
            }
            Err(error) => Err(Reply::Now(error.into_response())),
        }
    }
}

/// `error` in the Open Inference Protocol's shape, `{"error": "…"}`, with the same status and
/// headers as its problem+json form.
fn oip_error(error: ApiError) -> Response {
    let detail = error.to_problem().detail;
    let (mut parts, _) = error.into_response().into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::json!({ "error": detail }).to_string();
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn token(s: &str) -> Token {
        Token::parse(s).expect("a valid token")
    }

    fn headers(authorization: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in authorization {
            headers.append(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers
    }

    #[test]
    fn paths_fall_into_scopes() {
        for (path, scope) in [
            ("/healthz", Scope::Public),
            ("/readyz", Scope::Public),
            ("/openapi.yaml", Scope::Public),
            ("/metrics", Scope::Public),
            ("/", Scope::Public),
            ("/dashboard/app.js", Scope::Public),
            ("/dashboard/nope", Scope::Public),
            ("/dashboard", Scope::Management),
            ("/v1/models/xor/predict", Scope::Inference),
            ("/v2", Scope::Inference),
            ("/v2/models/xor/versions/1/infer", Scope::Inference),
            ("/v2/health/live", Scope::Public),
            ("/v2/health/ready", Scope::Public),
            ("/v2/health/liveness", Scope::Inference),
            ("/v1/models/xor", Scope::Management),
            ("/v1/models//predict", Scope::Management),
            ("/v1/models/xor/predict/", Scope::Management),
            ("/v1/models/a/b/predict", Scope::Management),
            ("/v1/jobs", Scope::Management),
            ("/v1/experiments", Scope::Management),
            (
                "/v1/experiments/0190b5a2-7c4e-7000-8000-000000000000/cancel",
                Scope::Management,
            ),
            // Plots show training data: management, like the data itself.
            (
                "/v1/jobs/0190f5a0-0000-7000-8000-000000000000/plot.svg",
                Scope::Management,
            ),
            ("/v1/models/xor/versions/1/plot.svg", Scope::Management),
            ("/v2x", Scope::Management),
            ("/healthz/", Scope::Management),
            ("/nope", Scope::Management),
        ] {
            assert_eq!(scope_of(path), scope, "{path}");
        }
    }

    #[test]
    fn the_authorization_header_is_read_strictly() {
        assert_eq!(presented(&headers(&[])), Presented::Nothing);
        assert_eq!(
            presented(&headers(&["Bearer abc"])),
            Presented::Bearer("abc")
        );
        assert_eq!(
            presented(&headers(&["bEaReR abc"])),
            Presented::Bearer("abc")
        );
        assert_eq!(
            presented(&headers(&["Bearer   abc"])),
            Presented::Bearer("abc")
        );
        assert_eq!(presented(&headers(&["Basic YTpi"])), Presented::OtherScheme);
        assert_eq!(presented(&headers(&["Bearer"])), Presented::Malformed);
        assert_eq!(presented(&headers(&["Bearer a b"])), Presented::Malformed);
        assert_eq!(
            presented(&headers(&["Bearer abc", "Bearer abc"])),
            Presented::Malformed
        );
    }

    #[test]
    fn each_token_opens_its_scope_and_management_opens_both() {
        let auth = Auth::new(Some(&token("m-token")), Some(&token("i-token")));
        let ok = |scope, t| auth.check(scope, Presented::Bearer(t)).is_ok();
        assert!(ok(Scope::Management, "m-token"));
        assert!(ok(Scope::Inference, "m-token"));
        assert!(ok(Scope::Inference, "i-token"));
        assert!(matches!(
            auth.check(Scope::Management, Presented::Bearer("i-token")),
            Err(ApiError::Forbidden { .. })
        ));
        for wrong in ["M-TOKEN", "m-token2", "m-toke", ""] {
            assert!(matches!(
                auth.check(Scope::Inference, Presented::Bearer(wrong)),
                Err(ApiError::Unauthorized { .. })
            ));
        }
        assert!(auth.check(Scope::Public, Presented::Nothing).is_ok());
    }

    #[test]
    fn a_scope_without_its_token_is_open() {
        let auth = Auth::new(Some(&token("m-token")), None);
        assert!(auth.check(Scope::Inference, Presented::Nothing).is_ok());
        assert!(auth.check(Scope::Management, Presented::Nothing).is_err());
        let open = Auth::open();
        assert!(open.check(Scope::Management, Presented::Nothing).is_ok());
    }

    #[test]
    fn open_access_beyond_loopback_is_warned_about() {
        let public: SocketAddr = "0.0.0.0:8080".parse().expect("an address");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("an address");
        assert_eq!(Auth::open().warnings(public).len(), 1);
        assert!(Auth::open().warnings(local).is_empty());
        let guarded = Auth::new(Some(&token("m")), None);
        assert!(guarded.warnings(public).is_empty());
        let half = Auth::new(None, Some(&token("i")));
        assert_eq!(half.warnings(local).len(), 1);
    }
}
