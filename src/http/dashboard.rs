//! `GET /` and `GET /dashboard/{file}`: the browser dashboard, a page and its scripts and
//! style compiled into the binary (`include_str!`), so it works offline and always matches
//! the API of this build.
//!
//! The files hold no data: the page calls the API with `fetch`, sending the bearer token the
//! user pastes into it, so these routes are public like `/healthz` (see [`super::auth`]).
//! Every answer carries a strong `ETag` (a digest of the file) and `Cache-Control: no-cache`:
//! a browser revalidates each time and gets a bodiless 304 while the binary is the same,
//! and the new files at once after an upgrade. The page's `Content-Security-Policy` allows
//! nothing but this origin (images also from `blob:`, where the page puts the plots it
//! fetched with the token).

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::extract::AppPath;

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file, served as `/dashboard/{name}`; the first is also `/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: HTML,
        body: include_str!("dashboard/index.html"),
    },
    Asset {
        name: "style.css",
        content_type: CSS,
        body: include_str!("dashboard/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: JS,
        body: include_str!("dashboard/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: JS,
        body: include_str!("dashboard/api.js"),
    },
    Asset {
        name: "charts.js",
        content_type: JS,
        body: include_str!("dashboard/charts.js"),
    },
    Asset {
        name: "job.js",
        content_type: JS,
        body: include_str!("dashboard/job.js"),
    },
    Asset {
        name: "experiment.js",
        content_type: JS,
        body: include_str!("dashboard/experiment.js"),
    },
];

/// The names of the dashboard's files, as `/dashboard/{file}` takes them.
#[must_use]
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

/// What the page may load and call: this origin only; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The strong `ETag` of each asset, in the order of [`ASSETS`].
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|asset| {
                let digest = Sha256::digest(asset.body.as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a header value")
            })
            .collect()
    })
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak tags compare by their value, as
/// RFC 9110 §13.1.2 asks for GET.
fn matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

fn serve(index: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[index];
    let etag = etags()[index].clone();
    let mut response = if matches(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type == HTML {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// `GET /`
pub(crate) async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /dashboard/{file}`
pub(crate) async fn asset(
    AppPath(file): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let index = ASSETS
        .iter()
        .position(|a| a.name == file)
        .ok_or_else(|| ApiError::not_found("dashboard file", file))?;
    Ok(serve(index, &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_none_match(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn if_none_match_compares_tags_weakly_and_takes_a_list_or_a_star() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(matches(&if_none_match("\"abc\""), &etag));
        assert!(matches(&if_none_match("W/\"abc\""), &etag));
        assert!(matches(&if_none_match("\"x\", \"abc\""), &etag));
        assert!(matches(&if_none_match("*"), &etag));
        assert!(!matches(&if_none_match("\"abcd\""), &etag));
        assert!(!matches(&if_none_match("abc"), &etag));
        assert!(!matches(&HeaderMap::new(), &etag));
    }

    #[test]
    fn every_asset_has_its_own_tag_and_a_known_type() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        for (i, asset) in ASSETS.iter().enumerate() {
            assert!(
                [HTML, JS, CSS].contains(&asset.content_type),
                "{}",
                asset.name
            );
            assert!(!asset.body.is_empty(), "{}", asset.name);
            for j in 0..i {
                assert_ne!(tags[i], tags[j], "{} and {}", asset.name, ASSETS[j].name);
            }
        }
    }
}
