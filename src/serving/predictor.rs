//! [`Predictor`]: a version picked by a [`Selector`], rows in, outputs out, computed where
//! [`dispatch`](super::dispatch) says.

use std::sync::Arc;

use ndarray::Array2;

use super::admission::{Bounds, PredictionSlots};
use super::batching::Batcher;
use super::dispatch::{batched, INLINE_ROWS};
use super::error::ServingError;
use super::stats::Stats;
use crate::config::{Batching, Config};
use crate::registry::{ModelEntry, Registry, Version};

/// Which version of a model answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector<'a> {
    /// The latest trained version.
    Latest,
    /// Version `n` (1, 2, …).
    Number(u32),
    /// A version named by text that is not a number (a path segment such as `/v2`'s).
    Named(&'a str),
}

impl<'a> Selector<'a> {
    /// The version a path segment names: a number, or text.
    #[must_use]
    pub fn from_segment(segment: &'a str) -> Self {
        segment
            .parse::<u32>()
            .map_or(Selector::Named(segment), Selector::Number)
    }

    /// `Some(n)` selects version `n`, `None` the latest.
    #[must_use]
    pub fn from_number(version: Option<u32>) -> Self {
        version.map_or(Selector::Latest, Selector::Number)
    }
}

/// The prediction engine of one server. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct Predictor(Arc<Engine>);

/// What a [`Predictor`] handle shares.
#[derive(Debug)]
struct Engine {
    registry: Arc<Registry>,
    batcher: Batcher,
    slots: PredictionSlots,
    batching: Batching,
    max_rows: usize,
    stats: Arc<Stats>,
}

impl Predictor {
    /// The engine over `registry`'s versions, with `config`'s batching mode, admission
    /// (`--max-concurrent-predictions`, `--max-queued-predictions`,
    /// `--max-prediction-wait-ms`) and row limit (`--max-predict-rows`).
    #[must_use]
    pub fn new(registry: Arc<Registry>, config: &Config) -> Self {
        let stats = Arc::new(Stats::default());
        Self(Arc::new(Engine {
            registry,
            batcher: Batcher::new(Arc::clone(&stats)),
            slots: PredictionSlots::new(
                Bounds {
                    slots: config.max_concurrent_predictions,
                    queue: config.max_queued_predictions,
                    max_wait: std::time::Duration::from_millis(config.max_prediction_wait_ms),
                },
                Arc::clone(&stats),
            ),
            batching: config.batch_predictions,
            max_rows: config.limits.max_predict_rows,
            stats,
        }))
    }

    /// The slots that bound the predictions computed at once, and their queue.
    #[must_use]
    pub fn slots(&self) -> &PredictionSlots {
        &self.0.slots
    }

    /// What has been predicted so far.
    #[must_use]
    pub fn stats(&self) -> &Stats {
        &self.0.stats
    }

    /// The most rows one request may have (`--max-predict-rows`).
    #[must_use]
    pub fn max_rows(&self) -> usize {
        self.0.max_rows
    }

    /// `Ok` when a request of `rows` rows is within [`Predictor::max_rows`].
    ///
    /// # Errors
    /// [`ServingError::TooManyRows`].
    pub fn check_rows(&self, rows: usize) -> Result<(), ServingError> {
        if rows > self.0.max_rows {
            return Err(ServingError::TooManyRows {
                max: self.0.max_rows,
                given: rows,
            });
        }
        Ok(())
    }

    /// The model `model` (a name or an id) and the version `selector` picks.
    ///
    /// A version whose stored files cannot be loaded is reported as such rather than
    /// skipped: the latest is the latest that was stored, so that what answers never changes
    /// silently to an older version.
    ///
    /// # Errors
    /// [`ServingError::Registry`] for an unknown or unavailable model,
    /// [`ServingError::VersionUnavailable`], [`ServingError::NotTrained`] (the latest of a
    /// model without versions) or [`ServingError::NoSuchVersion`].
    pub fn resolve(
        &self,
        model: &str,
        selector: Selector<'_>,
    ) -> Result<(Arc<ModelEntry>, Arc<Version>), ServingError> {
        let entry = self.0.registry.model(model)?;
        let broken = match selector {
            Selector::Number(n) => entry.unavailable_version(n),
            Selector::Latest if entry.versions.is_empty() => entry.unavailable.last(),
            _ => None,
        };
        if let Some(broken) = broken {
            return Err(ServingError::VersionUnavailable {
                model: entry.record.name.clone(),
                version: broken.version,
                reason: broken.reason.clone(),
            });
        }
        let found = match selector {
            Selector::Latest => entry.version(None).ok_or_else(|| ServingError::NotTrained {
                model: entry.record.name.clone(),
            }),
            Selector::Number(n) => entry
                .version(Some(n))
                .ok_or_else(|| no_such(model, &entry, n)),
            Selector::Named(name) => Err(no_such(model, &entry, name)),
        }?;
        let found = Arc::clone(found);
        Ok((entry, found))
    }

    /// The outputs of `version` for `x` (raw rows of the model's width, finite), computed
    /// where [`Predictor`] decides.
    ///
    /// # Errors
    /// [`ServingError::Busy`] when no slot came free in time, [`ServingError::Nn`] when the
    /// forward pass refuses the rows, or [`ServingError::Internal`] when the computation was
    /// lost.
    pub async fn predict(
        &self,
        version: &Version,
        x: Array2<f32>,
    ) -> Result<Array2<f32>, ServingError> {
        self.predict_then(version, x, Ok).await
    }

    /// [`Predictor::predict`], then `finish` on the outputs, on the same thread as the
    /// product when that is the blocking pool (so that encoding a large answer does not hold
    /// up a worker either), else on the caller's. A slot ([`admission`](super::admission)) is
    /// held from before the product until `finish` returns.
    ///
    /// # Errors
    /// Those of [`Predictor::predict`], [`ServingError::Busy`] when no slot came free, or
    /// `finish`'s.
    pub async fn predict_then<T, E, F>(
        &self,
        version: &Version,
        x: Array2<f32>,
        finish: F,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ServingError> + Send + 'static,
        F: FnOnce(Array2<f32>) -> Result<T, E> + Send + 'static,
    {
        let engine = &self.0;
        let slot = engine.slots.admit().await?;
        let net = &version.model;
        let rows = x.nrows();
        if batched(engine.batching, net, rows) {
            let outputs = engine.batcher.predict(Arc::clone(net), x).await?;
            engine.stats.predicted(rows);
            return finish(outputs);
        }
        if rows <= INLINE_ROWS {
            let outputs = net.predict_owned(x).map_err(ServingError::from)?;
            engine.stats.predicted(rows);
            return finish(outputs);
        }
        let net = Arc::clone(net);
        let stats = Arc::clone(&engine.stats);
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            span.in_scope(|| {
                let outputs = net.predict_owned(x).map_err(ServingError::from)?;
                stats.predicted(rows);
                finish(outputs)
            })
        })
        .await
        .map_err(|e| {
            E::from(ServingError::Internal(format!(
                "a prediction task failed: {e}"
            )))
        })?
    }
}

fn no_such(asked: &str, entry: &ModelEntry, version: impl ToString) -> ServingError {
    ServingError::NoSuchVersion {
        asked: asked.to_owned(),
        model: entry.record.name.clone(),
        version: version.to_string(),
        trained: !entry.versions.is_empty(),
    }
}
