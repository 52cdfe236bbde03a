//! `GET /v1/jobs/{id}/events`: a job's history and progress as Server-Sent Events.
//!
//! The stream sends every epoch record so far (`event: epoch`, `id:` the epoch), then one
//! `epoch` event per new epoch and one `status` event (the job record) per state change, and
//! once the job is finished a final `end` event with the job record, after which it closes.
//! A subscriber that falls behind the live channel catches up from the stored history, so it
//! still sees every epoch once, in order. Any number may subscribe at once.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::AppPath;
use super::state::AppState;
use crate::jobs::{JobEvent, JobRecord, Jobs};
use crate::nn::EpochRecord;

struct Feed {
    jobs: Jobs,
    id: Uuid,
    pending: VecDeque<Event>,
    events: tokio::sync::broadcast::Receiver<JobEvent>,
    next_epoch: usize,
    done: bool,
}

fn event(name: &str, data: &impl Serialize) -> Option<Event> {
    Event::default().event(name).json_data(data).ok()
}

impl Feed {
    fn epoch(&mut self, record: &EpochRecord) {
        if record.epoch < self.next_epoch {
            return;
        }
        self.next_epoch = record.epoch + 1;
        if let Some(e) = event("epoch", record) {
            self.pending.push_back(e.id(record.epoch.to_string()));
        }
    }

    fn status(&mut self, record: &JobRecord) {
        self.pending.extend(event("status", record));
        if record.state.is_finished() {
            self.end(record);
        }
    }

    fn end(&mut self, record: &JobRecord) {
        self.pending.extend(event("end", record));
        self.done = true;
    }

    fn catch_up(&mut self) {
        let Ok(history) = self.jobs.history(self.id, self.next_epoch) else {
            return self.done = true;
        };
        for record in &history {
            self.epoch(record);
        }
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            match self.events.recv().await {
                Ok(JobEvent::Epoch(record)) => self.epoch(&record),
                Ok(JobEvent::Status(record)) => {
                    self.catch_up();
                    self.status(&record);
                }
                Err(RecvError::Lagged(_)) => self.catch_up(),
                Err(RecvError::Closed) => match self.jobs.get(self.id) {
                    Ok(job) => self.end(&job.record()),
                    Err(_) => self.done = true,
                },
            }
        }
    }
}

fn feed(jobs: Jobs, id: Uuid) -> Result<impl Stream<Item = Result<Event, Infallible>>, ApiError> {
    let sub = jobs.subscribe(id)?;
    let mut feed = Feed {
        jobs,
        id,
        pending: VecDeque::new(),
        events: sub.events,
        next_epoch: 0,
        done: false,
    };
    for record in &sub.history {
        feed.epoch(record);
    }
    if sub.record.state.is_finished() {
        feed.end(&sub.record);
    }
    Ok(stream::unfold(feed, Feed::next))
}

/// `GET /v1/jobs/{id}/events`
pub(crate) async fn events(
    State(state): State<AppState>,
    AppPath(id): AppPath<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    Ok(Sse::new(feed(state.jobs.clone(), id)?).keep_alive(KeepAlive::default()))
}
