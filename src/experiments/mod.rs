//! Experiments: a grid of model variants (activations, inits, depths, dropout, batch norm,
//! learning rates) × seeds on one dataset, each cell × seed an ordinary job, and a leaderboard
//! computed from the jobs' records and histories.
//!
//! An experiment owns nothing but its record (`experiments/<id>.json`, a checksummed
//! envelope of kind `experiment`): the cells' models live in the registry and the runs in the
//! job runner, so `/v1/models` and `/v1/jobs` show them as any other, and the leaderboard is
//! always recomputed from what the jobs hold (nothing is cached that could go stale). Same
//! seed ⇒ same split and batch order in every cell, because `nn` keys those random streams by
//! the seed alone, not by the model.
//!
//! Creation checks everything first (the plan, every cell's spec and training config, room in
//! the queue for every job), then creates the models, submits the jobs and writes the record;
//! a failure on the way removes what was made (models deleted, submitted jobs cancelled), so
//! a refused experiment leaves no models behind.

pub mod leaderboard;
pub mod request;
pub mod stats;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::jobs::{JobError, JobState, Jobs, NewJob};
use crate::nn::{ModelSpec, Task, TrainConfig};
use crate::registry::{DatasetEntry, Page, Registry, RegistryError};
use crate::store::envelope::{open, seal};
use crate::store::{clock, Store};
pub use leaderboard::{Leaderboard, Metric, Order, RunMetrics};
pub use request::{BaseModel, CellPlan, ExperimentRequest, Grid};
pub use view::{CellView, ExperimentProgress, ExperimentSummary, ExperimentView, RunView};

/// The record kind in the envelope (`mlp-lab.experiment.v1`).
pub const KIND: &str = "experiment";

/// Everything that can go wrong with an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// No such experiment.
    #[error("no experiment '{0}'")]
    NotFound(String),
    /// A cancel of an experiment whose jobs are all finished.
    #[error("every job of experiment {0} is finished already")]
    Finished(Uuid),
    /// The request is invalid, over a limit, or the store failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The job runner refused (a full queue, shutting down).
    #[error(transparent)]
    Job(#[from] JobError),
}

/// One run: a cell trained with one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The seed.
    pub seed: u64,
    /// Its job.
    pub job: Uuid,
}

/// One cell as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellRecord {
    /// 0, 1, … in grid order.
    pub index: usize,
    /// `activation=relu, hidden_layers=[32,32]`.
    pub label: String,
    /// The grid's values of this cell.
    pub params: Map<String, Value>,
    /// Its model.
    pub model: Uuid,
    /// Its model's name.
    pub model_name: String,
    /// Its model's spec (kept here so the leaderboard's unit counts survive a model delete).
    pub spec: ModelSpec,
    /// One per seed, in seed order.
    pub jobs: Vec<RunRecord>,
}

/// An experiment as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRecord {
    /// UUIDv7.
    pub id: Uuid,
    /// The client's name, if any.
    pub name: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// The dataset every run trains on.
    pub dataset: Uuid,
    /// `classification`, `multi_label` or `regression`.
    pub task: Task,
    /// The axes as given.
    pub grid: Grid,
    /// The seeds, in order.
    pub seeds: Vec<u64>,
    /// The base model.
    pub model: BaseModel,
    /// The base training (its `seed` is unused).
    pub training: TrainConfig,
    /// The cells.
    pub cells: Vec<CellRecord>,
    /// Whether a client cancelled it.
    #[serde(default)]
    pub cancelled: bool,
}

#[derive(Debug)]
struct Inner {
    records: RwLock<BTreeMap<Uuid, ExperimentRecord>>,
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    jobs: Jobs,
    max_jobs: usize,
}

/// The experiments. Cloning is shallow.
#[derive(Clone, Debug)]
pub struct Experiments {
    inner: Arc<Inner>,
}

fn key(id: Uuid) -> String {
    format!("experiments/{id}.json")
}

/// A job's state for the view (`None`: its record cannot be loaded or is gone).
fn job_state(jobs: &Jobs, id: Uuid) -> Option<JobState> {
    jobs.get(id).ok().map(|j| j.record().state)
}

impl Experiments {
    /// The experiments of `registry`'s store, loaded back; their jobs are `jobs`' and a cell
    /// × seed count over `max_jobs` is refused. A record that cannot be read is logged and
    /// left in place, and its experiment is not served.
    ///
    /// # Errors
    /// [`RegistryError`] when the store cannot be listed.
    pub fn load(
        registry: Arc<Registry>,
        jobs: Jobs,
        max_jobs: usize,
    ) -> Result<Self, RegistryError> {
        let store = registry.store();
        let mut records = BTreeMap::new();
        for k in store.list("experiments/")? {
            if !k.ends_with(".json") {
                continue;
            }
            let read = match store.get(&k) {
                Ok(Some(bytes)) => open::<ExperimentRecord>(KIND, &bytes),
                Ok(None) => continue,
                Err(error) => Err(error.to_string()),
            };
            match read {
                Ok(record) if k == key(record.id) => {
                    records.insert(record.id, record);
                }
                Ok(record) => tracing::error!(
                    file = %k,
                    id = %record.id,
                    "an experiment record is stored under another id's file name; not loaded"
                ),
                Err(reason) => tracing::error!(
                    file = %k,
                    %reason,
                    "a stored experiment cannot be loaded; its file is left in place"
                ),
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                records: RwLock::new(records),
                registry,
                store,
                jobs,
                max_jobs,
            }),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Uuid, ExperimentRecord>> {
        self.inner
            .records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Uuid, ExperimentRecord>> {
        self.inner
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored record of experiment `id`.
    ///
    /// # Errors
    /// [`ExperimentError::NotFound`].
    pub fn record(&self, id: Uuid) -> Result<ExperimentRecord, ExperimentError> {
        self.read()
            .get(&id)
            .cloned()
            .ok_or_else(|| ExperimentError::NotFound(id.to_string()))
    }

    /// Brings this replica's view of the experiment stored under `key`
    /// (`experiments/<id>.json`) in line with the store, after another replica that shares
    /// it wrote or deleted it; other keys are ignored. Its jobs are followed by [`Jobs`].
    pub fn refresh(&self, key: &str) {
        let Some(id) = key
            .strip_prefix("experiments/")
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|id| Uuid::parse_str(id).ok())
        else {
            return;
        };
        match self.inner.store.get(key) {
            Ok(None) => {
                self.write().remove(&id);
            }
            Ok(Some(bytes)) => match open::<ExperimentRecord>(KIND, &bytes) {
                Ok(record) if record.id == id => {
                    self.write().insert(id, record);
                }
                Ok(_) => tracing::warn!(%key, "an experiment's record names another; not followed"),
                Err(reason) => {
                    tracing::warn!(%key, %reason, "an experiment's record changed and cannot be read");
                }
            },
            Err(error) => tracing::warn!(%key, %error, "cannot read a changed experiment"),
        }
    }

    /// Everything about `request` that can be checked without its dataset: the grid and its
    /// limits, every cell's model and training, and room in the queue for every run. The
    /// HTTP handler calls it before it registers an inline dataset, so a refused request
    /// leaves nothing behind.
    ///
    /// # Errors
    /// [`ExperimentError::Registry`] for an invalid request or one over a limit, and
    /// [`ExperimentError::Job`] for a queue without room for every run.
    pub fn check(&self, request: &ExperimentRequest) -> Result<Vec<CellPlan>, ExperimentError> {
        let max_layers = self.inner.registry.limits().max_layers;
        let plans = request.plan(self.inner.max_jobs, max_layers)?;
        for plan in &plans {
            let in_cell = |e: RegistryError| match e {
                RegistryError::Invalid { field, message } => RegistryError::invalid(
                    format!("model.{field}"),
                    format!("in cell {}: {message}", plan.label),
                ),
                RegistryError::Nn(crate::nn::NnError::Invalid { field, message }) => {
                    RegistryError::invalid(
                        format!("model.{field}"),
                        format!("in cell {}: {message}", plan.label),
                    )
                }
                other => other,
            };
            self.inner
                .registry
                .check_spec(&plan.spec)
                .map_err(in_cell)?;
            plan.config
                .validate()
                .map_err(|e| match RegistryError::from(e) {
                    RegistryError::Nn(crate::nn::NnError::Invalid { field, message }) => {
                        RegistryError::invalid(format!("training.{field}"), message)
                    }
                    other => other,
                })?;
        }
        let total = plans.len() * request.seeds.len();
        let max_queued = self.inner.jobs.max_queued();
        if total > max_queued {
            // Never fits, however long the client waits: not a 429.
            return Err(RegistryError::invalid(
                "seeds",
                format!(
                    "{} cells × {} seeds = {total} jobs, more than the queue holds \
                     (--max-queued-jobs {max_queued})",
                    plans.len(),
                    request.seeds.len()
                ),
            )
            .into());
        }
        if self.inner.jobs.queue_room() < total {
            return Err(JobError::QueueFull { max: max_queued }.into());
        }
        Ok(plans)
    }

    /// Creates a model per cell of `plans` (what [`Experiments::check`] made of `request`) and
    /// a job per cell × seed on `dataset`, stores the experiment and returns its view.
    ///
    /// # Errors
    /// [`ExperimentError::Registry`] for a model that does not fit the data, and
    /// [`ExperimentError::Job`] for a queue that filled since the check; nothing is left
    /// behind then.
    pub async fn create(
        &self,
        request: ExperimentRequest,
        plans: Vec<CellPlan>,
        dataset: Arc<DatasetEntry>,
    ) -> Result<ExperimentView, ExperimentError> {
        let id = Uuid::now_v7();
        let prefix = request.name.as_deref().unwrap_or("exp");
        // The cell index has at least 2 digits, and as many as the last index needs.
        let digits = plans.len().saturating_sub(1).to_string().len().max(2);
        // Model names are at most 100 bytes; `-xxxxxxxx-c` and the index take 11 + digits.
        let keep = crate::registry::MAX_MODEL_NAME_LEN.saturating_sub(11 + digits);
        let prefix = &prefix[..prefix.len().min(keep)];
        // The id's last 8 hex digits: random bits (its first ones are a timestamp that
        // changes only every 65 s, so two experiments of one name could share them).
        let simple = id.simple().to_string();
        let short = &simple[simple.len() - 8..];
        let mut models = Vec::with_capacity(plans.len());
        let mut cells = Vec::with_capacity(plans.len());
        for (index, plan) in plans.iter().enumerate() {
            let name = format!("{prefix}-{short}-c{index:0digits$}");
            let registry = Arc::clone(&self.inner.registry);
            let spec = plan.spec.clone();
            let made = tokio::task::spawn_blocking(move || registry.create_model(name, spec))
                .await
                .unwrap_or_else(|_| {
                    Err(RegistryError::Corrupt {
                        key: "(new model)".into(),
                        message: "the write did not finish".into(),
                    })
                });
            match made {
                Ok(entry) => {
                    cells.push(CellRecord {
                        index,
                        label: plan.label.clone(),
                        params: plan.params.clone(),
                        model: entry.record.id,
                        model_name: entry.record.name.clone(),
                        spec: plan.spec.clone(),
                        jobs: Vec::new(),
                    });
                    models.push(entry);
                }
                Err(error) => {
                    self.undo(&cells).await;
                    return Err(error.into());
                }
            }
        }
        for (cell, (plan, model)) in cells.iter_mut().zip(plans.iter().zip(&models)) {
            for &seed in &request.seeds {
                let mut config = plan.config.clone();
                config.seed = seed;
                let submitted = self
                    .inner
                    .jobs
                    .submit(NewJob {
                        model: Arc::clone(model),
                        dataset: Arc::clone(&dataset),
                        config,
                        warm_start: None,
                    })
                    .await;
                match submitted {
                    Ok(job) => cell.jobs.push(RunRecord { seed, job: job.id }),
                    Err(error) => {
                        self.undo(&cells).await;
                        return Err(error.into());
                    }
                }
            }
        }
        let record = ExperimentRecord {
            id,
            name: request.name,
            created_at: clock::now_rfc3339(),
            dataset: dataset.info.id,
            task: dataset.data.task(),
            grid: request.grid,
            seeds: request.seeds,
            model: request.model,
            training: request.training,
            cells,
            cancelled: false,
        };
        if let Err(error) = self.persist(&record).await {
            self.undo(&record.cells).await;
            return Err(error.into());
        }
        self.write().insert(id, record.clone());
        Ok(self.view_of(&record, Metric::BestValLoss, None))
    }

    /// Removes what a failed creation made: cancels its jobs, deletes its models.
    async fn undo(&self, cells: &[CellRecord]) {
        for cell in cells {
            for run in &cell.jobs {
                let _ = self.inner.jobs.cancel(run.job).await;
            }
            let registry = Arc::clone(&self.inner.registry);
            let model = cell.model.to_string();
            let deleted = tokio::task::spawn_blocking(move || registry.delete_model(&model)).await;
            if !matches!(deleted, Ok(Ok(()))) {
                tracing::error!(model = %cell.model, "cannot remove the model of a refused experiment");
            }
        }
    }

    async fn persist(&self, record: &ExperimentRecord) -> Result<(), RegistryError> {
        let bytes = seal(KIND, record).map_err(|e| RegistryError::Corrupt {
            key: key(record.id),
            message: e.to_string(),
        })?;
        let (store, k) = (Arc::clone(&self.inner.store), key(record.id));
        tokio::task::spawn_blocking(move || store.put(&k, &bytes))
            .await
            .map_err(|_| RegistryError::Corrupt {
                key: key(record.id),
                message: "the write did not finish".into(),
            })??;
        Ok(())
    }

    /// A page of experiments, oldest first.
    #[must_use]
    pub fn list(&self, offset: usize, limit: usize) -> Page<ExperimentSummary> {
        let records: Vec<ExperimentRecord> = self.read().values().cloned().collect();
        let total = records.len();
        let items = records
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| {
                let progress = self.progress(r);
                ExperimentSummary {
                    id: r.id,
                    name: r.name.clone(),
                    created_at: r.created_at.clone(),
                    dataset: r.dataset,
                    task: r.task,
                    state: state(r, &progress),
                    progress,
                    cell_count: r.cells.len(),
                    seeds: r.seeds.clone(),
                }
            })
            .collect();
        Page { items, total }
    }

    /// The view of experiment `id` with its leaderboard sorted by `sort` (default
    /// `best_val_loss`) in `order` (default: the metric's own).
    ///
    /// # Errors
    /// [`ExperimentError::NotFound`], or an invalid `sort` or `order`.
    pub fn view(
        &self,
        id: Uuid,
        sort: Option<&str>,
        order: Option<&str>,
    ) -> Result<ExperimentView, ExperimentError> {
        let metric = sort.map_or(Ok(Metric::BestValLoss), Metric::parse)?;
        let order = order.map(Order::parse).transpose()?;
        let record = self.record(id)?;
        Ok(self.view_of(&record, metric, order))
    }

    fn progress(&self, record: &ExperimentRecord) -> ExperimentProgress {
        let mut p = ExperimentProgress::default();
        for run in record.cells.iter().flat_map(|c| &c.jobs) {
            p.total += 1;
            match job_state(&self.inner.jobs, run.job) {
                Some(JobState::Queued) => p.queued += 1,
                Some(JobState::Running) => p.running += 1,
                Some(JobState::Succeeded) => p.succeeded += 1,
                Some(JobState::Failed) => p.failed += 1,
                Some(JobState::Cancelled) => p.cancelled += 1,
                Some(JobState::Interrupted) | None => p.interrupted += 1,
            }
        }
        p.done = p.succeeded + p.failed + p.cancelled + p.interrupted;
        p.fraction = if p.total == 0 {
            1.0
        } else {
            p.done as f64 / p.total as f64
        };
        p
    }

    fn view_of(
        &self,
        record: &ExperimentRecord,
        metric: Metric,
        order: Option<Order>,
    ) -> ExperimentView {
        let jobs = &self.inner.jobs;
        let progress = self.progress(record);
        let cells = record
            .cells
            .iter()
            .map(|c| CellView {
                index: c.index,
                label: c.label.clone(),
                params: c.params.clone(),
                model: c.model,
                model_name: c.model_name.clone(),
                jobs: c
                    .jobs
                    .iter()
                    .map(|r| RunView {
                        seed: r.seed,
                        job: r.job,
                        state: job_state(jobs, r.job).map_or("unavailable", JobState::name),
                    })
                    .collect(),
            })
            .collect();
        // Each succeeded run's history is read in place, once, for its nine numbers: a copy
        // of every history per view would let a few views of long runs take gigabytes.
        let runs: Vec<leaderboard::CellRuns<'_>> = record
            .cells
            .iter()
            .map(|c| leaderboard::CellRuns {
                index: c.index,
                label: &c.label,
                runs: c
                    .jobs
                    .iter()
                    .map(|r| {
                        (job_state(jobs, r.job) == Some(JobState::Succeeded))
                            .then(|| {
                                jobs.read_history(r.job, |h| RunMetrics::of(h, &c.spec))
                                    .ok()
                            })
                            .flatten()
                    })
                    .collect(),
            })
            .collect();
        let board = leaderboard::leaderboard(&runs, record.task == Task::Regression, metric, order);
        let mut training = request::shortest(&record.training);
        if let Value::Object(m) = &mut training {
            m.remove("seed");
        }
        ExperimentView {
            id: record.id,
            name: record.name.clone(),
            created_at: record.created_at.clone(),
            dataset: record.dataset,
            task: record.task,
            state: state(record, &progress),
            progress,
            grid: record.grid.clone(),
            seeds: record.seeds.clone(),
            model: record.model.clone(),
            training,
            cells,
            leaderboard: board,
        }
    }

    /// Cancels every queued or running job of experiment `id`.
    ///
    /// # Errors
    /// [`ExperimentError::NotFound`], or [`ExperimentError::Finished`] when no job was left
    /// to cancel.
    pub async fn cancel(&self, id: Uuid) -> Result<ExperimentView, ExperimentError> {
        let record = self.record(id)?;
        let mut stopped = 0;
        for run in record.cells.iter().flat_map(|c| &c.jobs) {
            match self.inner.jobs.cancel(run.job).await {
                Ok(_) => stopped += 1,
                Err(
                    JobError::Finished { .. }
                    | JobError::NotFound(_)
                    | JobError::Unavailable { .. },
                ) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if stopped == 0 {
            return Err(ExperimentError::Finished(id));
        }
        let mut record = record;
        record.cancelled = true;
        self.persist(&record).await?;
        self.write().insert(id, record.clone());
        Ok(self.view_of(&record, Metric::BestValLoss, None))
    }
}

/// `cancelled` once a client cancelled it, else `running` until every job is finished.
fn state(record: &ExperimentRecord, progress: &ExperimentProgress) -> &'static str {
    if record.cancelled {
        "cancelled"
    } else if progress.done < progress.total {
        "running"
    } else {
        "finished"
    }
}
