//! `GET /v1/jobs/{id}/events`: a job's history and progress as Server-Sent Events.
//!
//! The stream sends every epoch record so far (`event: epoch`, `id:` the epoch), or with
//! `Last-Event-ID: E` those after epoch E, then one `epoch` event per new epoch and one
//! `status` event (the job record) per state change, and once the job is finished a final
//! `end` event with the job record, after which it closes.
//!
//! What a subscriber costs the server is bounded, whatever it does:
//!
//! - The stored history is read a page at a time ([`PAGE_EVENTS`] events, and about
//!   [`PAGE_BYTES`] at most), and the next page only once hyper has taken the last for the
//!   socket: one that stops reading holds a page, not the history.
//! - Live events come from the job's ring of [`EVENT_BUFFER`] events, shared by all its
//!   subscribers. One that falls further behind gets `event: lagged` (with the
//!   `last_event_id` to resume from) and the stream closes: it reconnects with that
//!   `Last-Event-ID`, as an `EventSource` does by itself, and reads on from the stored
//!   history, missing nothing. Closing rather than skipping ahead is what Kubernetes does to a
//!   watch and Redis to a pub/sub client that cannot keep up ([`crate::jobs::Subscriber`]).
//! - Subscribers are capped per job and in all (`--max-event-subscribers-per-job`,
//!   `--max-event-subscribers`); one more is a 429 `too_many_subscribers`.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::AppPath;
use super::state::AppState;
use crate::jobs::{JobRecord, Subscriber, Update, EVENT_BUFFER};
use crate::nn::EpochRecord;

/// Most events of the stored history read at once.
const PAGE_EVENTS: usize = 32;
/// About the most bytes of events of the stored history read at once (at least one event).
const PAGE_BYTES: usize = 32 << 10;

/// What `event: lagged` says.
#[derive(Debug, Serialize)]
struct Lagged {
    /// Live events that were gone before the subscriber read them.
    missed: u64,
    /// The id of the last epoch event sent: `Last-Event-ID` for the reconnection.
    last_event_id: Option<String>,
    /// The same, for people.
    detail: String,
}

struct Feed {
    subscriber: Subscriber,
    pending: VecDeque<Event>,
    /// The largest epoch event so far, in bytes: how many make a page.
    largest: usize,
    /// The last epoch sent, or the client's `Last-Event-ID`: no epoch up to it is sent.
    last_epoch: Option<usize>,
    done: bool,
}

impl Feed {
    fn new(subscriber: Subscriber, after: Option<usize>) -> Self {
        Self {
            subscriber,
            pending: VecDeque::new(),
            // Until an event is measured, pages of a few.
            largest: PAGE_BYTES / 4,
            last_epoch: after,
            done: false,
        }
    }

    fn page(&self) -> usize {
        (PAGE_BYTES / self.largest.max(1)).clamp(1, PAGE_EVENTS)
    }

    fn push(&mut self, name: &str, data: &impl Serialize) {
        self.pending
            .extend(Event::default().event(name).json_data(data).ok());
    }

    fn epoch(&mut self, record: &EpochRecord) {
        if self.last_epoch.is_some_and(|last| record.epoch <= last) {
            return; // a `Last-Event-ID` ahead of the job
        }
        // Serialized here rather than by `json_data`, to measure it.
        if let Ok(json) = serde_json::to_string(record) {
            self.largest = self.largest.max(json.len());
            let event = Event::default().event("epoch").id(record.epoch.to_string());
            self.pending.push_back(event.data(json));
        }
        self.last_epoch = Some(record.epoch);
    }

    fn end(&mut self, record: &JobRecord) {
        self.push("end", record);
        self.done = true;
    }

    fn lagged(&mut self, missed: u64) {
        let last_event_id = self.last_epoch.map(|e| e.to_string());
        let resume = match &last_event_id {
            Some(id) => format!("reconnect with `Last-Event-ID: {id}`"),
            None => "reconnect".to_owned(),
        };
        let detail = format!(
            "this client fell more than {EVENT_BUFFER} events behind the job and missed \
             {missed} of them; the stream ends here: {resume} to read on from the stored \
             history"
        );
        self.push(
            "lagged",
            &Lagged {
                missed,
                last_event_id,
                detail,
            },
        );
        self.done = true;
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            let page = self.page();
            match self.subscriber.next(page).await {
                Update::Epochs(records) => {
                    for record in &records {
                        self.epoch(record);
                    }
                }
                Update::Epoch(record) => self.epoch(&record),
                Update::Status(record) => {
                    self.push("status", &*record);
                    if record.state.is_finished() {
                        self.end(&record);
                    }
                }
                Update::Finished(record) => self.end(&record),
                Update::Lagged { missed } => self.lagged(missed),
            }
        }
    }
}

/// The epoch of `Last-Event-ID`, if the request has one.
fn last_event_id(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().ok().map(str::trim);
    text.and_then(|t| t.parse().ok()).map(Some).ok_or_else(|| {
        ApiError::validation(
            "Last-Event-ID",
            "expected the id of an epoch event of this stream: an epoch number",
        )
    })
}

/// `GET /v1/jobs/{id}/events`
pub(crate) async fn events(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = last_event_id(&headers)?;
    let subscriber = state.jobs.subscribe(id, after)?;
    let feed = stream::unfold(Feed::new(subscriber, after), Feed::next);
    Ok(Sse::new(feed).keep_alive(KeepAlive::default()))
}
