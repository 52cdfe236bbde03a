//! Dynamic batching of small predictions: requests of a few rows that arrive together are
//! computed as one product, so the weights are read once for all of them.
//!
//! A one-row forward pass is bound by reading the weights (a network that does not fit in a
//! core's L2 cache is read from L3, several times slower), and eight rows that read them once
//! take a few times as long as one, not eight. A request of at most [`FEW_ROWS`] rows for a model that
//! gains from it ([`batched`](super::dispatch::batched)) therefore joins a queue instead of computing at once.
//! If no batch is being computed, it also starts one: a task that first yields to the runtime,
//! so that the requests whose bodies are already read can join, and then computes everything
//! queued, model by model, up to [`FEW_ROWS`] rows at a time, until the queue is empty. Nothing
//! waits for a timer: with one request in flight the batch is that request, a few microseconds
//! later than it would have been alone (TensorFlow Serving's batching waits for a timeout or a
//! full batch instead).
//!
//! Batching changes no result: up to [`FEW_ROWS`] rows, each row of a product gets the bits it
//! gets alone (`nn::linalg`), and standardization, activations and heads work row by row. A
//! request's rows are never split across batches.

use std::sync::{Arc, Mutex, PoisonError};

use ndarray::{s, Array2};
use tokio::sync::oneshot;

use super::dispatch::{multiply_adds, INLINE_ROWS};
use super::error::ServingError;
use super::stats::Stats;
use crate::nn::linalg::FEW_ROWS;
use crate::nn::Model;

/// The outputs of one request, or why there are none.
type Answer = Result<Array2<f32>, ServingError>;

/// A request waiting for its batch.
struct Pending {
    model: Arc<Model>,
    inputs: Array2<f32>,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Whether a task is computing (or about to compute) the queue.
    running: bool,
}

/// The queue of small predictions, shared by every model.
#[derive(Default)]
pub struct Batcher {
    queue: Arc<Mutex<Queue>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher that counts its batches in `stats`.
    pub(crate) fn new(stats: Arc<Stats>) -> Self {
        Self {
            queue: Arc::default(),
            stats,
        }
    }

    /// The outputs of `model` for `inputs` (raw rows, checked by the caller: at most
    /// [`FEW_ROWS`], the model's width, finite), computed with whatever other small requests
    /// are ready. Must be called inside the Tokio runtime.
    pub async fn predict(&self, model: Arc<Model>, inputs: Array2<f32>) -> Answer {
        debug_assert!(inputs.nrows() <= FEW_ROWS);
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.pending.push(Pending {
                model,
                inputs,
                reply,
            });
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            // The guard goes into the task before it first runs: dropped unpolled (the
            // runtime shutting down), it still marks the queue idle.
            let running = Running {
                queue: Arc::clone(&self.queue),
                done: false,
            };
            tokio::spawn(run(running, Arc::clone(&self.stats)));
        }
        answer.await.unwrap_or_else(|_| {
            Err(ServingError::Internal(
                "the prediction batch stopped before it answered".to_owned(),
            ))
        })
    }
}

/// Computes the queue until it is empty, then marks it idle (under the same lock, so that a
/// request queued afterwards starts a new task).
async fn run(mut running: Running, stats: Arc<Stats>) {
    // The queue's vector and this one trade places each round, both keeping their capacity,
    // so that queueing a request does not grow (reallocate) a vector just emptied.
    let mut spare: Vec<Pending> = Vec::with_capacity(FEW_ROWS);
    loop {
        // Let the requests that are ready to be read join this batch.
        tokio::task::yield_now().await;
        let mut pending = {
            let mut q = running.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.pending.is_empty() {
                q.running = false;
                drop(q);
                running.done = true;
                return;
            }
            std::mem::replace(&mut q.pending, std::mem::take(&mut spare))
        };
        let ready = batches(pending.drain(..));
        spare = pending;
        for batch in ready {
            stats.batch(batch.len());
            if batch.cost() <= INLINE_COST {
                batch.answer();
            } else {
                // A product this large would hold up the requests of every other connection
                // on this worker thread: the blocking pool computes it.
                if let Err(e) = tokio::task::spawn_blocking(move || batch.answer()).await {
                    tracing::error!(error = %e, "a prediction batch failed");
                }
            }
        }
    }
}

/// Multiply-adds a batch may take on a worker thread of the runtime: those of
/// [`INLINE_ROWS`] rows of a 784-256-128-10 network (a fraction of a
/// millisecond), the size up to which a request that is not batched is computed there too.
const INLINE_COST: usize = INLINE_ROWS * 235_146;

/// Marks the queue idle if the task computing it ends any other way than by emptying it (it
/// panicked, or the runtime dropped it before it ran or while it yielded), answering what is
/// queued with an error, so that no request waits for a task that is gone.
struct Running {
    queue: Arc<Mutex<Queue>>,
    /// Set when the task marked the queue idle itself.
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.pending.clear();
            q.running = false;
        }
    }
}

/// Requests for one model, at most [`FEW_ROWS`] rows in all, computed as one product.
struct Batch {
    model: Arc<Model>,
    requests: Vec<Pending>,
    rows: usize,
}

/// `pending` in batches: requests for the same model, in their order of arrival, stacked up
/// to [`FEW_ROWS`] rows (a request is never split).
fn batches(pending: impl IntoIterator<Item = Pending>) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for p in pending {
        let rows = p.inputs.nrows();
        let open = out
            .iter_mut()
            .rev()
            .find(|b| Arc::ptr_eq(&b.model, &p.model) && b.rows + rows <= FEW_ROWS);
        match open {
            Some(b) => {
                b.rows += rows;
                b.requests.push(p);
            }
            None => {
                // At most FEW_ROWS requests fit (each has a row), so it never grows.
                let model = Arc::clone(&p.model);
                let mut requests = Vec::with_capacity(FEW_ROWS);
                requests.push(p);
                out.push(Batch {
                    model,
                    requests,
                    rows,
                });
            }
        }
    }
    out
}

impl Batch {
    fn len(&self) -> usize {
        self.requests.len()
    }

    /// Multiply-adds of the forward pass.
    fn cost(&self) -> usize {
        multiply_adds(&self.model).saturating_mul(self.rows)
    }

    /// Computes the batch and answers each request with its rows of the outputs.
    fn answer(self) {
        let width = self.model.spec.inputs();
        // The handlers check the width before a request is queued; one that slipped through
        // must get its own error, not make the stacking below panic for the whole batch.
        if self.requests.len() == 1 || self.requests.iter().any(|p| p.inputs.ncols() != width) {
            for p in self.requests {
                let _ = p.reply.send(guarded(|| self.model.predict_owned(p.inputs)));
            }
            return;
        }
        let mut x = Array2::zeros((self.rows, width));
        let mut at = 0;
        for p in &self.requests {
            let n = p.inputs.nrows();
            x.slice_mut(s![at..at + n, ..]).assign(&p.inputs);
            at += n;
        }
        if let Ok(outputs) = guarded(|| self.model.predict_owned(x)) {
            let mut at = 0;
            for p in self.requests {
                let n = p.inputs.nrows();
                let _ = p
                    .reply
                    .send(Ok(outputs.slice(s![at..at + n, ..]).to_owned()));
                at += n;
            }
        } else {
            // Each request again alone, so that an error names its own rows.
            for p in self.requests {
                let _ = p.reply.send(guarded(|| self.model.predict_owned(p.inputs)));
            }
        }
    }
}

/// `f()`, with a panic (a bug) turned into an error for the batch's requests rather than a
/// batch that never answers.
fn guarded(f: impl FnOnce() -> Result<Array2<f32>, crate::nn::NnError>) -> Answer {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(answer) => answer.map_err(ServingError::from),
        Err(_) => Err(ServingError::Internal(
            "computing the prediction panicked".to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Duration;

    use futures_util::future::join_all;

    use super::*;
    use crate::nn::{Activation, Head, ModelSpec};

    fn model(layers: &[usize], seed: u64) -> Arc<Model> {
        let spec = ModelSpec::new(layers, Activation::Tanh, Head::Softmax);
        Arc::new(Model::new(spec, seed).expect("a valid spec"))
    }

    fn rows(n: usize, width: usize, seed: f32) -> Array2<f32> {
        Array2::from_shape_fn((n, width), |(i, j)| ((i * 31 + j * 7) as f32 * seed).sin())
    }

    fn bits(a: &Array2<f32>) -> Vec<u32> {
        a.iter().map(|x| x.to_bits()).collect()
    }

    /// The answers to `requests` sent to `batcher` at once: in a current-thread runtime all
    /// of them are queued before the batch task first runs.
    async fn at_once(batcher: &Batcher, requests: &[(Arc<Model>, Array2<f32>)]) -> Vec<Answer> {
        join_all(
            requests
                .iter()
                .map(|(m, x)| batcher.predict(Arc::clone(m), x.clone())),
        )
        .await
    }

    /// Runs `requests` through one batcher as if they arrived together (in a current-thread
    /// runtime all of them are queued before the batch task first runs) and checks that each
    /// gets the bits the model gives its rows alone; returns (batches, requests batched).
    async fn together(requests: &[(Arc<Model>, Array2<f32>)]) -> (u64, u64) {
        let batcher = Batcher::default();
        let answers = at_once(&batcher, requests).await;
        for ((m, x), got) in requests.iter().zip(answers) {
            let want = m.predict(x.view()).expect("valid rows");
            assert_eq!(bits(&got.expect("answered")), bits(&want));
        }
        // The queue is idle again: a request that comes alone later is answered too.
        let (m, x) = &requests[0];
        let later = tokio::time::timeout(
            Duration::from_secs(10),
            batcher.predict(Arc::clone(m), x.clone()),
        )
        .await
        .expect("a later request is answered");
        assert!(later.is_ok());
        let (batches, batched) = batcher.stats.batch_counts();
        (batches - 1, batched - 1)
    }

    #[tokio::test]
    async fn requests_that_arrive_together_share_a_product_and_keep_their_bits() {
        let (a, b) = (model(&[5, 8, 3], 1), model(&[5, 4, 2], 2));
        // For `a`: 1 + 2 + 3 rows in one product; 12 more would make 18 > 16, so that
        // request starts a second product, which the last one (1 row) joins. `b` has its own.
        let requests = [
            (Arc::clone(&a), rows(1, 5, 0.3)),
            (Arc::clone(&a), rows(2, 5, 0.5)),
            (Arc::clone(&b), rows(2, 5, 0.7)),
            (Arc::clone(&a), rows(3, 5, 0.9)),
            (Arc::clone(&a), rows(12, 5, 1.1)),
            (Arc::clone(&a), rows(1, 5, 1.3)),
        ];
        assert_eq!(together(&requests).await, (3, 6));
    }

    #[tokio::test]
    async fn a_request_that_would_fail_gets_its_own_error_and_the_others_their_answers() {
        let m = model(&[5, 8, 3], 6);
        let mut nan = rows(2, 5, 0.4);
        nan[[1, 3]] = f32::NAN;
        // A value the forward pass refuses (the product fails, then each request runs alone),
        // and a row of the wrong width (the batch is not stacked at all).
        for bad in [nan, rows(3, 4, 0.5)] {
            let requests = [
                (Arc::clone(&m), rows(1, 5, 0.3)),
                (Arc::clone(&m), bad),
                (Arc::clone(&m), rows(2, 5, 0.6)),
            ];
            let batcher = Batcher::default();
            let answers = at_once(&batcher, &requests).await;
            assert_eq!(batcher.stats.batch_counts(), (1, 3));
            for (i, ((m, x), got)) in requests.iter().zip(answers).enumerate() {
                match (i, got) {
                    (1, Err(e)) => {
                        // The error names the request's own row, not its place in the batch.
                        let want = ServingError::from(m.predict(x.view()).unwrap_err());
                        assert_eq!(format!("{e:?}"), format!("{want:?}"));
                    }
                    (0 | 2, Ok(got)) => {
                        assert_eq!(bits(&got), bits(&m.predict(x.view()).unwrap()));
                    }
                    (i, got) => panic!("request {i}: {got:?}"),
                }
            }
        }
    }

    #[test]
    fn a_batch_task_dropped_before_it_ran_leaves_the_queue_idle_and_answers_with_an_error() {
        let batcher = Batcher::default();
        let m = model(&[3, 2], 4);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        // Queue a request and spawn the batch task, then drop the runtime before it runs.
        let mut first = Box::pin(batcher.predict(Arc::clone(&m), rows(1, 3, 0.2)));
        let waker = futures_util::task::noop_waker();
        let _guard = runtime.enter();
        let polled = first
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending());
        drop(_guard);
        drop(runtime);
        // The request gets an answer (an internal error), not a wait without end ...
        let answer = futures_util::FutureExt::now_or_never(first).expect("answered");
        assert!(answer.is_err());
        // ... and a new runtime's requests start a new batch task.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let again = runtime.block_on(batcher.predict(Arc::clone(&m), rows(1, 3, 0.2)));
        assert!(again.is_ok());
    }

    #[tokio::test]
    async fn a_batch_too_large_for_a_worker_thread_is_computed_on_the_blocking_pool() {
        // 2,000 × 2,000 multiply-adds a row: sixteen rows are well over `INLINE_COST`.
        let big = model(&[2000, 2000, 10], 3);
        let requests: Vec<_> = (0..4)
            .map(|i| (Arc::clone(&big), rows(4, 2000, 0.1 + i as f32)))
            .collect();
        let batch = Batch {
            model: Arc::clone(&big),
            requests: Vec::new(),
            rows: 16,
        };
        assert!(batch.cost() > INLINE_COST);
        assert_eq!(together(&requests).await, (1, 4));
    }
}
