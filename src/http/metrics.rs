//! The metrics `GET /metrics` exposes as Prometheus text (format 0.0.4).
//!
//! Each server has its own [`prometheus::Registry`] in its application state, never the crate's
//! global one, so servers started side by side (the integration tests start dozens in one
//! process) count only their own requests. Counters and the latency histogram are updated as
//! requests finish (by the middleware `middleware::metrics`); gauges (jobs by state, queue,
//! registry sizes) and the prediction counters are read from the job runner, the registry and
//! the prediction engine when scraped, so they cannot drift from what those count.
//!
//! | metric                                   | type      | labels                  |
//! |------------------------------------------|-----------|-------------------------|
//! | `http_requests_total`                    | counter   | `route`, `method`, `status` |
//! | `http_request_duration_seconds`          | histogram | `route`, `method`       |
//! | `mlp_lab_jobs`                           | gauge     | `state`                 |
//! | `mlp_lab_job_queue_length`               | gauge     |                         |
//! | `mlp_lab_training_samples_per_second`    | gauge     | (sum over running jobs) |
//! | `mlp_lab_event_subscribers`              | gauge     | (over all jobs)         |
//! | `mlp_lab_predicted_rows_total`           | counter   |                         |
//! | `mlp_lab_predictions_in_flight`          | gauge     |                         |
//! | `mlp_lab_predictions_queued`             | gauge     |                         |
//! | `mlp_lab_predictions_rejected_total`     | counter   | (429: queue full or wait ran out) |
//! | `mlp_lab_prediction_batches_total`       | counter   | (products computed for batched requests) |
//! | `mlp_lab_batched_predictions_total`      | counter   | (requests answered in a batch) |
//! | `mlp_lab_datasets`, `mlp_lab_models`, `mlp_lab_model_versions` | gauge |        |
//! | `mlp_lab_training_blocks_helped_total`   | counter   | (blocks of products a job's helper threads computed, process-wide) |
//! | `mlp_lab_job_writes_fenced_total`        | counter   | (writes for a job the database refused: its lease's token was stale) |
//! | `mlp_lab_job_leases_lost_total`          | counter   | (jobs this replica stopped because it lost their lease) |
//! | `mlp_lab_memory_trims_total`, `mlp_lab_memory_returned_bytes_total` | counter | (freed memory given back to the system, and how much) |
//!
//! `route` is the route template (`/v1/models/{model}`), never the raw path, so ids cannot
//! grow the number of series; requests that match no route count as `unmatched`, and methods
//! outside the standard ones as `OTHER`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{Method, StatusCode};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::jobs::{JobState, Jobs};
use crate::serving::Predictor;

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// One server's metrics. Cloning is one reference count: the middleware clones them for
/// every request.
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Collectors>);

impl std::ops::Deref for Metrics {
    type Target = Collectors;

    fn deref(&self) -> &Collectors {
        &self.0
    }
}

/// The metrics behind a [`Metrics`] handle.
#[derive(Debug)]
pub struct Collectors {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    jobs: IntGaugeVec,
    queue: IntGauge,
    samples_per_second: prometheus::Gauge,
    event_subscribers: IntGauge,
    predicted_rows: IntCounter,
    predictions_in_flight: IntGauge,
    predictions_queued: IntGauge,
    predictions_rejected: IntCounter,
    batches: IntCounter,
    batched: IntCounter,
    datasets: IntGauge,
    models: IntGauge,
    versions: IntGauge,
    helped: IntCounter,
    fenced: IntCounter,
    lost: IntCounter,
    trims: IntCounter,
    returned: IntCounter,
    /// Held while a scrape brings the counters up to the prediction engine's, so that two
    /// scrapes at once cannot both add the same difference.
    scraping: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    ///
    /// # Panics
    /// Never: the names and labels are constants that the tests check.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route template, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("a valid counter");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from a request's arrival to its response's headers, by route template and method.",
            ),
            &["route", "method"],
        )
        .expect("a valid histogram");
        let jobs = IntGaugeVec::new(
            Opts::new("mlp_lab_jobs", "Training jobs by state."),
            &["state"],
        )
        .expect("a valid gauge");
        let queue = IntGauge::new(
            "mlp_lab_job_queue_length",
            "Training jobs waiting for a free slot.",
        )
        .expect("a valid gauge");
        let samples_per_second = prometheus::Gauge::new(
            "mlp_lab_training_samples_per_second",
            "Training rows per second, summed over the running jobs (their last epoch's pace).",
        )
        .expect("a valid gauge");
        let event_subscribers = IntGauge::new(
            "mlp_lab_event_subscribers",
            "Clients following job events, over all jobs (at most --max-event-subscribers).",
        )
        .expect("a valid gauge");
        let predicted_rows = IntCounter::new(
            "mlp_lab_predicted_rows_total",
            "Rows answered by successful prediction requests.",
        )
        .expect("a valid counter");
        let predictions_in_flight = IntGauge::new(
            "mlp_lab_predictions_in_flight",
            "Predictions being computed (at most --max-concurrent-predictions).",
        )
        .expect("a valid gauge");
        let predictions_queued = IntGauge::new(
            "mlp_lab_predictions_queued",
            "Predictions waiting for a slot (at most --max-queued-predictions).",
        )
        .expect("a valid gauge");
        let predictions_rejected = IntCounter::new(
            "mlp_lab_predictions_rejected_total",
            "Predictions answered 429: the queue was full or the wait for a slot ran out.",
        )
        .expect("a valid counter");
        let batches = IntCounter::new(
            "mlp_lab_prediction_batches_total",
            "Products computed for batched prediction requests (several requests share one).",
        )
        .expect("a valid counter");
        let batched = IntCounter::new(
            "mlp_lab_batched_predictions_total",
            "Prediction requests computed in a batch; divided by the batches, the mean batch.",
        )
        .expect("a valid counter");
        let datasets =
            IntGauge::new("mlp_lab_datasets", "Datasets in the registry.").expect("a valid gauge");
        let models =
            IntGauge::new("mlp_lab_models", "Models in the registry.").expect("a valid gauge");
        let versions = IntGauge::new(
            "mlp_lab_model_versions",
            "Trained versions, over all models.",
        )
        .expect("a valid gauge");
        let helped = IntCounter::new(
            "mlp_lab_training_blocks_helped_total",
            "Blocks of training's matrix products computed by helper threads (process-wide): \
             rising while a job trains on more than one core.",
        )
        .expect("a valid counter");
        let fenced = IntCounter::new(
            "mlp_lab_job_writes_fenced_total",
            "Writes for a job (progress, final record, version) that the database refused \
             because this replica's lease on the job was no longer current.",
        )
        .expect("a valid counter");
        let lost = IntCounter::new(
            "mlp_lab_job_leases_lost_total",
            "Jobs this replica stopped because it lost their lease (not renewed in time).",
        )
        .expect("a valid counter");
        let trims = IntCounter::new(
            "mlp_lab_memory_trims_total",
            "Times freed memory was given back to the system (after large frees; see src/memory.rs).",
        )
        .expect("a valid counter");
        let returned = IntCounter::new(
            "mlp_lab_memory_returned_bytes_total",
            "Resident bytes those trims gave back to the system.",
        )
        .expect("a valid counter");
        let collectors: [Box<dyn prometheus::core::Collector>; 20] = [
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(jobs.clone()),
            Box::new(queue.clone()),
            Box::new(samples_per_second.clone()),
            Box::new(event_subscribers.clone()),
            Box::new(predicted_rows.clone()),
            Box::new(predictions_in_flight.clone()),
            Box::new(predictions_queued.clone()),
            Box::new(predictions_rejected.clone()),
            Box::new(batches.clone()),
            Box::new(batched.clone()),
            Box::new(datasets.clone()),
            Box::new(models.clone()),
            Box::new(versions.clone()),
            Box::new(helped.clone()),
            Box::new(fenced.clone()),
            Box::new(lost.clone()),
            Box::new(trims.clone()),
            Box::new(returned.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("distinct metric names");
        }
        Self(Arc::new(Collectors {
            registry,
            requests,
            duration,
            jobs,
            queue,
            samples_per_second,
            event_subscribers,
            predicted_rows,
            predictions_in_flight,
            predictions_queued,
            predictions_rejected,
            batches,
            batched,
            datasets,
            models,
            versions,
            helped,
            fenced,
            lost,
            trims,
            returned,
            scraping: Mutex::new(()),
        }))
    }

    /// Counts one answered request.
    pub(crate) fn observe(&self, route: &str, method: &Method, status: StatusCode, seconds: f64) {
        let method = method_label(method);
        // `StatusCode::as_str` is a static string: no formatting or allocation a request.
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// Reads the gauges and the prediction counters from the parts of the service, and
    /// renders everything.
    ///
    /// # Errors
    /// The encoder's, which a valid registry never gives.
    pub fn render(
        &self,
        jobs: &Jobs,
        registry: &crate::registry::Registry,
        predictor: &Predictor,
    ) -> Result<String, prometheus::Error> {
        // Counted in place, never cloned: a public scrape must stay cheap however many jobs
        // and models there are.
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let _scraping = self.scraping.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = predictor.stats();
        let (batches, batched) = stats.batch_counts();
        let (trims, returned) = crate::memory::trims();
        for (counter, now) in [
            (&self.predicted_rows, stats.predicted_rows()),
            (&self.predictions_rejected, stats.rejected()),
            (&self.batches, batches),
            (&self.batched, batched),
            (&self.helped, crate::nn::parallel::blocks_helped() as u64),
            (&self.fenced, crate::jobs::writes_fenced()),
            (&self.lost, crate::jobs::leases_lost()),
            (&self.trims, trims),
            (&self.returned, returned),
        ] {
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        let (by_state, samples_per_second) = jobs.gauges();
        for (s, n) in JobState::ALL.into_iter().zip(by_state) {
            self.jobs.with_label_values(&[s.name()]).set(count(n));
            if s == JobState::Queued {
                self.queue.set(count(n));
            }
        }
        self.samples_per_second.set(samples_per_second);
        self.event_subscribers.set(count(jobs.subscribers()));
        self.predictions_in_flight
            .set(count(predictor.slots().in_flight()));
        self.predictions_queued
            .set(count(predictor.slots().queued()));
        let (datasets, models, versions) = registry.sizes();
        self.datasets.set(count(datasets));
        self.models.set(count(models));
        self.versions.set(count(versions));
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_servers_count_separately() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.observe("/v1/models", &Method::GET, StatusCode::OK, 0.01);
        a.predicted_rows.inc_by(3);
        let text = TextEncoder::new()
            .encode_to_string(&a.registry.gather())
            .expect("renders");
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/v1/models",status="200"} 1"#),
            "{text}"
        );
        assert!(text.contains("mlp_lab_predicted_rows_total 3"), "{text}");
        let other = TextEncoder::new()
            .encode_to_string(&b.registry.gather())
            .expect("renders");
        assert!(!other.contains("/v1/models"), "{other}");
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let custom = Method::from_bytes(b"BREW").expect("a method");
        assert_eq!(method_label(&custom), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
