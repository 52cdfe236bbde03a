//! `GET /v1/jobs/{id}/metrics`: a job's epoch history, a page at a time, streamed.
//!
//! A page holds the records from epoch `since` (default 0) on, at most `limit` of them
//! (default [`DEFAULT_LIMIT`], at most `--max-page-size`), as the history was when the request
//! came. The body is `{"job", "state", "epochs": […], "next"}`, the shape the whole history
//! had before pages with `next` added: the path of the following page, also sent as
//! `Link: <…>; rel="next"`, and absent on the last page (of a running job, the last so far:
//! more comes from `since` = its last epoch + 1).
//!
//! The body is written as the client reads it, [`CHUNK`] records at a time, each copied out
//! of the history only once the one before has gone to the socket: a client that stops
//! reading holds a chunk, whatever the page size (a 100,000-epoch history is ~70 MB of JSON).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::query::whole_number;
use super::extract::{AppPath, AppQuery};
use super::state::AppState;
use super::views::page_limit;
use crate::jobs::HistoryPage;

/// Epochs a page has when the request does not say.
pub const DEFAULT_LIMIT: usize = 1000;

/// Epoch records serialized at once while a page is sent.
const CHUNK: usize = 64;

/// `?since=&limit=` of the metric history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// The first epoch of the page (inclusive; default 0).
    #[serde(default, deserialize_with = "whole_number")]
    pub since: Option<usize>,
    /// Epochs a page has at most (default [`DEFAULT_LIMIT`], at most `--max-page-size`).
    #[serde(default, deserialize_with = "whole_number")]
    pub limit: Option<usize>,
}

/// `GET /v1/jobs/{id}/metrics`
pub(crate) async fn metrics(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    AppQuery(q): AppQuery<MetricsQuery>,
) -> Result<Response, ApiError> {
    let limit = page_limit(q.limit, DEFAULT_LIMIT, &state.config.limits)?;
    let page = state.jobs.history_page(id, q.since.unwrap_or(0), limit)?;
    let next = page
        .next_since
        .map(|since| format!("/v1/jobs/{id}/metrics?since={since}&limit={limit}"));
    let link = next
        .as_deref()
        .and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok());
    let body = Body::from_stream(chunks(id, page, next.as_deref()));
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// What is left to send of a page's body.
struct Chunks {
    page: HistoryPage,
    head: Option<Bytes>,
    tail: Option<Bytes>,
    /// No record sent yet (the next needs no comma before it).
    first: bool,
}

/// The body of `page` of job `id`, a chunk at a time.
fn chunks(
    id: Uuid,
    page: HistoryPage,
    next: Option<&str>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let head = format!(
        r#"{{"job":"{id}","state":"{}","epochs":["#,
        page.state.name()
    );
    let tail = match next.map(serde_json::to_string) {
        Some(Ok(next)) => format!(r#"],"next":{next}}}"#),
        _ => "]}".to_owned(),
    };
    let chunks = Chunks {
        page,
        head: Some(head.into()),
        tail: Some(tail.into()),
        first: true,
    };
    stream::unfold(chunks, |mut c| async move {
        if let Some(head) = c.head.take() {
            return Some((Ok(head), c));
        }
        let records = c.page.take(CHUNK);
        if records.is_empty() {
            return c.tail.take().map(|tail| (Ok(tail), c));
        }
        let mut out = Vec::with_capacity(records.len() * 512);
        for record in &records {
            if !c.first {
                out.push(b',');
            }
            c.first = false;
            // An epoch record is numbers and strings: it always serializes (NaN as null).
            let _ = serde_json::to_writer(&mut out, record);
        }
        Some((Ok(out.into()), c))
    })
}
