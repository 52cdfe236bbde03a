//! Counts each request by its route template, method and status, and times it (the
//! `http_requests_total` and `http_request_duration_seconds` series of [`Metrics`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;

use super::gate::{Gate, Reply};
use crate::http::metrics::{Metrics, UNMATCHED};

/// Middleware: counts each request by its route template and times it.
#[derive(Clone, Debug)]
pub(crate) struct Track(pub Metrics);

impl Gate for Track {
    type Kept = (Metrics, Instant, Option<MatchedPath>, Method);

    fn before(&self, request: Request) -> Result<(Self::Kept, Request), Reply> {
        let route = request.extensions().get::<MatchedPath>().cloned();
        let kept = (
            self.0.clone(),
            Instant::now(),
            route,
            request.method().clone(),
        );
        Ok((kept, request))
    }

    fn after((metrics, started, route, method): Self::Kept, response: Response) -> Reply {
        metrics.observe(
            route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
            &method,
            response.status(),
            started.elapsed().as_secs_f64(),
        );
        Reply::Now(response)
    }
}
